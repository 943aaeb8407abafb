"""DCASE 2021 Task 2 submissions: write them from sweeps, and score them against ground truth as the evaluator does.

Files, one per machine type, section and domain, comma-separated, no header, one row per clip:

* ``anomaly_score_<machine>_section_<XX>_<domain>_test.csv``: ``<clip file name>,<score>``;
* ``decision_result_<machine>_section_<XX>_<domain>_test.csv``: ``<clip file name>,<0|1>``;
* ``ground_truth_<machine>_section_<XX>_<domain>_test.csv`` (the organisers'): ``<clip file name>,<0|1>``.

:func:`evaluate` pairs them by name and computes per machine type, section and domain AUC, pAUC (max FPR 0.1),
precision, recall and F1; per machine type and domain the harmonic means; and the official score (the harmonic
mean of every AUC and pAUC). Any misalignment is an error that names the file and the clips, never a silent one.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.errors import UserError
from ..core.files import atomic_output, check_writable_folder
from ..data.dcase import DOMAINS
from ..evaluation.metrics import auc_pauc, decision_metrics, harmonic_mean, official_score
from ..runs.files import METRICS_FILE, SCORES_FILE, read_scores

FILE_NAME = re.compile(
    r"^(?P<kind>anomaly_score|decision_result|ground_truth)_(?P<machine>.+)_section_(?P<section>\d{2})_"
    r"(?P<domain>source|target)_test\.csv$"
)
META_FILE = "meta.yaml"
META_KEY = "asd_ganomaly"
"""The entry of meta.yaml that lists the runs and parts a submission folder was written from."""
RESULT_COLUMNS = ("machine_type", "section", "domain", "auc", "pauc", "precision", "recall", "f1")


class SubmissionError(UserError, ValueError):
    """A submission or ground-truth folder that cannot be evaluated as it is."""


@dataclass(frozen=True, order=True)
class Part:
    """One machine type, section and domain: the unit of every submission file."""

    machine_type: str
    section: int
    domain: str

    @property
    def name(self) -> str:
        """``<machine>_section_<XX>_<domain>``: the part as the submission file names spell it."""
        return f"{self.machine_type}_section_{self.section:02d}_{self.domain}"

    def file_name(self, kind: str) -> str:
        """``<kind>_<machine>_section_<XX>_<domain>_test.csv``."""
        return f"{kind}_{self.name}_test.csv"


def parts_in(folder: str | Path, kind: str) -> dict[Part, Path]:
    """Every ``<kind>_*.csv`` of ``folder`` by the part its name gives."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SubmissionError(f"{folder} is not a folder")
    found = {}
    for path in sorted(folder.glob(f"{kind}_*.csv")):
        match = FILE_NAME.match(path.name)
        if match is None:
            raise SubmissionError(f"{path} is not named {kind}_<machine>_section_<XX>_<source|target>_test.csv")
        found[Part(match["machine"], int(match["section"]), match["domain"])] = path
    return found


