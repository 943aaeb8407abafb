"""Throughput benchmark of asd-ganomaly: features, training, scoring, memory, projected sweep time.

Run ``make bench`` (or ``python benchmarks/bench.py --quick``). Figures are measured in one run on this
machine; the data are synthetic clips the package generates. Nothing here is asserted: read the numbers.
"""

from __future__ import annotations

import argparse
import logging
import platform
import resource
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
from torch.utils.flop_counter import FlopCounterMode

from asd_ganomaly.data.cache import extract_features
from asd_ganomaly.data.datamodule import TensorBatches
from asd_ganomaly.data.features import FeatureConfig
from asd_ganomaly.data.synth import write_synthetic_dataset
from asd_ganomaly.models.base import build_detector
from asd_ganomaly.train import compose_config

SWEEP_CLIPS, SWEEP_SECTIONS = 1003, 21
EPOCHS = {"ganomaly": 300, "ganomaly_authors": 150, "ganomaly_small": 300, "ae_baseline": 100}
# dense peak TFLOP/s: (bf16 tensor cores, fp32)
PEAKS = {"H100 SXM": (989.0, 67.0), "H100 PCIe": (756.0, 51.0), "H100": (989.0, 67.0), "H200": (989.0, 67.0)}
PEAKS |= {"A100": (312.0, 19.5), "L40S": (362.0, 91.6), "A10": (125.0, 31.2)}


