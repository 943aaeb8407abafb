"""Peak memory (RSS) of ``asd-ganomaly score`` on one file, beside the imports it needs, each in a fresh process.

    python benchmarks/score_memory.py RUN/model.ckpt clip.wav

Prints one line per step: ``python`` alone, ``import torch``, ``import lightning``, the scoring module, and the
whole ``score`` command. The peak of a child process is read with ``resource.getrusage(RUSAGE_CHILDREN)``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

IMPORTS = {
    "python alone": "pass",
    "import torch": "import torch",
    "import lightning": "import lightning",
    "import asd_ganomaly.inference.scoring": "import asd_ganomaly.inference.scoring",
}


def peak_mb(args: list[str]) -> float:
    """The peak RSS in MB of ``python args`` in a fresh process that alone is measured."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe, sys.executable, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"failed: {args}: {out.stderr.strip().splitlines()[-1:]}")
    return int(out.stdout) / 1024  # ru_maxrss is in KB on Linux


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("wav", type=Path)
    args = parser.parse_args()
    for name, code in IMPORTS.items():
        print(f"{peak_mb(['-c', code]):8.0f} MB  {name}")
    with tempfile.TemporaryDirectory() as tmp:
        command = ["-m", "asd_ganomaly.cli", "score", "--ckpt", str(args.ckpt), str(args.wav), "--no-progress"]
        print(f"{peak_mb([*command, '--out', str(Path(tmp) / 's.csv')]):8.0f} MB  score of one file")


if __name__ == "__main__":
    main()
