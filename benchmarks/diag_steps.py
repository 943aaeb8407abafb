"""How GANomaly's scores grow with the number of optimizer steps, and whether the trained encoder's codes detect
better than the input's band statistics (docs/diagnosis.md, section 15).

    python benchmarks/diag_steps.py steps --sections s0 --steps 1,100,400

For each section, ``experiment=demo``'s model (plus overrides) trains for each number of steps with
``diag_lib.train_gan`` (the module's updates without a Trainer) from the same seed; printed per step count: the
reconstruction score (mean |X - X~|), and a 1-NN distance (z-scored on the training clips, as the no-training
floor) on the per-channel-and-row mean and std over time of Z (``knn z``), Z' (``knn zp``), Z - Z' (``knn dz``)
and the residual X - X~ (``knn res``), beside the floor.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from diag_lib import (
    build,
    experiment_parser,
    floor_scores,
    fmt,
    nearest_training_distance,
    pooled_codes,
    quiet_experiment_data,
    section_metrics,
    selected_sections,
    summary,
    train_gan,
)


def main() -> None:
    parser = experiment_parser("")
    parser.add_argument("--steps", default="1,100,400", help="comma-separated step counts")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    data = quiet_experiment_data(args)
    seed = int(args.seeds.split(",")[0])
    per: dict[str, dict] = {"floor": {}}
    for key in selected_sections(data, args.sections):
        d = data[key]
        per["floor"][key] = section_metrics(floor_scores(d), d)
        for steps in [int(s) for s in args.steps.split(",")]:
            torch.manual_seed(seed)
            module, _ = build("experiment=demo", *args.overrides)
            train_gan(module, d["train"], steps, args.batch, seed)
            train, test = pooled_codes(module, d["train"]), pooled_codes(module, d["test"])
            for name in train:
                scores = nearest_training_distance(train[name], test[name])
                per.setdefault(f"{steps} steps: knn {name}", {})[key] = section_metrics(scores, d)
            with torch.no_grad():
                rec = module.net.scores(module.normalizer(d["test"]))["score_rec"]
            per.setdefault(f"{steps} steps: reconstruction", {})[key] = section_metrics(rec, d)
    for name, results in per.items():
        print(fmt(name, summary(results)))


if __name__ == "__main__":
    main()