def read_rows(path: Path, binary: bool) -> dict[str, float]:
    """``{clip file name: value}`` of a two-column file without header (LF or CRLF line ends). A duplicate clip,
    a row that is not two columns, a value that is not a finite number, or (``binary``) not 0 or 1: an error
    naming the file and the row."""
    values: dict[str, float] = {}
    with open(path, newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            where = f"{path.name}, row {number}"
            if len(row) != 2 or not row[0].strip():
                raise SubmissionError(f"{where}: expected '<file name>,<value>', got {','.join(row)!r}")
            name, text = row[0].strip(), row[1].strip()
            try:
                value = float(text)
            except ValueError:
                raise SubmissionError(f"{where}: {text!r} is not a number") from None
            if not math.isfinite(value):
                raise SubmissionError(f"{where}: {text!r} is not a finite number")
            if binary and value not in (0.0, 1.0):
                raise SubmissionError(f"{where}: {text!r} is not 0 or 1")
            if name in values:
                raise SubmissionError(f"{where}: {name} appears twice")
            values[name] = value
    if not values:
        raise SubmissionError(f"{path} holds no rows")
    return values


def _aligned(truth: dict[str, float], given: dict[str, float], path: Path) -> list[str]:
    """The clip names of ``truth``, after checking that ``given`` (read from ``path``) names exactly them."""
    missing, extra = sorted(truth.keys() - given.keys()), sorted(given.keys() - truth.keys())
    if missing or extra:
        shown = [f"missing {len(missing)}: {missing[:3]}"] * bool(missing) + [
            f"extra {len(extra)}: {extra[:3]}"
        ] * bool(extra)
        raise SubmissionError(f"{path.name} does not list the ground truth's clips ({'; '.join(shown)})")
    return sorted(truth)


def evaluate(submission: str | Path, ground_truth: str | Path) -> list[dict]:
    """One row (:data:`RESULT_COLUMNS`) per part of the ground truth, from the submission's score and decision
    files; a missing submission file or clip, an extra or misnamed clip, a duplicate or malformed row is an error."""
    truths = parts_in(ground_truth, "ground_truth")
    if not truths:
        raise SubmissionError(f"no ground_truth_*.csv files in {ground_truth}")
    submission = Path(submission)
    check_meta(submission)
    rows = []
    for part, truth_path in sorted(truths.items()):
        labels = read_rows(truth_path, binary=True)
        files = {kind: submission / part.file_name(kind) for kind in ("anomaly_score", "decision_result")}
        absent = [path.name for path in files.values() if not path.is_file()]
        if absent:
            raise SubmissionError(f"{submission} lacks {', '.join(absent)}")
        scores = read_rows(files["anomaly_score"], binary=False)
        decisions = read_rows(files["decision_result"], binary=True)
        clips = _aligned(labels, scores, files["anomaly_score"])
        _aligned(labels, decisions, files["decision_result"])
        y = torch.tensor([int(labels[c]) for c in clips])
        if y.unique().numel() != 2:
            raise SubmissionError(f"{truth_path.name}: AUC needs both normal and anomalous clips")
        auc, pauc = auc_pauc(torch.tensor([scores[c] for c in clips], dtype=torch.float64), y)
        decided = decision_metrics(torch.tensor([int(decisions[c]) for c in clips]), y)
        rows.append(
            {"machine_type": part.machine_type, "section": part.section, "domain": part.domain}
            | {"auc": auc, "pauc": pauc, **decided}
        )
    return rows


def summary(rows: list[dict]) -> dict:
    """Per machine type and domain (and both domains together) the harmonic means of AUC and pAUC; the official
    score over every row."""
    per_machine: dict[str, dict] = {}
    for machine in sorted({r["machine_type"] for r in rows}):
        mine = [r for r in rows if r["machine_type"] == machine]
        per_machine[machine] = {
            scope: {m: harmonic_mean(r[m] for r in chosen) for m in ("auc", "pauc")}
            for scope, chosen in [("all", mine), *((d, [r for r in mine if r["domain"] == d]) for d in DOMAINS)]
            if chosen
        }
    return {
        "machine_types": per_machine,
        "official_score": official_score([r["auc"] for r in rows], [r["pauc"] for r in rows]),
    }


def write_results(rows: list[dict], out: str | Path) -> Path:
    """The evaluator's table as CSV: per machine type its parts, then its harmonic means per domain and over
    both; last, the official score."""
    totals = summary(rows)
    with atomic_output(out) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(RESULT_COLUMNS)
        for machine, means in totals["machine_types"].items():
            for row in (r for r in rows if r["machine_type"] == machine):
                writer.writerow([row[c] if isinstance(row[c], str | int) else _number(row[c]) for c in RESULT_COLUMNS])
            for scope, mean in means.items():
                writer.writerow([machine, "hmean", scope, _number(mean["auc"]), _number(mean["pauc"]), "", "", ""])
        writer.writerow(["all", "", "official score", _number(totals["official_score"]), "", "", "", ""])
    return Path(out)


def format_table(rows: list[dict]) -> str:
    """The results for the console, one line per part and per machine type's harmonic mean."""
    totals = summary(rows)
    lines = [f"{'machine type':<14}{'section':>8}  {'domain':<8}{'AUC':>8}{'pAUC':>8}{'prec':>8}{'recall':>8}{'F1':>8}"]
    for machine, means in totals["machine_types"].items():
        for r in (r for r in rows if r["machine_type"] == machine):
            figures = "".join(f"{r[m]:>8.4f}" for m in ("auc", "pauc", "precision", "recall", "f1"))
            lines.append(f"{machine:<14}{r['section']:>8}  {r['domain']:<8}{figures}")
        for scope, mean in means.items():
            lines.append(f"{machine:<14}{'hmean':>8}  {scope:<8}{mean['auc']:>8.4f}{mean['pauc']:>8.4f}")
    lines.append(f"official score (hmean of every AUC and pAUC): {totals['official_score']:.4f}")
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:.6f}"


