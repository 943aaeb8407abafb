"""Score new recordings with a trained detector: load a checkpoint, stream WAV files in batches, write a CSV."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hydra
import numpy as np
import torch
from tqdm.auto import tqdm

from .data.audio import AudioError, read_wav
from .models.base import AnomalyDetector

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint of this package."""


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> AnomalyDetector:
    """Rebuild a trained detector (any model of the package) from its checkpoint, in eval mode.

    Checkpoints are read with ``weights_only=True``: no code in the file is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {error}") from error
    entry = checkpoint.get("asd_ganomaly") if isinstance(checkpoint, dict) else None
    if not entry or not entry.get("model_config"):
        raise CheckpointError(f"{path} is not a checkpoint of asd-ganomaly (no model config inside)")
    detector: AnomalyDetector = hydra.utils.instantiate(entry["model_config"])
    try:
        detector.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(f"the weights in {path} do not fit its model config: {error}") from error
    return detector.to(device).eval()


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders expanded to their WAV files (recursively, sorted)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() == ".wav")
        elif item.exists():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item} does not exist")
    return files


def _batches(files: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(files), size):
        yield files[start : start + size]


def score_files(
    detector: AnomalyDetector,
    inputs: Sequence[str | Path],
    out_csv: str | Path,
    batch_size: int = 32,
    threshold: float | None = None,
    num_workers: int = 2,
    progress: bool = True,
) -> dict[str, int]:
    """Score WAV files batch by batch and write ``path, score, decision, status, error`` rows.

    Memory holds one batch of audio at a time. An unreadable file gets a row with its error; the others
    are scored. ``threshold`` overrides the one calibrated at training time (the gamma quantile).
    """
    files = expand_inputs(inputs)
    config = detector.feature_config
    limit = float(detector.threshold) if threshold is None else float(threshold)
    decide = np.isfinite(limit)
    counts = {"scored": 0, "failed": 0, "anomalies": 0}

    def read(path: Path) -> np.ndarray | str:
        try:
            return read_wav(path, config.sample_rate, config.seconds)
        except AudioError as error:
            return str(error)

    with open(out_csv, "w", newline="") as handle, ThreadPoolExecutor(max(1, num_workers)) as pool:
        writer = csv.writer(handle)
        writer.writerow(["path", "score", "decision", "status", "error"])
        bar = tqdm(total=len(files), desc="scoring", unit="clip", disable=not progress)
        for chunk in _batches(files, batch_size):
            audio = list(pool.map(read, chunk))
            good = [i for i, a in enumerate(audio) if not isinstance(a, str)]
            scores: list[float] = []
            if good:
                waves = torch.from_numpy(np.stack([audio[i] for i in good])).to(detector.device)
                with torch.no_grad():
                    scores = detector.score_waveforms(waves)["score"].cpu().tolist()
            by_index = dict(zip(good, scores, strict=True))
            for i, path in enumerate(chunk):
                if i in by_index:
                    anomaly = int(by_index[i] > limit)
                    writer.writerow([str(path), f"{by_index[i]:.8g}", anomaly if decide else "", "ok", ""])
                    counts["scored"] += 1
                    counts["anomalies"] += anomaly if decide else 0
                else:
                    writer.writerow([str(path), "", "", "error", audio[i]])
                    counts["failed"] += 1
            bar.update(len(chunk))
        bar.close()
    return counts
