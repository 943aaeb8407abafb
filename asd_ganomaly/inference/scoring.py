"""Score new recordings with a trained detector: load a checkpoint, stream WAV files in batches, write a CSV.

A run's ``model.ckpt`` holds everything scoring needs: the resolved model config (``_target_`` included), the
feature parameters, the fitted normalisation and the calibrated decision threshold. :func:`load_detector`
rebuilds the module from it; :func:`score_files` scores any number of clips with memory bounded by the batch.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.errors import UserError
from ..core.files import atomic_output, check_output
from ..data.audio import AudioError, read_ahead, read_wav
from ..data.dcase import DatasetError, parse_clip_name
from ..models.base import AnomalyDetector, build_detector

log = logging.getLogger(__name__)

CSV_COLUMNS = ("path", "score", "decision", "status", "error")


class CheckpointError(UserError, ValueError):
    """A file that is not a usable checkpoint of this package."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device; a clear error for a CUDA device on a machine without one."""
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r} (use cpu or cuda)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA is not available on this machine: use --device cpu")
    return device


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> AnomalyDetector:
    """Rebuild a trained detector (any model of the package) from its checkpoint, in eval mode.

    The checkpoint is read with ``torch.load(weights_only=True)``: the checkpoints this package writes hold
    only tensors, numbers, strings, lists and dicts (the model config is stored as a plain dict, and no
    ``save_hyperparameters`` objects), so no code inside the file is ever executed while loading it.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    device = resolve_device(device)
    _check_file_format(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and format errors: all mean "not one of our checkpoints"
        if "Weights only load failed" in str(error):
            raise CheckpointError(
                f"{path} holds Python objects that a weights-only load refuses: it is not a checkpoint of asd-ganomaly"
            ) from error
        reason = f"{type(error).__name__}: {error}"
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({reason})") from error

    entry = checkpoint.get("asd_ganomaly") if isinstance(checkpoint, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("model_config"), dict):
        raise CheckpointError(f"{path} is not a checkpoint of asd-ganomaly (no asd_ganomaly model config inside)")
    if entry.get("stage") == "fit":
        trained = path.parent.parent / "model.ckpt" if path.parent.name == "checkpoints" else None
        where = f"; this run's is {trained}" if trained is not None and trained.is_file() else ""
        raise CheckpointError(
            f"{path} is a training-state checkpoint (written during training, before the threshold and the score's "
            f"memory are fitted): score with a run's model.ckpt{where}"
        )
    if not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} is a checkpoint of asd-ganomaly without weights (no state_dict)")

    try:
        detector = build_detector(entry["model_config"])
    except Exception as error:
        raise CheckpointError(f"cannot rebuild the model of {path} from its config: {error}") from error
    if not isinstance(detector, AnomalyDetector):
        raise CheckpointError(f"the model config of {path} builds a {type(detector).__name__}, not a detector")
    stored_features = entry.get("features")
    if stored_features is not None and stored_features != detector.feature_config.as_dict():
        raise CheckpointError(
            f"the feature parameters stored in {path} ({stored_features}) differ from its model config's "
            f"({detector.feature_config.as_dict()})"
        )
    try:
        detector.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, KeyError, ValueError) as error:
        raise CheckpointError(f"the weights in {path} do not fit its model config: {error}") from error
    detector.model_config = entry["model_config"]
    if not bool(detector.normalizer.fitted):
        log.warning("%s: the normalisation was never fitted; scores use raw log-mel", path)
    if not math.isfinite(float(detector.threshold)):
        log.warning("%s has no calibrated threshold: decisions are left empty unless one is given", path)
    return detector.to(device).eval()


def _check_file_format(path: Path) -> None:
    """A fast, clear refusal of files that are not PyTorch files at all (torch.save writes a zip archive, or a
    pickle in the legacy format); torch.load's own errors for them are cryptic (``pop from empty list``)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith((b"PK\x03\x04", b"\x80")):
        return
    if not head:
        what = "the file is empty"
    elif head == b"RIFF":
        what = "it is a WAV file"
    else:
        what = "unknown file format"
    raise CheckpointError(f"{path} is not a PyTorch checkpoint ({what})")


def is_listed(path: Path) -> bool:
    """True for a file name that :func:`expand_inputs` picks up in a folder."""
    return path.suffix.lower() == ".wav"


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


def _read(path: Path, sample_rate: int, seconds: float) -> np.ndarray | str:
    """The clip, or the reason it cannot be read."""
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_file():
        return f"{path} is not a file"
    try:
        return read_wav(path, sample_rate, seconds)
    except AudioError as error:
        return str(error)
    except Exception as error:  # a bad file must not stop the others
        return f"cannot read {path}: {type(error).__name__}: {error}"