def write_submission(
    sweep_dirs: list[str | Path], out: str | Path, allow_partial: bool = False, force: bool = False
) -> list[Part]:
    """Per machine type, section and domain of the completed runs below ``sweep_dirs``: the anomaly-score file
    (scores as scores.csv holds them) and the decision file (the run's threshold), plus ``meta.yaml`` for the
    participant to complete, which lists the runs and parts. A failed or unfinished run stops it (listing them)
    unless ``allow_partial``; so does an ``out`` holding submission files these runs do not write (another
    submission's: they would be scored with these), unless ``force``, which removes them first."""
    runs, trouble = _completed_runs(sweep_dirs)
    if trouble and not allow_partial:
        raise SubmissionError(
            f"{len(trouble)} runs are failed or unfinished: {', '.join(trouble[:5])}"
            + (" ..." if len(trouble) > 5 else "")
            + " (rerun them, or pass --allow-partial)"
        )
    if not runs:
        raise SubmissionError(f"no completed runs with {SCORES_FILE} below {[str(d) for d in sweep_dirs]}")
    out = Path(out)
    by_part: dict[Part, list[dict]] = {}
    for run in runs:
        machine = json.loads((run / METRICS_FILE).read_text())["machine_type"]
        for row in read_scores(run / SCORES_FILE, raw=True):
            by_part.setdefault(Part(machine, int(row["section"]), row["domain"]), []).append(row)
    named = {part: [(Path(r["path"]).name, r) for r in rows] for part, rows in sorted(by_part.items())}
    for part, rows in named.items():
        if len({name for name, _ in rows}) != len(rows):
            raise SubmissionError(f"{part.file_name('anomaly_score')}: several runs scored the same clips")
    check_writable_folder(out, "--out")
    _clear_other_submission(out, set(by_part), force)
    for part, rows in named.items():
        _write_pairs(out / part.file_name("anomaly_score"), [(name, r["score"]) for name, r in rows])
        _write_pairs(out / part.file_name("decision_result"), [(name, r["decision"]) for name, r in rows])
    _write_meta(out / META_FILE, runs, sorted(by_part))
    return sorted(by_part)


