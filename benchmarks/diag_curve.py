"""The learning curve of GANomaly's scores within one training run, and three ways to steady it
(docs/diagnosis.md, sections 16 and 17).

    python benchmarks/diag_curve.py curve --sections s0 --steps 1,50,100,150,200 [--recal] [--ema 0.95]
        [--balance] [--band] [--holdout K] [-- OVERRIDES]

For each section, ``experiment=demo``'s model (plus overrides) trains once with ``diag_lib.train_gan``; at each
step count of ``--steps`` the reconstruction score (mean |X - X~|) and the residual k-NN (1-NN distance of the
residual's mean and std over time, z-scored on the training clips) are scored on the test clips. Printed per step
count: the official score and the harmonic mean of AUC and pAUC per domain, beside the no-training floor.
``--recal`` also scores a copy whose BatchNorm statistics are recomputed exactly on the training clips, ``--ema``
an exponential moving average of the generator's weights (the decay given), ``--balance`` draws as many
target-domain clips as source ones in every epoch (the section's few target clips repeated), and ``--band`` adds
the per-band standardised reconstruction error (section 17; the package's ``band_error`` score, section 18) and
its variant pooled over each band's highest tenth of frames. ``--holdout K`` trains on all but K source-domain
training clips of each section (drawn with the seed) and prints their mean |X - X~| at each step count, the
reconstruction loss an early stopping on held-out normals would watch (section 20).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from diag_lib import (
    build,
    experiment_parser,
    floor_scores,
    nearest_training_distance,
    pooled_codes,
    quiet_experiment_data,
    recalibrate_bn,
    section_metrics,
    selected_sections,
    standardised,
    summary,
    train_gan,
)

from asd_ganomaly.data.dcase import list_clips
from asd_ganomaly.evaluation.metrics import harmonic_mean


@torch.no_grad()
def band_errors(module, x: torch.Tensor, top: float) -> dict[str, torch.Tensor]:
    """Each clip's |X - X~| per mel band (clips, bands), for raw log-mel ``x``, from one forward pass: ``mean``, the
    mean over frames, and ``top``, the mean of each band's highest ``top`` fraction of frames."""
    module.eval()
    error = module.net.profiles(module.normalizer(x))["residual"].abs()
    highest = error.topk(max(1, round(top * error.shape[-1])), dim=-1).values
    return {"mean": error.mean(-1), "top": highest.mean(-1)}


@torch.no_grad()
def curve_scores(module, d: dict, band: bool = False) -> dict[str, torch.Tensor]:
    """The reconstruction score and the residual k-NN of the test clips; with ``band`` also the per-band
    standardised reconstruction error: each band's mean |X - X~| z-scored on the training clips, then averaged
    (``band-z``) or squared and averaged (``band-z sq``; ``band-z sq top``: each band's mean over its highest tenth
    of frames instead of all of them). Leaves ``module`` in training mode."""
    train, test = pooled_codes(module, d["train"])["res"], pooled_codes(module, d["test"])["res"]
    scores = {
        "reconstruction": module.net.scores(module.normalizer(d["test"]))["score_rec"],
        "residual knn": nearest_training_distance(train, test),
    }
    if band:
        test_errors, train_errors = band_errors(module, d["test"], 0.1), band_errors(module, d["train"], 0.1)
        z = standardised(test_errors["mean"], train_errors["mean"])
        scores |= {"reconstruction band-z": z.mean(1), "reconstruction band-z sq": z.pow(2).mean(1)}
        z_top = standardised(test_errors["top"], train_errors["top"])
        scores["reconstruction band-z sq top"] = z_top.pow(2).mean(1)
    module.train()
    return scores


def balanced_order(n_target: int) -> Callable[[int, torch.Generator], torch.Tensor]:
    """An epoch order that adds draws of the last ``n_target`` clips (the target domain) until they are as many
    as the source clips."""

    def order(n: int, generator: torch.Generator) -> torch.Tensor:
        n_source = n - n_target
        extra = n_source + torch.randint(0, n_target, (n_source - n_target,), generator=generator)
        draws = torch.cat([torch.arange(n), extra])
        return draws[torch.randperm(len(draws), generator=generator)]

    return order


class EMA:
    """An exponential moving average of a module's parameters (buffers copied as they are)."""

    def __init__(self, module, decay: float) -> None:
        self.module, self.decay = copy.deepcopy(module), decay

    @torch.no_grad()
    def update(self, module) -> None:
        for mine, theirs in zip(self.module.parameters(), module.parameters(), strict=True):
            mine.lerp_(theirs, 1 - self.decay)
        for mine, theirs in zip(self.module.buffers(), module.buffers(), strict=True):
            mine.copy_(theirs)


