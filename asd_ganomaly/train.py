"""``asd-train``: train and test one detector for one machine type and section (Hydra app).

Examples::

    asd-train data.root=data/dcase2021/dev_data data.machine_type=fan data.section=0
    asd-train data.machine_type=fan model.loss.w_rec=10 trainer.max_epochs=50
    asd-train experiment=dev_all data.root=...        # all 21 combinations (multirun)

Each run folder (``<task>/<model>/<label>-<config hash>/<machine>_sec<section>``, see ``identity.py``) gets
``config.yaml``, ``metrics.json``, ``scores.csv``, ``model.ckpt`` (with the decision threshold), plots, and keeps
``checkpoints/last.ckpt`` to resume from. The lifecycle lives in Lightning: the model fits its normalisation in
``on_fit_start``, :class:`~asd_ganomaly.runs.callbacks.ThresholdCalibration` sets the threshold before testing and
:class:`~asd_ganomaly.runs.callbacks.RunFiles` writes the files at test end.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from .core.errors import UserError
from .data.dcase import section_key
from .runs import console
from .runs.callbacks import InterruptCheckpoint, RunFiles, ThresholdCalibration
from .runs.checks import check_data, discard_unused_run_dir, validate_config
from .runs.files import (
    METRICS_FILE,
    check_output_dir,
    check_run_config,
    is_finished,
    read_metrics,
    run_record,
    write_json_atomic,
    write_run_config,
)
from .runs.identity import (
    RunConfigMismatchError,
    config_hash,
    flatten_config,
    identity_config,
    register_resolvers,
    run_id,
    varied_overrides,
)
from .runs.lock import RunLockedError, run_lock
from .runs.resume import SIGTERM_EXIT_CODE, resume_checkpoint
from .runs.tracking import finish_wandb, instantiate_callbacks, instantiate_loggers

log = logging.getLogger(__name__)
register_resolvers()


def conf_dir() -> str:
    """The configs shipped inside the installed package, else the checkout's top-level ``conf/``."""
    here = Path(__file__).resolve().parent
    shipped = here / "conf"
    return str(shipped if (shipped / "train.yaml").is_file() else here.parent / "conf")


CONF_DIR = conf_dir()


