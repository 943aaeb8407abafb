"""The report's figures per score choice and its bootstrap intervals (used by :mod:`asd_ganomaly.results.report`).

Each run's metrics.json carries, under ``scores``, AUC and pAUC of every score its model computes (``latent``,
``reconstruction``, ``discriminator``, ``residual_knn``, ``knn``, ``fused``) beside the chosen one, and per domain a
95 % bootstrap interval of the chosen score's AUC and pAUC. The official score's interval is bootstrapped here, over
all runs' test clips jointly: each run and domain's normal and anomalous clips of ``scores.csv`` are resampled
apart, every AUC and pAUC recomputed and pooled into the official score. It captures how much the score moves
with the test clips drawn, not with the training seed.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..evaluation.bootstrap import official_score_interval
from ..models.scores import SCORE_KEYS
from ..runs.files import SCORES_FILE

SCORE_NAMES = tuple(name for name in SCORE_KEYS if name != "default")
INTERVAL_COLUMNS = ("auc_low", "auc_high", "pauc_low", "pauc_high")
SCORE_CHOICE_COLUMNS = [f"{metric}_{name}" for name in SCORE_NAMES for metric in ("auc", "pauc")]
"""results.csv's ``auc_<score>``, ``pauc_<score>`` of every score choice (not scores.csv's per-score columns,
:data:`asd_ganomaly.models.scores.SCORE_COLUMNS`)."""


def run_columns(metrics: dict, domain: str) -> dict:
    """A run and domain's interval columns and ``auc_<score>``, ``pauc_<score>`` of every score choice."""
    values = metrics["metrics"].get(domain, {})
    row = {key: values[key] for key in INTERVAL_COLUMNS if key in values}
    for name, per_domain in metrics.get("scores", {}).items():
        if domain in per_domain:
            row[f"auc_{name}"] = per_domain[domain]["auc"]
            row[f"pauc_{name}"] = per_domain[domain]["pauc"]
    return row


def _test_scores(run_dir: Path, section: object, domain: str) -> tuple[list[float], list[int]] | None:
    """The scores and labels of one section and domain in a run's scores.csv (a per-machine-type run holds all
    its sections)."""
    try:
        with open(run_dir / SCORES_FILE, newline="") as handle:
            rows = [
                r
                for r in csv.DictReader(handle)
                if r["domain"] == domain and (section is None or str(r.get("section", section)) == str(section))
            ]
    except OSError:
        return None
    return [float(r["score"]) for r in rows], [int(r["label"]) for r in rows]


def official_interval(rows: list[dict]) -> tuple[float, float] | None:
    """95 % interval of the official score of completed rows (one model), from their runs' scores.csv."""
    groups = [
        _test_scores(Path(r["run_dir"]), r.get("section"), r["domain"]) for r in rows if r["status"] == "completed"
    ]
    if not groups or any(g is None or len(set(g[1])) < 2 for g in groups):
        return None
    return official_score_interval(groups)


def score_choice_lines(rows: list[dict], fmt) -> list[str]:
    """Markdown: AUC / pAUC of every score choice per run and domain (absent when no run has them)."""
    names = [n for n in SCORE_NAMES if any(f"auc_{n}" in r for r in rows)]
    if not names:
        return []
    lines = ["", "## Every score choice (AUC / pAUC per run and domain)", ""]
    lines += ["| setting | machine | section | domain | " + " | ".join(names) + " |"]
    lines += ["|---|---|---|---|" + "---|" * len(names)]
    for r in rows:
        if r["status"] == "completed":
            cells = [f"{fmt(r.get(f'auc_{n}'))} / {fmt(r.get(f'pauc_{n}'))}" for n in names]
            head = [r.get("setting", r["model"]), r["machine_type"], r["section"], r["domain"]]
            lines.append("| " + " | ".join([*map(fmt, head), *cells]) + " |")
    return lines
