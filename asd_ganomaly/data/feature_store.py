"""The on-disk store of log-mel features, keyed by the file and the feature parameters (see ``cache.py`` for the
extraction that fills it).

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
from collections.abc import Sequence
from pathlib import Path

import torch

from ..core.files import atomic_output
from .features import FeatureConfig

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
    with atomic_output(entry) as tmp:
        torch.save(payload, tmp)
