"""The report's tables as plain objects, built once from the collected rows and their summary, and rendered by
:mod:`asd_ganomaly.results.markdown` (results.md, the console), as CSV (results.csv) and to W&B.

Each run's metrics.json carries, under ``scores``, AUC and pAUC of every score its model computes (``latent``,
``reconstruction``, ``discriminator``, ``residual_knn``, ``knn``, ``fused``) beside the chosen one, and per domain a
95 % bootstrap interval of the chosen score's AUC and pAUC. The official score's interval is bootstrapped here, over
all runs' test clips jointly: each run and domain's normal and anomalous clips of ``scores.csv`` are resampled
apart, every AUC and pAUC recomputed and pooled into the official score. It captures how much the score moves
with the test clips drawn, not with the training seed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev
from typing import NamedTuple

from ..evaluation.bootstrap import official_score_interval
from ..evaluation.metrics import harmonic_mean
from ..models.scores import SCORE_KEYS
from ..runs.files import SCORES_FILE, read_scores, scores_by_domain
from ..runs.identity import flatten_config

SCORE_NAMES = tuple(name for name in SCORE_KEYS if name != "default")
INTERVAL_COLUMNS = ("auc_low", "auc_high", "pauc_low", "pauc_high")
SCORE_CHOICE_COLUMNS = [f"{metric}_{name}" for name in SCORE_NAMES for metric in ("auc", "pauc")]
"""results.csv's ``auc_<score>``, ``pauc_<score>`` of every score choice (not scores.csv's per-score columns,
:data:`asd_ganomaly.models.scores.SCORE_COLUMNS`)."""

RESULT_COLUMNS = (
    "setting",
    "model",
    "machine_type",
    "section",
    "domain",
    "status",
    "auc",
    "pauc",
    "report_ae_auc",
    "report_mobilenet_auc",
    "report_ganomaly_auc",
    "auc_minus_report_ganomaly",
    "selected_on_test",
    "run_id",
    "label",
    "varied",
    "data_root",
    "error",
    "run_dir",
    *INTERVAL_COLUMNS,
    *SCORE_CHOICE_COLUMNS,
)
"""The columns of results.csv and of the W&B results table: one row per run and domain (then one column per
config key that differs between the settings, :func:`results_table`)."""
METRIC_DIGITS = 6
"""Decimals of the metrics in results.csv (an AUC of 0.6970000000000001 is written 0.697)."""
SEED_KEY = "seed"

PUBLISHED = {
    "report AE": "report_ae_auc",
    "report MobileNet": "report_mobilenet_auc",
    "report GANomaly": "report_ganomaly_auc",
}
"""The report's systems (column titles) and the row key of each one's AUC."""


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
        rows = read_scores(run_dir / SCORES_FILE)
    except OSError:
        return None
    return scores_by_domain(rows, section).get(domain, ([], []))


def official_interval(rows: list[dict]) -> tuple[float, float] | None:
    """95 % interval of the official score of completed rows (one model), from their runs' scores.csv."""
    groups = [
        _test_scores(Path(r["run_dir"]), r.get("section"), r["domain"]) for r in rows if r["status"] == "completed"
    ]
    if not groups or any(g is None or len(set(g[1])) < 2 for g in groups):
        return None
    return official_score_interval(groups)


class Interval(NamedTuple):
    """A 95 % interval, one cell."""

    low: float
    high: float


class Pair(NamedTuple):
    """AUC and pAUC of one score choice, one cell (either may be None)."""

    auc: float | None
    pauc: float | None


class Value(NamedTuple):
    """A config value, one cell: rendered as the value it is (4 significant digits), never as a metric."""

    value: object


class MeanStd(NamedTuple):
    """Mean, sample standard deviation (0 for one value) and count of a metric over seeds, one cell."""

    mean: float
    std: float
    n: int


def mean_std(values: Iterable[float]) -> MeanStd:
    """Mean ± sample standard deviation of ``values`` (0 for one value) and how many there are."""
    values = list(values)
    return MeanStd(mean(values), stdev(values) if len(values) > 1 else 0.0, len(values))