def clip_section(detector: AnomalyDetector, path: Path, section: int | None) -> int | str:
    """The section a clip is scored against (``section``, else the one in its DCASE file name), or the reason
    there is none. Only models with ``needs_section`` (the MobileNetV2 baseline) use it."""
    if section is None:
        try:
            section = parse_clip_name(path).section
        except DatasetError:
            return f"cannot tell the section of {path.name} from its name: name it section_XX_... or pass --section"
    known = detector.section_ids.tolist()
    if section not in known:
        return f"section {section} of {path.name} is not among the model's sections {known}"
    return section


def _score_batch(detector: AnomalyDetector, clips: list[np.ndarray], sections: list[int] | None) -> list[float]:
    """Anomaly scores of equally long clips, in one forward pass on the detector's device."""
    if not clips:
        return []
    waves = torch.from_numpy(np.stack(clips)).to(detector.device)
    index = None if sections is None else torch.tensor(sections, device=detector.device)
    with torch.no_grad():
        return detector.score_waveforms(waves, index)["score"].cpu().tolist()


def score_files(
    detector: AnomalyDetector,
    inputs: Sequence[str | Path],
    out_csv: str | Path,
    batch_size: int = 32,
    threshold: float | None = None,
    num_workers: int = 2,
    progress: bool = True,
    section: int | None = None,
) -> dict[str, int]:
    """Score WAV files (or the WAV files in folders) batch by batch and write one CSV row per file.

    Columns: ``path, score, decision, status, error``. ``decision`` is 1 when the score is above the
    threshold (the one calibrated at training time, or ``threshold`` when given) and empty when there is no
    finite threshold. A file that cannot be read, or whose score is not finite, gets ``status`` ``error`` and
    the reason; the others are scored. A model that scores a clip against its section (MobileNetV2) takes it
    from ``section`` or else from the clip's DCASE file name; a clip with neither is an error row. Clips are
    read in a thread pool one batch ahead of the model, so at most two batches of audio are in memory. Rows go
    to a temporary file renamed to ``out_csv`` at the end: an interrupted run leaves the previous ``out_csv`` as
    it was. An ``out_csv`` that is one of the inputs, or a WAV name inside an input folder, is refused
    (:class:`~asd_ganomaly.core.files.OutputError`).

    Returns the counts ``scored``, ``failed`` and ``anomalies``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    out_csv = check_output(out_csv, inputs, picked=is_listed)
    files = expand_inputs(inputs)
    if not files:
        raise ValueError(f"no WAV files found in {', '.join(map(str, inputs)) or 'the inputs'}")
    config = detector.feature_config
    limit = float(detector.threshold) if threshold is None else float(threshold)
    decide = math.isfinite(limit)
    needs = detector.needs_section
    if getattr(detector, "bn_train_mode_at_test", False):
        log.warning("this model scores with batch statistics: a clip's score depends on the clips batched with it")
    counts = {"scored": 0, "failed": 0, "anomalies": 0}
    chunks = [files[start : start + batch_size] for start in range(0, len(files), batch_size)]
    with (
        atomic_output(out_csv) as tmp,
        open(tmp, "w", newline="") as handle,
        ThreadPoolExecutor(max(1, num_workers), thread_name_prefix="read-wav") as pool,
        tqdm(total=len(files), desc="scoring", unit="clip", disable=not progress) as bar,
    ):

        def submit(index: int) -> list[Future]:
            return [pool.submit(_read, path, config.sample_rate, config.seconds) for path in chunks[index]]

        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for chunk, audio in zip(chunks, read_ahead(len(chunks), submit), strict=True):
            errors = {i: clip for i, clip in enumerate(audio) if isinstance(clip, str)}
            sections = [clip_section(detector, path, section) if needs else 0 for path in chunk]
            errors |= {i: s for i, s in enumerate(sections) if isinstance(s, str) and i not in errors}
            good = [i for i in range(len(chunk)) if i not in errors]
            picked = [sections[i] for i in good] if needs else None
            scores = dict(zip(good, _score_batch(detector, [audio[i] for i in good], picked), strict=True))
            for i, path in enumerate(chunk):
                score = scores.get(i)
                if score is not None and math.isfinite(score):
                    anomaly = int(score > limit)
                    writer.writerow([str(path), f"{score:.8g}", anomaly if decide else "", "ok", ""])
                    counts["scored"] += 1
                    counts["anomalies"] += anomaly if decide else 0
                else:
                    reason = errors[i] if score is None else f"the score of {path} is not finite ({score})"
                    writer.writerow([str(path), "", "", "error", reason])
                    counts["failed"] += 1
            handle.flush()
            bar.update(len(chunk))
    log.info("scored %(scored)d clips, %(failed)d failed, %(anomalies)d anomalies", counts)
    return counts
