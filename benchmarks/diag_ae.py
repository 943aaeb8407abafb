"""Why does the DCASE AE baseline rank anomalies *below* normals on ``make quality``'s data? Trains the AE of
``model=ae_baseline`` per section with the same updates as ``AutoencoderModule.training_step`` (no Trainer), then
prints, per variant (normalisation, epochs, score), the official score, per machine type hmean AUC and the AUC per
anomaly kind, next to no-training references on the same clips.

    asd-ganomaly synth data/q4 --sections 0 1 --clips-per-section 32 --test-clips 10 --seconds 4
    python benchmarks/diag_ae.py --data data/q4 --seconds 4 --frames 120
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from diag_ceiling import auc_per_kind, clip_kinds
from diag_lib import build, load_features, section_metrics, summary

from asd_ganomaly.data.dcase import MACHINE_TYPES
from asd_ganomaly.data.features import FeatureConfig
from asd_ganomaly.data.synth import ANOMALIES
from asd_ganomaly.models.ae import context_vectors


def load(root: str, sections: list[int], config: FeatureConfig, machines: list[str]) -> dict:
    """Train/test log-mel of every (machine, section), cached next to ``root`` per feature length."""
    out = f"{root.rstrip('/')}_ae_feats_{config.seconds:g}s_{config.frames}.pt"
    return load_features(root, out, config, [(m, s) for m in machines for s in sections])


def train_ae(module, x: torch.Tensor, epochs: int, clips_per_batch: int, seed: int) -> None:
    """AutoencoderModule.training_step's updates: shuffled batches of clips (drop_last, as the DataModule), each cut
    into context vectors, shuffled, and fed in minibatches of ``vectors_per_batch``."""
    torch.manual_seed(seed)
    module.fit_normalizer(x)
    optimizer = module.optimizer_factory(params=module.net.parameters())
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(len(x) // clips_per_batch):
            batch = module.normalizer(x[order[i * clips_per_batch : (i + 1) * clips_per_batch]])
            vectors = context_vectors(batch, module.net.context)
            vectors = vectors.reshape(-1, vectors.shape[-1])
            for chunk in torch.randperm(len(vectors)).split(module.vectors_per_batch):
                if len(chunk) < 2:
                    continue
                loss = torch.nn.functional.mse_loss(module.net(vectors[chunk]), vectors[chunk])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    module.eval()


@torch.no_grad()
def ae_scores(module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The official score (MSE over each clip's vectors) and the same error pooled otherwise."""
    xn = module.normalizer(x)
    vectors = context_vectors(xn, module.net.context)
    batch, count, size = vectors.shape
    rec = module.net(vectors.reshape(-1, size)).view(batch, count, size)
    error = (rec - vectors).pow(2)
    return {"mse": error.mean((1, 2)), "mse_max": error.mean(2).max(1).values}


@torch.no_grad()
def offset_share(module, x: torch.Tensor) -> float:
    """Share of the test clips' mean squared error that is a constant offset: the squared mean residual per vector
    dimension (over all test clips and vectors) over the mean squared residual."""
    vectors = context_vectors(module.normalizer(x), module.net.context)
    residual = module.net(vectors.flatten(0, 1)) - vectors.flatten(0, 1)
    return float(residual.mean(0).pow(2).mean() / residual.pow(2).mean())


def mean_vector_scores(d: dict) -> torch.Tensor:
    """No training: mean squared distance of each raw dB context vector to the training clips' mean vector, i.e.
    what an AE that has only learnt the mean reconstruction scores."""
    centre = context_vectors(d["train"], 5).mean((0, 1))
    return (context_vectors(d["test"], 5) - centre).pow(2).mean((1, 2))


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Rank correlation of two score vectors."""
    ranks = [x.argsort().argsort().double() for x in (a, b)]
    return float(torch.corrcoef(torch.stack(ranks))[0, 1])


def report(name: str, scores: dict, data: dict, kinds: dict) -> None:
    """Official score, mean AUC, the mean over sections of the rank correlation between the score and the clip's
    mean dB (loudness), then per machine hmean AUC and the AUC per anomaly kind."""
    results, per_kind = {}, defaultdict(list)
    for key, d in data.items():
        results[key] = section_metrics(scores[key], d)
        for kind, aucs in auc_per_kind(scores[key], kinds[key], d["domain"]).items():
            per_kind[kind] += aucs
    s = summary(results)
    loudness = [spearman(scores[key], d["test"].mean((1, 2))) for key, d in data.items()]
    machines = " ".join(f"{m[:5]}={s[m]:.2f}" for m in MACHINE_TYPES if m in s)
    by_kind = " ".join(f"{k}={sum(v) / len(v):.2f}" for k, v in per_kind.items() if v)
    rho = sum(loudness) / len(loudness)
    print(f"{name:34s} official={s['official']:.3f} meanAUC={s['mean_auc']:.3f} rho(loudness)={rho:+.2f}", flush=True)
    print(f"    {machines} | {by_kind}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data/q4")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--sections", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--machines", nargs="+", default=list(MACHINE_TYPES))
    parser.add_argument("--epochs", type=int, nargs="+", default=[25])
    parser.add_argument("--norms", nargs="+", default=["none"])
    parser.add_argument("--biases", nargs="+", default=["zero", "mean"], help="model.output_bias values")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generator-seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = FeatureConfig(seconds=args.seconds, frames=args.frames)
    data = load(args.data, args.sections, config, args.machines)
    kinds = {key: clip_kinds(args.data, *key, args.generator_seed) for key in data}
    print(f"anomalous clips per kind: { {k: sum(v.count(k) for v in kinds.values()) for k in ANOMALIES} }")
    report("no training: dist. to mean vector", {k: mean_vector_scores(d) for k, d in data.items()}, data, kinds)
    overrides = ["model=ae_baseline", f"data.features.seconds={args.seconds}", f"data.features.frames={args.frames}"]
    for norm, bias, epochs in itertools.product(args.norms, args.biases, args.epochs):
        scores, offsets = defaultdict(dict), []
        for key, d in data.items():
            module, _ = build(*overrides, f"model.normalization={norm}", f"model.output_bias={bias}")
            train_ae(module, d["train"], epochs, 8, args.seed)
            for name, value in ae_scores(module, d["test"]).items():
                scores[name][key] = value
            offsets.append(offset_share(module, d["test"]))
        share = sum(offsets) / len(offsets)
        for name, by_key in scores.items():
            report(f"AE {norm}, bias {bias}, {epochs} ep, {name} (offset {share:.0%})", by_key, data, kinds)


if __name__ == "__main__":
    main()
