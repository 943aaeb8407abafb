"""Why a loss-weight sweep of ganomaly_small changes little: the same initial weights and batches trained with
``w_rec`` = 10 and 50 (and ``w_adv`` = 0 and 1), under Adam (ganomaly_small's) and under SGD (the report's);
how far apart the trained generators and their reconstruction scores end (docs/diagnosis.md, section 14).

    python benchmarks/diag_weights.py NAME --epochs 25 --sections s0
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from diag_lib import build, experiment_parser, load_features, section_metrics, selected_sections, steps_for, train_gan

SETTINGS = {
    "w_rec": (("model.loss.w_rec=10",), ("model.loss.w_rec=50",)),
    "w_adv": (("model.loss.w_adv=0",), ("model.loss.w_adv=1",)),
    "seed": ((), ("seed+1",)),  # the same setting from the next seed: the spread a setting must exceed
}
OPTIMIZERS = {
    "adam": ("model/optimizer@model.optimizer_g=adam", "model/optimizer@model.optimizer_d=adam"),
    "sgd": ("model/optimizer@model.optimizer_g=sgd", "model/optimizer@model.optimizer_d=sgd"),
}


def trained(d: dict, overrides: tuple[str, ...], epochs: int, batch: int, seed: int):
    """ganomaly_small trained on section ``d`` from seed ``seed``: (generator parameters as one vector, the
    reconstruction scores of the test clips)."""
    torch.manual_seed(seed)
    module, _ = build("experiment=demo", *overrides)
    train_gan(module, d["train"], steps_for(epochs, len(d["train"]), batch), batch, seed)
    weights = torch.cat([p.detach().flatten() for p in module.net.generator.parameters()])
    with torch.no_grad():
        scores = module.score_logmel(d["test"])["score_rec"]
    return weights, scores


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's correlation of two score vectors."""
    ranks = torch.stack([a.argsort().argsort(), b.argsort().argsort()]).float()
    return float(torch.corrcoef(ranks)[0, 1])


def main() -> None:
    parser = experiment_parser("data/diag_weights.jsonl")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    torch.set_num_threads(1)
    data = load_features(args.data, args.data.rstrip("/") + "_feats.pt")
    print("optimizer key      weight change ratio  score rank corr  source AUC a/b  target AUC a/b  section")
    for key in selected_sections(data, args.sections):
        d = data[key]
        seed = int(args.seeds.split(",")[0])
        start, s0 = trained(d, (), 0, args.batch, seed)
        for optimizer, chosen in OPTIMIZERS.items():
            for name, (a, b) in SETTINGS.items():
                wa, sa = trained(d, (*chosen, *a, *args.overrides), args.epochs, args.batch, seed)
                seed_b = seed + 1 if b == ("seed+1",) else seed
                b = () if b == ("seed+1",) else b
                wb, sb = trained(d, (*chosen, *b, *args.overrides), args.epochs, args.batch, seed_b)
                ratio = float((wa - wb).norm() / (wa - start).norm().clamp_min(1e-12))
                corr = rank_correlation(sa, sb)
                auc = [[f"{m[0]:.3f}" for m in section_metrics(s, d)] for s in (sa, sb)]
                print(
                    f"{optimizer:9s} {name:6s}  {ratio:19.3f}  {corr:15.3f}  {auc[0][0]}/{auc[1][0]}     "
                    f"{auc[0][1]}/{auc[1][1]}     {key[0]} {key[1]}",
                    flush=True,
                )
            print(f"{optimizer:9s} untrained vs trained: rank corr {rank_correlation(s0, sa):.3f}", flush=True)


if __name__ == "__main__":
    main()
