"""Callbacks of the training app: the run's lifecycle after fit (threshold, run files) and interruptions."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .files import METRICS_FILE, SCORES_FILE, read_scores, run_record, scores_by_domain, write_json_atomic, write_scores
from .tracking import log_wandb_results

log = logging.getLogger(__name__)


class InterruptCheckpoint(Callback):
    """On Ctrl-C or SIGTERM (Slurm pre-emption), save ``last.ckpt`` so the same command resumes the run.

    SIGTERM is Lightning's: it lets the batch in progress end, then stops. During training Ctrl-C takes the same
    path (it sends the process SIGTERM), so the checkpoint holds whole batches and the resumed run equals an
    uninterrupted one; a KeyboardInterrupt raised in the middle of a batch would save half a step. A second Ctrl-C
    stops at once and saves nothing: the run resumes from its last saved checkpoint. :attr:`ctrl_c` says whether
    the stop came from Ctrl-C.

    Other exceptions (a diverged loss, say) do not overwrite the last good checkpoint. Lightning's
    ``OnExceptionCheckpoint`` cannot replace it: it saves on every exception, a diverged run included, and
    would overwrite the last good checkpoint with the broken weights.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last.ckpt") -> None:
        super().__init__()
        self.path = Path(dirpath) / filename
        self.ctrl_c = False
        self._previous_handler: object = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Turn Ctrl-C into Lightning's stop at the end of the batch (signals can be set in the main thread only;
        not in a DDP run, where Lightning's SIGTERM path waits on the other ranks: there Ctrl-C stops at once)."""
        if threading.current_thread() is threading.main_thread() and trainer.world_size == 1:
            self._previous_handler = signal.signal(signal.SIGINT, self._on_ctrl_c)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handler()

    def _on_ctrl_c(self, signum: int, frame: object) -> None:
        if self.ctrl_c:
            raise KeyboardInterrupt
        self.ctrl_c = True
        log.warning("Ctrl-C: stopping at the end of this batch to save a checkpoint (Ctrl-C again: stop unsaved)")
        os.kill(os.getpid(), signal.SIGTERM)

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """Save the checkpoint for an interruption at a batch's end; ignore any other exception."""
        self._restore_handler()
        if trainer.state.fn != "fit":
            return
        if isinstance(exception, KeyboardInterrupt):
            log.warning("stopped at once: nothing saved; the same command resumes from the last saved checkpoint")
            return
        if not isinstance(exception, SIGTERMException):
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # atomic: the trainer's AtomicCheckpointIO
        log.warning(
            "interrupted (%s) at epoch %d, global step %d: checkpoint saved to %s; run the same command to resume",
            "Ctrl-C" if self.ctrl_c else "SIGTERM",
            trainer.current_epoch,
            trainer.global_step,
            self.path,
        )


class ThresholdCalibration(Callback):
    """Before testing (after fit, on the weights that are tested): the decision threshold from the training
    normals' scores (gamma quantile, as the DCASE baselines)."""

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Calibrate ``pl_module.threshold`` on the DataModule's training clips."""
        pl_module.calibrate_threshold(trainer.datamodule.train_eval_batches())


class RunFiles(Callback):
    """At the end of testing, the run folder gets ``scores.csv``, ``model.ckpt``, plots and, last,
    ``metrics.json``: its presence marks the run as finished. A W&B run gets the plots, the scores as a table and,
    with ``log_model``, ``model.ckpt`` as a model artifact.

    ``info`` identifies the run in metrics.json (machine type, section, model, run id, config...).
    """

    def __init__(self, out_dir: str | Path, info: dict, plots: bool = True, log_model: bool = False) -> None:
        super().__init__()
        self.out = Path(out_dir)
        self.info = info
        self.plots = plots
        self.log_model = log_model

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the run's files from the results the module computed at the end of the test epoch (rank 0 of a
        DDP run: every rank scored every test clip)."""
        trainer.save_checkpoint(self.out / "model.ckpt", weights_only=False)  # every rank: a collective call
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        threshold = pl_module.threshold.item()
        write_scores(self.out / SCORES_FILE, datamodule.test_clips, pl_module.test_scores, threshold)
        if self.plots and getattr(datamodule, "labelled", True):  # ROC and histograms by label need labels
            self._plots(trainer, pl_module)
        self._wandb(trainer, pl_module)
        record = run_record(self.info, results=pl_module.test_results, logged=pl_module.test_metrics)
        write_json_atomic(self.out / METRICS_FILE, record)

    def _wandb(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The scores table and, with ``log_model``, the model artifact, for each W&B logger."""
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not loggers:
            return
        keys = ("machine_type", "section", "model", "run_id")
        metadata = {**{key: self.info.get(key) for key in keys}, "threshold": pl_module.threshold.item()}
        metadata["metrics"] = dict(pl_module.test_metrics)
        rows = read_scores(self.out / SCORES_FILE)
        for logger in loggers:
            log_wandb_results(logger, self.out / "model.ckpt", rows, metadata, self.log_model)

    def _plots(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from ..evaluation import plots

        by_domain = scores_by_domain(read_scores(self.out / SCORES_FILE))
        score = f"{getattr(pl_module, 'score_choice', 'default')} score"
        title = f"{self.info.get('machine_type')} section {self.info.get('section')}, {self.info.get('model')}"
        title += f", {score}\n{self.info.get('run_id', '')}"
        paths = [
            plots.plot_roc(by_domain, self.out / "roc.png", title=title),
            plots.plot_score_histogram(
                by_domain, self.out / "score_histogram.png", pl_module.threshold.item(), title=title, score=score
            ),
        ]
        if hasattr(pl_module, "reconstruct"):
            clips, features = trainer.datamodule.test_clips, trainer.datamodule.test_features
            picks = [next(i for i, c in enumerate(clips) if c.label == lab) for lab in ("normal", "anomaly")]
            x, x_rec = pl_module.reconstruct(features[picks].to(pl_module.device))
            titles = [f"{clips[i].domain} {clips[i].label} {clips[i].path.name}" for i in picks]
            paths.append(
                plots.plot_spectrograms(x.cpu().numpy(), x_rec.cpu().numpy(), titles, self.out / "spectrograms.png")
            )
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):  # one key per plot: W&B shows a list of images at one size
                for path in paths:
                    logger.log_image(key=f"plots/{path.stem}", images=[str(path)])
