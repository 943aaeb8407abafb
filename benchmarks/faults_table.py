"""The tables of hostile cases, regenerated through the CLI.

    python benchmarks/faults_table.py                 # issue 24's refusals: case, exit status, first line, lost?
    python benchmarks/faults_table.py --round-three   # issue 41's ten cases (root: tmpfs mounts; ~5 min on 2 cores)
    python benchmarks/faults_table.py --round-three --write-readme   # and put that table into README.md

The first table holds the cheap cases of ``tests/test_faults.py`` (refusals before any work): case, exit status,
first line of stderr, and whether anything was lost (a file of the work folder changed or removed, or a run file
left behind). The second holds the ten cases of issue 41 (Ctrl-C, full disks, a mixed submission, exit statuses,
read-only folders, handled faults): case, exit status, first line of stderr, tracebacks on the console, and how it
ends. The tests (``tests/test_faults.py``, ``tests/test_train.py``, ``tests/results/test_challenge.py``,
``tests/data/test_synth.py``, ``tests/test_exit_statuses.py``) assert each case; this script only shows them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


def first_tables(tmp: Path) -> str:
    """Issue 24's table: every case in a fresh work folder of its own."""
    rows = []
    data = synthetic_data(tmp / "template")
    for number, case in enumerate(CASES):
        work = tmp / f"case{number}"
        work.mkdir()
        shutil.copytree(data, work / "data")
        rows.append((case.name, *run_case(case, work)))
    return table(rows)


# issue 41's cases ---------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
PROBES = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")]))}
SMALL = ["trainer.max_epochs=3", "data.batch_size=8", "data.features.seconds=2.0", "data.features.frames=56"]
README_START = "<!-- faults table (benchmarks/faults_table.py --round-three --write-readme) -->"
README_END = "<!-- end of the faults table -->"


@dataclass
class Outcome:
    """What one case printed and how it ended."""

    status: int
    stdout: str
    stderr: str
    tracebacks: int
    ending: str


def cli(work: Path, *args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m <args>`` in ``work``, in a new interpreter, as a user's shell runs it."""
    command = [sys.executable, "-m", *map(str, args)]
    environment = {**os.environ, "WANDB_MODE": "offline", **(env or {})}
    return subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=900, env=environment)


def outcome(result: subprocess.CompletedProcess, ending: str) -> Outcome:
    tracebacks = (result.stdout + result.stderr).count("Traceback")
    return Outcome(result.returncode, result.stdout, result.stderr, tracebacks, ending)


def small_train(work: Path, log_dir: Path | None = None, *overrides: str) -> list[str]:
    """``asd-train`` on the work folder's data with 96 training clips of 2 s, 3 epochs of 12 batches."""
    paths = [
        f"data.root={work / 'data'}",
        f"paths.log_dir={log_dir or work / 'logs'}",
        f"paths.cache_dir={work / 'cache'}",
    ]
    return [
        "asd_ganomaly.train",
        *paths,
        "model=ganomaly_small",
        "trainer=cpu",
        "logger=csv",
        "plots=false",
        *SMALL,
        *overrides,
    ]


def run_folder(log_dir: Path) -> Path:
    return next(p.parent for p in log_dir.rglob("config.yaml") if p.parent.name != ".hydra")


def last_numbers(run: Path) -> dict[str, float]:
    return json.loads((run / "metrics.json").read_text()).get("logged", {})


