"""Official score and per-machine hmean AUC of every score column in the scores.csv files of a sweep.

python benchmarks/diag_scores.py outputs/demo/ganomaly_small
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import torch

from asd_ganomaly.evaluation.metrics import auc_pauc, harmonic_mean
from asd_ganomaly.models.scores import SCORE_COLUMNS


def main() -> None:
    runs = sorted(Path(sys.argv[1]).glob("**/scores.csv"))
    header = csv.DictReader(runs[0].open()).fieldnames if runs else []
    for column in [c for c in SCORE_COLUMNS if c in header]:
        values, per_machine = [], {}
        for path in runs:
            rows = list(csv.DictReader(path.open()))
            for domain in ("source", "target"):
                chosen = [r for r in rows if r["domain"] == domain]
                scores = torch.tensor([float(r[column]) for r in chosen])
                labels = torch.tensor([int(r["label"]) for r in chosen])
                auc, pauc = auc_pauc(scores, labels)
                values += [auc, pauc]
                per_machine.setdefault(path.parent.name.rsplit("_sec", 1)[0], []).append(auc)
        machines = " ".join(f"{m}={harmonic_mean(a):.2f}" for m, a in per_machine.items())
        print(f"{column:18s} runs={len(runs)} official={harmonic_mean(values):.3f} | hmean AUC {machines}")


if __name__ == "__main__":
    main()
