"""Train once, test many: a folder (a dataset, a finished run, a sweep) built once per test session, by whichever
pytest-xdist worker asks first, and read by every test that needs it. The others wait on a file lock meanwhile.

A shared folder is for reading: a test that changes files works on :func:`writable_copy`. Each worker checks at
its end that the folders it used are as they were built (:func:`changed_files`), so a test that writes into one
fails the session instead of another test."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path


def session_folder(basetemp: Path) -> Path:
    """The folder every worker of this session shares: above the worker's own base folder under xdist (``.../
    pytest-N/popen-gw0``), the base folder itself otherwise."""
    return basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp


@contextmanager
def _locked(path: Path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def built_once(shared: Path, name: str, build: Callable[[Path], None]) -> Path:
    """``shared/name``, made by ``build(folder)`` (into an empty folder) the first time any worker asks for it;
    a build that fails leaves nothing behind, so the next request builds again (and fails alike)."""
    folder = shared / name
    marker = shared / f"{name}.files.json"
    with _locked(shared / f"{name}.lock"):
        if not marker.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            try:
                build(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            marker.write_text(json.dumps(snapshot(folder)))
    return folder


def snapshot(folder: Path) -> dict[str, list[int]]:
    """Size and modification time of every file below ``folder`` (links not followed), by relative path."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            status = path.stat()
            files[str(path.relative_to(folder))] = [status.st_size, status.st_mtime_ns]
    return files


def changed_files(shared: Path, name: str) -> list[str]:
    """The files of ``shared/name`` added, removed or changed since it was built."""
    built = json.loads((shared / f"{name}.files.json").read_text())
    now = snapshot(shared / name)
    return sorted(path for path in built.keys() | now.keys() if built.get(path) != now.get(path))


def writable_copy(folder: Path, target: Path) -> Path:
    """A copy of the shared ``folder`` at ``target``, for a test that changes files (links stay links)."""
    shutil.copytree(folder, target, symlinks=True)
    return target
