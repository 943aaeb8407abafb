"""Helpers for the GANomaly diagnosis experiments (docs/diagnosis.md): cached features of every section,
the no-training floor, a training loop identical to GANomalyModule.training_step, and AUC summaries."""

from __future__ import annotations

import argparse
import logging
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from asd_ganomaly.data.cache import extract_features
from asd_ganomaly.data.dcase import DOMAINS, MACHINE_TYPES, list_clips
from asd_ganomaly.data.features import FeatureConfig
from asd_ganomaly.evaluation.metrics import auc_pauc, harmonic_mean
from asd_ganomaly.models.base import build_detector

CONF = str(Path(__file__).resolve().parents[1] / "conf")
SECTIONS = [(m, s) for m in MACHINE_TYPES for s in (0, 1, 2)]


def load_features(root: str, out: str, config: FeatureConfig | None = None, keys: list | None = None) -> dict:
    """Train/test log-mel (``config``, default the package's) of every (machine, section) in ``keys`` (default
    all 21) under ``root``, cached in one file ``out``."""
    if Path(out).exists():
        return torch.load(out)
    config = config or FeatureConfig()
    data = {}
    for machine, section in keys or SECTIONS:
        train = [c for c in list_clips(root, machine, section, "train") if c.label != "anomaly"]
        test = list_clips(root, machine, section, "test")
        xtr, _ = extract_features([c.path for c in train], config, num_workers=1, progress=False)
        xte, _ = extract_features([c.path for c in test], config, num_workers=1, progress=False)
        data[(machine, section)] = {
            "train": xtr,
            "test": xte,
            "label": torch.tensor([int(c.is_anomaly) for c in test]),
            "domain": torch.tensor([DOMAINS.index(c.domain) for c in test]),
        }
    torch.save(data, out)
    return data


def quiet_experiment_data(args: argparse.Namespace) -> dict:
    """One thread, Lightning's and Python's warnings silenced, and the features of ``args.data`` (cached beside
    it): the set-up of a diagnosis run."""
    torch.set_num_threads(1)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    return load_features(args.data, args.data.rstrip("/") + "_feats.pt")


def experiment_parser(out: str) -> argparse.ArgumentParser:
    """The arguments every diagnosis run takes: a name, the budget, seeds, sections, data, results file and
    Hydra overrides."""
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--sections", default="all", help="all, or s0 (section 0 of every machine), s01")
    parser.add_argument("--data", default="data/demo")
    parser.add_argument("--out", default=out)
    return parser


def selected_sections(data: dict, spec: str) -> list:
    """The (machine, section) keys of ``data`` that ``spec`` names: ``all``, or ``s`` and section digits."""
    keep = None if spec == "all" else {int(c) for c in spec[1:]}
    return [k for k in data if keep is None or k[1] in keep]


def time_stats(t: torch.Tensor) -> torch.Tensor:
    """Mean and std over the last (time) axis of every other position, flattened to one row per clip."""
    return torch.cat([t.mean(-1).flatten(1), t.std(-1).flatten(1)], 1)


