"""The results tables of a sweep as markdown: per run and domain, per machine type, every score choice, the
official score with its interval, failed runs, and the config keys that differ between settings."""

from __future__ import annotations

from ..data.synth import is_synthetic
from ..evaluation.metrics import harmonic_mean
from ..runs.identity import flatten_config
from .tables import score_choice_lines


def _fmt(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float) and 0 < abs(value) < 1e-3:  # a learning rate, not a metric
        return f"{value:.3g}"
    if isinstance(value, float):
        return f"{value:+.3f}" if value < 0 or value > 1 else f"{value:.3f}"
    return str(value)


def _interval(row: dict, metric: str) -> str | None:
    low, high = row.get(f"{metric}_low"), row.get(f"{metric}_high")
    return None if low is None or high is None else f"{low:.3f}-{high:.3f}"


def _data_note(rows: list[dict]) -> list[str]:
    roots = sorted({r.get("data_root", "") for r in rows if r.get("data_root")})
    lines = [f"Data: {', '.join(roots) or 'unknown'}."]
    if any(is_synthetic(root) for root in roots):
        lines.append(
            "**Synthetic data** made by `asd-ganomaly synth`: these figures show the code runs; they are not "
            "comparable with the report's DCASE 2021 numbers beside them."
        )
    if any(r.get("selected_on_test") for r in rows):
        lines.append("**Warning:** some runs selected their model on test labels (`select_on_test`): optimistic.")
    return lines


def to_markdown(rows: list[dict], summary: dict) -> str:
    """The results tables as markdown."""
    lines = ["# Results", "", *_data_note(rows), ""]
    lines += [
        "AUC and pAUC (max FPR 0.1, standardised as in scikit-learn and the DCASE evaluator) per run and domain; "
        "`report` columns are the AUCs of Tables 1/2 of the GANomaly report (DCASE 2021 dev set).",
        "",
        "| setting | machine | section | domain | AUC | pAUC | report AE | report MobileNet | report GANomaly | "
        "AUC - report GANomaly | AUC 95 % interval | pAUC 95 % interval |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] == "completed":
            cells = [r["setting"], r["machine_type"], r["section"], r["domain"], r["auc"], r["pauc"]]
            cells += [r["report_ae_auc"], r["report_mobilenet_auc"], r["report_ganomaly_auc"]]
            cells += [r["auc_minus_report_ganomaly"], _interval(r, "auc"), _interval(r, "pauc")]
            lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    lines += ["", "## Per machine type (harmonic means over sections and domains)", ""]
    lines += ["| setting | machine | runs x domains | hmean AUC | hmean pAUC | AE baseline AUC | AE baseline pAUC |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for model, s in summary.items():
        for machine, m in s["machines"].items():
            ae = m["ae_baseline"] or (None, None)
            cells = [model, machine, m["pairs"], m["hmean_auc"], m["hmean_pauc"], ae[0], ae[1]]
            lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    lines += side_by_side_lines(rows, summary)
    lines += score_choice_lines(rows, _fmt)
    lines += ["", "## Official score (harmonic mean of all AUC and pAUC values)", ""]
    lines += [
        "95 % intervals: bootstrap over the test clips (normals and anomalies of each run and domain resampled "
        "apart, 1000 resamples), not over training seeds.",
        "",
    ]
    for model, s in summary.items():
        interval = s.get("official_interval")
        span = f" (95 % interval {interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
        lines.append(f"- {model}: {_fmt(s['official_score'])}{span} over {len(s['auc'])} section-domain pairs")
    failed = [r for s in summary.values() for r in s["failed"]]
    if failed:
        lines += ["", "## Failed or unfinished runs", ""]
        lines += [
            f"- {r['setting']} {r['machine_type']} section {r['section']}: {r['status']}: {r['error']}" for r in failed
        ]
    return "\n".join(lines + _settings_table(rows)) + "\n"


PUBLISHED = {"report AE": "report_ae_auc", "report MobileNet": "report_mobilenet_auc"}
PUBLISHED["report GANomaly"] = "report_ganomaly_auc"


def _published_hmean(done: list[dict], column: str) -> float | None:
    """The harmonic mean of a published AUC column over the distinct (machine, section, domain) of ``done``;
    None where the report has no number for one of them."""
    values = {(r["machine_type"], r["section"], r["domain"]): r[column] for r in done}
    return None if not values or None in values.values() else harmonic_mean(values.values())


def side_by_side_lines(rows: list[dict], summary: dict) -> list[str]:
    """Per machine type (and over all), each setting's hmean AUC beside the report's AE, MobileNetV2 and
    GANomaly (Tables 1/2) over the same sections and domains: the models of one or several sweeps compared."""
    done = [r for r in rows if r["status"] == "completed"]
    machines = sorted({r["machine_type"] for r in done})
    settings = [name for name, s in summary.items() if s["auc"]]
    if not settings:
        return []
    lines = ["", "## Side by side: hmean AUC per machine type, ours and the report's", ""]
    lines += ["The report's columns: harmonic mean of its AUCs over the sections and domains our runs cover.", ""]
    lines += ["| machine | " + " | ".join([*settings, *PUBLISHED]) + " |", "|---" * (len(settings) + 4) + "|"]
    for machine in [*machines, "all"]:
        chosen = [r for r in done if machine in ("all", r["machine_type"])]
        ours = [[r["auc"] for r in chosen if r["setting"] == name] for name in settings]
        cells = [harmonic_mean(values) if values else None for values in ours]
        cells += [_published_hmean(chosen, column) for column in PUBLISHED.values()]
        lines.append("| " + " | ".join([machine, *map(_fmt, cells)]) + " |")
    return lines


def _settings_table(rows: list[dict]) -> list[str]:
    """Where a sweep ran several configs: one row per setting, one column per config key that differs."""
    settings = differing_keys(rows)
    keys = sorted({k for values in settings.values() for k in values})
    if len(settings) < 2 or not keys:
        return []
    lines = ["", "## Settings (the config keys that differ between them)", ""]
    lines += ["| setting | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for setting, values in settings.items():
        lines.append("| " + " | ".join([setting, *(_fmt(values.get(k)) for k in keys)]) + " |")
    return lines


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
