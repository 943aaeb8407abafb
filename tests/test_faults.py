"""Hostile cases through the CLI (issue: nothing lost, every refusal one clear line): each ends as a clear error,
a recorded failure or a correct result."""

import json
from contextlib import contextmanager

import pytest
from conftest import CLI, CSV_ONLY, LOCK_HOLDER, find_run, run_cli, run_process, tone, train_args, write_wav


@pytest.mark.slow
def test_a_diverged_training_is_a_failed_run_not_a_result_of_auc_one_half(synthetic_root, tmp_path):
    overrides = ["trainer.max_epochs=2", "model.optimizer_g.lr=1e9", "model.optimizer_d.lr=1e9", *CSV_ONLY]
    result = run_cli(train_args(synthetic_root, tmp_path, *overrides), tmp_path, check=False)
    assert result.returncode == 1, "a handled failure: exit 1, not a user error's 2"
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("asd-train: failed: ") and "training diverged" in line, line
    assert "Traceback" not in result.stdout + result.stderr, "one line on the console"
    run = find_run(tmp_path / "logs", "fan")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed"
    assert "TrainingDivergedError" in metrics["error"] or "diverged" in metrics["error"], metrics["error"]
    assert "dcase_score" not in metrics or metrics["dcase_score"] is None
    assert "Traceback" in (run / "train.log").read_text(), "the traceback is kept in train.log"


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


@contextmanager
def tmpfs(mount, options: str):
    """A real tmpfs mounted at the new folder ``mount`` (root, as CI and the developers' machines run)."""
    import subprocess

    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs: a real full disk."""
    with tmpfs(tmp_path / "disk", "size=256k") as mount:
        yield mount


@pytest.fixture
def run_disk(tmp_path):
    """A 16 MiB tmpfs: room for a small run's checkpoints, filled up on purpose by training_probes.FillDisk."""
    with tmpfs(tmp_path / "run_disk", "size=16m") as mount:
        yield mount


def _full_disk_run(root, work, disk, epochs: int, full_at: int):
    """A run whose log folder is on ``disk``, which fills up when epoch ``full_at`` starts (-1: at testing); the
    arguments of the same command without the filling, and the failed run's result."""
    import training_probes

    args = train_args(
        root, work, f"trainer.max_epochs={epochs}", "min_free_disk_gb=0", *CSV_ONLY, log_dir=disk / "logs"
    )
    fill = training_probes.fill_disk_overrides(disk / "ballast", epoch=full_at)
    failed = run_process([*args, *fill], work, env={"PYTHONPATH": training_probes.python_path()}, check=False)
    return args, failed


def _one_line_saying_the_disk_is_full(result, name: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output and "Logging error" not in output, output[-3000:]
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("asd-train: error: could not write ") and f"{name}: No space left" in line, line
    assert "GB free there" in line and ".tmp" not in line and "could not be written either" not in line, line


def _checkpoints(run) -> dict[str, str]:
    """Each file of the run's checkpoints folder: what it is (a link's target, else "loads"); every one loads."""
    from asd_ganomaly.runs.resume import is_loadable_checkpoint

    found = {}
    for path in (run / "checkpoints").iterdir():
        assert is_loadable_checkpoint(path), f"{path.name} is under a final name and does not load"
        found[path.name] = f"-> {path.readlink()}" if path.is_symlink() else "loads"
    return found


@pytest.mark.slow
def test_a_full_disk_at_an_epoch_checkpoint_keeps_the_previous_one_and_the_rerun_resumes_without_v1_files(
    synthetic_root, tmp_path, run_disk
):
    args, failed = _full_disk_run(synthetic_root, tmp_path, run_disk, epochs=2, full_at=1)
    _one_line_saying_the_disk_is_full(failed, "epoch0001.ckpt")
    run = find_run(run_disk / "logs")
    assert _checkpoints(run) == {"epoch0000.ckpt": "loads", "last.ckpt": "-> epoch0000.ckpt"}
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "failed" and "No space left" in record["error"], record
    (run_disk / "ballast").unlink()  # space freed: the same command resumes from epoch 0 and finishes
    resumed = run_process(args, tmp_path)
    assert "resuming from" in resumed.stdout + resumed.stderr
    assert _checkpoints(run) == {"epoch0001.ckpt": "loads", "last.ckpt": "-> epoch0001.ckpt"}
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_a_full_disk_at_the_final_model_save_is_one_line_and_a_recorded_failure(synthetic_root, tmp_path, run_disk):
    args, failed = _full_disk_run(synthetic_root, tmp_path, run_disk, epochs=1, full_at=-1)
    _one_line_saying_the_disk_is_full(failed, "model.ckpt")
    run = find_run(run_disk / "logs")
    assert not (run / "model.ckpt").exists() and not list(run.rglob(".*.tmp*")), "nothing partial, no temporary file"
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed"
    assert _checkpoints(run) == {"epoch0000.ckpt": "loads", "last.ckpt": "-> epoch0000.ckpt"}
    (run_disk / "ballast").unlink()
    run_process(args, tmp_path)
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert (run / "model.ckpt").stat().st_size > 0


@pytest.fixture
def read_only(tmp_path):
    """A read-only tmpfs (root ignores permission bits: a read-only mount is what refuses it)."""
    with tmpfs(tmp_path / "read_only", "ro,size=64k") as mount:
        yield mount


@pytest.mark.parametrize("key", ["paths.log_dir", "paths.cache_dir"])
def test_a_read_only_log_or_cache_folder_is_one_line_and_exit_2_before_training(tmp_path, read_only, key):
    from asd_ganomaly.data.synth import write_synthetic_dataset

    root = write_synthetic_dataset(
        tmp_path / "data", ["fan"], [0], train_clips=2, target_train_clips=1, test_clips=1, seconds=2.0, progress=False
    )
    folder = read_only / key.split(".")[1]
    result = run_cli([*train_args(root, tmp_path, *CSV_ONLY), f"{key}={folder}"], tmp_path, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("asd-train: error: ") and str(folder) in line and "Read-only file system" in line, line
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("metrics.json")), "nothing trained"


@pytest.mark.parametrize(
    "command",
    [
        ["score", "--ckpt", "missing.ckpt", "a.wav", "--out"],
        ["export", "--ckpt", "missing.ckpt", "--onnx"],
        ["report", "no_sweep", "--out"],  # a folder for results.csv and results.md
        ["evaluate", "sub", "--ground-truth", "truth", "--out"],
        ["submit", "no_sweep", "--out"],
    ],
    ids=lambda command: command[0],
)
def test_an_unwritable_out_is_one_line_naming_the_folder_and_exit_2(tmp_path, read_only, command):
    if command[0] in ("submit", "report"):  # refused once its runs are found: a finished-looking run of its own
        run = tmp_path / "no_sweep" / "fan_sec0"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"status": "completed", "machine_type": "fan"}))
        (run / "scores.csv").write_text(
            "path,section,domain,label,score,decision\nsection_00_source_test_normal_0000.wav,0,source,0,1.0,0\n"
        )
    out = read_only / ("out.csv" if command[0] in ("score", "export", "evaluate") else "out")
    result = run_cli([CLI, *command, str(out)], tmp_path, check=False)
    assert result.returncode == 2, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith(f"asd-ganomaly {command[0]}: error: ") and "not writable" in line, line
    assert str(read_only) in line and "Read-only file system" in line, line


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
