"""The package's two command lines, run the way a test needs them: :func:`run_cli` calls ``asd-train`` or
``asd-ganomaly`` inside the test's own interpreter (no new Python, no second import of torch and Lightning: about
15 s of CPU saved per call), :func:`run_process` starts a new interpreter, for the tests whose subject is the
process itself (exit codes seen by a shell, signals, locks between processes, the console scripts, W&B's
process-wide setup). Both return a :class:`subprocess.CompletedProcess` with the exit status and both streams."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

TRAIN = "asd_ganomaly.train"
"""The training app's module (``asd-train``)."""
CLI = "asd_ganomaly.cli"
"""The ``asd-ganomaly`` command's module (synth, report, score, export...)."""

QUIET_ENV = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
"""What every run of a test gets: W&B offline and silent."""


def run_process(args: list[str], cwd: Path, timeout: float = 300, check: bool = True, env: dict | None = None):
    """``python -m <args>`` in a new interpreter, the way a user runs a console entry point."""
    full_env = {**os.environ, **QUIET_ENV, **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    return _checked(result, check)


def run_cli(args: list[str], cwd: Path, timeout: float = 300, check: bool = True, env: dict | None = None):
    """``args`` (:data:`TRAIN` or :data:`CLI`, then its arguments) called in this interpreter, in ``cwd``, with
    ``env`` added to the environment, stdout and stderr captured, the environment, the working folder, ``sys.argv``
    and the root logger restored afterwards. An exception that escapes the entry point is printed on the captured
    stderr with exit status 1, as an interpreter would. ``timeout`` is accepted for :func:`run_process`'s sake."""
    module, *arguments = args
    entries = {TRAIN: _train_main, CLI: _cli_main}
    if module not in entries:
        raise ValueError(f"run_cli runs {sorted(entries)}, not {module}: use run_process")
    stdout, stderr = io.StringIO(), io.StringIO()
    with _isolated(cwd, {**QUIET_ENV, **(env or {})}), redirect_stdout(stdout), redirect_stderr(stderr):
        try:
            code = entries[module](arguments)
        except SystemExit as stop:
            code = _exit_status(stop.code, stderr)
        except BaseException:  # what the interpreter does with an uncaught exception
            traceback.print_exc(file=stderr)
            code = 1
    result = subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())
    return _checked(result, check)


def _train_main(arguments: list[str]) -> int:
    from asd_ganomaly.train import main

    sys.argv = ["asd-train", *arguments]
    main()
    return 0


def _cli_main(arguments: list[str]) -> int:
    from asd_ganomaly.cli import main

    return main(arguments)


def _exit_status(code: object, stderr: io.StringIO) -> int:
    """The status ``sys.exit(code)`` gives a process: None is 0, a message is printed and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=stderr)
    return 1


class _isolated:
    """Inside the block: ``cwd`` as the working folder, ``env`` added to the environment, a root logger without
    handlers (as in a new interpreter); afterwards all three as before, with every handler the block added
    closed (Hydra's file handler holds the run's train.log open)."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.cwd, self.env = Path(cwd), env

    def __enter__(self) -> None:
        root = logging.getLogger()
        self.saved = (dict(os.environ), os.getcwd(), list(sys.argv), list(root.handlers), root.level)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        os.environ.update(self.env)
        os.chdir(self.cwd)

    def __exit__(self, *exc: object) -> None:
        environ, cwd, argv, handlers, level = self.saved
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
            if handler not in handlers:
                handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)
        sys.argv = argv


def _checked(result: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
    if check and result.returncode != 0:
        raise AssertionError(
            f"{result.args} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result
