"""Checks before any work: config ranges, the data listed and checked, run folders (``asd_ganomaly/checks.py``)."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asd_ganomaly.core.errors import UserError
from asd_ganomaly.data.audio import AudioError
from asd_ganomaly.data.dcase import DatasetError, list_clips
from asd_ganomaly.runs.checks import ConfigError, check_data, discard_unused_run_dir, validate_config
from asd_ganomaly.train import compose_config


def config(*overrides: str):
    return compose_config("data.root=somewhere", *overrides)


def test_the_shipped_configs_pass():
    for model in ("ganomaly", "ganomaly_small", "ganomaly_authors", "ae_baseline", "mobilenetv2_baseline"):
        validate_config(config(f"model={model}"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.batch_size=0"], "data.batch_size must be an integer >= 1, not 0"),
        (["data.batch_size=-4"], "data.batch_size must be an integer >= 1, not -4"),
        (["data.eval_batch_size=0"], "data.eval_batch_size must be an integer >= 1"),
        (["trainer.max_epochs=0"], "trainer.max_epochs must be an integer >= 1, not 0"),
        (["trainer.max_epochs=-1"], "-1 would train forever"),
        (["seed=abc"], "seed must be an integer >= 0, not 'abc'"),
        (["seed=-3"], "seed must be an integer >= 0, not -3"),
        (["model.loss.w_adv=-0.5"], "model.loss.w_adv must be a number >= 0, not -0.5"),
        (["model.loss.w_rec=0", "model.loss.w_ano=0", "model.loss.w_adv=0"], "are all zero"),
        (["model.optimizer_g.lr=0"], "model.optimizer_g.lr must be a number > 0, not 0"),
        (["model=ae_baseline", "model.optimizer.lr=-1e-3"], "model.optimizer.lr must be a number > 0"),
        (["data.features.seconds=0"], "data.features.seconds must be a number > 0"),
        (["data.features.n_mels=0"], "data.features.n_mels must be an integer >= 1"),
        (["data.on_bad_file=ignore"], "data.on_bad_file must be 'error' or 'skip'"),
        (["data.section=-1"], "data.section must be an integer >= 0"),
        (
            ["model=ae_baseline", "model.scope=machine"],
            "model.scope must be one of .'section', 'machine_type'., not 'machine'",
        ),
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
    assert "3 entries skipped in" in caplog.text
    assert "b.WAV (not a DCASE clip name), notes.txt (not a DCASE clip name), recording 1.wav" in caplog.text


def test_clip_named_links_and_folders_that_are_no_clips_are_skipped_by_name_and_reason(tmp_path, caplog):
    machine = section(tmp_path)
    train = machine / "train"
    (train / "section_00_source_train_normal_0097.wav").symlink_to(tmp_path / "gone.wav")  # broken
    (train / "section_00_source_train_normal_0098.wav").symlink_to(train / "section_00_source_train_normal_0098.wav")
    (train / "section_00_source_train_normal_0099.wav").mkdir()
    wav(tmp_path / "elsewhere.wav")
    (train / "section_00_source_train_normal_0096.wav").symlink_to(tmp_path / "elsewhere.wav")  # a good link
    with caplog.at_level(logging.WARNING):
        clips, _ = check_data(data_cfg(tmp_path))
    names = {c.path.name for c in clips}
    assert "section_00_source_train_normal_0096.wav" in names
    assert not {f"section_00_source_train_normal_00{i}.wav" for i in (97, 98, 99)} & names
    assert "3 entries skipped in" in caplog.text
    for number, reason in ((97, "broken link"), (98, "link loop"), (99, "a directory")):
        assert f"section_00_source_train_normal_00{number}.wav ({reason})" in caplog.text


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


def test_recording_a_failure_never_hides_the_error(tmp_path, caplog):
    from asd_ganomaly.train import _record_failure

    cfg = config("~data.root")
    _record_failure(cfg, tmp_path / "run", ConfigError("the real error"), traceback=False)
    assert "the real error" in caplog.text
    # the record is written with what the broken config still says
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and "the real error" in record["error"] and record["machine_type"] == "fan"


def test_a_discarded_run_takes_its_empty_setting_folder_along_but_not_the_log_folder(tmp_path):
    logs = tmp_path / "logs"
    run = logs / "train" / "ganomaly" / "w_rec--1-0123abcd" / "fan_sec0"
    (run / ".hydra").mkdir(parents=True)
    other = logs / "train" / "ganomaly" / "w_rec-10-89abcdef" / "fan_sec0"
    other.mkdir(parents=True)
    assert discard_unused_run_dir(run, keep=logs)
    assert not run.parent.exists(), "no empty setting folder is left behind"
    assert other.is_dir() and logs.is_dir()


def test_an_unknown_key_gets_a_did_you_mean():
    from asd_ganomaly.runs.checks import key_hint, unknown_key_hints

    cfg = config()
    assert key_hint(cfg, "model.loss.w_recc") == "model.loss.w_rec"
    assert key_hint(cfg, "trainr.max_epochs") == "trainer.max_epochs"
    assert key_hint(cfg, "model.loss.w_rec") is None and key_hint(cfg, "model.loss.zzzzzz") is None
    hints = unknown_key_hints(cfg, ["model.loss.w_recc=10", "+model.extra=1", "hydra.verbose=true", "seed=1"])
    assert hints == ["model.loss.w_recc is not a config key: did you mean model.loss.w_rec?"]


@pytest.mark.slow
def test_asd_train_says_did_you_mean_for_a_typo_and_a_refused_run_leaves_no_folder(synthetic_root, tmp_path):
    from conftest import run_cli, train_args

    typo = run_cli(train_args(synthetic_root, tmp_path, "model.loss.w_recc=10"), cwd=tmp_path, check=False)
    assert typo.returncode == 1 and "did you mean model.loss.w_rec?" in typo.stderr
    refused = run_cli(train_args(synthetic_root, tmp_path, "model.loss.w_rec=-1"), cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "model.loss.w_rec must be a number >= 0" in refused.stderr
    assert not [p for p in (tmp_path / "logs").rglob("*")], "nothing below the log folder"
