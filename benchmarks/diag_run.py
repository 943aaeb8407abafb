"""Run one diagnosis experiment: train GANomaly (or score without training) on every selected section of
the demo data and print the official score of each of its scores.

    python benchmarks/diag_run.py NAME --epochs 25 --seeds 0 --sections all -- model=ganomaly_small ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from diag_lib import (
    build,
    experiment_parser,
    extra_scores,
    fmt,
    load_features,
    recalibrate_bn,
    score_all,
    section_metrics,
    selected_sections,
    steps_for,
    summary,
    timer,
    train_gan,
)


@torch.no_grad()
def dependence(module, x: torch.Tensor) -> float:
    """How much X~ varies between clips relative to X: std over clips of X~ / std over clips of X."""
    xn = module.normalizer(x[:16])
    _, x_rec, _, _ = module.net(xn)
    x_rec = x_rec[:, 0, : xn.shape[-2], : xn.shape[-1]]
    return float(x_rec.std(0).mean() / xn.std(0).mean())


def main() -> None:
    parser = experiment_parser("data/diag_results.jsonl")
    parser.add_argument("--bn-variants", action="store_true", help="also score with batch / recalibrated BN")
    parser.add_argument("--save", default="", help="folder for the trained state dicts")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    torch.set_num_threads(1)
    data = load_features(args.data, args.data.rstrip("/") + "_feats.pt")
    keys = selected_sections(data, args.sections)
    for seed in [int(s) for s in args.seeds.split(",")]:
        per: dict[str, dict] = {}
        dep, start = [], timer()
        for key in keys:
            d = data[key]
            torch.manual_seed(seed)
            module, _ = build(*args.overrides)
            steps = steps_for(args.epochs, len(d["train"]), args.batch)
            train_gan(module, d["train"], steps, args.batch, seed)
            scores = score_all(module, d["test"]) | extra_scores(module, d["test"])
            if args.bn_variants:
                module.bn_train_mode_at_test = True
                scores["score@bn_batch"] = score_all(module, d["test"])["score"]
                module.bn_train_mode_at_test = False
                recalibrate_bn(module, d["train"])
                scores |= {f"{k}@bn_recal": v for k, v in score_all(module, d["test"]).items()}
            if args.save:
                Path(args.save).mkdir(parents=True, exist_ok=True)
                torch.save(module.state_dict(), Path(args.save) / f"{key[0]}_{key[1]}_s{seed}.pt")
            for name, value in scores.items():
                per.setdefault(name, {})[key] = section_metrics(value, d)
            dep.append(dependence(module, d["test"]))
            print(f"  {key} done at {timer() - start:.0f}s", flush=True)
        wall = timer() - start
        for name, results in per.items():
            s = summary(results)
            print(fmt(f"{args.name} s{seed} {name}", s), flush=True)
            record = {"name": args.name, "seed": seed, "score": name, "sections": args.sections, **s}
            record |= {"epochs": args.epochs, "overrides": args.overrides, "wall_s": wall}
            record["rec_dependence"] = sum(dep) / len(dep)
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")
        print(f"  wall {wall:.0f}s, X~ dependence on X {sum(dep) / len(dep):.3f}", flush=True)


if __name__ == "__main__":
    main()