def header(args: argparse.Namespace, device: torch.device) -> None:
    """The command, date, versions and hardware."""
    print(f"command: {' '.join(sys.argv)}")
    now = datetime.now(timezone.utc)
    print(f"date: {now:%Y-%m-%d %H:%M UTC}   torch {torch.__version__}   python {platform.python_version()}")
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "unknown")
    print(f"cpu: {cpu}, {torch.get_num_threads()} torch threads")
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}")
    print("data: synthetic clips written by asd_ganomaly.data.synth (10 s, 16 kHz)\n")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def best_time(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def librosa_mel(files: list[Path]):
    """A function computing librosa's log-mel of ``files`` as the DCASE baseline does, or None without librosa."""
    try:
        import librosa
        import numpy as np
    except ImportError:
        return None

    def with_librosa() -> None:
        for path in files:
            audio, rate = librosa.load(path, sr=None)
            mel = librosa.feature.melspectrogram(y=audio, sr=rate, n_fft=1024, hop_length=512, n_mels=128, power=2.0)
            10 * np.log10(np.maximum(mel, np.finfo(float).eps))

    return with_librosa


def bench_features(files: list[Path], device: torch.device, repeats: int) -> None:
    """Clips/s of librosa (as the DCASE baseline) and of the package's path, cold and cached.

    The contenders run in interleaved rounds and each keeps its best round, so that a slow moment of a shared
    machine does not decide a ratio; a pause after each round keeps one contender's idle threads (OpenBLAS
    spins for a while after work) from taking the next one's cores.
    """
    config = FeatureConfig()
    print(f"== feature extraction ({len(files)} clips of 10 s, best of {repeats} interleaved rounds) ==")

    def package(cache_dir: str | None) -> None:
        extract_features(
            files, config, cache_dir=cache_dir, device=device, batch_size=32, num_workers=2, progress=False
        )

    contenders = {}
    with_librosa = librosa_mel(files)
    if with_librosa:
        contenders["librosa, one file at a time"] = with_librosa
    else:
        print("librosa not installed: pip install librosa (the bench extra)")
    contenders["package, decode threads + batch"] = lambda: package(None)
    with tempfile.TemporaryDirectory() as cache:
        contenders["package, from its feature cache"] = lambda: package(cache)
        for run in contenders.values():
            run()  # warm-up: numba compiles librosa's code, the cache is filled
        best = dict.fromkeys(contenders, float("inf"))
        for _ in range(repeats):
            for name, run in contenders.items():
                best[name] = min(best[name], best_time(run, 1))
                time.sleep(0.5)  # numpy's OpenBLAS threads spin for a while after librosa: let them go idle
    librosa_rate = len(files) / best["librosa, one file at a time"] if with_librosa else None
    for name, seconds in best.items():
        rate = len(files) / seconds
        ratio = f"{rate / librosa_rate:5.1f}x librosa" if librosa_rate else ""
        print(f"{name:32s} {rate:9.1f} clips/s   {ratio}")
    print()


def build_module(model: str, device: torch.device, channels_last: bool) -> L.LightningModule:
    """The LightningModule of a model config, normalisation fitted on random features."""
    cfg = compose_config(f"model={model}", f"model.channels_last={channels_last}")
    module = build_detector(cfg.model)
    module.fit_normalizer(torch.randn(4, 128, 312) * 10 - 40)
    return module.to(device)


def trainer_for(device: torch.device, batches: int, precision: str) -> L.Trainer:
    return L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_epochs=1,
        limit_train_batches=batches,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def bench_model(model: str, device: torch.device, batch: int, steps: int, precision: str, peak: float | None) -> None:
    """Training clips/s, FLOPs per clip and MFU, scoring clips/s, and the projected full sweep time."""
    module = build_module(model, device, channels_last=device.type == "cuda")
    features = (torch.randn(batch * steps, 128, 312) * 10 - 40).to(device)
    data = TensorBatches((features,), batch_size=batch, shuffle=True)
    with FlopCounterMode(display=False) as counter:
        trainer_for(device, 1, precision).fit(module, train_dataloaders=data)
    flops_per_clip = counter.get_total_flops() / batch
    seconds = best_time(lambda: trainer_for(device, steps, precision).fit(module, train_dataloaders=data), 1)
    train_rate = batch * steps / seconds
    module.eval()
    score_batch = features[:batch]

    def score() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
            module.score_logmel(score_batch)

    score()
    score_rate = batch / best_time(score, 3)
    achieved = flops_per_clip * train_rate / 1e12
    mfu = f"{100 * achieved / peak:5.1f}%" if peak else "  n/a"
    hours = SWEEP_CLIPS * EPOCHS[model] * SWEEP_SECTIONS / train_rate / 3600
    print(
        f"{model:17s} batch {batch:3d}  train {train_rate:8.2f} clips/s  {flops_per_clip / 1e9:7.1f} GFLOP/clip-step  "
        f"{achieved:7.2f} TFLOP/s  MFU {mfu}  score {score_rate:8.1f} clips/s  sweep {hours:9.1f} h"
    )


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB GPU"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS"


def device_peak(device: torch.device, precision: str, override: float | None) -> float | None:
    """Dense peak TFLOP/s of the device for the precision (None on CPU unless given)."""
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name()
    for key, (bf16, fp32) in PEAKS.items():
        if key in name:
            return bf16 if precision.startswith("bf16") else fp32
    return None


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer clips and steps (about 2 minutes on 2 cores)")
    parser.add_argument("--clips", type=int, default=None, help="clips for the feature benchmark")
    parser.add_argument(
        "--models", nargs="*", default=["ganomaly_small", "ae_baseline", "ganomaly", "ganomaly_authors"]
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default=None, help="default: bf16-mixed on CUDA, 32-true on CPU")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU")
    args = parser.parse_args()
    for name in ("lightning.pytorch", "lightning.fabric"):  # Lightning's per-trainer banners would bury the figures
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    device = torch.device(args.device)
    precision = args.precision or ("bf16-mixed" if device.type == "cuda" else "32-true")
    header(args, device)
    clips = args.clips or (16 if args.quick else 64)
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_dataset(
            tmp, ["fan"], [0], train_clips=clips, target_train_clips=0, test_clips=1, progress=False
        )
        files = sorted(Path(tmp).glob("fan/train/*.wav"))
        bench_features(files, device, repeats=3 if args.quick else 10)
    print(f"== training and scoring ({precision}; FLOPs counted by torch.utils.flop_counter) ==")
    print(f"sweep = {SWEEP_CLIPS} clips x epochs ({EPOCHS}) x {SWEEP_SECTIONS} sections at the measured rate")
    peak = device_peak(device, precision, args.peak_tflops)
    for model in args.models:
        full = model in ("ganomaly", "ganomaly_authors")
        if device.type == "cuda":
            batch, steps = 64, 10
        else:
            batch, steps = (2, 1) if full else (16, 4 if args.quick else 8)
        bench_model(model, device, batch, steps, precision, peak)
    if device.type == "cpu":
        print(
            "CPU: full-size models measured on batch 2 (one batch-64 step takes minutes here); MFU needs --peak-tflops"
        )
    print(f"\npeak memory: {peak_memory(device)}")


if __name__ == "__main__":
    main()
