"""What a sweep prints: one line per finished run on the console; every run's full log in its ``train.log``.

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


class _SweepConsoleFilter(logging.Filter):
    """Warnings and errors, and the sweep's own one-line summaries."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Python warnings (mostly libraries' deprecations) go to train.log only."""
        if record.name == "py.warnings":
            return False
        return record.levelno >= logging.WARNING or record.name == SWEEP_LOGGER


@contextmanager
def quiet_console(enabled: bool = True) -> Iterator[None]:
    """While a multirun job runs, the root logger's console handlers show warnings and run summaries only;
    afterwards they show everything again (Hydra's sweepers report their results through them)."""
    handlers = [
        h
        for h in logging.getLogger().handlers
        if enabled and isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    sweep_filter = _SweepConsoleFilter()
    for handler in handlers:
        handler.addFilter(sweep_filter)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(sweep_filter)


def run_summary(job: int, name: str, metrics: dict[str, float], seconds: float, status: str) -> str:
    """``#3 fan sec2  source AUC 0.812 pAUC 0.600  target AUC 0.700 pAUC 0.550  score 0.66  14 s``; for a run
    without test labels ``... no test labels: 400 clips scored and decided, no AUC  14 s``."""
    parts = [f"#{job} {name}"]
    for domain in ("source", "target"):
        auc, pauc = metrics.get(f"test/{domain}/auc"), metrics.get(f"test/{domain}/pauc")
        if auc is not None and pauc is not None:
            parts.append(f"{domain} AUC {auc:.3f} pAUC {pauc:.3f}")
    if metrics.get("test/dcase_score") is not None:
        parts.append(f"score {metrics['test/dcase_score']:.3f}")
    elif status == "completed" and any(key.startswith("test/decisions/") for key in metrics):
        clips = sum(v for k, v in metrics.items() if k.startswith("test/decisions/") and k.endswith("/clips"))
        parts.append(f"no test labels: {clips:.0f} clips scored and decided, no AUC")
    parts.append(f"{seconds:.0f} s" if status == "completed" else status)  # failed, refused, skipped
    return "  ".join(parts)
