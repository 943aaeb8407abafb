"""Score new recordings with a trained detector: load a checkpoint, stream WAV files in batches, write a CSV.

:func:`~asd_ganomaly.inference.checkpoint.load_detector` rebuilds a detector from a run's ``model.ckpt``;
:func:`score_files` scores any number of clips with it, or with an exported ONNX file, memory bounded by the
batch. Torch is imported only to score with a checkpoint: an ONNX file is scored with numpy and onnxruntime.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from ..core.errors import UserError
from ..core.files import atomic_output, check_output
from ..data.audio import AudioError, read_ahead, read_wav
from ..data.dcase import DatasetError, parse_clip_name
from ..data.feature_config import FeatureConfig
from ..models.scores import SCORE_COLUMNS
from .deployed import OnnxScorer

if TYPE_CHECKING:
    from ..models.detector import Detector
    from .checkpoint import DetectorScorer

    Scorer = DetectorScorer | OnnxScorer

log = logging.getLogger(__name__)

PAD_WARNING = 0.1
"""A clip shorter than the training length by more than this fraction is scored with a warning."""


def is_listed(path: Path) -> bool:
    """True for a file name that :func:`expand_inputs` picks up in a folder."""
    return path.suffix.lower() == ".wav"


class NoClipsError(UserError, ValueError):
    """The inputs of ``score`` hold no WAV file: nothing to score."""


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given (missing ones too: they are reported as errors), folders expanded to the WAV files
    below them (recursively, case-insensitive ``.wav``, sorted)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if is_listed(p) and p.is_file())
            if not found:
                log.warning("no WAV files under %s", item)
            files += found
        else:
            files.append(item)
    return files


def listed_clips(inputs: Sequence[str | Path]) -> list[Path]:
    """:func:`expand_inputs`, refused (:class:`NoClipsError`) when it lists nothing."""
    files = expand_inputs(inputs)
    if not files:
        raise NoClipsError(f"no WAV files found in {', '.join(map(str, inputs)) or 'the inputs'}")
    return files


def clip_notes(path: Path, config: FeatureConfig) -> list[str]:
    """Warnings about what reading ``path`` for the model does to it: resampling, and zero padding of more than
    :data:`PAD_WARNING` of the training clip length (a clip mostly of silence scores far off)."""
    info = sf.info(str(path))
    notes = []
    if info.samplerate != config.sample_rate:
        notes.append(f"resampled from {info.samplerate} Hz to {config.sample_rate} Hz")
    seconds = info.frames / info.samplerate
    if seconds < (1 - PAD_WARNING) * config.seconds:
        padding = 1 - seconds / config.seconds
        notes.append(
            f"{seconds:.3g} s long, zero-padded to the model's {config.seconds:g} s ({padding:.0%} padding): "
            "its score is not comparable"
        )
    return notes


def _read(path: Path, config: FeatureConfig) -> tuple[np.ndarray, list[str]] | str:
    """The clip at the model's rate and length with the warnings about it, or the reason it cannot be read."""
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_file():
        return f"{path} is not a file"
    try:
        audio = read_wav(path, config.sample_rate, config.seconds)
        return audio, clip_notes(path, config)
    except AudioError as error:
        return str(error)
    except Exception as error:  # a bad file must not stop the others
        return f"cannot read {path}: {type(error).__name__}: {error}"


def clip_section(scorer: Scorer, path: Path, section: int | None) -> int | str:
    """The section a clip is scored against (``section``, else the one in its DCASE file name), or the reason
    there is none. Only models with ``needs_section`` (the MobileNetV2 baseline) use it."""
    if section is None:
        try:
            section = parse_clip_name(path).section
        except DatasetError:
            return f"cannot tell the section of {path.name} from its name: name it section_XX_... or pass --section"
    known = scorer.known_sections
    if known is not None and section not in known:
        return f"section {section} of {path.name} is not among the model's sections {known}"
    return section


def clip_labels(path: Path, section: int | None) -> tuple[int | str, str]:
    """The section (``section`` when given) and domain of a clip from its DCASE name; empty when not named so."""
    try:
        info = parse_clip_name(path)
    except DatasetError:
        return ("" if section is None else section), ""
    return (info.section if section is None else section), info.domain


def section_note(scorer: Scorer, section: int | str) -> list[str]:
    """A warning when a clip's section is not one the model was trained on (a section-00 model scores section-01
    clips against section 00's normals)."""
    trained = scorer.trained_sections
    if section == "" or not trained or section in trained:
        return []
    return [f"section {section}, the model was trained on section(s) {', '.join(map(str, trained))}"]


def as_scorer(model: Detector | Scorer) -> Scorer:
    """A detector wrapped as a scorer; a scorer as it is."""
    if isinstance(model, OnnxScorer):
        return model
    from .checkpoint import DetectorScorer  # torch, only for a checkpoint's detector

    return model if isinstance(model, DetectorScorer) else DetectorScorer(model)


