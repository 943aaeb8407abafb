"""Learned gain of GANomaly variants on the demo data: each variant trained by a real Lightning Trainer for its
epochs and, from the same seed, for one step; every score choice's official score of both, beside the
no-training floor (docs/diagnosis.md, section 13).

    python benchmarks/diag_window.py NAME --epochs 25 --seeds 0 --sections s0 -- model.window=32 ...

Overrides go on top of ``experiment=demo``. Features come from ``diag_lib.load_features`` (cached once per data
folder); results are appended as JSON lines to ``--out``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from diag_lib import (
    build,
    experiment_parser,
    floor_scores,
    fmt,
    quiet_experiment_data,
    section_metrics,
    selected_sections,
    summary,
    timer,
)


def train(module, x: torch.Tensor, epochs: int, batch: int, limit_batches: int | None = None) -> None:
    """Fit ``module`` on the training clips ``x`` with a Trainer: shuffled batches, drop_last, as the DataModule."""
    module.fit_normalizer(x)
    fit(module, DataLoader(TensorDataset(x), batch_size=batch, shuffle=True, drop_last=True), epochs, limit_batches)


def fit(module, loader, epochs: int, limit_batches: int | None = None, **trainer_args) -> None:
    """A quiet CPU Trainer without logger or checkpoints fits ``module`` on ``loader`` for ``epochs``."""
    trainer = L.Trainer(
        max_epochs=epochs,
        limit_train_batches=limit_batches or 1.0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_args,
    )
    trainer.fit(module, train_dataloaders=loader)


@torch.no_grad()
def all_scores(module, d: dict) -> dict[str, torch.Tensor]:
    """Calibrate on the training clips (residual bank, fusion) and score the test clips with every choice."""
    zeros = torch.zeros(len(d["train"]), dtype=torch.long)
    module.calibrate_threshold([(xb, sb) for xb, sb in zip(d["train"].split(64), zeros.split(64), strict=True)])
    module.eval()
    scores = module.score_logmel(d["test"])
    if len(module.components) > 2:  # the fusion without the discriminator's score
        module.fuse_components = tuple(c for c in module.components if c != "discriminator")
        scores["score_fused_nodisc"] = module.fuse(scores)
        module.fuse_components = module.components
    return scores


def main() -> None:
    parser = experiment_parser("data/diag_window.jsonl")
    parser.add_argument("--pools", nargs="+", default=["mean"], help="poolings to score with (mean, max, top)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    data = quiet_experiment_data(args)
    keys = selected_sections(data, args.sections)
    for seed in [int(s) for s in args.seeds.split(",")]:
        per: dict[str, dict] = {"floor": {}}
        start = timer()
        for key in keys:
            d = data[key]
            per["floor"][key] = section_metrics(floor_scores(d), d)
            for stage, epochs, limit in (("one step", 1, 1), ("trained", args.epochs, None)):
                L.seed_everything(seed, verbose=False)
                module, _ = build("experiment=demo", *args.overrides)
                train(module, d["train"], epochs, args.batch, limit)
                for pool in args.pools:
                    module.pool = pool
                    for name, scores in all_scores(module, d).items():
                        if name != "score":
                            per.setdefault(f"{stage}: {name} ({pool})", {})[key] = section_metrics(scores, d)
        seconds = timer() - start
        print(f"== {args.name} seed {seed}: {' '.join(args.overrides)} ({seconds:.0f} s)")
        results = {name: summary(v) for name, v in per.items()}
        for name, s in results.items():
            print(fmt(name, s))
        record = {"name": args.name, "seed": seed, "overrides": args.overrides, "epochs": args.epochs}
        with open(args.out, "a") as f:
            f.write(json.dumps(record | {"seconds": seconds, "results": results}) + "\n")


if __name__ == "__main__":
    main()
