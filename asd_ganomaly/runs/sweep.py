"""What a sweep knows as a whole and its jobs do not: the keys it varies, and how its runs ended.

Hydra gives each job of a multirun its own overrides only. :class:`SweepConsole`, a Hydra callback
(``conf/hydra/default.yaml``), reads the keys the sweep varies from the sweep's command line and the sweeper's
``params`` before any job starts, hands them to every job as ``sweep_keys`` (so the jobs' labels name those keys
only, :mod:`~asd_ganomaly.runs.identity`) and, when the sweep ends, prints one tally line: done, skipped, failed,
unfinished and the time taken.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ..core.errors import SOME_INPUTS_FAILED
from .files import METRICS_FILE
from .identity import SWEEP_KEYS, override_key

TALLY_ORDER = ("done", "skipped", "failed", "unfinished")


def swept_keys(task_overrides: Iterable[str], sweeper_params: Mapping | None = None) -> list[str]:
    """The keys that take several values in a sweep: the sweeper's ``params`` (``data.section: 0,1,2``,
    ``interval(1, 100)``) overridden by the command line's (``model.loss.w_rec=10,50``), in that order."""
    params = [f"{key}={value}" for key, value in (sweeper_params or {}).items()]
    last: dict[str, bool] = {}
    for override in OverridesParser.create().parse_overrides([*params, *task_overrides]):
        last[override_key(override.get_key_element())] = override.is_sweep_override()
    return [key for key, swept in last.items() if swept and key != SWEEP_KEYS]


def sweep_keys_override(keys: Iterable[str]) -> str:
    """The override that hands the swept keys to every job: ``sweep_keys=['model.loss.w_rec','data.section']``."""
    return f"{SWEEP_KEYS}=[{','.join(repr(str(k)) for k in keys)}]"


def sweep_tally(sweep_dir: Path, since: float) -> Counter:
    """How the runs below ``sweep_dir`` that started at or after ``since`` (Hydra wrote their ``.hydra/`` then)
    ended: ``done`` (metrics.json completed now), ``skipped`` (completed before), ``failed``, ``unfinished``."""
    tally: Counter = Counter()
    for saved in Path(sweep_dir).rglob(".hydra/overrides.yaml"):
        if saved.stat().st_mtime < since:
            continue
        metrics = saved.parent.parent / METRICS_FILE
        try:
            status = json.loads(metrics.read_text()).get("status")
            fresh = metrics.stat().st_mtime >= since
        except (OSError, ValueError, AttributeError):
            tally["unfinished"] += 1
            continue
        if status == "completed":
            tally["done" if fresh else "skipped"] += 1
        else:
            tally["failed"] += 1
    return tally


def tally_line(tally: Counter, seconds: float) -> str:
    """``sweep: 4 runs: 3 done, 1 skipped, 0 failed in 2 min 5 s``."""
    counts = ", ".join(f"{tally.get(name, 0)} {name}" for name in TALLY_ORDER if name != "unfinished")
    if tally.get("unfinished"):
        counts += f", {tally['unfinished']} unfinished"
    minutes, rest = divmod(round(seconds), 60)
    took = f"{minutes} min {rest} s" if minutes else f"{rest} s"
    return f"sweep: {sum(tally.values())} runs: {counts} in {took}"


def file_system_time(folder: Path) -> float:
    """The time by ``folder``'s file system clock (the modification time of a file written there now): the clock
    of the timestamps :func:`sweep_tally` compares, coarser than ``time.time()`` and, on a network file system,
    the server's."""
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=folder, prefix=".now-")
    try:
        return os.fstat(handle).st_mtime
    finally:
        os.close(handle)
        os.unlink(name)


class SweepConsole(Callback):
    """Hands the swept keys to the jobs at the start of a multirun and prints the tally at its end."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.since: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Append ``sweep_keys=[...]`` to the sweep's overrides (every job is composed from them); note the start
        by the sweep folder's clock, so that the tally counts no run of a sweep that ended just before."""
        self.started = time.time()
        self.since = file_system_time(Path(config.hydra.sweep.dir))
        task = [str(o) for o in config.hydra.overrides.task if override_key(str(o)) != SWEEP_KEYS]
        params = config.hydra.sweeper.get("params")
        params = OmegaConf.to_container(params, resolve=True) if isinstance(params, DictConfig) else {}
        keys = swept_keys(task, params)
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.overrides.task = [*task, sweep_keys_override(keys)]
        print(f"sweep: varies {', '.join(keys) or 'nothing'}; one line per run, each run's log in its train.log")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """One line: how many runs were done, skipped, failed (and left unfinished), and the time taken; a sweep
        with failed runs exits 1 (the others written, each failure in its metrics.json), as the README's table."""
        if self.started is None or self.since is None:
            return
        seconds = time.time() - self.started
        tally = sweep_tally(Path(config.hydra.sweep.dir), self.since)
        print(tally_line(tally, seconds), flush=True)
        if tally["failed"]:
            raise SystemExit(SOME_INPUTS_FAILED)
