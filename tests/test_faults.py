"""Hostile cases through the CLI (issue: nothing lost, every refusal one clear line): each ends as a clear error,
a recorded failure or a correct result."""

import json

import pytest
from conftest import CLI, CSV_ONLY, LOCK_HOLDER, find_run, run_cli, run_process, tone, train_args, write_wav


@pytest.mark.slow
def test_a_diverged_training_is_a_failed_run_not_a_result_of_auc_one_half(synthetic_root, tmp_path):
    overrides = ["trainer.max_epochs=2", "model.optimizer_g.lr=1e9", "model.optimizer_d.lr=1e9", *CSV_ONLY]
    result = run_cli(train_args(synthetic_root, tmp_path, *overrides), tmp_path, check=False)
    assert result.returncode != 0
    metrics = json.loads((find_run(tmp_path / "logs", "fan") / "metrics.json").read_text())
    assert metrics["status"] == "failed"
    assert "TrainingDivergedError" in metrics["error"] or "diverged" in metrics["error"], metrics["error"]
    assert "dcase_score" not in metrics or metrics["dcase_score"] is None


@pytest.mark.parametrize(
    ("values", "message"),
    [([1.0, float("nan"), 2.0], "1 of 3 source test scores .* are not finite"), ([0.0, 0.0, 0.0], "every source")],
)
def test_non_finite_or_constant_test_scores_fail_the_run(values, message):
    import torch
    from hydra.utils import instantiate

    from asd_ganomaly.models.base import TrainingDivergedError
    from asd_ganomaly.train import compose_config

    module = instantiate(compose_config("model=ganomaly_small").model)
    target = {"score": torch.tensor([0.1, 0.2]), "domain": torch.tensor([1, 1])}
    module._check_test_scores(target)  # distinct, finite: fine
    scores = {"score": torch.tensor([*values, 0.1, 0.2]), "domain": torch.tensor([0, 0, 0, 1, 1])}
    with pytest.raises(TrainingDivergedError, match=message):
        module._check_test_scores(scores)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root, as CI and the developers' machines run): a real full disk."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_leaves_nothing_partial_under_the_final_name_and_says_so_in_one_line(small_disk):
    import torch

    from asd_ganomaly.core.files import WriteError, atomic_output

    (small_disk / "model.ckpt").write_bytes(b"the previous model")
    with pytest.raises(WriteError) as refused, atomic_output(small_disk / "model.ckpt") as tmp:
        torch.save({"w": torch.zeros(1_000_000)}, tmp)  # 4 MB onto 256 KiB
    message = str(refused.value)
    assert len(message.splitlines()) == 1 and str(small_disk / "model.ckpt") in message and "GB free" in message
    assert ".tmp" not in message
    assert (small_disk / "model.ckpt").read_bytes() == b"the previous model"
    assert [p.name for p in small_disk.iterdir()] == ["model.ckpt"]

    with pytest.raises(WriteError, match="No space left"), atomic_output(small_disk / "metrics.json") as tmp:
        tmp.write_text("x" * 1_000_000)
    assert not (small_disk / "metrics.json").exists()


@pytest.mark.parametrize("override", ["data.machine_type=../fan", "data.machine_type=sub/../../fan", "task_name=../x"])
def test_a_run_folder_never_escapes_its_hash_folder(tmp_path, override):
    work = tmp_path / "work"
    work.mkdir()
    absent = work / "data"  # refused before any data is read
    result = run_cli([*train_args(absent, work, *CSV_ONLY), override], work, check=False)
    assert result.returncode == 2, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]  # one line, not Hydra's traceback
    assert line.startswith("asd-train: error: ") and "cannot be part of a run folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"], "nothing written outside the work folder"
    assert not (work / "logs").exists() or not any((work / "logs").rglob("*.json"))


@pytest.mark.slow
def test_a_second_process_on_a_running_runs_folder_exits_at_once_naming_the_holder(synthetic_root, tmp_path):
    import subprocess
    import sys

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        args = [*train_args(synthetic_root, tmp_path, *CSV_ONLY), f"hydra.run.dir={run}"]
        result = run_cli(args, tmp_path, check=False)
        assert result.returncode == 2
        (line,) = [x for x in result.stderr.splitlines() if x.strip()]
        assert line.startswith("asd-train: error: ") and f"in use by pid {holder.pid} on " in line
        assert not (run / "metrics.json").exists() and not (run / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    ("command", "phrase"),
    [
        pytest.param(  # one case from a new interpreter: the exit status a shell sees
            ["score", "--ckpt", "missing.ckpt", "a.wav"],
            "checkpoint missing.ckpt does not exist",
            id="process",
            marks=pytest.mark.slow,
        ),
        (["export", "--ckpt", "missing.ckpt", "--onnx", "m.onnx"], "checkpoint missing.ckpt does not exist"),
        (["report", "no_sweep"], "sweep folder no_sweep does not exist"),
        (["evaluate", "no_submission", "--ground-truth", "no_truth"], "is not a folder"),
        (["submit", "no_sweep", "--out", "sub"], "no_sweep"),
    ],
)
def test_asd_ganomaly_refuses_a_user_error_in_one_line_with_exit_status_2_as_asd_train(
    tmp_path, command, phrase, request
):
    run = run_process if request.node.callspec.id.startswith("process") else run_cli
    result = run([CLI, *command], tmp_path, check=False)
    assert result.returncode == 2, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith(f"asd-ganomaly {command[0]}: error: ") and phrase in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing written"


def test_a_nan_wav_is_refused_in_the_checks_before_a_run_folder_is_written(tmp_path):
    from asd_ganomaly.data.synth import write_synthetic_dataset

    root = write_synthetic_dataset(
        tmp_path / "data", ["fan"], [0], train_clips=2, target_train_clips=1, test_clips=1, seconds=2.0, progress=False
    )
    audio = tone(2.0)
    audio[100] = float("nan")
    bad = write_wav(root / "fan" / "train" / "section_00_source_train_normal_9999.wav", audio, subtype="FLOAT")
    result = run_cli(train_args(root, tmp_path, *CSV_ONLY), tmp_path, check=False)
    assert result.returncode == 2, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("asd-train: error: ") and f"{bad} holds NaN or infinite samples" in line, line
    assert not (tmp_path / "logs").exists() or not [p for p in (tmp_path / "logs").rglob("*") if p.is_file()]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir()), "no features extracted"
