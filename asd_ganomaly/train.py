"""``asd-train``: train and test one detector for one machine type and section (Hydra app).

Examples::

    asd-train data.root=data/dcase2021/dev_data data.machine_type=fan data.section=0
    asd-train data.machine_type=fan model.loss.w_rec=10 trainer.max_epochs=50
    asd-train experiment=dev_all data.root=...        # all 21 combinations (multirun)

Each run writes ``metrics.json``, ``scores.csv``, ``model.ckpt`` (with the decision threshold) and plots
into its output folder, and keeps ``checkpoints/last.ckpt`` to resume from.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from .callbacks import InterruptCheckpoint
from .checks import discard_unused_run_dir, preflight
from .data.datamodule import SectionDataModule
from .errors import UserError
from .models.base import AnomalyDetector
from .resume import SIGTERM_EXIT_CODE, resume_checkpoint
from .runs import (
    METRICS_FILE,
    SCORES_FILE,
    check_output_dir,
    is_finished,
    read_metrics,
    run_record,
    write_json_atomic,
    write_scores,
)
from .tracking import finish_wandb, instantiate_callbacks, instantiate_loggers

log = logging.getLogger(__name__)
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def _record(cfg: DictConfig, **outcome: object) -> dict:
    return run_record(
        machine_type=cfg.data.machine_type,
        section=cfg.data.section,
        model=cfg.model.name,
        data_root=str(cfg.data.root),
        config=OmegaConf.to_container(cfg, resolve=True),
        selected_on_test=bool(cfg.select_on_test),
        **outcome,
    )


def build_trainer(cfg: DictConfig, out: Path) -> L.Trainer:
    """Trainer with the configured loggers and callbacks; validation runs only with select_on_test."""
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        callbacks.append(ModelCheckpoint(dirpath=out / "checkpoints", save_last="link", save_top_k=1))
    callbacks.append(InterruptCheckpoint(out / "checkpoints"))
    if cfg.select_on_test:
        callbacks.append(
            ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val/source/auc", mode="max")
        )
    loggers = instantiate_loggers(cfg.get("logger"))
    return hydra.utils.instantiate(
        cfg.trainer,
        logger=loggers or False,
        callbacks=callbacks,
        limit_val_batches=1.0 if cfg.select_on_test else 0,
    )


def train(cfg: DictConfig) -> dict:
    """Fit, calibrate the threshold, test, and write the run's files. Returns the metrics.json payload."""
    out = Path(cfg.paths.output_dir)
    if cfg.skip_finished and is_finished(out):
        log.info("skipping %s: finished before (%s exists)", out, METRICS_FILE)
        return read_metrics(out)
    preflight(cfg)  # config values and the data, before W&B, a run file or an epoch (issue 13)
    check_output_dir(out, cfg.min_free_disk_gb)
    L.seed_everything(cfg.seed, workers=True)

    datamodule: SectionDataModule = hydra.utils.instantiate(cfg.data)
    model: AnomalyDetector = hydra.utils.instantiate(cfg.model)
    model.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    trainer = build_trainer(cfg, out)
    datamodule.trainer = trainer  # features are computed on the trainer's device
    datamodule.setup("fit")
    model.fit_normalizer(datamodule.train_features)

    resume_from = resume_checkpoint(out / "checkpoints") if cfg.resume else None  # corrupt/dangling: fallback
    if resume_from:
        log.info("resuming from %s", resume_from)
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)  # Ctrl-C or SIGTERM: saved, then exits
    if cfg.select_on_test:
        best = torch.load(out / "checkpoints" / "best.ckpt", map_location=model.device, weights_only=False)
        model.load_state_dict(best["state_dict"])
    model.calibrate_threshold(datamodule.train_eval_batches())
    trainer.test(model, datamodule=datamodule)
    trainer.save_checkpoint(out / "model.ckpt")

    write_scores(out / SCORES_FILE, datamodule.test_clips, model.test_scores, model.threshold.item())
    record = _record(cfg, results=model.test_results)
    if cfg.plots:
        save_plots(out, model, datamodule, trainer)
    write_json_atomic(out / METRICS_FILE, record)
    return record


def save_plots(out: Path, model: AnomalyDetector, datamodule: SectionDataModule, trainer: L.Trainer) -> None:
    """ROC curves, score histograms and input/reconstruction spectrograms as PNG, also sent to W&B."""
    from . import plots

    paths = [
        plots.plot_roc(out / SCORES_FILE, out / "roc.png"),
        plots.plot_score_histogram(out / SCORES_FILE, out / "score_histogram.png"),
    ]
    if hasattr(model, "reconstruct"):
        clips = datamodule.test_clips
        picks = [next(i for i, c in enumerate(clips) if c.label == lab) for lab in ("normal", "anomaly")]
        x, x_rec = model.reconstruct(datamodule.test_features[picks].to(model.device))
        titles = [f"{clips[i].domain} {clips[i].label} {clips[i].path.name}" for i in picks]
        paths.append(plots.plot_spectrograms(x.cpu().numpy(), x_rec.cpu().numpy(), titles, out / "spectrograms.png"))
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger":
            logger.log_image(key="plots", images=[str(p) for p in paths], caption=[p.stem for p in paths])


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point. In a multirun a failed job is recorded and the sweep goes on."""
    out = Path(cfg.paths.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        record = train(cfg)
    except SIGTERMException:  # Lightning's exception for SIGTERM exits 0: say it did not finish
        raise SystemExit(SIGTERM_EXIT_CODE) from None
    except UserError as error:
        if not multirun and os.environ.get("HYDRA_FULL_ERROR") != "1":
            if not discard_unused_run_dir(out):  # refused before any work: leave no run folder behind
                _record_failure(cfg, out, error, traceback=False)
            print(f"asd-train: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        _record_failure(cfg, out, error, traceback=False)
        if multirun:
            return None
        raise
    except Exception as error:
        _record_failure(cfg, out, error, traceback=True)
        if multirun:
            return None
        raise
    finally:
        finish_wandb()
    metric = cfg.get("optimized_metric")
    return _lookup(record, metric) if metric else None


def _record_failure(cfg: DictConfig, out: Path, error: Exception, traceback: bool) -> None:
    """Log the failure and write a failed metrics.json; a failure to record never hides the error itself."""
    if traceback:
        log.exception("run %s failed", out)
    else:
        log.error("run %s failed: %s", out, error)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / METRICS_FILE, _record(cfg, error=f"{type(error).__name__}: {error}"))
    except Exception:  # e.g. a config so broken that even the record cannot be built
        log.exception("could not write the failed metrics.json of %s (the run's error is above)", out)


def _lookup(record: dict, metric: str) -> float | None:
    """``test/source/auc`` -> record["metrics"]["source"]["auc"]; ``test/hmean/auc`` -> record["hmean"]["auc"];
    ``dcase_score`` -> record["dcase_score"]."""
    if "/" not in metric:
        return record.get(metric)
    _, group, name = metric.split("/")
    values = record.get("hmean", {}) if group == "hmean" else record.get("metrics", {}).get(group, {})
    return values.get(name)


if __name__ == "__main__":
    main()
