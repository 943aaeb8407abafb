"""Compute each clip's log-mel once and keep it on disk, keyed by the file and the feature parameters.

An entry stores the parameters and the file's size and modification time. An entry that cannot be
read, or whose parameters, source file or shape disagree, is rebuilt, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .audio import AudioError, read_wav
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
        return payload["features"]

    def store(self, wav: Path, features: torch.Tensor) -> None:
        """Write the features of ``wav`` atomically (temporary file, then rename)."""
        entry = self.entry_path(wav)
        entry.parent.mkdir(parents=True, exist_ok=True)
        stat = Path(wav).stat()
        payload = {
            "params": self.params,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "features": features.detach().to("cpu", torch.float32).contiguous(),
        }
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

    Cached clips are read from ``cache_dir``; the others are decoded in ``num_workers`` threads and
    transformed in batches on ``device``. ``on_bad_file="skip"`` drops unreadable clips with a warning
    (the second return value lists the clips kept); ``"error"`` raises :class:`AudioError`.
    """
    if on_bad_file not in ("error", "skip"):
        raise ValueError(f"on_bad_file must be 'error' or 'skip', not {on_bad_file!r}")
    cache = FeatureCache(cache_dir, config) if cache_dir else None
    features: dict[Path, torch.Tensor] = {}
    missing = []
    for path in map(Path, paths):
        cached = cache.load(path) if cache else None
        if cached is None:
            missing.append(path)
        else:
            features[path] = cached
    if missing:
        extractor = LogMel(config).to(device)
        bar = tqdm(total=len(missing), desc="log-mel features", unit="clip", disable=not progress)
        with ThreadPoolExecutor(max(1, num_workers)) as pool:
            for start in range(0, len(missing), batch_size):
                chunk = missing[start : start + batch_size]
                waves = list(pool.map(lambda p: _read_or_none(p, config, on_bad_file), chunk))
                kept = [(p, w) for p, w in zip(chunk, waves, strict=True) if w is not None]
                if kept:
                    batch = torch.from_numpy(np.stack([w for _, w in kept])).to(device)
                    with torch.no_grad():
                        logmel = extractor(batch).cpu()
                    for (path, _), one in zip(kept, logmel, strict=True):
                        features[path] = one
                        if cache:
                            cache.store(path, one)
                bar.update(len(chunk))
        bar.close()
    kept_paths = [p for p in map(Path, paths) if p in features]
    if not kept_paths:
        raise AudioError("no readable clips")
    return torch.stack([features[p] for p in kept_paths]), kept_paths


def _read_or_none(path: Path, config: FeatureConfig, on_bad_file: str) -> np.ndarray | None:
    try:
        return read_wav(path, config.sample_rate, config.seconds)
    except AudioError:
        if on_bad_file == "error":
            raise
        log.warning("skipping unreadable clip %s", path, exc_info=True)
        return None
