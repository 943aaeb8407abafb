"""Which checkpoint an interrupted run resumes from, and what an interruption exits with.

``last.ckpt`` is used when it is a complete checkpoint that a weights-only load accepts. A truncated or corrupt
one (a disk that filled up, a copy cut short), one holding other Python objects, or a dangling ``last.ckpt`` link
is set aside with a warning, and the run resumes from the
newest complete checkpoint beside it, or starts afresh with a warning when there is none: never a loop of
runs that all fail on the same file.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SIGTERM_EXIT_CODE = 143  # 128 + SIGTERM, as a shell reports a process ended by SIGTERM
LAST = "last.ckpt"


def is_complete_checkpoint(path: Path) -> bool:
    """True when ``path`` is a whole ``torch.save`` archive: a zip whose members all pass their CRC check
    (reads the file once, unpickles nothing)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            return any(name.endswith("data.pkl") for name in names) and archive.testzip() is None
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return False


def is_loadable_checkpoint(path: Path) -> bool:
    """True when ``path`` is complete and a weights-only ``torch.load`` (what resuming does) accepts it: a file
    holding arbitrary Python objects is refused here, before it fails every rerun the same way."""
    if not is_complete_checkpoint(path):
        return False
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError, AttributeError):
        return False
    return True


def _set_aside(path: Path, why: str) -> None:
    """Move an unusable checkpoint out of the way (a dangling link is removed), so a new last.ckpt can be
    written under its name."""
    if path.is_symlink() and not path.exists():
        path.unlink()
        log.warning("%s links to a missing file (%s): removed", path, why)
        return
    target = path.with_name(path.name + ".corrupt")
    path.replace(target)
    log.warning("%s is not a complete checkpoint (%s): moved to %s", path, why, target.name)


def resume_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint to resume from in ``folder``: ``last.ckpt`` when complete, else the newest complete
    ``*.ckpt`` (``best*`` excluded: it is not the latest state), else None, for a fresh start."""
    folder = Path(folder)
    last = folder / LAST
    if last.exists() and is_loadable_checkpoint(last):
        return last
    trouble = last.is_symlink() or last.exists()
    if trouble:
        why = "dangling link" if not last.exists() else "truncated or corrupt"
        if last.exists() and is_complete_checkpoint(last):
            why = "a weights-only load refuses it: it holds other Python objects"
        _set_aside(last, why)
    candidates = [p for p in folder.glob("*.ckpt") if p.name != LAST and not p.name.startswith("best")]
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        if is_loadable_checkpoint(path):
            log.warning("resuming from %s, the newest complete checkpoint", path)
            return path
        log.warning("skipping %s: not a complete checkpoint", path)
        trouble = True
    if trouble:
        log.warning("no complete checkpoint in %s: starting afresh", folder)
    return None
