"""Does the suite still catch what it should? Three deliberate breakages of the package, each applied to a copy of
this checkout, with the suite run on the copy: every one must fail some tests, and the failing tests are printed.

    .venv/bin/python tests/mutations.py                      # all three, the whole suite on each
    .venv/bin/python tests/mutations.py wrong-auc -- tests/evaluation   # one breakage, some tests

The copy lies in a temporary folder, so the tests of the real clips beside the checkout skip there.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MUTATIONS = {
    # AUC without the tie handling: every tied score is its own ROC step (sklearn makes one step of a tie)
    "wrong-auc": (
        "asd_ganomaly/evaluation/metrics.py",
        "last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]",
        "last_of_tie = np.arange(len(scores))",
    ),
    # Ctrl-C or SIGTERM logs "checkpoint saved" but saves nothing
    "lost-checkpoint": (
        "asd_ganomaly/runs/callbacks.py",
        "        trainer.save_checkpoint(self.path, weights_only=False)  # atomic: the trainer's AtomicCheckpointIO\n",
        "",
    ),
    # a resumed run says "resuming from" but trains from the start
    "restarting-resume": (
        "asd_ganomaly/train.py",
        "trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)",
        "trainer.fit(model, datamodule=datamodule, ckpt_path=None)",
    ),
}
"""name -> (file, text, replacement): the text must occur exactly once."""


def checkout_copy(target: Path) -> Path:
    """The checkout's tracked and unignored files copied to ``target``."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def mutate(copy: Path, name: str) -> None:
    """Apply the breakage ``name`` to the copy."""
    path, text, replacement = MUTATIONS[name]
    source = (copy / path).read_text()
    if source.count(text) != 1:
        raise SystemExit(f"{name}: the text to break occurs {source.count(text)} times in {path}, not once")
    (copy / path).write_text(source.replace(text, replacement))


def failing_tests(copy: Path, pytest_args: list[str]) -> tuple[int, list[str], float]:
    """Run the suite in ``copy`` (its package first on the path); exit status, failed test ids, seconds."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", "-n", "auto"]
    command += ["--dist", "loadgroup", *pytest_args]
    started = time.monotonic()
    result = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", result.stdout, re.M)
    return result.returncode, failed, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"breakages to try, of {', '.join(MUTATIONS)} (default: all)")
    parser.epilog = "Arguments after -- go to pytest (default: tests)."
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    unknown = sorted(set(args.names) - set(MUTATIONS))
    if unknown:
        parser.error(f"unknown breakages {unknown}: choose from {', '.join(MUTATIONS)}")
    pytest_args = argv[split + 1 :] or ["tests"]
    missed = 0
    for name in args.names or MUTATIONS:
        with tempfile.TemporaryDirectory(prefix=f"mutation-{name}-") as folder:
            copy = checkout_copy(Path(folder))
            mutate(copy, name)
            status, failed, seconds = failing_tests(copy, pytest_args)
        caught = status != 0 and failed
        missed += not caught
        print(f"{name}: {'caught' if caught else 'MISSED'} by {len(failed)} tests in {seconds:.0f} s", flush=True)
        for test in failed:
            print(f"  {test}", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
