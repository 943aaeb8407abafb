"""Writing output files without harming inputs: refuse an output that is an input, write through a rename.

``score``, ``export`` and ``report`` call :func:`check_output` before any work, so a typo in ``--out`` never
turns a checkpoint or a recording into a CSV; :func:`atomic_output` makes an interrupted write leave the
previous file (or none) in place, never half a file.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError


class OutputError(UserError, ValueError):
    """An output path that would overwrite or mix with the command's inputs."""


class PathNameError(UserError, ValueError):
    """A config value used as a folder name that is not a plain name (it would lead outside the run folder)."""


def plain_name(value: object) -> str:
    """``value`` as a folder name when it is a plain one (no ``/``, ``\\``, ``..``, leading ``.`` or NUL, not empty);
    else a :class:`PathNameError`. The ``${plain:...}`` resolver of the run folder's parts."""
    name = str(value)
    if not name or name.startswith(".") or any(bad in name for bad in ("/", "\\", "\0")):
        raise PathNameError(
            f"{name!r} cannot be part of a run folder: machine types, sections, task and model names must be plain "
            "names (no '/', no leading '.')"
        )
    return name


class WriteError(UserError, OSError):
    """A file could not be written (full disk, no permission, a read-only or special file system)."""


def _same_file(a: Path, b: Path) -> bool:
    """True when both paths name one file (after links, or as hard links of one inode)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    return folder.resolve() in path.resolve().parents


def check_output(
    out: str | Path,
    inputs: Sequence[str | Path],
    picked: Callable[[Path], bool] = lambda _: False,
    flag: str = "--out",
) -> Path:
    """Refuse ``out`` when it is one of ``inputs``, an existing folder, or a file inside an input folder
    that the command's listing of that folder would read (``picked(out)``). Returns ``out`` as a Path."""
    out = Path(out)
    if out.is_dir():
        raise OutputError(f"{flag} {out} is a folder: give a file name")
    check_writable_folder(out.parent, f"the folder of {flag}")
    for item in map(Path, inputs):
        if item.is_dir():
            if _inside(out, item) and picked(out):
                raise OutputError(
                    f"{flag} {out} is inside the input folder {item} and would be read as an input: "
                    "write it elsewhere or give it another name"
                )
        elif item.exists() and _same_file(out, item):
            raise OutputError(f"{flag} {out} is one of the inputs ({item}): it would be overwritten")
    return out


UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}
"""The errors of a folder that cannot be written: read-only, no permission, full."""


def check_writable_folder(folder: str | Path, what: str) -> Path:
    """Refuse, before any work, a ``folder`` that could not be written: the nearest folder of it that exists (it
    makes nothing) is on a read-only file system or not writable by this user; a :class:`WriteError` naming
    ``what`` (``paths.cache_dir``, ``--out``) and the folder. A full disk is found where a file is written."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    why = None
    if not existing.is_dir():
        why = f"{existing} is not a folder"
    elif os.statvfs(existing).f_flag & os.ST_RDONLY:
        why = os.strerror(errno.EROFS)
    elif not os.access(existing, os.W_OK | os.X_OK):
        why = os.strerror(errno.EACCES)
    if why:
        raise WriteError(f"{what} {folder} is not writable: {why}")
    return folder


def unwritable_cause(error: BaseException) -> OSError | None:
    """The first :data:`UNWRITABLE` ``OSError`` with a file name in ``error``'s chain of causes and contexts."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in UNWRITABLE and error.filename:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is flushed to disk and renamed to ``path``, on any
    error it is deleted. The one way the package writes a file a reader may open: no reader, and no crash or full
    disk, ever leaves a partial file under the final name."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        _fsync(tmp)
        tmp.replace(path)
    except WriteError:
        raise
    except OSError as error:
        if error.filename not in (None, str(tmp), str(path), str(path.parent)):
            raise  # an input the block read, not this output
        raise WriteError(f"could not write {path}: {error.strerror or error}{_free_space(path)}") from error
    except RuntimeError as error:  # torch.save reports a failed write as a RuntimeError of its C++ stream
        if not any(word in str(error).lower() for word in ("write", "iostream", "inline_container")):
            raise
        why = getattr(error.__context__, "strerror", None) or "the write failed"  # a file object's OSError
        raise WriteError(f"could not write {path}: {why}{_free_space(path)}") from error
    finally:
        tmp.unlink(missing_ok=True)


def _free_space(path: Path) -> str:
    """`` (N GB free there)`` for the nearest existing folder of ``path``, or nothing when it cannot be read."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return f" ({shutil.disk_usage(folder).free / 1e9:.2f} GB free there)"
    except OSError:
        return ""


def _fsync(path: Path) -> None:
    """Flush a written file's data to the disk (a rename alone may land before the data does)."""
    if path.is_file():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
