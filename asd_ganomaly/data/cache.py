"""Compute each clip's log-mel once: cached clips and packs are read from the :class:`FeatureCache` (in
``feature_store.py``), the others decoded in threads one batch ahead of the transform, and stored there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .audio import AudioError, read_ahead, read_wav
from .feature_store import FeatureCache
from .features import FeatureConfig, LogMel

log = logging.getLogger(__name__)


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
    except AudioError as error:
        if on_bad_file == "error":
            raise
        log.warning("skipping unreadable clip: %s", error)  # names the file and why: no traceback
        return None