def submission_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that a submission is made of: score and decision files, ``meta.yaml``."""
    if not folder.is_dir():
        return []
    kinds = ("anomaly_score_", "decision_result_")
    return sorted(p for p in folder.iterdir() if p.name == META_FILE or p.name.startswith(kinds))


def _clear_other_submission(out: Path, parts: set[Part], force: bool) -> None:
    """Refuse (or, ``force``, remove) the submission files of ``out`` that writing ``parts`` would not replace."""
    ours = {part.file_name(kind) for part in parts for kind in ("anomaly_score", "decision_result")} | {META_FILE}
    others = [p for p in submission_files(out) if p.name not in ours]
    if others and not force:
        names = ", ".join(p.name for p in others[:4]) + (f" and {len(others) - 4} more" if len(others) > 4 else "")
        raise SubmissionError(
            f"{out} holds files of another submission ({names}): they would be evaluated with this one; "
            "choose an empty --out, or pass --force to remove them first"
        )
    for path in others if force else []:
        path.unlink()


def _completed_runs(sweep_dirs: list[str | Path]) -> tuple[list[Path], list[str]]:
    runs, trouble = [], []
    for sweep in sweep_dirs:
        if not Path(sweep).is_dir():
            raise SubmissionError(f"sweep folder {sweep} does not exist")
        for folder in sorted(
            {p.parent for p in Path(sweep).rglob("config.yaml")} | {p.parent for p in Path(sweep).rglob(METRICS_FILE)}
        ):
            if folder.name == ".hydra":
                continue
            try:
                status = json.loads((folder / METRICS_FILE).read_text()).get("status")
            except (OSError, ValueError):
                status = "unfinished"
            if status == "completed" and (folder / SCORES_FILE).is_file():
                runs.append(folder)
            else:
                trouble.append(f"{folder} ({status})")
    return runs, trouble


def _write_pairs(path: Path, pairs: list[tuple[str, str]]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(pairs)


def _write_meta(path: Path, runs: list[Path], written: list[Part]) -> None:
    """A meta-data YAML with what the runs know, the rest marked for the participant to fill in; its
    ``asd_ganomaly`` entry lists the runs and the parts of the files (what :func:`check_meta` compares)."""
    records = [json.loads((run / METRICS_FILE).read_text()) for run in runs]
    models = sorted({r.get("model", "?") for r in records})
    lines = [
        "# DCASE 2021 Task 2 system meta-data: filled from the runs where they know it; complete the TODO fields",
        "submission:",
        f"  label: {models[0] if len(models) == 1 else 'TODO'}",
        "  name: TODO",
        "  abbreviation: TODO",
        "  authors: TODO",
        "system:",
        f"  models: [{', '.join(models)}]",
        f"  runs: {len(records)}",
        "results:",
        "  development_dataset:",
    ]
    for machine in sorted({r["machine_type"] for r in records}):
        parts = [p for r in records if r["machine_type"] == machine for p in _domain_results(r)]
        if parts:
            auc, pauc = harmonic_mean(p["auc"] for p in parts), harmonic_mean(p["pauc"] for p in parts)
            lines.append(f"    {machine}: {{harmonic_mean_auc: {100 * auc:.2f}, harmonic_mean_pauc: {100 * pauc:.2f}}}")
    lines += [
        "# what asd-ganomaly wrote: the runs and the parts (machine_section_XX_domain) of this folder's files",
        f"{META_KEY}:",
        f"  runs: [{', '.join(json.dumps(r.get('run_id', '?') + ' ' + r['machine_type']) for r in records)}]",
        f"  parts: [{', '.join(part.name for part in written)}]",
    ]
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def check_meta(submission: Path) -> None:
    """Where ``meta.yaml`` lists its parts (``asd-ganomaly submit`` wrote it), the score and decision files must be
    those parts: a file of another submission, or one missing, is an error naming them."""
    from omegaconf import OmegaConf

    meta = submission / META_FILE
    if not meta.is_file():
        return
    try:
        content = OmegaConf.to_container(OmegaConf.load(meta))
        listed = ((content if isinstance(content, dict) else {}).get(META_KEY) or {}).get("parts")
    except Exception as error:  # OmegaConf reports bad YAML as several error types: all mean "not readable"
        raise SubmissionError(f"{meta} is not a readable YAML mapping: {error}") from None
    if listed is None:
        return
    kinds = ("anomaly_score", "decision_result")
    files = {f"{part.name} ({kind})" for kind in kinds for part in parts_in(submission, kind)}
    expected = {f"{name} ({kind})" for name in map(str, listed) for kind in kinds}
    extra, missing = sorted(files - expected), sorted(expected - files)
    if extra or missing:
        said = [f"not in meta.yaml: {', '.join(extra[:4])}"] * bool(extra)
        said += [f"in meta.yaml but absent: {', '.join(missing[:4])}"] * bool(missing)
        raise SubmissionError(
            f"{submission} mixes submissions: its files are not the parts its {META_FILE} lists ({'; '.join(said)}); "
            "write it again with asd-ganomaly submit --force"
        )


def _domain_results(record: dict) -> list[dict]:
    """The per-domain results (``auc``, ``pauc``...) of a run's metrics.json, of every section it holds."""
    holders = list((record.get("sections") or {}).values()) or [record.get("metrics") or {}]
    return [holder[d] for holder in holders for d in DOMAINS if d in holder]
