"""The table of hostile cases (issue 24), regenerated through the CLI: case, exit status, first line of stderr,
and whether anything was lost (a file of the work folder changed or removed, or a run file left behind).

    python benchmarks/faults_table.py            # a markdown table on stdout (about a minute per asd-train case)

The cases are the cheap ones of ``tests/test_faults.py`` (refusals before any work); the tests assert them, this
script only shows them.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

Setup = Callable[[Path], list[str]]
"""Prepares a case in the work folder and returns the command's arguments after ``python -m``."""


@dataclass(frozen=True)
class Case:
    """One hostile case: its name and how to run it."""

    name: str
    setup: Setup


def synthetic_data(work: Path) -> Path:
    """A tiny synthetic dataset (fan, section 0, 2 s clips) under ``work/data``."""
    from asd_ganomaly.data.synth import write_synthetic_dataset

    root = work / "data"
    write_synthetic_dataset(
        root, machine_types=["fan"], sections=[0], train_clips=4, target_train_clips=1, test_clips=2, seconds=2.0,
        progress=False,
    )  # fmt: skip
    return root


def train(work: Path, *overrides: str) -> list[str]:
    """``asd-train`` on the work folder's data, runs under ``work/logs``."""
    paths = [f"data.root={work / 'data'}", f"paths.log_dir={work / 'logs'}", f"paths.cache_dir={work / 'cache'}"]
    return ["asd_ganomaly.train", *paths, "model=ganomaly_small", "trainer=cpu", "logger=csv", *overrides]


def nan_wav(work: Path) -> list[str]:
    """A float training clip with one NaN sample."""
    audio = np.zeros(32000, dtype=np.float32)
    audio[100] = np.nan
    sf.write(work / "data" / "fan" / "train" / "section_00_source_train_normal_9999.wav", audio, 16000, "FLOAT")
    return train(work)


CASES = (
    Case("`seed=abc`", lambda work: train(work, "seed=abc")),
    Case("`data.machine_type=../fan`", lambda work: train(work, "data.machine_type=../fan")),
    Case("a float WAV with a NaN sample", nan_wav),
    Case("missing data root", lambda work: train(work, f"data.root={work / 'nowhere'}")),
    Case("`score --ckpt` of a missing file", lambda work: ["asd_ganomaly.cli", "score", "--ckpt", "no.ckpt", "a.wav"]),
    Case("`score --threshold nan`", lambda work: ["asd_ganomaly.cli", "score", "--ckpt", "x", "a", "--threshold=nan"]),
    Case("`report` of a missing sweep folder", lambda work: ["asd_ganomaly.cli", "report", str(work / "no_sweep")]),
)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` by relative path, with the SHA-1 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def run_case(case: Case, work: Path) -> tuple[int, str, bool]:
    """Exit status, first line of stderr and whether nothing was lost (no file changed or removed, no new file
    but Hydra's logs) of ``case`` run in ``work``."""
    args = case.setup(work)
    before = snapshot(work)
    result = subprocess.run([sys.executable, "-m", *args], cwd=work, capture_output=True, text=True, timeout=600)
    after = snapshot(work)
    first = next((line for line in result.stderr.splitlines() if line.strip()), "")
    changed = any(after.get(path) != digest for path, digest in before.items())
    left = [path for path in after if path not in before and path.startswith("logs")]
    return result.returncode, first, not changed and not left


def table(rows: list[tuple[str, int, str, bool]]) -> str:
    """The markdown table of the cases."""
    lines = ["| case | exit status | first line | nothing lost |", "|---|---|---|---|"]
    for name, status, first, kept in rows:
        shown = first.replace("|", "\\|")
        lines.append(f"| {name} | {status} | `{shown[:160]}` | {'yes' if kept else 'NO'} |")
    return "\n".join(lines)


def main() -> None:
    """Run every case in a fresh work folder of its own and print the table."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic_data(Path(tmp) / "template")
        for number, case in enumerate(CASES):
            work = Path(tmp) / f"case{number}"
            work.mkdir()
            shutil.copytree(data, work / "data")
            rows.append((case.name, *run_case(case, work)))
    print(table(rows))


if __name__ == "__main__":
    main()
