"""Faults lose nothing: interruption, bad input, GAN collapse, disk checks, W&B failures, determinism."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import CSV_ONLY, find_run, run_cli, train_args
from hydra.utils import instantiate

from asd_ganomaly.data.audio import AudioError, read_wav
from asd_ganomaly.data.datamodule import TensorBatches
from asd_ganomaly.data.dcase import ClipInfo, DatasetError, parse_clip_name
from asd_ganomaly.models.lit_ganomaly import TrainingDivergedError
from asd_ganomaly.runs import check_output_dir
from asd_ganomaly.train import compose_config


def run_dir(log_dir, machine="fan"):
    return find_run(log_dir, machine)


def test_fuzzed_wav_bytes_give_a_clear_error_or_audio(tmp_path):
    rng = np.random.default_rng(0)
    import soundfile as sf

    sf.write(tmp_path / "ok.wav", np.zeros(1600), 16000, subtype="PCM_16")
    valid = (tmp_path / "ok.wav").read_bytes()
    for trial in range(150):
        if trial % 3 == 0:
            data = rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
        else:  # a valid header with random corruption, the harder case
            data = bytearray(valid[: int(rng.integers(8, len(valid)))])
            for _ in range(int(rng.integers(1, 20))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
            data = bytes(data)
        path = tmp_path / f"fuzz{trial}.wav"
        path.write_bytes(data)
        try:
            audio = read_wav(path, seconds=0.1)
        except AudioError as error:
            assert path.name in str(error)
        else:
            assert audio.shape == (1600,) and np.isfinite(audio).all()


def test_fuzzed_file_names_parse_or_raise_dataset_error():
    rng = np.random.default_rng(1)
    alphabet = list("section_0123456789sourcetargettrainestnormalanomalyid_.wav-")
    for _ in range(2000):
        name = "".join(rng.choice(alphabet, int(rng.integers(0, 60))))
        try:
            info = parse_clip_name(f"fan/train/{name}")
        except DatasetError:
            continue
        assert isinstance(info, ClipInfo) and info.path.name == name
        # every field the parser returns is spelled out in the name it came from
        if name.startswith("section_"):  # DCASE 2021
            assert name.startswith(f"section_{info.section:02d}_{info.domain}_{info.split}_")
        else:  # DCASE 2020: source domain only
            assert info.domain == "source" and f"id_{info.section:02d}_" in name
        assert info.label == "unknown" or info.label in name


def small_module(*overrides):
    cfg = compose_config("model=ganomaly_small", "data.features.frames=64", *overrides)
    module = instantiate(cfg.model)
    module.fit_normalizer(torch.randn(8, 128, 64))
    return module


def fit_steps(module, steps=2):
    import lightning as L

    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, max_steps=2 * steps, enable_progress_bar=False
    )
    trainer.fit(module, train_dataloaders=TensorBatches((torch.randn(8, 128, 64),), batch_size=4))


def test_collapse_stops_the_run_when_configured():
    module = small_module("model.on_collapse=stop", "model.collapse_threshold=1e9", "model.collapse_patience=2")
    with pytest.raises(TrainingDivergedError, match="GAN collapse: discriminator loss below"):
        fit_steps(module)


def test_collapse_reinitialises_the_discriminator(caplog):
    module = small_module("model.on_collapse=reinit", "model.collapse_threshold=1e9", "model.collapse_patience=1")
    calls = []
    original = module.net.discriminator.apply
    module.net.discriminator.apply = lambda fn: calls.append(fn) or original(fn)
    fit_steps(module, steps=2)
    assert len(calls) == 2 and "re-initialising the discriminator" in caplog.text


def test_unwritable_or_full_output_is_refused_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        check_output_dir(blocker / "run", 0.0)
    with pytest.raises(OSError, match="GB free"):
        check_output_dir(tmp_path / "run", min_free_gb=1e12)


@pytest.mark.slow
def test_full_disk_fails_the_run_at_once(synthetic_root, tmp_path):
    log_dir = tmp_path / "logs"
    start = time.monotonic()
    result = run_cli(train_args(synthetic_root, tmp_path, "min_free_disk_gb=1e12", "logger=csv"), tmp_path, check=False)
    assert result.returncode != 0 and time.monotonic() - start < 60
    metrics = json.loads((run_dir(log_dir) / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "GB free" in metrics["error"]
    assert not (run_dir(log_dir) / "checkpoints").exists()


@pytest.mark.slow
def test_wandb_unreachable_with_a_bad_key_never_fails_the_run(synthetic_root, tmp_path):
    log_dir = tmp_path / "logs"
    env = {"WANDB_MODE": "", "WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}
    args = train_args(synthetic_root, tmp_path, "trainer.max_epochs=1", "plots=false", "logger.wandb.init_timeout=5")
    result = run_cli(args, tmp_path, env=env, timeout=240)
    assert "W&B could not start online" in result.stdout + result.stderr
    metrics = json.loads((run_dir(log_dir) / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert list((run_dir(log_dir) / "wandb").glob("offline-run-*")), "fell back to an offline run"
    assert (run_dir(log_dir) / "csv" / "metrics.csv").exists()


@pytest.mark.slow
def test_two_runs_with_the_same_seed_give_identical_scores(synthetic_root, tmp_path):
    scores = []
    for name in ("a", "b"):
        log_dir = tmp_path / name / "logs"
        run_cli(train_args(synthetic_root, tmp_path / name, "trainer.max_epochs=2", *CSV_ONLY), tmp_path)
        with open(run_dir(log_dir) / "scores.csv") as handle:
            scores.append([row["score"] for row in csv.DictReader(handle)])
    assert scores[0] == scores[1]


def _weights(run):
    return torch.load(run / "model.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_sigterm_mid_epoch_exits_143_and_the_resumed_run_equals_an_uninterrupted_one(synthetic_root, tmp_path):
    work = tmp_path / "interrupted"
    log_dir = work / "logs"
    # 12 epochs of 49 batches: SIGTERM, sent half a second into the second epoch, lands mid-epoch
    args = train_args(synthetic_root, work, "trainer.max_epochs=12", *CSV_ONLY, "data.batch_size=2")
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    log_file = (tmp_path / "run.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", *args], cwd=tmp_path, env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 240
        while not list(log_dir.rglob("last.ckpt")) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert list(log_dir.rglob("last.ckpt")), "no epoch finished in time"
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=120)
    finally:
        process.kill()
        log_file.close()
    output = (tmp_path / "run.log").read_text()
    last = run_dir(log_dir) / "checkpoints" / "last.ckpt"
    assert returncode == 143, "an interrupted run must not look finished to a shell or a scheduler"
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert "interrupted at epoch" in output and checkpoint["global_step"] > 0
    assert not (run_dir(log_dir) / "metrics.json").exists()
    interrupted_epoch = checkpoint["epoch"]
    done_in_epoch = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
    assert 0 < interrupted_epoch < 12 and 0 < done_in_epoch < 49, "interrupted mid-epoch"
    # the same command resumes, finishes, and records the metrics
    resumed = run_cli(args, tmp_path)
    assert "resuming from" in resumed.stdout + resumed.stderr
    assert "not resumable" not in resumed.stdout + resumed.stderr
    metrics = json.loads((run_dir(log_dir) / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    # an uninterrupted run of as many epochs ends with the same weights
    reference = tmp_path / "reference"
    run_cli([a.replace(str(work), str(reference)) for a in args], tmp_path)
    ours, theirs = _weights(run_dir(log_dir)), _weights(run_dir(reference / "logs"))
    assert ours.keys() == theirs.keys()
    assert max((ours[k].double() - theirs[k].double()).abs().max().item() for k in ours) <= 1e-6
