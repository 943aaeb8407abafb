"""What happens around a training run when it fails or is stopped (the idea of lightning-hydra-template's
``task_wrapper``): :func:`task_wrapper` turns ``train(cfg, multirun)`` into the body of the Hydra app.

- a user error (:class:`~asd_ganomaly.core.errors.UserError`) in a single run is one line on stderr and exit 2
  (the traceback with ``HYDRA_FULL_ERROR=1``); refused before any work, it leaves no run folder behind;
- a handled failure (:class:`~asd_ganomaly.core.errors.HandledFailure`: a diverged loss) is one line and exit 1,
  its traceback in train.log only;
- any other failure is a bug: logged with its traceback, a single run re-raises it;
- a failed run gets a metrics.json of status ``failed`` (in a multirun every failed job does, and the sweep
  goes on); a folder of another config (:class:`~asd_ganomaly.runs.identity.RunConfigMismatchError`) is left
  alone;
- the run folder is locked for the run's life (:mod:`~asd_ganomaly.runs.lock`): a second process on it is refused
  at once (one line, exit 2; in a multirun recorded ``skipped: running elsewhere``); the other ranks of a DDP run
  (:mod:`~asd_ganomaly.runs.ranks`) are the same run: rank 0 holds the lock, records and prints;
- SIGTERM (pre-emption, ``scontrol requeue``) exits 143, not Lightning's 0, and Ctrl-C 130, not Lightning's 1: the
  run did not finish;
- every run ends with one console line naming its setting and how it ended (``resumed``, ``skipped``...); in a
  multirun that is all the console gets of it (the full output is in the run's train.log);
- :func:`one_line_user_errors` wraps the Hydra entry point itself: a user error raised inside Hydra (a run folder
  part that ``${plain:}`` refuses, resolved before the task runs) is one line and exit 2 as well; anything else
  is reported as Hydra reports it.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..core.errors import (
    CTRL_C_EXIT_CODE,
    SOME_INPUTS_FAILED,
    USER_ERROR_EXIT,
    HandledFailure,
    UserError,
    error_line,
)
from ..core.files import unwritable_cause
from . import console
from .checks import discard_unused_run_dir
from .files import METRICS_FILE, is_finished, run_record, write_json_atomic
from .identity import RunConfigMismatchError, config_section, run_info, setting_label
from .lock import RunLockedError, run_lock
from .ranks import is_rank_zero
from .resume import SIGTERM_EXIT_CODE
from .tracking import finish_wandb

log = logging.getLogger(__name__)

FULL_ERROR = "HYDRA_FULL_ERROR"
"""Hydra's switch for full tracebacks (and, here, for a user error raised with its traceback)."""
USER_FULL_ERROR = "ASD_GANOMALY_FULL_ERROR"
"""What the user set ``HYDRA_FULL_ERROR`` to, kept by :func:`one_line_user_errors` while it sets Hydra's to 1."""

Task = Callable[[DictConfig, bool], dict[str, float]]
"""``train(cfg, multirun)``: fits and tests one run, returns its test metrics by logged name."""


def task_wrapper(task: Task) -> Callable[[DictConfig], dict[str, float]]:
    """``task`` run as a Hydra job: called with the job's config and whether it is part of a multirun; returns
    its metrics, or ``{}`` for a failed run of a multirun (recorded, and the sweep goes on)."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> dict[str, float]:
        out = Path(cfg.paths.output_dir)
        multirun = HydraConfig.get().mode == RunMode.MULTIRUN
        owner = is_rank_zero()  # another rank of a DDP run: the same run, its files rank 0's
        console.route_library_logs()
        started, metrics = time.monotonic(), {}
        status = "skipped (finished before)" if cfg.skip_finished and is_finished(out) else "completed"
        resumed = status == "completed" and bool(cfg.resume) and any((out / "checkpoints").glob("*.ckpt"))
        with console.quiet_console(multirun or not owner):
            try:
                with run_lock(out) if owner else nullcontext():  # one run per folder; a second one is refused
                    metrics = task(cfg, multirun)
            except SIGTERMException:  # Lightning's exception for SIGTERM exits 0: say the run did not finish
                raise SystemExit(SIGTERM_EXIT_CODE) from None
            except KeyboardInterrupt:  # Ctrl-C: the checkpoint (if training had started) is saved, no traceback
                log.warning("stopped by Ctrl-C: run the same command to resume")
                raise SystemExit(CTRL_C_EXIT_CODE) from None
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
                unrecorded = None
                if multirun or not discard_unused_run_dir(out, keep=_log_dir(cfg)):
                    unrecorded = record_failure(cfg, out, error, traceback=False)
                user_error(error, multirun, unrecorded)
            except HandledFailure as error:  # the message says it all: one line, the traceback in train.log
                status = "failed"
                unrecorded = record_failure(cfg, out, error, traceback=False)
                logging.getLogger(console.TRACEBACK_LOGGER).error("run %s failed", out, exc_info=error)
                if not multirun:
                    print(with_note(f"asd-train: failed: {error}", unrecorded), file=sys.stderr)
                    raise SystemExit(SOME_INPUTS_FAILED) from None
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
            if owner:
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


def user_error(error: UserError, multirun: bool, unrecorded: str | None = None) -> None:
    """After a user error is logged: a sweep goes on; a single run exits 2 with one line (which says so when the
    failure record could not be written: ``unrecorded``), no traceback unless HYDRA_FULL_ERROR=1."""
    if multirun:
        return
    if wants_full_error():
        raise error
    print(with_note(error_line("asd-train", error), unrecorded), file=sys.stderr)
    raise SystemExit(USER_ERROR_EXIT) from None


def with_note(line: str, note: str | None) -> str:
    """``line``, and ``; note`` after it when there is one (the failure record that could not be written)."""
    return f"{line}; {note}" if note else line


def wants_full_error() -> bool:
    """True when the user asked for tracebacks (``HYDRA_FULL_ERROR=1``, as seen before the entry point set it)."""
    return os.environ.get(USER_FULL_ERROR, os.environ.get(FULL_ERROR)) == "1"


def user_error_cause(error: BaseException) -> UserError | None:
    """The first :class:`UserError` in ``error``'s chain of causes (``error`` itself included), as an OmegaConf
    ``InterpolationResolutionError`` wraps the error of a resolver; None when there is none. Causes, and the
    context of an OmegaConf error only (OmegaConf clears the cause unless ``OC_CAUSE=1``): another error raised
    while handling a user error is a bug of its own, never shown as that user error."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or (error.__context__ if isinstance(error, OmegaConfBaseException) else None)
    return None


@contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """``os.environ[name]`` set to ``value`` (None: unset) inside the block, restored after it."""
    before = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _report_as_hydra(error: Exception) -> None:
    """Report ``error`` as Hydra would have (its trimmed traceback and exit 1), with Hydra's own reporter."""
    from hydra._internal.utils import run_and_report

    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_name != "run_job":
        tb = tb.tb_next  # Hydra trims the frames above its run_job; start there as an uncaught error would
    error = error.with_traceback(tb or error.__traceback__)

    def reraise() -> None:
        raise error

    run_and_report(reraise)


def one_line_user_errors(app: Callable[[], object], prog: str = "asd-train") -> Callable[[], object]:
    """The Hydra entry point ``app`` (a ``@hydra.main`` function) with a user error raised inside Hydra itself (a
    resolver's, wrapped in an OmegaConf error) printed as one line and exit 2, like the task's own user errors.
    Hydra re-raises instead of printing while the app runs; every other error is then reported as Hydra
    reports it, and ``HYDRA_FULL_ERROR=1`` still shows every traceback."""

    @functools.wraps(app)
    def entry() -> object:
        full = wants_full_error()
        try:
            with _environment(USER_FULL_ERROR, "1" if full else "0"), _environment(FULL_ERROR, "1"):
                return app()
        except Exception as error:
            cause = user_error_cause(error)
            if full:
                raise
            unwritable = unwritable_cause(error) if cause is None else None
            if unwritable is not None:  # Hydra's mkdir of the run folder, or its train.log, on a read-only disk
                print(
                    f"{prog}: error: cannot write {unwritable.filename}: {unwritable.strerror} "
                    "(choose a writable paths.log_dir, or hydra.run.dir)",
                    file=sys.stderr,
                )
                raise SystemExit(USER_ERROR_EXIT) from None
            if cause is None:
                _report_as_hydra(error)
                raise
            print(error_line(prog, cause), file=sys.stderr)
            raise SystemExit(USER_ERROR_EXIT) from None

    return entry


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


def record_failure(cfg: DictConfig, out: Path, error: Exception, traceback: bool) -> str | None:
    """Log the failure and write a failed metrics.json; a failure to record never hides the error itself: it is
    logged, and returned as a note (``the failure record ... could not be written: ...``), else None."""
    if traceback:
        log.exception("run %s failed", out)
    else:
        log.error("run %s failed: %s", out, error)
    if not is_rank_zero():  # rank 0 records the run's failure
        return None
    try:
        out.mkdir(parents=True, exist_ok=True)
        record = run_record(failure_info(cfg), error=f"{type(error).__name__}: {error}")
        write_json_atomic(out / METRICS_FILE, record)
    except OSError as failure:  # a full or read-only disk: say so beside the run's error
        note = f"the failure record {out / METRICS_FILE} could not be written either ({failure})"
        log.error("%s", note)
        return note
    except Exception:  # a config so broken that even the record cannot be built: a bug of its own
        log.exception("could not write the failed metrics.json of %s (the run's error is above)", out)
        return f"the failure record {out / METRICS_FILE} could not be written either"
    return None
