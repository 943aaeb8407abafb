"""What happens around a training run when it fails or is stopped (the idea of lightning-hydra-template's
``task_wrapper``): :func:`task_wrapper` turns ``train(cfg, multirun)`` into the body of the Hydra app.

- a user error (:class:`~asd_ganomaly.core.errors.UserError`) in a single run is one line on stderr and exit 2
  (the traceback with ``HYDRA_FULL_ERROR=1``); refused before any work, it leaves no run folder behind;
- any other failure is a bug: logged with its traceback, a single run re-raises it;
- a failed run gets a metrics.json of status ``failed`` (in a multirun every failed job does, and the sweep
  goes on); a folder of another config (:class:`~asd_ganomaly.runs.identity.RunConfigMismatchError`) is left
  alone;
- the run folder is locked for the run's life (:mod:`~asd_ganomaly.runs.lock`): a second process on it is refused
  at once (one line, exit 2; in a multirun recorded ``skipped: running elsewhere``);
- SIGTERM (pre-emption, ``scontrol requeue``) exits 143, not Lightning's 0: the run did not finish;
- every run ends with one console line naming its setting and how it ended (``resumed``, ``skipped``...); in a
  multirun that is all the console gets of it (the full output is in the run's train.log).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from ..core.errors import UserError
from . import console
from .checks import discard_unused_run_dir
from .files import METRICS_FILE, is_finished, run_record, write_json_atomic
from .identity import RunConfigMismatchError, config_section, run_info, setting_label
from .lock import RunLockedError, run_lock
from .resume import SIGTERM_EXIT_CODE
from .tracking import finish_wandb

log = logging.getLogger(__name__)

Task = Callable[[DictConfig, bool], dict[str, float]]
"""``train(cfg, multirun)``: fits and tests one run, returns its test metrics by logged name."""


def task_wrapper(task: Task) -> Callable[[DictConfig], dict[str, float]]:
    """``task`` run as a Hydra job: called with the job's config and whether it is part of a multirun; returns
    its metrics, or ``{}`` for a failed run of a multirun (recorded, and the sweep goes on)."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> dict[str, float]:
        out = Path(cfg.paths.output_dir)
        multirun = HydraConfig.get().mode == RunMode.MULTIRUN
        console.route_library_logs()
        started, metrics = time.monotonic(), {}
        status = "skipped (finished before)" if cfg.skip_finished and is_finished(out) else "completed"
        resumed = status == "completed" and bool(cfg.resume) and any((out / "checkpoints").glob("*.ckpt"))
        with console.quiet_console(multirun):
            try:
                with run_lock(out):  # one process per run folder; a second one is refused at once
                    metrics = task(cfg, multirun)
            except SIGTERMException:  # Lightning's exception for SIGTERM exits 0: say the run did not finish
                raise SystemExit(SIGTERM_EXIT_CODE) from None
            except RunConfigMismatchError as error:  # the folder holds another run: leave every file of it alone
                status = "refused"
                log.error("%s", error)
                user_error(error, multirun)
            except RunLockedError as error:  # the same run is running in another process: its files are its own
                status = "skipped: running elsewhere"
                log.error("%s", error)
                user_error(error, multirun)
            except UserError as error:
                status = "failed"
                # refused before any work: leave no folder behind (nor the setting folder above it)
                if multirun or not discard_unused_run_dir(out, keep=_log_dir(cfg)):
                    record_failure(cfg, out, error, traceback=False)
                user_error(error, multirun)
            except Exception as error:
                status = "failed"
                record_failure(cfg, out, error, traceback=True)
                if not multirun:
                    raise
            finally:
                finish_wandb()
            if status == "completed" and resumed:
                status = "resumed"
            job = HydraConfig.get().job.num if multirun else None
            line = console.run_summary(job, run_name(cfg), metrics, time.monotonic() - started, status)
            logging.getLogger(console.SWEEP_LOGGER).info(line)
        return metrics

    return wrapped


def _log_dir(cfg: DictConfig) -> Path | None:
    """The configured log folder (the top of every run folder), None where it cannot be read."""
    value = OmegaConf.select(cfg, "paths.log_dir", default=None, throw_on_resolution_failure=False)
    return Path(value) if value else None


def run_name(cfg: DictConfig) -> str:
    """``ganomaly_small w_rec-10 fan sec0``: model, setting label, machine and section, as on the console."""
    machine = OmegaConf.select(cfg, "data.machine_type", default="?", throw_on_resolution_failure=False)
    model = OmegaConf.select(cfg, "model.name", default="?", throw_on_resolution_failure=False)
    return f"{model} {setting_label(cfg)} {machine} sec{config_section(cfg, default='?')}"


def user_error(error: UserError, multirun: bool) -> None:
    """After a user error is logged: a sweep goes on; a single run exits 2 with one line, no traceback unless
    HYDRA_FULL_ERROR=1."""
    if multirun:
        return
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    print(f"asd-train: error: {error}", file=sys.stderr)
    raise SystemExit(2) from None


def failure_info(cfg: DictConfig) -> dict:
    """As much of :func:`~asd_ganomaly.runs.identity.run_info` as a broken config allows: the failure handler
    must not fail itself. A section that cannot be read is recorded as -1; ``data.section: null`` as every
    section, as in a completed run."""
    try:
        return run_info(cfg)
    except Exception:  # a missing or unresolvable key: record what can be read

        def read(path: str, default: object) -> object:
            return OmegaConf.select(cfg, path, default=default, throw_on_resolution_failure=False)

        return {
            "machine_type": read("data.machine_type", None),
            "section": config_section(cfg, default=-1),
            "model": read("model.name", None),
        }


def record_failure(cfg: DictConfig, out: Path, error: Exception, traceback: bool) -> None:
    """Log the failure and write a failed metrics.json; a failure to record never hides the error itself."""
    if traceback:
        log.exception("run %s failed", out)
    else:
        log.error("run %s failed: %s", out, error)
    try:
        out.mkdir(parents=True, exist_ok=True)
        record = run_record(failure_info(cfg), error=f"{type(error).__name__}: {error}")
        write_json_atomic(out / METRICS_FILE, record)
    except Exception:  # a config so broken that even the record cannot be built
        log.exception("could not write the failed metrics.json of %s (the run's error is above)", out)
