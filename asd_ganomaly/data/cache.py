"""Compute each clip's log-mel once and keep it on disk, keyed by the file and the feature parameters.

Two kinds of entries, both storing the parameters and each source file's size and modification time:

* one per clip, written as soon as the clip is computed (an interrupted extraction keeps what it did);
* one *pack* per list of clips (a section's training or test split): all its features in one tensor, read
  in one go by every later run on the same clips (tens of times faster than one file per clip).

An entry that cannot be read, or whose parameters, source files or shape disagree, is rebuilt, never
silently used. An entry holds exactly its own values: a tensor that is a view into a larger one (a row of a
batch) is copied before it is saved, since ``torch.save`` writes a view's whole storage; an entry written
with more storage than its values (by an older version) is rewritten compactly when it is read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .audio import AudioError, read_ahead, read_wav
from .features import FeatureConfig, LogMel

log = logging.getLogger(__name__)


class FeatureCache:
    """On-disk cache of log-mel tensors under ``root/<parameter hash>/``."""

    def __init__(self, root: str | Path, config: FeatureConfig) -> None:
        self.config = config
        self.params = config.as_dict()
        digest = hashlib.sha1(json.dumps(self.params, sort_keys=True).encode()).hexdigest()[:12]
        self.dir = Path(root).expanduser() / digest

    def entry_path(self, wav: Path) -> Path:
        """Where the features of ``wav`` are kept."""
        key = hashlib.sha1(str(Path(wav).resolve()).encode()).hexdigest()
        return self.dir / key[:2] / f"{key}.pt"

    def load(self, wav: Path) -> torch.Tensor | None:
        """Return the cached features of ``wav``, or None when missing, stale or corrupt."""
        entry = self.entry_path(wav)
        if not entry.exists():
            return None
        try:
            payload = torch.load(entry, map_location="cpu", weights_only=True)
            stat = Path(wav).stat()
            valid = (
                payload["params"] == self.params
                and payload["size"] == stat.st_size
                and payload["mtime_ns"] == stat.st_mtime_ns
                and payload["features"].shape[0] == self.config.n_mels
                and payload["features"].shape[1] == self.config.n_frames
                and bool(torch.isfinite(payload["features"]).all())
            )
        except Exception as error:  # any unreadable entry is rebuilt
            log.warning("rebuilding corrupt feature cache entry %s (%s)", entry, error)
            return None
        if not valid:
            log.warning("rebuilding stale feature cache entry for %s", wav)
            return None
        features = payload["features"]
        if _is_bloated(features):
            log.info("rewriting feature cache entry %s without the extra storage it was saved with", entry)
            features = features.clone()
            _save_atomically({**payload, "features": features}, entry)
        return features

    def store(self, wav: Path, features: torch.Tensor) -> None:
        """Write the features of ``wav`` atomically (temporary file, then rename)."""
        entry = self.entry_path(wav)
        entry.parent.mkdir(parents=True, exist_ok=True)
        stat = Path(wav).stat()
        payload = {
            "params": self.params,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "features": compact(features),
        }
        _save_atomically(payload, entry)

    def pack_path(self, wavs: Sequence[Path]) -> Path:
        """Where the pack of the list ``wavs`` (in this order) is kept."""
        names = "\n".join(str(Path(wav).resolve()) for wav in wavs)
        return self.dir / "packs" / f"{hashlib.sha1(names.encode()).hexdigest()}.pt"

    def load_pack(self, wavs: Sequence[Path], skip_bad: bool) -> tuple[torch.Tensor, list[Path]] | None:
        """The features and kept clips of ``wavs`` stored together, or None when missing, stale or corrupt.

        A pack that left unreadable clips out is used only when ``skip_bad`` (else the clips are read again,
        and the error raised).
        """
        entry = self.pack_path(wavs)
        if not entry.exists():
            return None
        try:
            payload = torch.load(entry, map_location="cpu", weights_only=True)
            kept = [Path(wavs[i]) for i in payload["kept"]]
            features = payload["features"]
            valid = (
                payload["params"] == self.params
                and payload["files"] == _file_stats(wavs)
                and (skip_bad or len(kept) == len(wavs))
                and tuple(features.shape) == (len(kept), self.config.n_mels, self.config.n_frames)
                and bool(torch.isfinite(features).all())
            )
        except Exception as error:  # any unreadable pack is rebuilt
            log.warning("rebuilding corrupt feature pack %s (%s)", entry, error)
            return None
        if not valid:
            return None
        if len(kept) < len(wavs):
            log.warning("%d unreadable clips left out, as when %s was written", len(wavs) - len(kept), entry)
        return features, kept

    def store_pack(self, wavs: Sequence[Path], features: torch.Tensor, kept: Sequence[Path]) -> None:
        """Write the features of the kept clips of ``wavs`` as one pack (atomically)."""
        index = {Path(wav): i for i, wav in enumerate(wavs)}
        payload = {
            "params": self.params,
            "files": _file_stats(wavs),
            "kept": [index[Path(wav)] for wav in kept],
            "features": compact(features),
        }
        entry = self.pack_path(wavs)
        entry.parent.mkdir(parents=True, exist_ok=True)
        _save_atomically(payload, entry)


def compact(features: torch.Tensor) -> torch.Tensor:
    """``features`` as contiguous float32 on the CPU, holding no storage beyond its own values."""
    features = features.detach().to("cpu", torch.float32)
    if _is_bloated(features) or not features.is_contiguous():
        features = features.clone(memory_format=torch.contiguous_format)
    return features


def _is_bloated(features: torch.Tensor) -> bool:
    """True when the tensor's storage is larger than its values (a view: saving it saves the whole storage)."""
    return features.untyped_storage().nbytes() > features.numel() * features.element_size()


