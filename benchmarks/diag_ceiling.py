"""How far can a clip-level detector go on the demo data? Per anomaly kind, the no-training floor's AUC (normal
clips of a section and domain against the anomalous clips of one kind), and the official score of an oracle that
ranks the anomalies of some kinds above every normal clip and leaves the others to the floor (or to chance).

    python benchmarks/diag_ceiling.py --data data/demo      # after `make demo` wrote the demo data
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from diag_lib import floor_scores, load_features, section_metrics, summary

from asd_ganomaly.data.dcase import list_clips
from asd_ganomaly.data.synth import ANOMALIES, anomaly_kind
from asd_ganomaly.evaluation.metrics import auc_pauc


def clip_kinds(root: str, machine: str, section: int, seed: int) -> list[str]:
    """``normal`` or the anomaly kind of every test clip, in the order of ``list_clips``."""
    clips = list_clips(root, machine, section, "test")
    return [anomaly_kind(machine, section, c.domain, c.index, seed) if c.is_anomaly else "normal" for c in clips]


def auc_per_kind(scores: torch.Tensor, kinds: list[str], domains: torch.Tensor) -> dict[str, list[float]]:
    """Per kind, the AUC of each domain's normal clips against that domain's anomalies of the kind."""
    out = defaultdict(list)
    for code in domains.unique().tolist():
        normal = [i for i, k in enumerate(kinds) if k == "normal" and domains[i] == code]
        for kind in ANOMALIES:
            anomalous = [i for i, k in enumerate(kinds) if k == kind and domains[i] == code]
            if anomalous:
                index = torch.tensor(normal + anomalous)
                labels = torch.tensor([0] * len(normal) + [1] * len(anomalous))
                out[kind].append(auc_pauc(scores[index], labels)[0])
    return out


def oracle(scores: torch.Tensor, kinds: list[str], easy: tuple[str, ...]) -> torch.Tensor:
    """``scores`` with the anomalies of the ``easy`` kinds moved above every other clip."""
    top = scores.max() + 1.0
    return torch.stack([top if k in easy else s for s, k in zip(scores, kinds, strict=True)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data/demo")
    parser.add_argument("--seed", type=int, default=0, help="the generator seed the data was written with")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_features(args.data, args.data.rstrip("/") + "_feats.pt")
    kinds = {key: clip_kinds(args.data, *key, args.seed) for key in data}
    per_kind: dict[str, list[float]] = defaultdict(list)
    for key, d in data.items():
        for kind, aucs in auc_per_kind(floor_scores(d), kinds[key], d["domain"]).items():
            per_kind[kind] += aucs
    counts = {k: sum(v.count(k) for v in kinds.values()) for k in ANOMALIES}
    print("floor AUC per anomaly kind (mean over sections and domains; clips):")
    for kind in ANOMALIES:
        print(f"  {kind:10s} {sum(per_kind[kind]) / len(per_kind[kind]):.3f}  ({counts[kind]} clips)")
    chance = torch.Generator().manual_seed(0)
    for easy in (("rattle",), ("rattle", "whine"), ("rattle", "whine", "impacts")):
        for rest in ("floor", "chance"):
            results = {}
            for key, d in data.items():
                base = floor_scores(d) if rest == "floor" else torch.rand(len(d["test"]), generator=chance)
                results[key] = section_metrics(oracle(base, kinds[key], easy), d)
            print(
                f"oracle: {'+'.join(easy):22s} perfect, the rest {rest:6s}: official {summary(results)['official']:.3f}"
            )


if __name__ == "__main__":
    main()
