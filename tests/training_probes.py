"""Callbacks that put an interruption at an exact point of training, whatever the machine's speed (a test that
sends a signal from outside after a delay races with the epoch), and one that records what a process trained:
:class:`SignalAtBatch` sends its own process a real signal after one given batch; :class:`PauseAtBatch` waits
there until a signal from outside (a scheduler's requeue) has arrived; :class:`FillDisk` fills the disk before a
checkpoint; :class:`RecordBatches` writes the epoch and batch number of every training batch to a file (a resumed
run starts where the interruption left it). Added to a run on the command line, where ``tests/`` is on ``PYTHONPATH``::

    +callbacks.interrupt._target_=training_probes.SignalAtBatch +callbacks.interrupt.signal=SIGTERM \
    +callbacks.interrupt.epoch=1 +callbacks.interrupt.batch=5

``callbacks`` is no part of a run's identity: the same command without these lines resumes the run, and a
resumed run is past the batch, so the same command with them resumes too."""

import os
import shutil
import signal as signals
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class SignalAtBatch(Callback):
    """Send ``signal`` (a name: SIGTERM, SIGINT) to this process once batch ``batch`` of epoch ``epoch`` ends."""

    def __init__(self, signal: str, epoch: int, batch: int) -> None:
        self.signal, self.epoch, self.batch = getattr(signals, signal), epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), self.signal)


class PauseAtBatch(Callback):
    """Once batch ``batch`` of epoch ``epoch`` ends, write ``marker`` and wait (up to ``timeout`` seconds) until
    Lightning has received SIGTERM; training then goes on and stops at the next batch, as it would mid-epoch."""

    def __init__(self, marker: str, epoch: int, batch: int, timeout: float = 300.0) -> None:
        self.marker, self.epoch, self.batch, self.timeout = Path(marker), epoch, batch, timeout

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) != (self.epoch, self.batch):
            return
        self.marker.write_text(str(os.getpid()))
        deadline = time.monotonic() + self.timeout
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.05)


class FillDisk(Callback):
    """Fill the file system of ``ballast`` (a file written there) up to ``leave`` bytes when epoch ``epoch`` starts
    (``epoch`` -1: when testing starts): the next checkpoint saved there meets a full disk."""

    def __init__(self, ballast: str, epoch: int, leave: int = 200_000) -> None:
        self.ballast, self.epoch, self.leave = Path(ballast), epoch, leave

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            self._fill()

    def on_test_start(self, trainer, pl_module) -> None:
        if self.epoch == -1:
            self._fill()

    def _fill(self) -> None:
        size = shutil.disk_usage(self.ballast.parent).free - self.leave
        with self.ballast.open("wb") as ballast:
            for start in range(0, size, 1 << 20):
                ballast.write(bytes(min(1 << 20, size - start)))


class RecordBatches(Callback):
    """Append ``<epoch> <batch>`` to ``path`` for every training batch this process trains."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with self.path.open("a") as record:
            record.write(f"{trainer.current_epoch} {batch_idx}\n")


def recorded_batches(path: Path) -> list[tuple[int, int]]:
    """The (epoch, batch) pairs :class:`RecordBatches` wrote, in order."""
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()]


def overrides(signal: str, epoch: int, batch: int) -> list[str]:
    """The command-line overrides that add :class:`SignalAtBatch` to a run."""
    return _node("SignalAtBatch", signal=signal, epoch=epoch, batch=batch)


def pause_overrides(marker: Path, epoch: int, batch: int) -> list[str]:
    """The command-line overrides that add :class:`PauseAtBatch` to a run."""
    return _node("PauseAtBatch", marker=marker, epoch=epoch, batch=batch)


def fill_disk_overrides(ballast: Path, epoch: int) -> list[str]:
    """The command-line overrides that add :class:`FillDisk` to a run."""
    return _node("FillDisk", node="fill_disk", ballast=ballast, epoch=epoch)


def record_overrides(path: Path) -> list[str]:
    """The command-line overrides that add :class:`RecordBatches` to a run."""
    return _node("RecordBatches", node="record", path=path)


def python_path() -> str:
    """``PYTHONPATH`` for a process that imports this module: ``tests/`` before what the path held."""
    return os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))


def _node(name: str, node: str = "interrupt", **arguments: object) -> list[str]:
    node = f"+callbacks.{node}"
    return [f"{node}._target_={__name__}.{name}", *(f"{node}.{key}={value}" for key, value in arguments.items())]