def _file_stats(wavs: Sequence[Path]) -> list[list[int]]:
    """Size and modification time (ns) of each file; -1 for a file that is gone."""
    stats = []
    for wav in wavs:
        try:
            stat = Path(wav).stat()
            stats.append([stat.st_size, stat.st_mtime_ns])
        except OSError:
            stats.append([-1, -1])
    return stats


def _save_atomically(payload: dict, entry: Path) -> None:
    """``torch.save`` to a temporary file beside ``entry``, then rename it into place."""
    tmp = entry.with_suffix(f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    tmp.replace(entry)


def extract_features(
    paths: Sequence[Path],
    config: FeatureConfig,
    cache_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    num_workers: int = 2,
    on_bad_file: str = "error",
    progress: bool = True,
) -> tuple[torch.Tensor, list[Path]]:
    """Log-mel features of ``paths`` as one (clips, n_mels, frames) tensor on the CPU.

    With ``cache_dir``, a pack of exactly these clips is returned as it is; else cached clips are read one
    by one, and the others are decoded in ``num_workers`` threads, one batch ahead of the batch being
    transformed on ``device``. ``on_bad_file="skip"`` drops unreadable clips with a warning
    (the second return value lists the clips kept); ``"error"`` raises :class:`AudioError`.
    """
    if on_bad_file not in ("error", "skip"):
        raise ValueError(f"on_bad_file must be 'error' or 'skip', not {on_bad_file!r}")
    cache = FeatureCache(cache_dir, config) if cache_dir else None
    paths = [Path(p) for p in paths]
    packed = cache.load_pack(paths, skip_bad=on_bad_file == "skip") if cache else None
    if packed is not None:
        return packed
    features: dict[Path, torch.Tensor] = {}
    missing = []
    for path in paths:
        cached = cache.load(path) if cache else None
        if cached is None:
            missing.append(path)
        else:
            features[path] = cached
    if missing:
        computed = _compute_features(missing, config, device, batch_size, num_workers, on_bad_file, progress)
        for path, one in computed:
            features[path] = one
            if cache:
                cache.store(path, one)
    kept_paths = [p for p in paths if p in features]
    if not kept_paths:
        raise AudioError("no readable clips")
    stacked = torch.stack([features[p] for p in kept_paths])
    if cache:
        cache.store_pack(paths, stacked, kept_paths)
    return stacked, kept_paths


def _compute_features(
    paths: list[Path],
    config: FeatureConfig,
    device: torch.device | str,
    batch_size: int,
    num_workers: int,
    on_bad_file: str,
    progress: bool,
) -> Iterator[tuple[Path, torch.Tensor]]:
    """Yield ``(path, log-mel on the CPU)`` for the readable clips of ``paths``.

    Clips are decoded in threads straight into one of two reused batch buffers (pinned for a GPU), one batch
    ahead of the batch being transformed: no per-clip arrays to stack, and decoding overlaps the transform.
    """
    device = torch.device(device)
    extractor = LogMel(config).to(device)
    pinned = device.type == "cuda"
    buffers = [torch.empty(batch_size, config.samples, pin_memory=pinned) for _ in range(2)]
    batches = [paths[start : start + batch_size] for start in range(0, len(paths), batch_size)]
    with (
        ThreadPoolExecutor(max(1, num_workers)) as pool,
        tqdm(total=len(paths), desc="log-mel features", unit="clip", disable=not progress) as bar,
    ):

        def submit(index: int) -> list[Future]:
            rows, args = buffers[index % 2], (config, on_bad_file)
            return [pool.submit(_read_into, rows[row], path, *args) for row, path in enumerate(batches[index])]

        for index, (chunk, results) in enumerate(zip(batches, read_ahead(len(batches), submit), strict=True)):
            readable = torch.tensor(results)
            if readable.any():
                waves = buffers[index % 2][: len(chunk)]
                waves = waves if readable.all() else waves[readable]
                with torch.no_grad():
                    logmel = extractor(waves.to(device, non_blocking=pinned)).cpu()
                kept = [path for path, ok in zip(chunk, readable.tolist(), strict=True) if ok]
                yield from zip(kept, logmel, strict=True)
            bar.update(len(chunk))


def _read_into(row: torch.Tensor, path: Path, config: FeatureConfig, on_bad_file: str) -> bool:
    """Decode ``path`` into ``row``; False for an unreadable clip that is to be skipped."""
    wave = _read_or_none(path, config, on_bad_file)
    if wave is None:
        return False
    row.numpy()[:] = wave  # numpy: torch ops in the worker threads would start OpenMP teams of their own
    return True


def _read_or_none(path: Path, config: FeatureConfig, on_bad_file: str) -> np.ndarray | None:
    try:
        return read_wav(path, config.sample_rate, config.seconds)
    except AudioError:
        if on_bad_file == "error":
            raise
        log.warning("skipping unreadable clip %s", path, exc_info=True)
        return None