def compose_config(*overrides: str, return_hydra_config: bool = False) -> DictConfig:
    """The training config composed as ``asd-train`` would compose it (for tests, notebooks, benchmarks)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=return_hydra_config)


def _overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def run_info(cfg: DictConfig) -> dict:
    """What identifies a run in metrics.json and W&B: machine, section, model, config, its hash and label."""
    identity = identity_config(cfg)
    overrides = _overrides()
    return {
        "machine_type": cfg.data.machine_type,
        "section": section_key(cfg.data.section),
        "model": cfg.model.name,
        "task": cfg.task_name,
        "run_id": run_id(cfg, overrides),
        "config_hash": config_hash(identity),
        "overrides": overrides,
        "varied": varied_overrides(overrides, cfg.get("identity_ignore") or []),
        "data_root": str(cfg.data.root),
        "selected_on_test": bool(cfg.select_on_test),
        "config": identity,
    }


def _failure_info(cfg: DictConfig) -> dict:
    """As much of :func:`run_info` as a broken config allows: the failure handler must not fail itself."""
    try:
        return run_info(cfg)
    except Exception:  # a missing or unresolvable key: record what can be read

        def read(path: str, default: object) -> object:
            return OmegaConf.select(cfg, path, default=default, throw_on_resolution_failure=False)

        return {
            "machine_type": read("data.machine_type", None),
            "section": read("data.section", -1) or 0,
            "model": read("model.name", None),
        }


def wandb_init(cfg: DictConfig, info: dict) -> dict:
    """Extra ``wandb.init`` arguments: the whole resolved config, flattened (``model.loss.w_rec``...), and tags
    for the model, machine, section (``all_sections`` for a per-machine-type run) and the command line's
    overrides."""
    section = info["section"]
    section_tag = f"section_{section:02d}" if isinstance(section, int) else f"{section}_sections"
    tags = [info["model"], info["machine_type"], section_tag, *info["varied"]]
    config = flatten_config(OmegaConf.to_container(cfg, resolve=True))
    return {"config": config, "tags": [tag[:64] for tag in tags]}


def build_trainer(cfg: DictConfig, out: Path, info: dict, multirun: bool) -> L.Trainer:
    """Trainer with the configured loggers and callbacks plus the run's lifecycle callbacks. In a multirun no
    progress bars or model summaries (the console shows one line per run); validation only with select_on_test."""
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    if multirun:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        callbacks.append(ModelCheckpoint(dirpath=out / "checkpoints", save_last="link", save_top_k=1))
    callbacks.append(InterruptCheckpoint(out / "checkpoints"))
    if cfg.select_on_test:
        callbacks.append(
            ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val/source/auc", mode="max")
        )
    callbacks += [ThresholdCalibration(), RunFiles(out, info, plots=cfg.plots)]
    quiet = {"enable_progress_bar": False, "enable_model_summary": False} if multirun else {}
    return hydra.utils.instantiate(
        cfg.trainer,
        logger=instantiate_loggers(cfg.get("logger"), wandb_init(cfg, info)) or False,
        callbacks=callbacks,
        limit_val_batches=1.0 if cfg.select_on_test else 0,
        **quiet,
    )


def train(cfg: DictConfig, multirun: bool = False) -> dict[str, float]:
    """Fit and test one run (or skip it when finished before); returns its test metrics by logged name."""
    out = Path(cfg.paths.output_dir)
    validate_config(cfg)  # values in range and present, before anything reads them
    info = run_info(cfg)
    check_run_config(out, info["config"])  # a folder of another config is refused before anything is read
    if cfg.skip_finished and is_finished(out):
        log.info("skipping %s: finished before (%s exists)", out, METRICS_FILE)
        return read_metrics(out).get("logged", {})
    check_data(cfg.data)  # the clips listed and their headers read, before W&B, a run file or an epoch
    write_run_config(out, info["config"], info["overrides"])
    check_output_dir(out, cfg.min_free_disk_gb)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = hydra.utils.instantiate(cfg.data, progress=bool(cfg.data.progress) and not multirun)
    model = hydra.utils.instantiate(cfg.model)
    model.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    trainer = build_trainer(cfg, out, info, multirun)

    resume_from = resume_checkpoint(out / "checkpoints") if cfg.resume else None  # corrupt or dangling: fallback
    if resume_from:
        log.info("resuming from %s", resume_from)
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)  # Ctrl-C or SIGTERM: saved, then exits
    best = next((c for c in trainer.checkpoint_callbacks if c.monitor), None) if cfg.select_on_test else None
    trainer.test(model, datamodule=datamodule, ckpt_path=best.best_model_path if best else None, verbose=not multirun)
    # the values logged at test end (in trainer.callback_metrics as float32 tensors), at full precision: the
    # same numbers as metrics.json's "logged", so a sweeper sees what the run folder says
    return model.test_metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point. In a multirun a failed job is recorded and the sweep goes on, and the console gets
    one line per run (the full output is in the run's train.log)."""
    out = Path(cfg.paths.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    console.route_library_logs()
    started, metrics = time.monotonic(), {}
    status = "skipped (finished before)" if cfg.skip_finished and is_finished(out) else "completed"
    with console.quiet_console(multirun):
        try:
            with run_lock(out):  # one process per run folder; a second one is refused at once
                metrics = train(cfg, multirun)
        except SIGTERMException:  # Lightning's exception for SIGTERM exits 0: say the run did not finish
            raise SystemExit(SIGTERM_EXIT_CODE) from None
        except RunConfigMismatchError as error:  # the folder holds another run: leave every file of it alone
            status = "refused"
            log.error("%s", error)
            _user_error(error, multirun)
        except RunLockedError as error:  # the same run is running in another process: its files are its own
            status = "skipped: running elsewhere"
            log.error("%s", error)
            _user_error(error, multirun)
        except UserError as error:
            status = "failed"
            if multirun or not discard_unused_run_dir(out):  # refused before any work: leave no folder behind
                _record_failure(cfg, out, error, traceback=False)
            _user_error(error, multirun)
        except Exception as error:
            status = "failed"
            _record_failure(cfg, out, error, traceback=True)
            if not multirun:
                raise
        finally:
            finish_wandb()
        if multirun:
            name = f"{cfg.model.name} {cfg.data.machine_type} sec{cfg.data.section}"
            seconds = time.monotonic() - started
            logging.getLogger(console.SWEEP_LOGGER).info(
                console.run_summary(HydraConfig.get().job.num, name, metrics, seconds, status)
            )
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


def _user_error(error: UserError, multirun: bool) -> None:
    """After a user error is logged: a sweep goes on; a single run exits 2 with one line, no traceback unless
    HYDRA_FULL_ERROR=1."""
    if multirun:
        return
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    print(f"asd-train: error: {error}", file=sys.stderr)
    raise SystemExit(2) from None


def _record_failure(cfg: DictConfig, out: Path, error: Exception, traceback: bool) -> None:
    """Log the failure and write a failed metrics.json; a failure to record never hides the error itself."""
    if traceback:
        log.exception("run %s failed", out)
    else:
        log.error("run %s failed: %s", out, error)
    try:
        out.mkdir(parents=True, exist_ok=True)
        record = run_record(_failure_info(cfg), error=f"{type(error).__name__}: {error}")
        write_json_atomic(out / METRICS_FILE, record)
    except Exception:  # a config so broken that even the record cannot be built
        log.exception("could not write the failed metrics.json of %s (the run's error is above)", out)


if __name__ == "__main__":
    main()
