"""Loggers and callbacks from config; W&B offline unless the user is logged in, and never fatal."""

from __future__ import annotations

import importlib.util
import logging
import netrc
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import hydra
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from ..core.errors import UserError
from ..core.files import atomic_output
from .identity import flatten_config

log = logging.getLogger(__name__)


def wandb_logged_in() -> bool:
    """True when an API key is in the environment or in ~/.netrc for api.wandb.ai."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_wandb_offline(value: object) -> bool:
    """``offline: auto`` -> offline unless logged in; WANDB_MODE=offline/disabled/online always wins."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return True
    if mode == "online":
        return False
    if value == "auto":
        return not wandb_logged_in()
    return bool(value)


def wandb_run_args(cfg: DictConfig, info: dict) -> dict:
    """Extra ``wandb.init`` arguments of a run: the whole resolved config, flattened (``model.loss.w_rec``...),
    and tags for the model, machine, section (``all_sections`` for a per-machine-type run) and the setting's
    varied keys, ``w_rec=10`` (``info``: :func:`~asd_ganomaly.runs.identity.run_info`)."""
    section = info["section"]
    section_tag = f"section_{section:02d}" if isinstance(section, int) else f"{section}_sections"
    tags = [info["model"], info["machine_type"], section_tag, *info.get("tags", [])]
    config = flatten_config(OmegaConf.to_container(cfg, resolve=True))
    return {"config": config, "tags": [tag[:64] for tag in tags]}


def instantiate_loggers(config: DictConfig | None, wandb_init: dict | None = None) -> list[Logger]:
    """Instantiate every logger node that has a ``_target_``.

    A W&B logger gets ``wandb_init`` as extra ``wandb.init`` arguments (the run's config and tags), is offline
    unless the user is logged in, and is started at once: if it cannot start online (no network, bad key,
    service down) within ``init_timeout`` seconds it falls back to offline, and if even that fails it is left
    out. W&B never fails or hangs a run. Every other logger (TensorBoard, MLflow, CSV) gets the same config as
    its hyperparameters.
    """
    loggers: list[Logger] = []
    for name, node in (config or {}).items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        node = OmegaConf.to_container(node, resolve=True)
        log.info("Instantiating logger %s <%s>", name, node["_target_"])
        check_logger_package(name, node["_target_"])
        if is_wandb_node(node):
            logger = start_wandb({**node, **(wandb_init or {})})
            if logger is not None:
                loggers.append(logger)
        else:
            logger = hydra.utils.instantiate(node)
            if wandb_init and "config" in wandb_init:
                logger.log_hyperparams(wandb_init["config"])
            loggers.append(logger)
    return loggers


LOGGER_PACKAGES = {"TensorBoardLogger": ("tensorboardX", "tensorboard"), "MLFlowLogger": ("mlflow",)}
"""Loggers whose package is in the ``trackers`` extra only: the modules any one of which they need."""


def check_logger_package(name: str, target: str) -> None:
    """A :class:`~asd_ganomaly.core.errors.UserError` naming the package and the pip command when a logger's
    package is not installed, as after a plain ``pip install asd-ganomaly`` (Lightning's own error comes later,
    deep in a traceback)."""
    modules = LOGGER_PACKAGES.get(target.rsplit(".", 1)[-1])
    if modules and not any(importlib.util.find_spec(module) for module in modules):
        install = "pip install 'asd-ganomaly[trackers]'"
        raise UserError(f"logger={name} needs the {modules[0]} package, which is not installed: {install}")


