"""Checks before any work: config ranges, the data listed and checked, checkpoint choice for a resume."""

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir

from asd_ganomaly.checks import ConfigError, check_data, discard_unused_run_dir, validate_config
from asd_ganomaly.data.audio import AudioError
from asd_ganomaly.data.datamodule import TensorBatches
from asd_ganomaly.data.dcase import DatasetError, list_clips
from asd_ganomaly.errors import UserError
from asd_ganomaly.resume import resume_checkpoint
from asd_ganomaly.train import CONF_DIR


def config(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=["data.root=somewhere", *overrides], return_hydra_config=False)


def test_the_shipped_configs_pass():
    for model in ("ganomaly", "ganomaly_small", "ganomaly_authors", "ae_baseline"):
        validate_config(config(f"model={model}"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.batch_size=0"], "data.batch_size must be an integer >= 1, not 0"),
        (["data.batch_size=-4"], "data.batch_size must be an integer >= 1, not -4"),
        (["data.eval_batch_size=0"], "data.eval_batch_size must be an integer >= 1"),
        (["trainer.max_epochs=0"], "trainer.max_epochs must be an integer >= 1, not 0"),
        (["trainer.max_epochs=-1"], "-1 would train forever"),
        (["model.loss.w_adv=-0.5"], "model.loss.w_adv must be a number >= 0, not -0.5"),
        (["model.loss.w_rec=0", "model.loss.w_ano=0", "model.loss.w_adv=0"], "are all zero"),
        (["model.optimizer_g.lr=0"], "model.optimizer_g.lr must be a number > 0, not 0"),
        (["model=ae_baseline", "model.optimizer.lr=-1e-3"], "model.optimizer.lr must be a number > 0"),
        (["data.features.seconds=0"], "data.features.seconds must be a number > 0"),
        (["data.features.n_mels=0"], "data.features.n_mels must be an integer >= 1"),
        (["data.on_bad_file=ignore"], "data.on_bad_file must be 'error' or 'skip'"),
        (["data.section=-1"], "data.section must be an integer >= 0"),
        (["model.threshold_quantile=1.5"], "model.threshold_quantile must be between 0 and 1"),
        (["~data.root"], "data.root is not set"),
        (["data.root=null"], "data.root is not set"),
    ],
)
def test_out_of_range_values_are_one_config_error(overrides, message):
    with pytest.raises(ConfigError, match="invalid configuration: .*" + message.replace("(", r"\(")) as caught:
        validate_config(config(*overrides))
    assert isinstance(caught.value, UserError) and "\n" not in str(caught.value)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as caught:
        validate_config(config("data.batch_size=0", "trainer.max_epochs=0", "model.loss.w_rec=-1"))
    assert str(caught.value).count(";") == 2


def wav(path: Path, seconds: float = 0.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(int(16000 * seconds), 0.1), 16000, subtype="PCM_16")
    return path


def section(root: Path, anomalies: bool = True) -> Path:
    machine = root / "fan"
    for i in range(3):
        wav(machine / "train" / f"section_00_source_train_normal_{i:04d}.wav")
    wav(machine / "source_test" / "section_00_source_test_normal_0000.wav")
    if anomalies:
        wav(machine / "source_test" / "section_00_source_test_anomaly_0000.WAV")
    return machine


def data_cfg(root: Path, **extra) -> dict:
    return {"root": str(root), "machine_type": "fan", "section": 0, "on_bad_file": "error", **extra}


def test_upper_case_wav_is_a_clip_and_foreign_files_are_counted(tmp_path, caplog):
    machine = section(tmp_path)
    wav(machine / "train" / "recording 1.wav")
    wav(machine / "train" / "b.WAV")
    (machine / "train" / "notes.txt").write_text("x")
    (machine / "train" / ".DS_Store").write_text("x")
    with caplog.at_level(logging.WARNING):
        train, test = check_data(data_cfg(tmp_path))
    assert len(train) == 3 and [c.label for c in test] == ["anomaly", "normal"]
    assert (
        "3 files ignored in" in caplog.text and "not DCASE clip names: b.WAV, notes.txt, recording 1.wav" in caplog.text
    )


def test_a_test_domain_without_anomalies_is_found_before_training(tmp_path):
    section(tmp_path, anomalies=False)
    with pytest.raises(DatasetError, match=r"source test clips .* have labels \['normal'\]"):
        check_data(data_cfg(tmp_path))


