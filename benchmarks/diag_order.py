"""How much of GANomaly's learned gain on the demo data is the order of its training batches: the same features,
the same initial weights (``seed``), trained by a real Lightning Trainer from a torch ``DataLoader`` (shuffled by
the global RNG, as ``diag_window.py``) or from the DataModule's own ``TensorBatches`` (shuffled from
``--order-seed``, as ``asd-train``); the official score of the reconstruction score and of residual variants
(docs/diagnosis.md, section 14).

    python benchmarks/diag_order.py NAME --loader tensorbatches --order-seed 1 --epochs 25 --sections all
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).parent))
from diag_lib import (
    build,
    experiment_parser,
    floor_scores,
    fmt,
    quiet_experiment_data,
    section_metrics,
    selected_sections,
)
from diag_lib import summary as summarise
from diag_window import fit
from diag_window import train as train_from_dataloader

from asd_ganomaly.data.datamodule import TensorBatches


def train_from_tensorbatches(module, x: torch.Tensor, epochs: int, batch: int, order_seed: int, limit=None) -> None:
    """Fit ``module`` on ``x`` with the batches ``asd-train``'s DataModule draws (drop_last, per-epoch order)."""
    module.fit_normalizer(x)
    loader = TensorBatches((x, torch.zeros(len(x), dtype=torch.long)), batch, True, True, order_seed)
    fit(module, loader, epochs, limit, deterministic=True)


@torch.no_grad()
def residuals(module, x: torch.Tensor) -> torch.Tensor:
    """X - X~ of raw log-mel clips ``x``, (clips, n_mels, frames)."""
    module.eval()
    return torch.cat([module.profiles(module.normalizer(xb))["residual"] for xb in x.split(32)])


def residual_scores(module, d: dict) -> dict[str, torch.Tensor]:
    """The reconstruction score (mean |X - X~|), its square, and the squared residual standardised per band on
    the training clips' residuals (mean over time, and over the top tenth of frames)."""
    train, test = residuals(module, d["train"]), residuals(module, d["test"])
    mean, std = train.mean((0, 2), keepdim=True), train.std((0, 2), keepdim=True).clamp_min(1e-6)
    z2 = ((test - mean) / std).pow(2).mean(1)
    top = max(1, z2.shape[1] // 10)
    return {
        "reconstruction": test.abs().mean((1, 2)),
        "reconstruction_mse": test.pow(2).mean((1, 2)),
        "band_z2": z2.mean(1),
        "band_z2_top": z2.topk(top, 1).values.mean(1),
    }


def main() -> None:
    parser = experiment_parser("data/diag_order.jsonl")
    parser.add_argument("--loader", choices=["dataloader", "tensorbatches"], default="tensorbatches")
    parser.add_argument("--order-seed", type=int, default=0, help="TensorBatches' shuffling seed")
    parser.add_argument("--no-one-step", action="store_true", help="skip the one-step models")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    data = quiet_experiment_data(args)
    stages = [("trained", args.epochs, None)] + ([] if args.no_one_step else [("one step", 1, 1)])
    for seed in [int(s) for s in args.seeds.split(",")]:
        per: dict[str, dict] = {"floor": {}}
        for key in selected_sections(data, args.sections):
            d = data[key]
            per["floor"][key] = section_metrics(floor_scores(d), d)
            for stage, epochs, limit in stages:
                L.seed_everything(seed, verbose=False)
                module, _ = build("experiment=demo", *args.overrides)
                if args.loader == "dataloader":
                    train_from_dataloader(module, d["train"], epochs, args.batch, limit)
                else:
                    train_from_tensorbatches(module, d["train"], epochs, args.batch, args.order_seed, limit)
                for name, scores in residual_scores(module, d).items():
                    per.setdefault(f"{stage}: {name}", {})[key] = section_metrics(scores, d)
        print(f"== seed {seed}, {args.loader} (order seed {args.order_seed}): {' '.join(args.overrides)}")
        for name, results in per.items():
            print(fmt(name, summarise(results)), flush=True)


if __name__ == "__main__":
    main()
