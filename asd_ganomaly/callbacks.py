"""Callbacks of the training app."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class InterruptCheckpoint(Callback):
    """On Ctrl-C or SIGTERM (Slurm pre-emption), save ``last.ckpt`` so the same command resumes the run.

    Other exceptions (a diverged loss, say) do not overwrite the last good checkpoint.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last.ckpt") -> None:
        super().__init__()
        self.path = Path(dirpath) / filename

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """Save the checkpoint for an interruption; ignore any other exception."""
        if not isinstance(exception, KeyboardInterrupt | SIGTERMException):
            return
        if trainer.state.fn != "fit":
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        trainer.save_checkpoint(tmp)
        tmp.replace(self.path)
        log.warning(
            "interrupted at epoch %d, global step %d: checkpoint saved to %s; run the same command to resume",
            trainer.current_epoch,
            trainer.global_step,
            self.path,
        )