def test_a_bad_test_file_is_found_before_training_or_skipped(tmp_path, caplog):
    machine = section(tmp_path)
    wav(machine / "source_test" / "section_00_source_test_normal_0001.wav")
    bad = machine / "source_test" / "section_00_source_test_normal_0001.wav"
    bad.write_bytes(bad.read_bytes()[:1000])  # cut short
    with pytest.raises(AudioError, match="1 of 3 clips cannot be used .*0001.wav is truncated"):
        check_data(data_cfg(tmp_path))
    _, test = check_data(data_cfg(tmp_path, on_bad_file="skip"))
    assert len(test) == 2 and "1 of 3 clips will be skipped" in caplog.text


def test_a_missing_or_empty_root_says_how_to_get_data(tmp_path):
    for root in (tmp_path / "absent", tmp_path):
        with pytest.raises(DatasetError, match="asd-ganomaly download dev .*asd-ganomaly synth"):
            list_clips(root, "fan", 0, "train")


def test_only_a_folder_hydra_alone_wrote_is_discarded(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (run / ".hydra" / name).write_text("x")
    (run / "train.log").write_text("log")
    kept = tmp_path / "kept"
    shutil.copytree(run, kept)
    (kept / "checkpoints").mkdir()
    assert discard_unused_run_dir(run) and not run.exists()
    assert not discard_unused_run_dir(kept) and (kept / "checkpoints").is_dir()


def save(path: Path, value: float) -> Path:
    torch.save({"w": torch.full((64,), value), "epoch": value}, path)
    return path


def test_resume_prefers_a_complete_last_checkpoint(tmp_path):
    save(tmp_path / "epoch0001.ckpt", 1)
    os.symlink("epoch0001.ckpt", tmp_path / "last.ckpt")
    assert resume_checkpoint(tmp_path) == tmp_path / "last.ckpt"
    assert resume_checkpoint(tmp_path / "absent") is None


def test_a_truncated_last_checkpoint_falls_back_to_the_newest_complete_one(tmp_path, caplog):
    save(tmp_path / "epoch0001.ckpt", 1)
    newest = save(tmp_path / "epoch0002.ckpt", 2)
    os.utime(newest, ns=(2 * 10**18, 2 * 10**18))
    last = save(tmp_path / "last.ckpt", 3)
    last.write_bytes(last.read_bytes()[:300])
    assert resume_checkpoint(tmp_path) == newest
    assert (tmp_path / "last.ckpt.corrupt").exists() and not (tmp_path / "last.ckpt").exists()
    assert "not a complete checkpoint" in caplog.text
    assert torch.load(resume_checkpoint(tmp_path), weights_only=True)["epoch"] == 2


def test_a_dangling_last_link_or_no_usable_checkpoint_starts_afresh_with_a_warning(tmp_path, caplog):
    os.symlink("epoch0009.ckpt", tmp_path / "last.ckpt")
    (tmp_path / "epoch0003.ckpt").write_bytes(b"PK\x03\x04 not a whole archive")
    assert resume_checkpoint(tmp_path) is None
    assert not os.path.lexists(tmp_path / "last.ckpt"), "a new last.ckpt can be written, no last-v1.ckpt"
    assert "links to a missing file" in caplog.text and "starting afresh" in caplog.text


def test_tensor_batches_resume_at_the_saved_position():
    data = (torch.arange(50).float(),)
    loader = TensorBatches(data, batch_size=8, shuffle=True, drop_last=True, seed=3)
    loader.sampler.set_epoch(2)
    whole = [b[0] for b in loader]
    loader.sampler.set_epoch(2)
    seen = []
    for batch in loader:
        seen.append(batch[0])
        if len(seen) == 4:
            break
    state = loader.state_dict()
    assert state == {"epoch": 2, "position": 4}
    fresh = TensorBatches(data, batch_size=8, shuffle=True, drop_last=True, seed=3)
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(2)
    rest = [b[0] for b in fresh]
    assert len(rest) == 2 and all(torch.equal(a, b) for a, b in zip(seen + rest, whole, strict=True))
    fresh.sampler.set_epoch(3)
    assert len(list(fresh)) == 6, "the position is used once, for its own epoch"
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        TensorBatches(data, batch_size=0)


def test_recording_a_failure_never_hides_the_error(tmp_path, caplog):
    from asd_ganomaly.train import _record_failure

    cfg = config("~data.root")
    _record_failure(cfg, tmp_path / "run", ConfigError("the real error"), traceback=False)
    assert "the real error" in caplog.text
    # the record is written with what the broken config still says
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and "the real error" in record["error"] and record["machine_type"] == "fan"
