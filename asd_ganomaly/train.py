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

import copy
import functools
import logging
import signal
import sys
import threading
from contextlib import nullcontext
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from .core.files import check_writable_folder
from .models.base import build_detector
from .runs.callbacks import InterruptCheckpoint, RunFiles, ThresholdCalibration
from .runs.checkpoint_io import AtomicCheckpointIO
from .runs.checks import check_data, check_selection, unknown_key_hints, validate_config
from .runs.console import log_test_table
from .runs.files import METRICS_FILE, check_output_dir, check_run_config, is_finished, read_metrics, write_run_config
from .runs.identity import register_resolvers, run_info
from .runs.ranks import is_rank_zero, job_device, job_of_a_sweep
from .runs.resume import resume_checkpoint
from .runs.study import register_study_resolver
from .runs.tracking import instantiate_callbacks, instantiate_loggers, wandb_log_model, wandb_run_args
from .runs.wrapper import one_line_user_errors, task_wrapper
from .runs.wrapper import record_failure as _record_failure  # noqa: F401 (imported from here by tests)

log = logging.getLogger(__name__)
register_resolvers()
register_study_resolver()


def conf_dir() -> str:
    """The configs shipped inside the installed package, else the checkout's top-level ``conf/``."""
    here = Path(__file__).resolve().parent
    shipped = here / "conf"
    return str(shipped if (shipped / "train.yaml").is_file() else here.parent / "conf")


CONF_DIR = conf_dir()


def compose_config(*overrides: str, return_hydra_config: bool = False) -> DictConfig:
    """The training config composed as ``asd-train`` would compose it (for tests, notebooks, benchmarks): a new
    copy each call. Hydra reads and parses every YAML file at each compose (a few tenths of a second), so the
    same overrides are composed once while no file of the config folder changes; overrides that add a search path
    (``hydra.searchpath=...``, folders this check does not watch) are composed anew each time."""
    if any(override.lstrip("+~").startswith("hydra.searchpath") for override in overrides):
        return _compose_now(overrides, return_hydra_config)
    return copy.deepcopy(_compose(overrides, return_hydra_config, conf_fingerprint()))


def conf_fingerprint(folder: str = CONF_DIR) -> tuple[tuple[str, int, int], ...]:
    """Path, size and modification time of every YAML file of the config folder: what a compose reads."""
    files = sorted(Path(folder).rglob("*.yaml"))
    return tuple((str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in files)


@functools.lru_cache(maxsize=128)
def _compose(overrides: tuple[str, ...], return_hydra_config: bool, fingerprint: tuple) -> DictConfig:
    """One compose of :func:`compose_config`, kept for these overrides while ``fingerprint`` is the same."""
    return _compose_now(overrides, return_hydra_config)


def _compose_now(overrides: tuple[str, ...], return_hydra_config: bool) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=return_hydra_config)


def build_trainer(
    cfg: DictConfig, out: Path, info: dict, multirun: bool, trains: bool = True, gpu: int | None = None
) -> L.Trainer:
    """Trainer with the configured loggers and callbacks plus the run's lifecycle callbacks. In a multirun no
    progress bars or model summaries (the console shows one line per run); validation only with select_on_test;
    ``strategy=ddp`` as ``ddp_find_unused_parameters_true`` (what ``trainer=ddp`` sets), one process for a model
    that ``trains`` nothing (k-NN: DDP has no gradient to share), and GPU ``gpu`` alone when given."""
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    if multirun:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    # saves overwrite their names (a resumed run writes no epoch0001-v1.ckpt beside an older file): every save is
    # atomic (AtomicCheckpointIO), so a name holds a whole checkpoint or its previous content
    checkpoints = {"dirpath": out / "checkpoints", "enable_version_counter": False}
    if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        callbacks.append(ModelCheckpoint(**checkpoints, save_last="link", save_top_k=1))
    callbacks.append(InterruptCheckpoint(out / "checkpoints"))
    if cfg.select_on_test:
        callbacks.append(ModelCheckpoint(**checkpoints, filename="best", monitor="val/source/auc", mode="max"))
    run_files = RunFiles(out, info, plots=cfg.plots, log_model=wandb_log_model(cfg.get("logger")))
    callbacks += [ThresholdCalibration(), run_files]
    settings = {"enable_progress_bar": False, "enable_model_summary": False} if multirun else {}
    if gpu is not None:  # a job of the parallel launcher: its own GPU
        settings["devices"] = [gpu]
    strategy = str(cfg.trainer.get("strategy", "auto"))
    if strategy == "ddp":  # GANomaly's two steps each leave part of the net without gradients
        settings["strategy"] = "ddp_find_unused_parameters_true"
    if strategy.startswith("ddp") and not trains:  # nothing to train (k-NN): one process holds every clip anyway
        log.info("the model trains no parameter: one process instead of %s", strategy)
        settings |= {"strategy": "auto", "devices": 1}
    return hydra.utils.instantiate(
        cfg.trainer,
        logger=instantiate_loggers(cfg.get("logger"), wandb_run_args(cfg, info)) or False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        limit_val_batches=1.0 if cfg.select_on_test else 0,
        **settings,
    )