def start_wandb(node: dict) -> WandbLogger | None:
    """Create and start a WandbLogger from its config node, falling back to offline, then to none."""
    import wandb

    node = dict(node)
    logger_class = hydra.utils.get_class(node.pop("_target_"))
    # log_model is ours (log_wandb_results logs the run's model.ckpt): Lightning's own would upload the resume
    # checkpoints instead, and it refuses an offline run
    node.pop("log_model", None)
    timeout = float(node.pop("init_timeout", 60))
    offline = resolve_wandb_offline(node.pop("offline", "auto"))
    Path(node["save_dir"]).mkdir(parents=True, exist_ok=True)
    node.setdefault("id", wandb_run_id(Path(node["save_dir"])))
    node.setdefault("resume", "allow")  # a resumed run (Ctrl-C, pre-emption) continues its W&B run
    for attempt_offline in [offline] if offline else [False, True]:
        try:
            logger = logger_class(
                **node,
                offline=attempt_offline,
                mode="offline" if attempt_offline else "online",
                settings=wandb.Settings(init_timeout=timeout, silent=True),
            )
            # Lightning passes anonymous=None to wandb.init, which wandb >= 0.20 answers with a deprecation
            # warning on the console of every run: leave the argument out, it has no effect
            logger._wandb_init.pop("anonymous", None)
            _ = logger.experiment  # start the run now, not at the first metric
            return logger
        except Exception as error:  # W&B must never fail a training run
            finish_wandb()
            mode = "offline" if attempt_offline else "online"
            log.warning("W&B could not start %s (%s: %s)", mode, type(error).__name__, error)
    log.warning("continuing without W&B: metrics still go to metrics.json and the CSV logger")
    return None


WANDB_ID_FILE = "wandb_run_id.txt"


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of the run folder: read from ``wandb_run_id.txt``, or made and stored there the first time,
    so a resumed run logs to the same W&B run."""
    path = run_dir / WANDB_ID_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:12]
    with atomic_output(path) as tmp:
        tmp.write_text(run_id + "\n")
    return run_id


def is_wandb_node(node: object) -> bool:
    """True for a logger config node that instantiates a WandbLogger."""
    if not isinstance(node, Mapping) or "_target_" not in node:
        return False
    return issubclass(hydra.utils.get_class(node["_target_"]), WandbLogger)


def wandb_log_model(config: DictConfig | None) -> bool:
    """The ``log_model`` of the config's W&B logger node: log the run's ``model.ckpt`` as a model artifact."""
    return any(bool(node.get("log_model", False)) for node in (config or {}).values() if is_wandb_node(node))


SCORES_TABLE = "test/clip_scores"
"""The W&B key of a run's scores table (``scores.csv``, one row per test clip)."""


def log_wandb_results(logger: WandbLogger, model_path: Path, rows: list[dict], metadata: dict, log_model: bool) -> None:
    """Log a run's results to its W&B run: the rows of ``scores.csv`` as the table ``test/clip_scores`` and, with
    ``log_model``, ``model_path`` as the model artifact ``model-<W&B run id>`` (alias ``latest``, ``metadata`` as
    its metadata). Offline, both stay in the offline run until ``wandb sync``. A failure is only a warning."""
    import wandb

    try:
        columns = list(rows[0]) if rows else []
        logger.log_table(key=SCORES_TABLE, columns=columns, data=[list(row.values()) for row in rows])
        if log_model:
            artifact = wandb.Artifact(name=f"model-{logger.experiment.id}", type="model", metadata=metadata)
            artifact.add_file(str(model_path), name=model_path.name)
            logger.experiment.log_artifact(artifact, aliases=["latest"])
    except Exception as error:  # W&B must never fail a training run
        log.warning("W&B could not log the run's scores or model (%s: %s)", type(error).__name__, error)


def instantiate_callbacks(config: DictConfig | None) -> list[Callback]:
    """Instantiate every callback node that has a ``_target_``."""
    callbacks = []
    for name, node in (config or {}).items():
        if isinstance(node, DictConfig) and "_target_" in node:
            log.info("Instantiating callback %s <%s>", name, node["_target_"])
            callbacks.append(hydra.utils.instantiate(node))
    return callbacks


def finish_wandb() -> None:
    """Close the current W&B run, if any, so that the next job of a multirun gets its own."""
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except Exception as error:  # closing must never fail a run either
        log.warning("W&B finish failed: %s", error)
