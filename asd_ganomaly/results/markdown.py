"""The report's tables (:class:`~asd_ganomaly.results.tables.ReportTables`) as markdown: results.md, and the
summary the ``report`` command prints (everything but the per-run table)."""

from __future__ import annotations

from collections.abc import Callable

from ..data.synth import is_synthetic
from .tables import Interval, MeanStd, Pair, ReportTables, Table, Value, build_tables


def _fmt_value(value: object) -> str:
    """A config value as the value it is: numbers at 4 significant digits (``55.33``, ``0.0047``), no sign."""
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _fmt(value: object) -> str:
    """One cell as text: ``-`` for no value, 3 decimals for metrics, a sign for differences outside [0, 1];
    config values (:class:`~asd_ganomaly.results.tables.Value`) as values."""
    if isinstance(value, Value):
        return _fmt_value(value.value)
    if isinstance(value, MeanStd):
        return f"{value.mean:.3f} ± {value.std:.3f} (n={value.n})"
    if isinstance(value, Interval):
        return f"{value.low:.3f}-{value.high:.3f}"
    if isinstance(value, Pair):
        return f"{_fmt(value.auc)} / {_fmt(value.pauc)}"
    if value is None or value == "":
        return "-"
    if isinstance(value, float) and 0 < abs(value) < 1e-3:  # a learning rate, not a metric
        return f"{value:.3g}"
    if isinstance(value, float):
        return f"{value:+.3f}" if value < 0 or value > 1 else f"{value:.3f}"
    return str(value)


def _grid(table: Table) -> list[str]:
    """A table's header, separator and rows."""
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return lines + ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in table.rows]


def _official_bullets(table: Table) -> list[str]:
    """One line per setting: its official score, interval and number of section-domain pairs."""
    lines = []
    for setting, score, interval, pairs in table.rows:
        span = f" (95 % interval {_fmt(interval)})" if interval else ""
        lines.append(f"- {setting}: {_fmt(score)}{span} over {pairs} section-domain pairs")
    return lines


def _failed_bullets(table: Table) -> list[str]:
    """One line per failed, malformed or unfinished run."""
    return [
        f"- {setting} {machine} section {section}: {status}: {error}"
        for setting, machine, section, status, error in table.rows
    ]


def _section(table: Table | None, body: Callable[[Table], list[str]] = _grid) -> list[str]:
    """A table after a blank line: its heading, its notes, and its body (a grid unless told)."""
    if table is None:
        return []
    lines = [""] + ([f"## {table.title}", ""] if table.title else [])
    for note in table.notes:
        lines += [note, ""]
    return lines + body(table)


def _data_note(tables: ReportTables) -> list[str]:
    """Where the data came from, and warnings: synthetic data, models selected on test labels."""
    lines = [f"Data: {', '.join(tables.data_roots) or 'unknown'}."]
    if any(is_synthetic(root) for root in tables.data_roots):
        lines.append(
            "**Synthetic data** made by `asd-ganomaly synth`: these figures show the code runs; they are not "
            "comparable with the report's DCASE 2021 numbers beside them."
        )
    if tables.selected_on_test:
        lines.append("**Warning:** some runs selected their model on test labels (`select_on_test`): optimistic.")
    return lines


def _summary_lines(tables: ReportTables) -> list[str]:
    """The tables after the per-run one: per machine type, side by side, score choices, official score, failed
    runs, settings."""
    lines = _section(tables.per_machine) + _section(tables.side_by_side) + _section(tables.score_choices)
    lines += _section(tables.official, _official_bullets) + _section(tables.failed, _failed_bullets)
    return lines + _section(tables.seeds) + _section(tables.settings)


def render_markdown(tables: ReportTables) -> str:
    """results.md: title, data note, the per-run table and the summary tables."""
    lines = ["# Results", "", *_data_note(tables), *_section(tables.per_run), *_summary_lines(tables)]
    return "\n".join(lines) + "\n"


def render_summary(tables: ReportTables) -> str:
    """What ``asd-ganomaly report`` prints: results.md without the per-run table (that stays in the file)."""
    return "\n".join(["# Results", "", *_data_note(tables), *_summary_lines(tables)])


def to_markdown(rows: list[dict], summary: dict) -> str:
    """results.md of collected rows and their summary (:func:`~asd_ganomaly.results.report.summarise`)."""
    return render_markdown(build_tables(rows, summary))