def parallel_job_gpu(cfg: DictConfig) -> int | None:
    """The GPU of this job when the parallel launcher runs several at once (job k on GPU k mod G, see
    :func:`~asd_ganomaly.runs.ranks.job_device`); None for another launcher or on a machine without a GPU."""
    hydra_cfg = HydraConfig.get()
    if "joblib" not in str(OmegaConf.select(hydra_cfg, "launcher._target_", default="")).lower():
        return None
    import torch

    gpus = torch.cuda.device_count()
    gpu = job_device(hydra_cfg.job.num, gpus, cfg.trainer.get("devices", 1), str(cfg.trainer.get("accelerator")))
    if gpu is not None:
        log.info("job %d of the parallel launcher on GPU %d of %d", hydra_cfg.job.num, gpu, gpus)
    return gpu


def fit(trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule, ckpt: Path | None) -> None:
    """``trainer.fit``, a stop by Ctrl-C raised as ``KeyboardInterrupt`` (the wrapper's exit 130): Lightning
    reports it as a SIGTERM (:class:`InterruptCheckpoint` makes Ctrl-C one) or, stopped at once, as exit 1."""
    interrupt = next(c for c in trainer.callbacks if isinstance(c, InterruptCheckpoint))
    handler = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT after a KeyboardInterrupt: restored after
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    except SIGTERMException:
        if interrupt.ctrl_c:
            raise KeyboardInterrupt from None
        raise
    except SystemExit as stop:  # Lightning's answer to a KeyboardInterrupt in a hook: sys.exit(1)
        if stop.code == 1:
            raise KeyboardInterrupt from None
        raise
    finally:
        if threading.current_thread() is threading.main_thread() and handler is not None:
            signal.signal(signal.SIGINT, handler)


@task_wrapper
def train(cfg: DictConfig, multirun: bool) -> dict[str, float]:
    """Fit and test one run (or skip it when finished before); returns its test metrics by logged name."""
    out = Path(cfg.paths.output_dir)
    validate_config(cfg)  # values in range and present, before anything reads them
    info = run_info(cfg)
    check_run_config(out, info["config"])  # a folder of another config is refused before anything is read
    if cfg.skip_finished and is_finished(out):
        log.info("skipping %s: finished before (%s exists)", out, METRICS_FILE)
        return read_metrics(out).get("logged", {})
    _, test_clips = check_data(cfg.data)  # the clips listed and their headers read, before W&B, a run file or an epoch
    check_selection(bool(cfg.select_on_test), test_clips)
    if cfg.data.get("cache_dir"):  # the features go there: checked before any is made
        check_writable_folder(cfg.data.cache_dir, "data.cache_dir (paths.cache_dir)")
    if is_rank_zero():  # the other ranks of a DDP run write nothing
        write_run_config(out, info["config"], info["overrides"])
    check_output_dir(out, cfg.min_free_disk_gb)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = hydra.utils.instantiate(cfg.data, progress=bool(cfg.data.progress) and not multirun)
    model_config = OmegaConf.to_container(cfg.model, resolve=True)
    model = build_detector(model_config)
    model.model_config = model_config
    trains = any(p.requires_grad for p in model.parameters())
    trainer = build_trainer(cfg, out, info, multirun, trains=trains, gpu=parallel_job_gpu(cfg) if multirun else None)

    resume_from = resume_checkpoint(out / "checkpoints") if cfg.resume else None  # corrupt or dangling: fallback
    if resume_from:
        log.info("resuming from %s", resume_from)
    # a job of a sweep: another DDP rank is started as this job alone, never as the sweep
    with job_of_a_sweep(HydraConfig.get().overrides.task) if multirun else nullcontext():
        fit(trainer, model, datamodule, resume_from)  # Ctrl-C or SIGTERM: saved at a batch's end, then exits
        best = next((c for c in trainer.checkpoint_callbacks if c.monitor), None) if cfg.select_on_test else None
        # Lightning's table cuts the names (auc_low and auc_high both read .../source/auc...): a whole-name table
        # goes to train.log instead, the console gets the run's one-line summary
        trainer.test(model, datamodule=datamodule, ckpt_path=best.best_model_path if best else None, verbose=False)
    log_test_table(model.test_metrics)
    # the values logged at test end (in trainer.callback_metrics as float32 tensors), at full precision: the
    # same numbers as metrics.json's "logged", so a sweeper sees what the run folder says
    return model.test_metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def hydra_app(cfg: DictConfig) -> float | None:
    """The Hydra app: one run, its failures handled by :func:`~asd_ganomaly.runs.wrapper.task_wrapper`;
    returns the ``optimized_metric`` for a sweeper."""
    metrics = train(cfg)
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


def main() -> None:
    """``asd-train``: the Hydra app, with a user error raised inside Hydra (a run folder part that is not a plain
    name) as one line and exit 2, like the run's own user errors; where Hydra refuses the command line (exit 1),
    a "did you mean" line for each key that is not in the config (``model.loss.w_recc`` -> ``model.loss.w_rec``)."""
    try:
        one_line_user_errors(hydra_app, prog="asd-train")()
    except SystemExit as stop:
        if stop.code == 1:
            for hint in key_hints(sys.argv[1:]):
                print(f"asd-train: {hint}", file=sys.stderr)
        raise


def key_hints(arguments: list[str]) -> list[str]:
    """The "did you mean" lines of a command line, checked against the config its group choices compose (none
    where even that does not compose)."""
    groups = {p.name for p in Path(CONF_DIR).iterdir() if p.is_dir()}
    overrides = [a for a in arguments if not a.startswith("-")]
    choices = [a for a in overrides if a.split("=", 1)[0] in groups]
    try:
        cfg = compose_config(*choices)
    except Exception:  # the choices themselves are wrong: Hydra's message says so
        return []
    return unknown_key_hints(cfg, overrides)


if __name__ == "__main__":
    main()
