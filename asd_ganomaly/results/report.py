"""Results of one or several sweeps: every run's metrics.json gathered into results.csv and results.md, beside
the report's Tables 1/2 and the AE baseline, with per-machine harmonic means and the official DCASE score.

The flow: :func:`collect_runs` (one row per run and domain) and :func:`summarise` (harmonic means, the official
score and its bootstrap interval) once, :func:`~asd_ganomaly.results.tables.build_tables` once, and every output
rendered from those tables: results.csv (:func:`save_report`), results.md and the console summary
(:mod:`~asd_ganomaly.results.markdown`), W&B (:func:`log_report_to_wandb`)."""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from ..core.errors import UserError
from ..core.files import OutputError, atomic_output, check_output
from ..data.dcase import ALL_SECTIONS, DOMAINS
from ..evaluation.metrics import harmonic_mean, official_score
from ..evaluation.summary import NO_LABELS
from ..runs.files import METRICS_FILE
from ..runs.identity import flatten_config
from .markdown import render_markdown
from .markdown import to_markdown as to_markdown  # the notebooks' way in
from .reference import ae_baseline_hmean, report_auc
from .tables import ReportTables, Table, build_tables, official_interval, run_columns

log = logging.getLogger(__name__)
_ABSENT = object()  # a run folder without metrics.json

SweepDirs = str | Path | Sequence[str | Path]  # one sweep folder or several


def sweep_folders(sweep_dirs: SweepDirs) -> list[Path]:
    """The sweep folders as a list of paths (one folder given alone, or several)."""
    return [Path(sweep_dirs)] if isinstance(sweep_dirs, str | Path) else [Path(d) for d in sweep_dirs]


def _runs(sweep_dirs: list[Path]) -> list[tuple[Path, object]]:
    """(run folder, parsed metrics.json, ``_ABSENT`` when absent, or the parse error) for every run below
    the sweep folders, each once (folders may overlap); a run has .hydra/ or metrics.json."""
    found = [p.parent for d in sweep_dirs for pattern in (METRICS_FILE, ".hydra") for p in d.rglob(pattern)]
    folders = {folder.resolve(): folder for folder in reversed(found)}  # the first spelling of each
    runs = []
    for folder in sorted(folders.values()):
        try:
            runs.append((folder, json.loads((folder / METRICS_FILE).read_text())))
        except OSError:
            runs.append((folder, _ABSENT))
        except ValueError as error:  # not JSON (or not UTF-8)
            runs.append((folder, error))
    return runs


def _missing_row(folder: Path) -> dict:
    """A run that started and has no metrics.json: what it is comes from the config Hydra saved."""
    saved = OmegaConf.load(folder / ".hydra" / "config.yaml") if (folder / ".hydra" / "config.yaml").exists() else {}
    return {
        "model": OmegaConf.select(saved, "model.name", default="") if saved else "",
        "machine_type": OmegaConf.select(saved, "data.machine_type", default="") if saved else "",
        "section": OmegaConf.select(saved, "data.section", default="") if saved else "",
        "domain": "",
        "status": "missing",
        "error": "no metrics.json: unfinished or interrupted (run the same command again to resume)",
        "run_dir": str(folder),
    }


def _bad_row(folder: Path, reason: str) -> dict:
    return {**_missing_row(folder), "status": "malformed", "error": f"{METRICS_FILE} is malformed: {reason}"}


def _domain_row(base: dict, domain: str, metrics: dict) -> dict:
    values = metrics["metrics"][domain]
    published = report_auc(base["machine_type"], int(base["section"]), domain)
    ours, pauc = float(values["auc"]), float(values["pauc"])
    gap = None if published["ganomaly_report"] is None else ours - published["ganomaly_report"]
    return {
        **base,
        "domain": domain,
        "auc": ours,
        "pauc": pauc,
        "report_ae_auc": published["ae"],
        "report_mobilenet_auc": published["mobilenet"],
        "report_ganomaly_auc": published["ganomaly_report"],
        "auc_minus_report_ganomaly": gap,
        **run_columns(metrics, domain),
    }


def _run_rows(folder: Path, metrics: object) -> list[dict]:
    """The rows of one run; a metrics.json of the wrong shape gives one ``malformed`` row saying why."""
    if isinstance(metrics, ValueError):
        return [_bad_row(folder, f"not JSON ({metrics})")]
    if not isinstance(metrics, dict):
        return [_bad_row(folder, f"a JSON {type(metrics).__name__}, not an object")]
    try:
        base = {
            "model": str(metrics["model"]),
            "machine_type": str(metrics["machine_type"]),
            "section": metrics["section"] if metrics["section"] == ALL_SECTIONS else int(metrics["section"]),
            "status": str(metrics["status"]),
            "selected_on_test": bool(metrics.get("selected_on_test", False)),
            "run_id": str(metrics.get("run_id") or ""),
            "label": str(metrics.get("label") or _label_of(metrics.get("run_id"))),
            "task": str(metrics.get("task") or ""),
            "varied": " ".join(map(str, metrics.get("varied") or [])),
            "config": metrics.get("config") if isinstance(metrics.get("config"), dict) else {},
            "data_root": metrics.get("data_root") or "",
            "error": metrics.get("error") or "",
            "run_dir": str(folder),
            "per_machine_type": metrics["section"] == ALL_SECTIONS,
        }
        if base["status"] != "completed":
            return [{**base, "domain": ""}]
        if metrics.get("labelled") is False:  # an evaluation set: scored and decided, nothing to rank against
            return [{**base, "domain": "", "status": "unlabelled", "error": str(metrics.get("note") or NO_LABELS)}]
        rows = [
            _domain_row({**base, "section": section}, d, view)
            for section, view in _per_section(metrics)
            for d in DOMAINS
            if d in view["metrics"]
        ]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return [_bad_row(folder, f"{type(error).__name__}: {error}")]
    return rows or [_bad_row(folder, "a completed run without per-domain metrics")]


