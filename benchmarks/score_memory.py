"""Peak memory (RSS) of ``asd-ganomaly score`` on one file, beside the imports it needs, each in a fresh process.

    python benchmarks/score_memory.py RUN/model.ckpt clip.wav [--onnx model.onnx]

Prints one line per step: ``python`` alone, ``import torch``, ``import lightning``, the scoring modules, and the
whole ``score --ckpt`` command (and ``score --onnx`` of an exported file with ``--onnx``).
The peak of a child process is read with ``resource.getrusage(RUSAGE_CHILDREN)``.
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
    "import asd_ganomaly.inference.checkpoint": "import asd_ganomaly.inference.checkpoint",
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
    parser.add_argument("--onnx", type=Path, help="an exported .onnx file: also measure score --onnx")
    args = parser.parse_args()
    for name, code in IMPORTS.items():
        print(f"{peak_mb(['-c', code]):8.0f} MB  {name}")
    models = {"--ckpt": args.ckpt, **({"--onnx": args.onnx} if args.onnx else {})}
    with tempfile.TemporaryDirectory() as tmp:
        for flag, path in models.items():
            command = ["-m", "asd_ganomaly.cli", "score", flag, str(path), str(args.wav), "--no-progress"]
            print(f"{peak_mb([*command, '--out', str(Path(tmp) / 's.csv')]):8.0f} MB  score {flag} of one file")


if __name__ == "__main__":
    main()
