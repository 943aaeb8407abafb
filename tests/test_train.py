"""The training app end to end on synthetic data (``asd_ganomaly/train.py`` through its CLI): metrics, resume
equivalence, W&B offline files, failures, a full disk, an unreachable W&B, determinism, SIGTERM and resume.

The finished run the first tests read is the session's shared ``ganomaly_run``; the tests whose subject is the
training itself train their own runs, one or two epochs."""

import json
import time
from pathlib import Path

import pytest
import torch
import training_probes
from conftest import (
    CSV_ONLY,
    cli_args,
    find_run,
    kept_result,
    read_csv,
    read_wandb_run,
    run_cli,
    run_process,
    train_args,
    writable_copy,
)

from asd_ganomaly.data.dcase import ALL_SECTIONS

pytestmark = pytest.mark.slow  # every test here trains through the CLI


def train(root: Path, log_dir: Path, *overrides: str, check: bool = True, multirun: bool = False, **kwargs):
    args = train_args(root, log_dir.parent, *overrides, log_dir=log_dir, multirun=multirun)
    return run_cli(args, cwd=log_dir.parent, check=check, **kwargs)


def run_dir(log_dir: Path, machine: str = "fan", section: int = 0) -> Path:
    return find_run(log_dir, machine, section)


@pytest.fixture
def trained(ganomaly_run) -> Path:
    """The shared run: 25 epochs, W&B offline with the model artifact (read only)."""
    return ganomaly_run