def collect_runs(sweep_dirs: SweepDirs) -> list[dict]:
    """One row per run and domain below the sweep folders (failed, malformed, unfinished runs: one row), sorted.

    Everything about a run (machine type, section, model, config) is read from its metrics.json, never from
    folder names. ``setting`` is the model, or, where one model ran with several configs, model and run id.
    """
    rows = []
    for folder, metrics in _runs(sweep_folders(sweep_dirs)):
        rows += [_missing_row(folder)] if metrics is _ABSENT else _run_rows(folder, metrics)
    _name_settings(rows)
    return sorted(rows, key=lambda r: (r["setting"], r["machine_type"], str(r["section"]), r["domain"]))


def _per_section(metrics: dict) -> list[tuple[int, dict]]:
    """(section, its results shaped as a one-section metrics.json: ``metrics`` per domain and ``scores``) of a
    run: its one section, or each section of a per-machine-type run."""
    if "sections" in metrics:
        return [
            (int(section), {"metrics": results, "scores": results.get("scores", {})})
            for section, results in sorted(metrics["sections"].items())
        ]
    return [(int(metrics["section"]), metrics)]


def _label_of(run_id: object) -> str:
    """The label part of a run id (``w_rec-10-1a2b3c4d`` -> ``w_rec-10``), for runs recorded before labels."""
    return str(run_id or "").rsplit("-", 1)[0]


def _name_settings(rows: list[dict]) -> None:
    """``setting`` = model where the model ran with one config, else ``model label`` (the run folder's label,
    ``ganomaly w_rec-10``), or ``model run id`` where two configs share a label; a per-machine-type run's setting
    says so (the same config trained per section is another setting)."""
    ids: dict[str, set] = defaultdict(set)
    labels: dict[tuple[str, str], set] = defaultdict(set)
    for row in rows:
        if row.get("run_id"):
            ids[row["model"]].add(row["run_id"])
            labels[(row["model"], row["label"])].add(row["run_id"])
    for row in rows:
        setting = row["model"]
        if len(ids[row["model"]]) > 1 and row.get("run_id"):
            shared = len(labels[(row["model"], row["label"])]) > 1
            setting += f" {row['run_id'] if shared or not row['label'] else row['label']}"
        row["setting"] = setting + (" per machine type" if row.get("per_machine_type") else "")


def summarise(rows: list[dict]) -> dict:
    """Per setting: per-machine harmonic means, the official score, and the runs that failed or are missing."""
    by_model: dict[str, dict] = defaultdict(lambda: {"machines": {}, "failed": [], "auc": [], "pauc": []})
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        model = by_model[row["setting"]]
        if row["status"] != "completed":
            model["failed"].append(row)
            continue
        grouped[(row["setting"], row["machine_type"])].append(row)
        model["auc"].append(row["auc"])
        model["pauc"].append(row["pauc"])
    for (model, machine), chosen in sorted(grouped.items()):
        by_model[model]["machines"][machine] = {
            "hmean_auc": harmonic_mean(r["auc"] for r in chosen),
            "hmean_pauc": harmonic_mean(r["pauc"] for r in chosen),
            "pairs": len(chosen),
            "ae_baseline": ae_baseline_hmean(machine),
        }
    for name, summary in by_model.items():
        summary["official_score"] = official_score(summary["auc"], summary["pauc"]) if summary["auc"] else None
        summary["official_interval"] = official_interval([r for r in rows if r["setting"] == name])
    return dict(by_model)


class MissingSweepError(UserError, FileNotFoundError):
    """A sweep folder given to the report does not exist."""


@dataclass(frozen=True)
class ReportFiles:
    """Where a report reads from and writes to, checked before any work."""

    folders: list[Path]
    csv_path: Path
    md_path: Path


def report_files(sweep_dirs: SweepDirs, out_dir: str | Path | None = None) -> ReportFiles:
    """The sweep folders and the report's results.csv and results.md in ``out_dir`` (default: the sweep folder,
    when there is one); refuses missing sweep folders, a file as ``out_dir`` and outputs that would overwrite
    an input."""
    folders = sweep_folders(sweep_dirs)
    if missing := [str(folder) for folder in folders if not folder.is_dir()]:
        raise MissingSweepError(f"sweep folder {', '.join(missing)} does not exist")
    if out_dir is None and len(folders) != 1:
        raise OutputError(f"{len(folders)} sweep folders: give --out, the folder for results.csv and results.md")
    out_dir = Path(out_dir) if out_dir else folders[0]
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir} is a file: give a folder for results.csv and results.md")
    files = ReportFiles(folders, out_dir / "results.csv", out_dir / "results.md")
    inputs = sorted(p for folder in folders for p in folder.rglob(METRICS_FILE))
    for path in (files.csv_path, files.md_path):
        check_output(path, inputs)
    return files