def score_files(
    model: Detector | Scorer,
    inputs: Sequence[str | Path],
    out_csv: str | Path,
    batch_size: int = 32,
    threshold: float | None = None,
    num_workers: int = 2,
    progress: bool = True,
    section: int | None = None,
) -> dict[str, int]:
    """Score WAV files (or the WAV files in folders) batch by batch and write one CSV row per file.

    ``model``: a trained detector (:func:`load_detector`) or an exported ONNX file (:class:`OnnxScorer`).
    Columns: ``path, section, domain`` (from DCASE file names; empty otherwise), ``score`` (the chosen one), every
    per-score column the model computes (``score_latent``, ``score_rec``, ...), ``decision``, ``status``,
    ``warnings``, ``error``. ``decision`` is 1 when the score is above the threshold (the one calibrated at training
    time, or ``threshold`` when given) and empty when there is no finite threshold. A clip that was resampled,
    zero-padded by more than :data:`PAD_WARNING` of the training length, or is of a section the model was not
    trained on is scored with the reason in ``warnings`` and logged. A file that cannot be read, or whose score is
    not finite, gets ``status`` ``error`` and the reason; the others are scored. A model that scores a clip
    against its section (MobileNetV2) takes it from ``section`` or else from the clip's DCASE file name; a clip
    with neither is an error row. Clips are read in a thread pool one batch ahead of the model, so at most two
    batches of audio are in memory. Rows go to a temporary file renamed to ``out_csv`` at the end: an interrupted
    run leaves the previous ``out_csv`` as it was. An ``out_csv`` that is one of the inputs, or a WAV name inside
    an input folder, is refused (:class:`~asd_ganomaly.core.files.OutputError`).

    Returns the counts ``scored``, ``failed``, ``anomalies`` and ``warned``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    out_csv = check_output(out_csv, inputs, picked=is_listed)
    files = listed_clips(inputs)
    scorer = as_scorer(model)
    config = scorer.feature_config
    limit = scorer.threshold if threshold is None else float(threshold)
    if getattr(getattr(scorer, "detector", None), "bn_train_mode_at_test", False):
        log.warning("this model scores with batch statistics: a clip's score depends on the clips batched with it")
    counts = {"scored": 0, "failed": 0, "anomalies": 0, "warned": 0}
    chunks = [files[start : start + batch_size] for start in range(0, len(files), batch_size)]
    with (
        atomic_output(out_csv) as tmp,
        open(tmp, "w", newline="") as handle,
        ThreadPoolExecutor(max(1, num_workers), thread_name_prefix="read-wav") as pool,
        tqdm(total=len(files), desc="scoring", unit="clip", disable=not progress) as bar,
    ):

        def submit(index: int) -> list[Future]:
            return [pool.submit(_read, path, config) for path in chunks[index]]

        writer = csv.writer(handle)
        columns = _columns(scorer)
        writer.writerow(columns)
        for chunk, audio in zip(chunks, read_ahead(len(chunks), submit), strict=True):
            for row in _score_chunk(scorer, chunk, audio, section):
                writer.writerow(_csv_row(row, columns, limit, counts))
            handle.flush()
            bar.update(len(chunk))
    log.info("scored %(scored)d clips, %(failed)d failed, %(anomalies)d anomalies, %(warned)d with warnings", counts)
    return counts


def _score_chunk(scorer: Scorer, chunk: list[Path], audio: list, section: int | None) -> list[dict]:
    """One dict per clip of a batch: path, section, domain, its scores or error, its warnings."""
    rows = []
    for path, clip in zip(chunk, audio, strict=True):
        labels = dict(zip(("section", "domain"), clip_labels(path, section), strict=True))
        rows.append({"path": path, **labels, "error": clip if isinstance(clip, str) else None, "notes": []})
        if isinstance(clip, tuple):
            rows[-1]["notes"] = clip[1] + section_note(scorer, labels["section"])
    if scorer.needs_section:
        for row in rows:
            picked = clip_section(scorer, row["path"], section)
            row["error"] = row["error"] or (picked if isinstance(picked, str) else None)
            row["picked"] = picked
    good = [i for i, row in enumerate(rows) if row["error"] is None]
    if good:
        sections = [rows[i]["picked"] for i in good] if scorer.needs_section else None
        scores = scorer.scores([audio[i][0] for i in good], sections)
        for n, i in enumerate(good):
            rows[i]["scores"] = {key: values[n] for key, values in scores.items()}
    return rows


def _columns(scorer: Scorer) -> list[str]:
    """The CSV header: every score column the model computes, in scores.csv's order."""
    names = [key for key in SCORE_COLUMNS if key in scorer.outputs]
    return ["path", "section", "domain", "score", *names, "decision", "status", "warnings", "error"]


def _csv_row(row: dict, columns: list[str], limit: float, counts: dict[str, int]) -> list:
    """A clip's CSV row; counts it as scored (and anomalous, warned) or failed; logs its warnings."""
    scores = row.get("scores", {})
    score = scores.get("score")
    path = row["path"]
    fields = {"path": str(path), "section": row["section"], "domain": row["domain"]}
    if score is not None and math.isfinite(score):
        decide = math.isfinite(limit)
        anomaly = int(score > limit)
        fields |= {key: f"{value:.8g}" for key, value in scores.items()}
        fields |= {"decision": anomaly if decide else "", "status": "ok", "warnings": "; ".join(row["notes"])}
        counts["scored"] += 1
        counts["anomalies"] += anomaly if decide else 0
        if row["notes"]:
            counts["warned"] += 1
            log.warning("%s: %s", path, "; ".join(row["notes"]))
    else:
        reason = row["error"] if score is None else f"the score of {path} is not finite ({score})"
        fields |= {"status": "error", "error": reason}
        counts["failed"] += 1
    return [fields.get(column, "") for column in columns]