Cell = object
"""A table cell: a number, text, None (no value), an :class:`Interval`, a :class:`Pair`, a :class:`Value` or a
:class:`MeanStd`; renderers format it."""


@dataclass(frozen=True)
class Table:
    """A table of plain values: its title (None: no heading), column names, rows, and the sentences before it."""

    title: str | None
    columns: tuple[str, ...]
    rows: list[tuple[Cell, ...]] = field(default_factory=list)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportTables:
    """Every table of one report, built once by :func:`build_tables`; the optional ones are None when empty."""

    data_roots: tuple[str, ...]
    selected_on_test: bool
    results: Table
    """Every column of every run and domain (:data:`RESULT_COLUMNS`): results.csv and the W&B table."""
    per_run: Table
    per_machine: Table
    side_by_side: Table | None
    score_choices: Table | None
    official: Table
    failed: Table | None
    settings: Table | None
    seeds: Table | None = None
    """Where settings differ only in ``seed``: each group's scores as mean ± std over its seeds."""
    rows: list[dict] = field(default_factory=list, repr=False)
    """The collected rows the tables were built from (for W&B's per-setting runs)."""
    summary: dict = field(default_factory=dict, repr=False)
    """Their summary (:func:`~asd_ganomaly.results.report.summarise`)."""


def build_tables(rows: list[dict], summary: dict) -> ReportTables:
    """The report's tables of the collected rows and their summary (see :mod:`asd_ganomaly.results.report`)."""
    return ReportTables(
        data_roots=tuple(sorted({r.get("data_root", "") for r in rows if r.get("data_root")})),
        selected_on_test=any(r.get("selected_on_test") for r in rows),
        results=results_table(rows),
        per_run=per_run_table(rows),
        per_machine=per_machine_table(summary),
        side_by_side=side_by_side_table(rows, summary),
        score_choices=score_choice_table(rows),
        official=official_table(summary),
        failed=failed_table(summary),
        settings=settings_table(rows),
        seeds=seed_table(rows, summary),
        rows=rows,
        summary=summary,
    )


def results_table(rows: list[dict]) -> Table:
    """Every row with every column of :data:`RESULT_COLUMNS` (None where a row lacks one), metrics rounded to
    :data:`METRIC_DIGITS` decimals, then one column per config key that differs between the settings (its exact
    value), so a sweep groups by ``model.loss.w_rec`` without parsing a string."""
    settings = differing_keys(rows)
    keys = sorted({k for values in settings.values() for k in values}) if len(settings) > 1 else []
    cells = [
        tuple(_rounded(r.get(c)) for c in RESULT_COLUMNS)
        + tuple(settings.get(r.get("setting"), {}).get(k) for k in keys)
        for r in rows
    ]
    return Table("Results", (*RESULT_COLUMNS, *keys), cells)


def _rounded(value: object) -> object:
    """A float at :data:`METRIC_DIGITS` decimals; anything else as it is."""
    return round(value, METRIC_DIGITS) if isinstance(value, float) else value


def _completed(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["status"] == "completed"]


def _interval(row: dict, metric: str) -> Interval | None:
    low, high = row.get(f"{metric}_low"), row.get(f"{metric}_high")
    return None if low is None or high is None else Interval(low, high)


def per_run_table(rows: list[dict]) -> Table:
    """AUC and pAUC of every completed run and domain beside the report's, with their intervals."""
    columns = ("setting", "machine", "section", "domain", "AUC", "pAUC", *PUBLISHED)
    columns += ("AUC - report GANomaly", "AUC 95 % interval", "pAUC 95 % interval")
    note = (
        "AUC and pAUC (max FPR 0.1, standardised as in scikit-learn and the DCASE evaluator) per run and domain; "
        "`report` columns are the AUCs of Tables 1/2 of the GANomaly report (DCASE 2021 dev set)."
    )
    return Table(None, columns, [_per_run_cells(r) for r in _completed(rows)], (note,))