def test_run_writes_metrics_scores_checkpoint_and_detects_clear_anomalies(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["machine_type"] == "fan" and metrics["section"] == 0
    assert metrics["selected_on_test"] is False
    for domain in ("source", "target"):
        assert set(metrics["metrics"][domain]) >= {"auc", "pauc", "precision", "recall", "f1"}
    assert metrics["metrics"]["source"]["auc"] > 0.8, metrics["metrics"]
    assert metrics["config"]["model"]["loss"]["w_rec"] == 50.0
    rows = read_csv(trained / "scores.csv")
    assert len(rows) == 40 and {r["domain"] for r in rows} == {"source", "target"}
    assert (trained / "model.ckpt").exists() and (trained / "checkpoints" / "last.ckpt").exists()
    assert (trained / "roc.png").stat().st_size > 1000


def test_wandb_offline_run_holds_config_tags_group_name_and_summary(trained):
    wandb_run = read_wandb_run(trained)
    metrics = json.loads((trained / "metrics.json").read_text())
    assert wandb_run["config"]["model.loss.w_rec"] == 50.0 and wandb_run["config"]["data.machine_type"] == "fan"
    assert wandb_run["config"]["model.optimizer_g.lr"] == metrics["config"]["model"]["optimizer_g"]["lr"]
    assert {"ganomaly_small", "fan", "section_00", "max_epochs=25"} <= set(wandb_run["tags"])
    assert wandb_run["group"] == f"train/ganomaly_small/{metrics['run_id']}"
    assert wandb_run["name"].startswith("ganomaly_small fan sec0 ") and "max_epochs-25" in wandb_run["name"]
    for domain in ("source", "target"):
        for name in ("auc", "pauc"):
            logged = wandb_run["summary"][f"test/{domain}/{name}"]
            assert logged == pytest.approx(metrics["metrics"][domain][name], abs=1e-6)
    assert wandb_run["summary"]["test/dcase_score"] == pytest.approx(metrics["dcase_score"], abs=1e-6)
    assert metrics["logged"]["test/dcase_score"] == pytest.approx(metrics["dcase_score"])
    assert "train/loss_g_epoch" in wandb_run["summary"]
    assert list((trained / "csv").glob("metrics.csv")), "the CSV logger runs beside W&B"


def test_wandb_offline_run_holds_the_model_artifact_and_the_scores_table(trained):
    wandb_run = read_wandb_run(trained)
    metrics = json.loads((trained / "metrics.json").read_text())
    models = [a for a in wandb_run["artifacts"] if a["type"] == "model"]
    assert len(models) == 1 and models[0]["name"] == f"model-{wandb_run['id']}" and "latest" in models[0]["aliases"]
    (entry,) = models[0]["manifest"]["contents"]
    assert entry["path"] == "model.ckpt" and int(entry["size"]) == (trained / "model.ckpt").stat().st_size
    metadata = json.loads(models[0]["metadata"])
    assert metadata["machine_type"] == "fan" and metadata["run_id"] == metrics["run_id"]
    assert metadata["metrics"]["test/dcase_score"] == pytest.approx(metrics["dcase_score"])

    assert wandb_run["summary"]["test/clip_scores._type"] == "table-file"
    folder = next(trained.glob("wandb/offline-run-*"))
    table = json.loads((folder / "files" / wandb_run["summary"]["test/clip_scores.path"]).read_text())
    rows = read_csv(trained / "scores.csv")
    assert table["columns"] == list(rows[0]) and len(table["data"]) == len(rows) == 40
    by_path = {row[0]: row for row in table["data"]}
    for row in rows:
        logged = dict(zip(table["columns"], by_path[row["path"]], strict=True))
        assert logged["score"] == pytest.approx(float(row["score"])) and logged["decision"] == int(row["decision"])
    assert any(a["type"] == "run_table" for a in wandb_run["artifacts"]), "the table is a W&B artifact too"


def test_loss_weight_sweep_gives_one_run_per_value_with_distinct_results(synthetic_root, tmp_path):
    log_dir = tmp_path / "logs"
    common = ("trainer.max_epochs=1", *CSV_ONLY)
    train(synthetic_root, log_dir, "model.loss.w_rec=7.5,50", *common, multirun=True)
    runs = sorted(log_dir.rglob("metrics.json"))
    records = [json.loads(p.read_text()) for p in runs]
    assert sorted(r["config"]["model"]["loss"]["w_rec"] for r in records) == [7.5, 50.0]
    assert len({p.parent.parent.name for p in runs}) == 2, "each loss weight gets its own folder"
    assert {r["varied"][0] for r in records} == {"model.loss.w_rec=7.5", "model.loss.w_rec=50"}
    scores = [[row["score"] for row in read_csv(p.parent / "scores.csv")] for p in runs]
    assert scores[0] != scores[1], "the two loss weights trained two different models"
    for path, record in zip(runs, records, strict=True):
        assert path.parent.parent.name == record["run_id"] and record["run_id"].endswith(record["config_hash"])
        assert (path.parent / "config.yaml").exists() and "model.loss.w_rec" in (
            path.parent / "overrides.txt"
        ).read_text()
    # the same sweep again skips both; a third weight is a new run, never a reused one
    again = train(synthetic_root, log_dir, "model.loss.w_rec=7.5,50", *common, multirun=True)
    assert (again.stdout + again.stderr).count("skipped (finished before)") == 2
    third = train(synthetic_root, log_dir, "model.loss.w_rec=20", *common)
    assert "skipping" not in third.stdout + third.stderr
    assert len(list(log_dir.rglob("metrics.json"))) == 3


def test_a_folder_of_another_config_is_refused_with_the_differing_keys(synthetic_root, tmp_path):
    log_dir, folder = tmp_path / "logs", tmp_path / "fixed"
    common = ("trainer.max_epochs=1", *CSV_ONLY, f"hydra.run.dir={folder}")
    train(synthetic_root, log_dir, "model.loss.w_rec=7.5", *common)
    result = train(synthetic_root, log_dir, "model.loss.w_rec=10", *common, check=False)
    assert result.returncode != 0
    assert "holds a run of another config" in result.stderr and "model.loss.w_rec: 7.5 -> 10" in result.stderr
    assert json.loads((folder / "metrics.json").read_text())["config"]["model"]["loss"]["w_rec"] == 7.5


def test_more_epochs_is_a_new_run_not_a_continuation_of_a_shorter_one(synthetic_root, tmp_path):
    """Epochs change the result, so they are part of a run's identity: 2 epochs after a finished 1-epoch run
    train from scratch in their own folder (resuming an interrupted run: the SIGTERM test below)."""
    common = CSV_ONLY
    log_dir = tmp_path / "logs"
    train(synthetic_root, log_dir, "trainer.max_epochs=1", *common)
    longer = train(synthetic_root, log_dir, "trainer.max_epochs=2", *common)
    assert "resuming from" not in longer.stdout + longer.stderr and "skipping" not in longer.stdout + longer.stderr
    epochs = sorted(json.loads(p.read_text())["config"]["trainer"]["max_epochs"] for p in log_dir.rglob("metrics.json"))
    assert epochs == [1, 2]


def test_finished_run_is_skipped(ganomaly_run, synthetic_root, tmp_path):
    """The shared run's command again, on a copy of its log folder (another logger: no part of the identity)."""
    log_dir = writable_copy(ganomaly_run.parents[3], tmp_path / "logs")
    before = results_files(log_dir)
    again = train(synthetic_root, log_dir, "trainer.max_epochs=25", *CSV_ONLY)
    assert "skipping" in again.stdout + again.stderr
    assert (run_dir(log_dir) / "metrics.json").stat().st_mtime_ns == before[run_dir(log_dir) / "metrics.json"]
    assert results_files(log_dir) == before, "a skipped run changes none of its results"


def results_files(log_dir: Path) -> dict[Path, int]:
    """Modification times of the files below ``log_dir`` but the log, the lock and Hydra's record of each command."""
    kept = [p for p in log_dir.rglob("*") if p.is_file() and ".hydra" not in p.parts]
    files = [p for p in kept if p.name not in ("train.log", ".lock")]
    return {p: p.stat().st_mtime_ns for p in files}


def test_a_user_error_in_a_single_run_is_one_line_and_leaves_no_run_folder(synthetic_root, tmp_path):
    """An unknown machine is the user's to fix: one line saying what is there, exit 2, nothing written (a
    failure after work started, or a bug, still records a failed metrics.json: the full-disk test below)."""
    log_dir = tmp_path / "logs"
    result = train(synthetic_root, log_dir, "data.machine_type=fann", "logger=csv", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "asd-train: error: unknown machine type 'fann'" in result.stderr
    assert not list(log_dir.rglob("fann_sec0")), "no run folder for a run refused before any work"


def test_select_on_test_is_explicit_and_marked(synthetic_root, tmp_path):
    log_dir = tmp_path / "logs"
    train(synthetic_root, log_dir, "trainer.max_epochs=2", "select_on_test=true", *CSV_ONLY)
    run = run_dir(log_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selected_on_test"] is True
    assert (run / "checkpoints" / "best.ckpt").exists()
    logged = (run / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "val/source/auc" in logged  # the per-epoch selection metric on test labels
    report_md = tmp_path / "md"
    run_cli(cli_args("report", log_dir / "train", "--out", report_md), cwd=tmp_path)
    assert "selected their model on test labels" in (report_md / "results.md").read_text()


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
    """A new interpreter: W&B reads its mode, key and address once per process."""
    log_dir = tmp_path / "logs"
    env = {"WANDB_MODE": "", "WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}
    args = train_args(synthetic_root, tmp_path, "trainer.max_epochs=1", "plots=false", "logger.wandb.init_timeout=5")
    result = run_process(args, tmp_path, env=env, timeout=240)
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
        scores.append([row["score"] for row in read_csv(run_dir(log_dir) / "scores.csv")])
    assert scores[0] == scores[1]


def _weights(run):
    return torch.load(run / "model.ckpt", map_location="cpu", weights_only=True)["state_dict"]


INTERRUPTED_EPOCHS = 2  # of 12 batches: 96 clips in batches of 8; the stop in the second, after a checkpoint


def _interruptible_args(root: Path, work: Path, model: str) -> list[str]:
    return train_args(root, work, f"trainer.max_epochs={INTERRUPTED_EPOCHS}", *CSV_ONLY, model=model)


@pytest.fixture(scope="session")
def uninterrupted(shared, synthetic_root):
    """``uninterrupted(model)``: the run folder of the interruption tests' command trained without a stop, in a new
    interpreter as the interrupted ones (shared by the SIGTERM and the Ctrl-C test of the model: read only)."""

    def run_of(model: str) -> Path:
        def build(work: Path) -> None:
            run_process(_interruptible_args(synthetic_root, work, model), work)

        return run_dir(shared.get(f"uninterrupted_{model}", build) / "logs")

    return run_of


def _results(run: Path) -> dict[str, float]:
    """Every number a finished run reports: metrics.json's logged values, each clip's score, the final step."""
    metrics = json.loads((run / "metrics.json").read_text())
    numbers = {f"logged {k}": v for k, v in metrics["logged"].items()}
    numbers |= {f"score {Path(row['path']).name}": float(row["score"]) for row in read_csv(run / "scores.csv")}
    checkpoint = torch.load(run / "model.ckpt", map_location="cpu", weights_only=True)
    return numbers | {"global_step": checkpoint["global_step"]}


@pytest.mark.parametrize(  # not alone: each process signals itself at an exact batch, racing with nothing
    ("signal", "model", "status"),
    [("SIGTERM", "ganomaly_small", 143), ("SIGINT", "ganomaly_small", 130), ("SIGINT", "ae_baseline", 130),
     ("SIGTERM", "ae_baseline", 143)],
)  # fmt: skip
def test_a_signal_mid_epoch_saves_and_the_resumed_run_equals_an_uninterrupted_one(
    synthetic_root, tmp_path, uninterrupted, signal, model, status
):
    """A real signal (SIGTERM: a scheduler's pre-emption; SIGINT: Ctrl-C), sent by the process to itself after
    batch 5 of epoch 1 (of 2 epochs of 12 batches: mid-epoch whatever the machine's speed), then the same command
    again; in new interpreters, as a scheduler or a shell runs them. The resumed run ends at the same global step
    with the same metrics and scores (to 1e-6) as an uninterrupted one."""
    work = tmp_path / "interrupted"
    log_dir = work / "logs"
    args = _interruptible_args(synthetic_root, work, model)
    hook = {"PYTHONPATH": training_probes.python_path()}
    stopped = run_process(
        [*args, *training_probes.overrides(signal, epoch=1, batch=5)], tmp_path, env=hook, check=False
    )
    output = stopped.stdout + stopped.stderr
    last = run_dir(log_dir) / "checkpoints" / "last.ckpt"
    assert stopped.returncode == status, (
        f"an interrupted run must not look finished to a shell or a scheduler: {output[-2000:]}"
    )
    assert "Traceback" not in output, output[-3000:]
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert "interrupted (" in output and "at epoch 1" in output and checkpoint["global_step"] > 0
    assert not (run_dir(log_dir) / "metrics.json").exists()
    assert checkpoint["epoch"] == 1
    done_in_epoch = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
    assert done_in_epoch == 6, "interrupted mid-epoch, after batch 5, the batch whole"
    # the same command resumes where it stopped (batch 6 of epoch 1, to batch 11, the last), finishes, and records
    # the metrics
    trained = tmp_path / "resumed_batches.txt"
    resumed = run_process([*args, *training_probes.record_overrides(trained)], tmp_path, env=hook)
    batches = training_probes.recorded_batches(trained)
    assert batches == [(1, b) for b in range(6, 12)], batches
    assert "resuming from" in resumed.stdout + resumed.stderr
    assert resumed.stdout.strip().splitlines()[-1].endswith(" resumed"), "the summary line says it resumed"
    assert "not resumable" not in resumed.stdout + resumed.stderr
    assert json.loads((run_dir(log_dir) / "metrics.json").read_text())["status"] == "completed"
    assert sorted(p.name for p in last.parent.iterdir() if "-v" in p.name) == [], "no versioned checkpoint names"
    # an uninterrupted run of as many epochs ends with the same weights, metrics, scores and global step
    reference = uninterrupted(model)
    ours, theirs = _weights(run_dir(log_dir)), _weights(reference)
    assert ours.keys() == theirs.keys()
    assert max((ours[k].double() - theirs[k].double()).abs().max().item() for k in ours) <= 1e-6
    ours, theirs = _results(run_dir(log_dir)), _results(reference)
    assert ours.keys() == theirs.keys()
    differ = {k: (ours[k], theirs[k]) for k in ours if abs(ours[k] - theirs[k]) > 1e-6 * max(1.0, abs(theirs[k]))}
    assert not differ, differ


def test_a_failed_run_of_every_section_is_recorded_as_every_section_not_section_0(tmp_path):
    """``data.section=null`` (every section of a machine type) in a sweep whose config is too broken for the full
    record (no data.root): the failed metrics.json says every section, as a completed run would."""
    log_dir = tmp_path / "logs"
    args = train_args(tmp_path / "absent", tmp_path, "~data.root", "data.section=null", "logger=csv", multirun=True)
    assert run_cli(args, cwd=tmp_path, check=False).returncode == 1  # a sweep records its failed jobs, goes on
    records = [json.loads(path.read_text()) for path in log_dir.rglob("metrics.json")]
    assert len(records) == 1 and records[0]["status"] == "failed" and "data.root is not set" in records[0]["error"]
    assert records[0]["machine_type"] == "fan" and records[0]["section"] == ALL_SECTIONS


@pytest.mark.slow
def test_a_single_run_ends_with_its_one_line_summary_and_keeps_the_whole_names_table_in_train_log(ganomaly_run):
    result = kept_result(ganomaly_run.parents[4])  # the shared run's console
    last = result.stdout.strip().splitlines()[-1]
    assert last.split(" - ", 1)[1].startswith("ganomaly_small trainer-cpu+") and "max_epochs-25 fan sec0" in last, last
    assert "source AUC" in last
    assert "Test metric" not in result.stdout and "test/source/auc" not in result.stdout, "no Lightning test table"
    table = (ganomaly_run / "train.log").read_text().split("test metrics:")[1]
    assert "test/source/auc_low" in table and "test/source/auc_high" in table