def standardised(rows: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """``rows`` with every column z-scored by the training rows' mean and std."""
    return (rows - train.mean(0)) / train.std(0).clamp_min(1e-6)


def nearest_training_distance(train: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """1-NN distance of each test row to the training rows, every column z-scored on the training rows."""
    return torch.cdist(standardised(test, train), standardised(train, train)).min(1).values


@torch.no_grad()
def pooled_codes(module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean and std over time of Z, Z', Z - Z' and the residual, flattened per clip, for raw log-mel ``x``."""
    module.eval()
    xn = module.normalizer(x)
    _, x_rec, z, zp = module.net(xn)
    residual = xn.unsqueeze(1) - x_rec[..., : xn.shape[-2], : xn.shape[-1]]
    return {"z": time_stats(z), "zp": time_stats(zp), "dz": time_stats(z - zp), "res": time_stats(residual)}


def floor_scores(d: dict) -> torch.Tensor:
    """1-NN distance of per-band mean and std of the log-mel, z-scored on the training clips."""
    return nearest_training_distance(time_stats(d["train"]), time_stats(d["test"]))


def section_metrics(scores: torch.Tensor, d: dict) -> list[tuple[float, float]]:
    """(AUC, pAUC) per domain."""
    return [auc_pauc(scores[d["domain"] == k], d["label"][d["domain"] == k]) for k in range(len(DOMAINS))]


def summary(per_section: dict) -> dict:
    """Official score, mean AUC and per-machine hmean AUC of {(machine, section): [(auc, pauc) x domains]}."""
    pairs = [p for v in per_section.values() for p in v]
    out = {
        "official": harmonic_mean([a for a, _ in pairs] + [p for _, p in pairs]),
        "mean_auc": sum(a for a, _ in pairs) / len(pairs),
    }
    for machine in MACHINE_TYPES:
        aucs = [a for (m, _), v in per_section.items() if m == machine for a, _ in v]
        if aucs:
            out[machine] = harmonic_mean(aucs)
    return out


def fmt(name: str, s: dict) -> str:
    """One line of a summary."""
    machines = " ".join(f"{m[:5]}={s[m]:.2f}" for m in MACHINE_TYPES if m in s)
    return f"{name:40s} official={s['official']:.3f} meanAUC={s['mean_auc']:.3f} | {machines}"


def build(*overrides: str):
    """The LightningModule of ``model=...`` plus overrides, composed with Hydra as asd-train does."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides))
    return build_detector(cfg.model), cfg


def train_gan(
    module,
    x: torch.Tensor,
    steps: int,
    batch: int,
    seed: int,
    log_every: int = 0,
    on_step: Callable[[int], None] | None = None,
    epoch_order: Callable[[int, torch.Generator], torch.Tensor] | None = None,
) -> list[dict]:
    """The same updates as GANomalyModule.training_step, without a Trainer (shuffled epochs, drop_last).

    ``on_step(step)`` is called after every optimizer step; ``epoch_order(n, generator)`` replaces the epoch's
    permutation of the ``n`` training clips (indices, repeats allowed)."""
    torch.manual_seed(seed)
    module.fit_normalizer(x)
    opt_g = module.optimizer_factories[0](params=module.net.generator.parameters())
    opt_d = module.optimizer_factories[1](params=module.net.discriminator.parameters())
    net, history, step = module.net, [], 0
    module.train()
    gen = torch.Generator().manual_seed(seed)
    while step < steps:
        order = (epoch_order or torch.randperm)(len(x), generator=gen)
        for i in range(len(order) // batch):
            xb = module.normalizer(x[order[i * batch : (i + 1) * batch]])
            x_pad, x_rec, z, zp = net(xb)
            terms = module.loss(x_pad, x_rec, z, zp, net.discriminator(x_pad), net.discriminator(x_rec))
            opt_g.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt_g.step()
            loss_d = module.d_loss(net.discriminator(x_pad)[0], net.discriminator(x_rec.detach())[0])
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            step += 1
            if on_step is not None:
                on_step(step)
            if log_every and step % log_every == 0:
                history.append({k: float(v) for k, v in terms.items()} | {"d": float(loss_d), "step": step})
            if step >= steps:
                break
    module.eval()
    return history


@torch.no_grad()
def recalibrate_bn(module, x: torch.Tensor) -> None:
    """Recompute every BatchNorm's running statistics as the exact average over the training clips."""
    norms = [m for m in module.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    module.net.train()
    for xb in x.split(8):
        module.net(module.normalizer(xb))
    module.net.eval()
    for m in norms:
        m.momentum = 0.1


@torch.no_grad()
def extra_scores(module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Other ways to pool the same residuals: squared, and averaged over time before pooling over bands."""
    xn = module.normalizer(x)
    x_pad, x_rec, z, zp = module.net(xn)
    r = (x_pad - x_rec)[:, 0, : xn.shape[-2], : xn.shape[-1]]
    dz = z - zp
    return {
        "rec_mse": r.pow(2).flatten(1).mean(1),
        "rec_band": r.mean(-1).pow(2).mean(1),
        "lat_band": dz.mean(-1).pow(2).flatten(1).mean(1),
    }


@torch.no_grad()
def score_all(module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every score of the module for raw log-mel ``x``, in batches of 64."""
    module.eval()
    parts = [module.score_logmel(xb) for xb in x.split(64)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def steps_for(epochs: int, clips: int, batch: int) -> int:
    """Optimizer steps of ``epochs`` epochs with drop_last."""
    return epochs * max(1, math.floor(clips / batch))


def timer() -> float:
    """Seconds since the epoch (for wall-time figures)."""
    return time.perf_counter()