def _per_run_cells(r: dict) -> tuple[Cell, ...]:
    published = [r[column] for column in PUBLISHED.values()]
    ours = (r["setting"], r["machine_type"], r["section"], r["domain"], r["auc"], r["pauc"])
    return (*ours, *published, r["auc_minus_report_ganomaly"], _interval(r, "auc"), _interval(r, "pauc"))


def per_machine_table(summary: dict) -> Table:
    """Per setting and machine type: harmonic means of AUC and pAUC beside the AE baseline's."""
    columns = ("setting", "machine", "runs x domains", "hmean AUC", "hmean pAUC")
    cells = []
    for setting, s in summary.items():
        for machine, m in s["machines"].items():
            ae = m["ae_baseline"] or (None, None)
            cells.append((setting, machine, m["pairs"], m["hmean_auc"], m["hmean_pauc"], ae[0], ae[1]))
    title = "Per machine type (harmonic means over sections and domains)"
    return Table(title, (*columns, "AE baseline AUC", "AE baseline pAUC"), cells)


def _published_hmean(done: list[dict], column: str) -> float | None:
    """The harmonic mean of a published AUC column over the distinct (machine, section, domain) of ``done``;
    None where the report has no number for one of them."""
    values = {(r["machine_type"], r["section"], r["domain"]): r[column] for r in done}
    return None if not values or None in values.values() else harmonic_mean(values.values())


def side_by_side_table(rows: list[dict], summary: dict) -> Table | None:
    """Per machine type (and over all), each setting's hmean AUC beside the report's AE, MobileNetV2 and
    GANomaly (Tables 1/2) over the same sections and domains: the models of one or several sweeps compared."""
    done = _completed(rows)
    settings = [name for name, s in summary.items() if s["auc"]]
    if not settings:
        return None
    cells = []
    for machine in [*sorted({r["machine_type"] for r in done}), "all"]:
        chosen = [r for r in done if machine in ("all", r["machine_type"])]
        ours = [[r["auc"] for r in chosen if r["setting"] == name] for name in settings]
        published = [_published_hmean(chosen, column) for column in PUBLISHED.values()]
        cells.append((machine, *(harmonic_mean(values) if values else None for values in ours), *published))
    note = "The report's columns: harmonic mean of its AUCs over the sections and domains our runs cover."
    title = "Side by side: hmean AUC per machine type, ours and the report's"
    return Table(title, ("machine", *settings, *PUBLISHED), cells, (note,))


def score_choice_table(rows: list[dict]) -> Table | None:
    """AUC / pAUC of every score choice per completed run and domain (None when no run has them)."""
    names = [n for n in SCORE_NAMES if any(f"auc_{n}" in r for r in rows)]
    if not names:
        return None
    cells = [
        (r.get("setting", r["model"]), r["machine_type"], r["section"], r["domain"], *_pairs(r, names))
        for r in _completed(rows)
    ]
    title = "Every score choice (AUC / pAUC per run and domain)"
    return Table(title, ("setting", "machine", "section", "domain", *names), cells)


def _pairs(row: dict, names: list[str]) -> list[Pair]:
    return [Pair(row.get(f"auc_{n}"), row.get(f"pauc_{n}")) for n in names]


def _official_interval(setting: dict) -> Interval | None:
    interval = setting.get("official_interval")
    return Interval(*interval) if interval else None


def official_table(summary: dict) -> Table:
    """Per setting: the official score, its bootstrap interval and how many section-domain pairs it pools."""
    note = (
        "95 % intervals: bootstrap over the test clips (normals and anomalies of each run and domain resampled "
        "apart, 1000 resamples), not over training seeds."
    )
    cells = [(setting, s["official_score"], _official_interval(s), len(s["auc"])) for setting, s in summary.items()]
    title = "Official score (harmonic mean of all AUC and pAUC values)"
    return Table(title, ("setting", "official_score", "interval", "pairs"), cells, (note,))