def sweep_tables(folders: list[Path]) -> ReportTables:
    """The report's tables of the runs below ``folders``: collected, summarised (bootstrapped) and built once."""
    rows = collect_runs(folders)
    if not rows:
        raise ValueError(f"no runs (metrics.json or .hydra/) found below {', '.join(map(str, folders))}")
    return build_tables(rows, summarise(rows))


def _write_csv(table: Table, path: Path) -> None:
    """A table as CSV (an empty field where a value is None), through a rename."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(table.columns)
        writer.writerows(table.rows)


def save_report(tables: ReportTables, files: ReportFiles) -> None:
    """Write results.csv (the results table) and results.md (every table), each through a rename."""
    _write_csv(tables.results, files.csv_path)
    with atomic_output(files.md_path) as tmp:
        tmp.write_text(render_markdown(tables))


def write_report(sweep_dirs: SweepDirs, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Write results.csv and results.md of one or several sweeps (each file through a rename) into ``out_dir``
    (default: the sweep folder, when there is one); returns their paths."""
    files = report_files(sweep_dirs, out_dir)
    save_report(sweep_tables(files.folders), files)
    return files.csv_path, files.md_path


def wandb_key(text: str) -> str:
    """A W&B summary key of plain parts: ``hmean AUC (fan)`` -> ``hmean_auc_fan``."""
    return re.sub(r"[^a-z0-9/]+", "_", text.lower()).strip("_")


def setting_summary(setting: str, summary: dict) -> dict[str, float]:
    """A setting's report numbers under tidy keys: ``official_score``, ``official_score_low``/``_high``,
    ``hmean_auc/fan``, ``hmean_pauc/fan``..."""
    s = summary[setting]
    values = {"official_score": s["official_score"], "pairs": len(s["auc"])}
    if s.get("official_interval"):
        values["official_score_low"], values["official_score_high"] = s["official_interval"]
    for machine, m in s["machines"].items():
        values[f"hmean_auc/{wandb_key(machine)}"] = m["hmean_auc"]
        values[f"hmean_pauc/{wandb_key(machine)}"] = m["hmean_pauc"]
    return {key: value for key, value in values.items() if value is not None}


def _setting_runs(rows: list[dict]) -> dict[str, dict]:
    """Per setting: its training runs' W&B group (``<task>/<model>/<run id>``, as ``conf/logger/wandb.yaml``
    names it), its config (flattened) and its rows."""
    settings: dict[str, dict] = {}
    for row in rows:
        entry = settings.setdefault(row["setting"], {"group": None, "config": {}, "rows": []})
        entry["rows"].append(row)
        if row.get("run_id") and row.get("task") and entry["group"] is None:
            entry["group"] = f"{row['task']}/{row['model']}/{row['run_id']}"
            entry["config"] = flatten_config(row.get("config") or {})
    return settings


def log_report_to_wandb(
    sweep_dir: str | Path, report: ReportTables | list[dict], project: str, group: str | None = None
) -> None:
    """One W&B run (``job_type=report``) per setting, in the group of that setting's training runs (or ``group``
    where given), with its config, its results rows as a table and its report numbers under tidy summary keys
    (:func:`setting_summary`); silent and offline unless logged in, like the training runs. The W&B files go
    below ``sweep_dir`` (the report's output folder where it reports several sweeps)."""
    tables = report if isinstance(report, ReportTables) else build_tables(report, summarise(report))
    rows, summary = tables.rows, tables.summary
    columns = list(tables.results.columns)
    for setting, entry in _setting_runs(rows).items():
        if setting not in summary:
            continue
        cells = [row for row in tables.results.rows if row[columns.index("setting")] == setting]
        run_group = group or entry["group"] or Path(sweep_dir).name
        _log_setting(sweep_dir, project, run_group, setting, entry, columns, cells, summary)


def _log_setting(
    sweep_dir: str | Path,
    project: str,
    group: str,
    setting: str,
    entry: dict,
    columns: list[str],
    cells: list[tuple],
    summary: dict,
) -> None:
    """The report run of one setting."""
    import wandb

    from ..runs.tracking import resolve_wandb_offline

    mode = "offline" if resolve_wandb_offline("auto") else "online"
    run = wandb.init(
        project=project,
        group=group,
        job_type="report",
        name=f"{setting} report",
        config=entry["config"],
        dir=str(sweep_dir),
        mode=mode,
        settings=wandb.Settings(silent=True),
        reinit="create_new",
    )
    try:
        run.log({"results": wandb.Table(columns=columns, data=[list(row) for row in cells])})
        run.summary.update(setting_summary(setting, summary))
    finally:
        run.finish()
