"""One process per run folder: an OS file lock held for the run's life.

The lock is ``flock`` on ``<run folder>/.lock``: the kernel releases it when the process ends, however it ends
(kill -9 included), so it is never stale. The file names the holder (pid, host, start time) for the refusal a
second process gets. A Slurm requeue of a pre-empted task (``SLURM_RESTART_COUNT`` set) waits a while for the
old holder to exit instead of being refused at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ..core.errors import UserError

LOCK_FILE = ".lock"
REQUEUE_WAIT_S = 120.0


class RunLockedError(UserError):
    """Another live process holds the run folder."""


def default_wait() -> float:
    """Seconds to wait for the holder: :data:`REQUEUE_WAIT_S` for a requeued Slurm task, else none."""
    return REQUEUE_WAIT_S if os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0") else 0.0


def holder(folder: str | Path) -> str:
    """Who holds (or last held) the lock of ``folder``, as written in its lock file."""
    try:
        info = json.loads((Path(folder) / LOCK_FILE).read_text())
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def run_lock(folder: str | Path, wait: float | None = None, poll: float = 0.2) -> Iterator[Path]:
    """Hold the run folder's lock for the ``with`` block; a :class:`RunLockedError` naming the holder when another
    process holds it for longer than ``wait`` seconds (default :func:`default_wait`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    deadline = time.monotonic() + (default_wait() if wait is None else wait)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunLockedError(
                        f"{folder} is in use by {holder(folder)}: a run of the same config is running there "
                        "(wait for it, or stop it; its lock goes when it exits)"
                    ) from None
                time.sleep(poll)
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}).encode())
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