def failed_table(summary: dict) -> Table | None:
    """The runs that failed, are malformed, have not finished or have no test labels (None when there are none)."""
    columns = ("setting", "machine_type", "section", "status", "error")
    cells = [tuple(r[c] for c in columns) for s in summary.values() for r in s["failed"]]
    return Table("Runs without results (failed, unfinished, or no test labels)", columns, cells) if cells else None


def settings_table(rows: list[dict]) -> Table | None:
    """Where a sweep ran several configs: one row per setting, one column per config key that differs."""
    settings = differing_keys(rows)
    keys = sorted({k for values in settings.values() for k in values})
    if len(settings) < 2 or not keys:
        return None
    cells = [(setting, *(Value(values.get(k)) for k in keys)) for setting, values in settings.items()]
    return Table("Settings (the config keys that differ between them)", ("setting", *keys), cells)


def seed_groups(rows: list[dict]) -> dict[str, list[str]]:
    """The settings that differ in ``seed`` only, grouped: ``{"ganomaly w_rec-10": [its settings, one per
    seed]}``; empty when no two settings differ in the seed alone."""
    configs = {}
    for row in rows:
        if row.get("config") and row["setting"] not in configs:
            configs[row["setting"]] = flatten_config(row["config"])
    groups: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for setting, config in configs.items():
        rest = json.dumps({k: v for k, v in config.items() if k != SEED_KEY}, sort_keys=True, default=str)
        names.setdefault(rest, _without_seed(setting))
        groups.setdefault(names[rest], []).append(setting)
    return groups if any(len(members) > 1 for members in groups.values()) else {}


def _without_seed(setting: str) -> str:
    """A setting's name without its ``seed-N`` label part: ``ganomaly w_rec-10+seed-2`` -> ``ganomaly w_rec-10``."""
    model, _, label = setting.partition(" ")
    kept = [part for part in label.split("+") if part and not part.startswith(f"{SEED_KEY}-")]
    return " ".join([model, "+".join(kept)]) if kept else model


def seed_table(rows: list[dict], summary: dict) -> Table | None:
    """Where a sweep varies ``seed``: per group of settings that differ in it only, the official score and the
    hmean AUC and pAUC over all its runs, as mean ± std over the seeds (n: how many seeds finished)."""
    groups = seed_groups(rows)
    if not groups:
        return None
    cells = []
    for group, members in groups.items():
        done = [summary[m] for m in members if m in summary and summary[m]["auc"]]
        official = mean_std(s["official_score"] for s in done) if done else None
        auc = mean_std(harmonic_mean(s["auc"]) for s in done) if done else None
        pauc = mean_std(harmonic_mean(s["pauc"]) for s in done) if done else None
        cells.append((group, official, auc, pauc, len(done)))
    note = "Mean ± sample standard deviation over the training seeds; n: the seeds whose runs finished."
    title = "Over seeds (settings that differ in seed only)"
    return Table(title, ("setting", "official score", "hmean AUC", "hmean pAUC", "n"), cells, (note,))


def differing_keys(rows: list[dict]) -> dict[str, dict[str, object]]:
    """Per setting, the config keys whose values differ between the settings (machine and section aside): between
    the settings that have the key, or, set or not, between settings of one model class (``model._target_``); a
    parameter of one model class only is left out where another class lacks it (the model says it)."""
    configs = {}
    for row in rows:
        if row.get("config") and row["setting"] not in configs:
            configs[row["setting"]] = flatten_config(row["config"])
    classes: dict[object, list[dict]] = {}
    for config in configs.values():
        classes.setdefault(config.get("model._target_"), []).append(config)

    def differs(key: str, group: list[dict]) -> bool:
        return len({repr(c.get(key)) for c in group}) > 1

    every = {k for c in configs.values() for k in c}
    keys = sorted(
        k
        for k in every
        if differs(k, [c for c in configs.values() if k in c]) or any(differs(k, g) for g in classes.values())
    )
    return {setting: {k: config.get(k) for k in keys} for setting, config in configs.items()}
