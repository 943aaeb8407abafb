"""Files of one training run: metrics.json, scores.csv, and the checks made before training starts."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ..core.files import WriteError, atomic_output
from ..data.dcase import DOMAINS, ClipInfo, section_key
from ..models.scores import SCORE_COLUMNS
from .identity import OVERRIDES_FILE, RUN_CONFIG_FILE, RunConfigMismatchError, config_differences

METRICS_FILE = "metrics.json"
SCORES_FILE = "scores.csv"


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str))


def read_metrics(run_dir: Path) -> dict | None:
    """The run's metrics.json, or None when absent or unreadable."""
    try:
        return json.loads((Path(run_dir) / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None


def is_finished(run_dir: Path) -> bool:
    """A run is finished when its metrics.json says it completed."""
    metrics = read_metrics(run_dir)
    return bool(metrics) and metrics.get("status") == "completed"


def run_record(info: dict, results: dict | None = None, logged: dict | None = None, error: str | None = None) -> dict:
    """The metrics.json payload of a completed (``results``) or failed (``error``) run.

    ``info`` says which run it is (machine_type, section, model, run_id, config...); ``results`` are the
    model's nested test results, kept as they are (domains under ``metrics``); ``logged`` are the same values
    under the names they were logged with (``test/source/auc``...), for sweepers and a W&B summary.
    """
    results = results or {}
    record = {
        **info,
        "section": section_key(info["section"]),
        "status": "failed" if error else "completed",
        "error": error,
        "metrics": {d: results[d] for d in DOMAINS if d in results},
        "hmean": results.get("hmean", {}),
        "dcase_score": results.get("dcase_score"),
    }
    record |= {key: value for key, value in results.items() if key not in record and key not in DOMAINS}
    record["logged"] = logged or {}
    return record


def write_scores(path: Path, clips: list[ClipInfo], scores: dict[str, torch.Tensor], threshold: float) -> None:
    """Per test clip: path, section, domain, label (1 = anomaly; empty for an unlabelled clip), every score and the
    0/1 decision."""
    names = [key for key in ("score", *SCORE_COLUMNS) if key in scores]
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "section", "domain", "label", *names, "decision"])
        for row, i in enumerate(scores["index"].tolist()):
            clip = clips[i]
            values = [f"{scores[key][row].item():.8g}" for key in names]
            decision = int(scores["score"][row].item() > threshold)
            label = int(clip.is_anomaly) if clip.is_labelled else ""
            writer.writerow([str(clip.path), clip.section, clip.domain, label, *values, decision])


def read_scores(path: Path, raw: bool = False) -> list[dict]:
    """The rows of a scores.csv as :func:`write_scores` writes them: ``label`` (None where empty: unlabelled) and
    ``decision`` as ints, every score column as a float, ``section`` and ``domain`` as written; with ``raw`` every
    value as its text."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if raw:
        return rows
    for row in rows:
        row["label"] = int(row["label"]) if row["label"] != "" else None
        row["decision"] = int(row["decision"])
        for key in ("score", *SCORE_COLUMNS):
            if key in row:
                row[key] = float(row[key])
    return rows


def scores_by_domain(rows: list[dict], section: object = None) -> dict[str, tuple[list[float], list[int]]]:
    """Per domain present (in DOMAINS order): the chosen scores and the labels of the labelled clips, of one section
    or of all (None; a file without a section column holds one section)."""
    out = {}
    for domain in DOMAINS:
        chosen = [
            r
            for r in rows
            if r["domain"] == domain
            and r["label"] is not None
            and (section is None or str(r.get("section", section)) == str(section))
        ]
        if chosen:
            out[domain] = ([r["score"] for r in chosen], [r["label"] for r in chosen])
    return out


def check_output_dir(path: Path, min_free_gb: float) -> None:
    """Fail before training when the output folder is not writable or the disk is nearly full."""
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"0" * 1024)
        probe.unlink()
    except OSError as error:
        raise WriteError(f"output folder {path} is not writable: {error}") from error
    free_gb = shutil.disk_usage(path).free / 1e9
    if free_gb < min_free_gb:
        raise WriteError(
            f"only {free_gb:.2f} GB free under {path}; at least {min_free_gb} GB needed (min_free_disk_gb)"
        )


def check_run_config(path: Path, identity: dict) -> None:
    """Refuse a run folder whose ``config.yaml`` holds another config, naming the keys that differ."""
    stored_path = Path(path) / RUN_CONFIG_FILE
    if not stored_path.exists():
        return
    stored = OmegaConf.to_container(OmegaConf.load(stored_path), resolve=False)
    differences = config_differences(stored, identity)
    if differences:
        raise RunConfigMismatchError(
            f"{path} holds a run of another config ({len(differences)} keys differ: "
            + "; ".join(differences[:10])
            + "). Use another folder (hydra.run.dir) or delete that run."
        )


def write_run_config(path: Path, identity: dict, overrides: list[str]) -> None:
    """The run's identity as ``config.yaml`` and the command line's overrides as ``overrides.txt``."""
    path.mkdir(parents=True, exist_ok=True)
    stored_path = Path(path) / RUN_CONFIG_FILE
    with atomic_output(stored_path) as tmp:
        OmegaConf.save(OmegaConf.create(identity), tmp)
    (Path(path) / OVERRIDES_FILE).write_text("".join(f"{line}\n" for line in overrides))