@contextmanager
def tmpfs(folder: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A real small file system at ``folder`` (needs root)."""
    folder.mkdir(parents=True)
    options = f"{'ro,' if read_only else ''}size={size}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def probe(name: str, node: str, **arguments: object) -> list[str]:
    key = f"+callbacks.{node}"
    return [f"{key}._target_=training_probes.{name}", *(f"{key}.{k}={v}" for k, v in arguments.items())]


def final_step(run: Path) -> int:
    import torch

    return torch.load(run / "model.ckpt", map_location="cpu", weights_only=True)["global_step"]


def ctrl_c_resume(work: Path) -> Outcome:
    """Ctrl-C after batch 5 of epoch 1, the same command again, against an uninterrupted run."""
    stop = probe("SignalAtBatch", "interrupt", signal="SIGINT", epoch=1, batch=5)
    stopped = cli(work, *small_train(work), *stop, env=PROBES)
    cli(work, *small_train(work))
    cli(work, *small_train(work, work / "reference"))
    ours, theirs = run_folder(work / "logs"), run_folder(work / "reference")
    a, b = last_numbers(ours), last_numbers(theirs)
    differ = max(abs(a[k] - b[k]) for k in b) if a.keys() == b.keys() else float("inf")
    steps = f"global step {final_step(ours)} (uninterrupted: {final_step(theirs)})"
    return outcome(stopped, f"resumed to {steps}, every test metric within {differ:.1g} of the uninterrupted run")


def full_disk(work: Path, epoch: int) -> Outcome:
    """The run folder on a 16 MiB tmpfs filled up when epoch ``epoch`` starts (-1: at testing), then freed."""
    with tmpfs(work / "disk", "16m") as disk:
        args = [*small_train(work, disk / "logs"), "min_free_disk_gb=0", "trainer.max_epochs=2"]
        fill = probe("FillDisk", "fill_disk", ballast=disk / "ballast", epoch=epoch)
        failed = cli(work, *args, *fill, env=PROBES)
        run = run_folder(disk / "logs")
        status = json.loads((run / "metrics.json").read_text())["status"]
        (disk / "ballast").unlink()
        cli(work, *args)
        names = sorted(p.name for p in (run / "checkpoints").iterdir())
        last = os.readlink(run / "checkpoints" / "last.ckpt")
        done = json.loads((run / "metrics.json").read_text())["status"]
    return outcome(failed, f"recorded {status}; freed and rerun: {done}, checkpoints {names}, last.ckpt -> {last}")


def mixed_submission(work: Path) -> Outcome:
    """A fan-only sweep submitted over a fan + valve submission."""
    sweep = work / "logs" / "train"
    for machine in ("fan", "valve"):
        cli(work, *small_train(work), "trainer.max_epochs=1", f"data.machine_type={machine}")
    out = work / "submission"
    cli(work, "asd_ganomaly.cli", "submit", sweep, "--out", out)
    fan_only = work / "fan_only"
    shutil.copytree(sweep, fan_only, ignore=lambda folder, names: [n for n in names if n == "valve_sec0"])
    refused = cli(work, "asd_ganomaly.cli", "submit", fan_only, "--out", out)
    forced = cli(work, "asd_ganomaly.cli", "submit", fan_only, "--out", out, "--force")
    left = sorted(p.name for p in out.iterdir() if "valve" in p.name)
    return outcome(refused, f"--force: exit {forced.returncode}, valve files left: {len(left)}")


def score_all_failed(work: Path) -> Outcome:
    cli(work, *small_train(work), "trainer.max_epochs=1")
    bad = work / "bad"
    bad.mkdir()
    for number in range(3):
        (bad / f"clip{number}.wav").write_bytes(b"not audio")
    result = cli(work, "asd_ganomaly.cli", "score", "--ckpt", run_folder(work / "logs") / "model.ckpt", bad,
                 "--out", work / "scores.csv", "--no-progress")  # fmt: skip
    return outcome(result, result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "")


def score_empty_folder(work: Path) -> Outcome:
    (work / "empty").mkdir()
    (work / "model.ckpt").write_bytes(b"never read")
    result = cli(
        work, "asd_ganomaly.cli", "score", "--ckpt", work / "model.ckpt", work / "empty", "--out", work / "s.csv"
    )
    return outcome(result, "refused before the checkpoint is read")


def read_only(work: Path, key: str) -> Outcome:
    with tmpfs(work / "ro", "64k", read_only=True) as folder:
        result = cli(work, *small_train(work), f"{key}={folder / 'x'}")
    trained = list((work / "logs").rglob("*.ckpt")) if (work / "logs").exists() else []
    return outcome(result, f"nothing trained ({len(trained)} checkpoints)")


def diverged(work: Path) -> Outcome:
    result = cli(work, *small_train(work), "model.optimizer_g.lr=1e9", "model.optimizer_d.lr=1e9")
    status = json.loads((run_folder(work / "logs") / "metrics.json").read_text())["status"]
    return outcome(result, f"metrics.json: {status}; the traceback in train.log")


def skipped_clip(work: Path) -> Outcome:
    (work / "data" / "fan" / "train" / "section_00_source_train_normal_9999.wav").write_bytes(b"not audio")
    result = cli(work, *small_train(work), "trainer.max_epochs=1", "data.on_bad_file=skip")
    warned = re.search(r"\d+ of \d+ clips will be skipped", result.stdout + result.stderr)
    return outcome(result, f"completed; logged: {warned.group(0) if warned else '?'}")


def synth_ctrl_c(work: Path) -> Outcome:
    root = work / "interrupted"
    command = [sys.executable, "-m", "asd_ganomaly.cli", "synth", str(root), "--machines", "fan", "--sections", "0"]
    process = subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not list(root.rglob("*.wav")) and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    marker = (root / "SYNTHETIC.txt").read_text().split(":")[0]
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    return outcome(result, f"SYNTHETIC.txt says {marker}; training refuses the set until a rerun completes it")


ROUND_THREE: tuple[tuple[str, Callable[[Path], Outcome]], ...] = (
    ("1. Ctrl-C mid-epoch, then the same command", ctrl_c_resume),
    ("2. full disk at an epoch checkpoint", lambda work: full_disk(work, 1)),
    ("3. full disk at the final `model.ckpt`", lambda work: full_disk(work, -1)),
    ("4. `submit` into a folder of another submission", mixed_submission),
    ("5a. `score` where every file fails", score_all_failed),
    ("5b. `score` of an empty folder", score_empty_folder),
    ("6a. read-only `paths.log_dir`", lambda work: read_only(work, "paths.log_dir")),
    ("6b. read-only `paths.cache_dir`", lambda work: read_only(work, "paths.cache_dir")),
    ("7a. a diverged run (lr 1e9)", diverged),
    ("7b. `data.on_bad_file=skip` with an unreadable clip", skipped_clip),
    ("7c. Ctrl-C during `asd-ganomaly synth`", synth_ctrl_c),
)


def round_three_data(root: Path) -> Path:
    """Fan, section 0: 96 + 3 training clips, 10 test clips per label and domain, 2 s (the tests' set)."""
    from asd_ganomaly.data.synth import write_synthetic_dataset

    return write_synthetic_dataset(
        root, ["fan", "valve"], [0], train_clips=96, target_train_clips=3, test_clips=10, seconds=2.0, severity=8.0,
        progress=False,
    )  # fmt: skip


def message(result: Outcome) -> str:
    """What the command says of the case: its own ``asd-...`` line on stderr, else the package's last warning (on
    stdout, as Hydra logs), else the first stderr line that is no progress bar or INFO log."""
    said = [line for line in result.stderr.splitlines() if line.strip() and "%|" not in line]
    own = [line for line in said if line.startswith("asd-")]
    warned = [
        line.split("] - ", 1)[1]
        for line in result.stdout.splitlines()
        if "[asd_ganomaly" in line and "[WARNING] - " in line
    ]
    warned += [line for line in said if line.startswith("WARNING ")]
    others = [line for line in said if not line.startswith(("INFO ", "WARNING "))]
    return (own or [f"(warning) {w}" for w in warned[-1:]] or others or [""])[0]


def shorter(text: str) -> str:
    """``text`` without machine paths: a run folder as ``<run>/``, the work folder left out."""
    text = re.sub(r"\S*/fan_sec0/", "<run>/", text)
    return re.sub(r"/\S*/round3_\d+/", "", text)


def round_three_table(tmp: Path) -> str:
    """Issue 41's table: each case in a work folder of its own, on a copy of one small synthetic set."""
    data = round_three_data(tmp / "template")
    lines = [
        "| case | exit status | what it says | tracebacks on the console | how it ends |",
        "|---|---|---|---|---|",
    ]
    for number, (name, run) in enumerate(ROUND_THREE):
        work = tmp / f"round3_{number}"
        work.mkdir()
        shutil.copytree(data, work / "data")
        started = time.monotonic()
        result = run(work)
        shown = shorter(message(result)).replace("|", "\\|")
        ending = shorter(result.ending).replace("|", "\\|")
        lines.append(f"| {name} | {result.status} | `{shown[:160]}` | {result.tracebacks} | {ending} |")
        print(f"{name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return "\n".join(lines)


def write_readme(table_text: str, readme: Path = REPO / "README.md") -> None:
    """Replace the table between the README's faults-table markers."""
    text = readme.read_text()
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    readme.write_text(text[:start] + "\n" + table_text + "\n" + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round-three", action="store_true", help="issue 41's ten cases instead of issue 24's")
    parser.add_argument("--write-readme", action="store_true", help="with --round-three: put the table in README.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text = round_three_table(Path(tmp)) if args.round_three else first_tables(Path(tmp))
    print(text)
    if args.write_readme and args.round_three:
        write_readme(text)


if __name__ == "__main__":
    main()
