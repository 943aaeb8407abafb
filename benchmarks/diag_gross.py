"""Sanity check of the scores' sign and inputs: saved models of a diag_run.py experiment score the normal
test clips against the same clips with a gross artificial anomaly (a band 15 dB louder, or the whole clip
10 dB louder). Every score should give AUC near 1.

    python benchmarks/diag_gross.py data/models/NAME model=ganomaly_small ...
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from diag_lib import build, extra_scores, load_features, score_all

from asd_ganomaly.evaluation.metrics import auc_pauc


def main() -> None:
    folder, overrides = Path(sys.argv[1]), sys.argv[2:]
    torch.set_num_threads(1)
    data = load_features("data/demo", "data/demo_feats.pt")
    aucs: dict[str, dict[str, list[float]]] = {}
    for path in sorted(folder.glob("*_s0.pt")):
        machine, section = path.stem.split("_")[:2]
        d = data[(machine, int(section))]
        module, _ = build(*overrides)
        module.load_state_dict(torch.load(path))
        module.eval()
        normal = d["test"][d["label"] == 0]
        whine = normal.clone()
        whine[:, 60:62] += 15.0
        louder = normal + 10.0
        for kind, anomalous in (("band +15 dB", whine), ("clip +10 dB", louder)):
            x = torch.cat([normal, anomalous])
            labels = torch.cat([torch.zeros(len(normal)), torch.ones(len(anomalous))])
            scores = score_all(module, x) | extra_scores(module, x)
            for name, value in scores.items():
                aucs.setdefault(kind, {}).setdefault(name, []).append(auc_pauc(value, labels)[0])
    for kind, per in aucs.items():
        line = " ".join(f"{name}={sum(v) / len(v):.2f}" for name, v in per.items())
        print(f"{folder.name} {kind}: mean AUC over {len(next(iter(per.values())))} sections: {line}")


if __name__ == "__main__":
    main()