@torch.no_grad()
def held_out_loss(module, x: torch.Tensor) -> float:
    """Mean |X - X~| of held-out training normals (the reconstruction loss, an early-stopping criterion that needs
    no test label). Leaves ``module`` in training mode."""
    module.eval()
    loss = float(module.net.scores(module.normalizer(x))["score_rec"].mean())
    module.train()
    return loss


def hold_out(d: dict, n_source: int, k: int, seed: int) -> dict:
    """``d`` with ``k`` of its first ``n_source`` training clips (the source domain) moved to ``held_out``."""
    picked = torch.randperm(n_source, generator=torch.Generator().manual_seed(seed))[:k]
    keep = torch.ones(len(d["train"]), dtype=torch.bool)
    keep[picked] = False
    return d | {"train": d["train"][keep], "held_out": d["train"][~keep]}


def domain_hmean(results: dict, domain: int) -> float:
    """Harmonic mean of every section's AUC and pAUC in one domain."""
    return harmonic_mean([x for pairs in results.values() for x in pairs[domain]])


def section_curve(module, d: dict, args, checkpoints: list[int], n_target: int) -> dict[str, list]:
    """Train ``module`` on one section and return {score at a step count: per-domain (AUC, pAUC)}."""
    seed, out = int(args.seeds.split(",")[0]), {}
    ema = EMA(module, args.ema) if args.ema else None

    def on_step(step: int) -> None:
        if ema is not None:
            ema.update(module)
        if step not in checkpoints:
            return
        variants = {"": module} | ({" (ema)": ema.module} if ema else {})
        if args.recal:
            variants[" (exact bn)"] = copy.deepcopy(module)
            recalibrate_bn(variants[" (exact bn)"], d["train"])
        for suffix, m in variants.items():
            for name, scores in curve_scores(m, d, args.band).items():
                out[f"{step:4d} steps: {name}{suffix}"] = section_metrics(scores, d)

    order = balanced_order(n_target) if args.balance else None
    if "held_out" in d:
        checkpoints_loss = out.setdefault("held-out loss", {})

        def on_step_with_loss(step: int, score=on_step) -> None:
            score(step)
            if step in checkpoints:
                checkpoints_loss[step] = held_out_loss(module, d["held_out"])

        on_step = on_step_with_loss
    train_gan(module, d["train"], checkpoints[-1], args.batch, seed, on_step=on_step, epoch_order=order)
    return out


def main() -> None:
    parser = experiment_parser("")
    parser.add_argument("--steps", default="1,50,100,150,200", help="comma-separated step counts")
    parser.add_argument("--recal", action="store_true", help="also score with exact BatchNorm statistics")
    parser.add_argument("--ema", type=float, default=0.0, help="also score an EMA of the weights (decay)")
    parser.add_argument("--balance", action="store_true", help="as many target draws as source ones per epoch")
    parser.add_argument("--band", action="store_true", help="also the per-band standardised reconstruction error")
    parser.add_argument("--holdout", type=int, default=0, help="hold out this many source training clips")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    data = quiet_experiment_data(args)
    checkpoints = [int(s) for s in args.steps.split(",")]
    per: dict[str, dict] = {"floor": {}}
    losses: dict[int, list[float]] = {}
    for key in selected_sections(data, args.sections):
        d = data[key]
        train = [c for c in list_clips(args.data, *key, "train") if c.label != "anomaly"]
        n_target = sum(c.domain == "target" for c in train)
        if args.holdout:
            d = hold_out(d, len(train) - n_target, args.holdout, int(args.seeds.split(",")[0]))
        per["floor"][key] = section_metrics(floor_scores(d), d)
        torch.manual_seed(int(args.seeds.split(",")[0]))
        module, _ = build("experiment=demo", *args.overrides)
        curve = section_curve(module, d, args, checkpoints, n_target)
        for step, loss in curve.pop("held-out loss", {}).items():
            losses.setdefault(step, []).append(loss)
        for name, metrics in curve.items():
            per.setdefault(name, {})[key] = metrics
    for step, values in sorted(losses.items()):
        print(f"{step:4d} steps: held-out training normals' mean |X - X~| {sum(values) / len(values):.4f}")
    for name, results in sorted(per.items()):
        official, source, target = summary(results)["official"], domain_hmean(results, 0), domain_hmean(results, 1)
        print(f"{name:44s} official={official:.3f} source={source:.3f} target={target:.3f}")


if __name__ == "__main__":
    main()
