"""What a run prints: one line per finished run on the console; every run's full log, its test metrics table
included, in its ``train.log``.

Hydra gives the root logger a console handler and a file handler (the run's ``train.log``). Lightning, imported
before Hydra sets logging up, gives itself a console handler of its own: :func:`route_library_logs` sends its
records through Hydra's handlers instead, so they reach ``train.log`` too. In a multirun, :func:`quiet_console`
lets only warnings and the one-line run summaries (:data:`SWEEP_LOGGER`) through to the console.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

SWEEP_LOGGER = "asd_ganomaly.sweep"
TABLE_LOGGER = "asd_ganomaly.test_table"
"""The test metrics table: in train.log, never on the console (that gets the run's one-line summary)."""
TRACEBACK_LOGGER = "asd_ganomaly.traceback"
"""Tracebacks of handled faults (a diverged run): in train.log, never on the console (that gets one line)."""
FILE_ONLY_LOGGERS = (TABLE_LOGGER, TRACEBACK_LOGGER)
LIBRARY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


def route_library_logs() -> None:
    """Let Lightning's log records and Python warnings go through the root logger's handlers (console and
    train.log)."""
    logging.captureWarnings(True)
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        for handler in list(library.handlers):
            if type(handler) is logging.StreamHandler:
                library.removeHandler(handler)
        library.propagate = True


class RunLogFile(logging.FileHandler):
    """The handler of a run's ``train.log`` (``hydra.job_logging.handlers.file``): a record it cannot write (a full
    disk, a read-only folder) is dropped and the run goes on, instead of logging's ``--- Logging error ---`` block
    and traceback on the console for every record; the console still gets each record, and the run's own error
    says what failed."""

    def handleError(self, record: logging.LogRecord) -> None:
        """Drop the record."""


class _SweepConsoleFilter(logging.Filter):
    """Warnings and errors, and the sweep's own one-line summaries."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Python warnings (mostly libraries' deprecations) go to train.log only."""
        if record.name == "py.warnings":
            return False
        return record.levelno >= logging.WARNING or record.name == SWEEP_LOGGER


class _FileOnlyFilter(logging.Filter):
    """Everything but the records of :data:`FILE_ONLY_LOGGERS`."""

    def filter(self, record: logging.LogRecord) -> bool:
        """The test table and handled tracebacks are for train.log."""
        return record.name not in FILE_ONLY_LOGGERS


@contextmanager
def quiet_console(enabled: bool = True) -> Iterator[None]:
    """While a multirun job runs, the root logger's console handlers show warnings and run summaries only;
    afterwards they show everything again (Hydra's sweepers report their results through them)."""
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    filters = [_FileOnlyFilter(), *([_SweepConsoleFilter()] if enabled else [])]
    for handler in handlers:
        for console_filter in filters:
            handler.addFilter(console_filter)
    try:
        yield
    finally:
        for handler in handlers:
            for console_filter in filters:
                handler.removeFilter(console_filter)


def metrics_table(metrics: dict[str, float]) -> str:
    """Every test metric by its whole logged name, one a line, aligned: ``test/source/auc_low   0.7412``."""
    width = max((len(name) for name in metrics), default=0)
    lines = [f"{name:<{width}}  {value:.4f}" for name, value in sorted(metrics.items())]
    return "\n".join(["test metrics:", *lines])


def log_test_table(metrics: dict[str, float]) -> None:
    """The test metrics table into train.log (not the console: :func:`quiet_console`)."""
    if metrics:
        logging.getLogger(TABLE_LOGGER).info(metrics_table(metrics))


def run_summary(job: int | None, name: str, metrics: dict[str, float], seconds: float, status: str) -> str:
    """``#3 ganomaly w_rec-10 fan sec2  source AUC 0.812 pAUC 0.600  target AUC 0.700 pAUC 0.550  score 0.660
    14 s`` (a resumed run: ``14 s resumed``; a single run has no job number); for a run without test labels
    ``... no test labels: 400 clips scored and decided, no AUC  14 s``."""
    parts = [name if job is None else f"#{job} {name}"]
    for domain in ("source", "target"):
        auc, pauc = metrics.get(f"test/{domain}/auc"), metrics.get(f"test/{domain}/pauc")
        if auc is not None and pauc is not None:
            parts.append(f"{domain} AUC {auc:.3f} pAUC {pauc:.3f}")
    if metrics.get("test/dcase_score") is not None:
        parts.append(f"score {metrics['test/dcase_score']:.3f}")
    elif status in ("completed", "resumed") and any(key.startswith("test/decisions/") for key in metrics):
        clips = sum(v for k, v in metrics.items() if k.startswith("test/decisions/") and k.endswith("/clips"))
        parts.append(f"no test labels: {clips:.0f} clips scored and decided, no AUC")
    if status in ("completed", "resumed"):
        parts.append(f"{seconds:.0f} s" + (" resumed" if status == "resumed" else ""))
    else:
        parts.append(status)  # failed, refused, skipped
    return "  ".join(parts)
