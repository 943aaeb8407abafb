"""The training app end to end on synthetic data: metrics, resume equivalence, W&B offline files, failures."""

import csv
import json
from pathlib import Path

import pytest
from conftest import cli_args, find_run, read_wandb_run, run_cli, train_args

pytestmark = pytest.mark.slow  # every test here trains through the CLI


def train(root: Path, log_dir: Path, *overrides: str, check: bool = True, multirun: bool = False, **kwargs):
    args = train_args(root, log_dir.parent, *overrides, log_dir=log_dir, multirun=multirun)
    return run_cli(args, cwd=log_dir.parent, check=check, **kwargs)


def run_dir(log_dir: Path, machine: str = "fan", section: int = 0) -> Path:
    return find_run(log_dir, machine, section)


def read_scores(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory) -> Path:
    log_dir = tmp_path_factory.mktemp("train") / "logs"
    train(synthetic_root, log_dir, "trainer.max_epochs=25", "logger=wandb")
    return run_dir(log_dir)


def test_run_writes_metrics_scores_checkpoint_and_detects_clear_anomalies(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["machine_type"] == "fan" and metrics["section"] == 0
    assert metrics["selected_on_test"] is False
    for domain in ("source", "target"):
        assert set(metrics["metrics"][domain]) >= {"auc", "pauc", "precision", "recall", "f1"}
    assert metrics["metrics"]["source"]["auc"] > 0.8, metrics["metrics"]
    assert metrics["config"]["model"]["loss"]["w_rec"] == 50.0
    rows = read_scores(trained / "scores.csv")
    assert len(rows) == 40 and {r["domain"] for r in rows} == {"source", "target"}
    assert (trained / "model.ckpt").exists() and (trained / "checkpoints" / "last.ckpt").exists()
    assert (trained / "roc.png").stat().st_size > 1000


def test_wandb_offline_run_holds_config_tags_group_name_and_summary(trained):
    wandb_run = read_wandb_run(trained)
    metrics = json.loads((trained / "metrics.json").read_text())
    assert wandb_run["config"]["model.loss.w_rec"] == 50.0 and wandb_run["config"]["data.machine_type"] == "fan"
    assert wandb_run["config"]["model.optimizer_g.lr"] == metrics["config"]["model"]["optimizer_g"]["lr"]
    assert {"ganomaly_small", "fan", "section_00", "trainer.max_epochs=25"} <= set(wandb_run["tags"])
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


def test_loss_weight_sweep_gives_one_run_per_value_with_distinct_results(synthetic_root, tmp_path):
    log_dir = tmp_path / "logs"
    common = ("trainer.max_epochs=1", "logger=csv", "plots=false")
    train(synthetic_root, log_dir, "model.loss.w_rec=7.5,50", *common, multirun=True)
    runs = sorted(log_dir.rglob("metrics.json"))
    records = [json.loads(p.read_text()) for p in runs]
    assert sorted(r["config"]["model"]["loss"]["w_rec"] for r in records) == [7.5, 50.0]
    assert len({p.parent.parent.name for p in runs}) == 2, "each loss weight gets its own folder"
    assert {r["varied"][0] for r in records} == {"model.loss.w_rec=7.5", "model.loss.w_rec=50"}
    scores = [[row["score"] for row in read_scores(p.parent / "scores.csv")] for p in runs]
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
    common = ("trainer.max_epochs=1", "logger=csv", "plots=false", f"hydra.run.dir={folder}")
    train(synthetic_root, log_dir, "model.loss.w_rec=7.5", *common)
    result = train(synthetic_root, log_dir, "model.loss.w_rec=10", *common, check=False)
    assert result.returncode != 0
    assert "holds a run of another config" in result.stderr and "model.loss.w_rec: 7.5 -> 10" in result.stderr
    assert json.loads((folder / "metrics.json").read_text())["config"]["model"]["loss"]["w_rec"] == 7.5


def test_more_epochs_is_a_new_run_not_a_continuation_of_a_shorter_one(synthetic_root, tmp_path):
    """Epochs change the result, so they are part of a run's identity: 4 epochs after a finished 2-epoch run
    train from scratch in their own folder (resuming an interrupted run is tested in test_reliability)."""
    common = ("logger=csv", "plots=false")
    log_dir = tmp_path / "logs"
    train(synthetic_root, log_dir, "trainer.max_epochs=2", *common)
    longer = train(synthetic_root, log_dir, "trainer.max_epochs=4", *common)
    assert "resuming from" not in longer.stdout + longer.stderr and "skipping" not in longer.stdout + longer.stderr
    epochs = sorted(json.loads(p.read_text())["config"]["trainer"]["max_epochs"] for p in log_dir.rglob("metrics.json"))
    assert epochs == [2, 4]


def test_finished_run_is_skipped(synthetic_root, tmp_path):
    log_dir = tmp_path / "logs"
    train(synthetic_root, log_dir, "trainer.max_epochs=1", "logger=csv", "plots=false")
    before = (run_dir(log_dir) / "metrics.json").stat().st_mtime_ns
    again = train(synthetic_root, log_dir, "trainer.max_epochs=1", "logger=csv", "plots=false")
    assert "skipping" in again.stdout + again.stderr
    assert (run_dir(log_dir) / "metrics.json").stat().st_mtime_ns == before


def test_a_user_error_in_a_single_run_is_one_line_and_leaves_no_run_folder(synthetic_root, tmp_path):
    """An unknown machine is the user's to fix: one line saying what is there, exit 2, nothing written (a
    failure after work started, or a bug, still records a failed metrics.json: test_reliability)."""
    log_dir = tmp_path / "logs"
    result = train(synthetic_root, log_dir, "data.machine_type=fann", "logger=csv", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "asd-train: error: unknown machine type 'fann'" in result.stderr
    assert not list(log_dir.rglob("fann_sec0")), "no run folder for a run refused before any work"


def test_select_on_test_is_explicit_and_marked(synthetic_root, tmp_path):
    log_dir = tmp_path / "logs"
    train(synthetic_root, log_dir, "trainer.max_epochs=3", "select_on_test=true", "logger=csv", "plots=false")
    run = run_dir(log_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selected_on_test"] is True
    assert (run / "checkpoints" / "best.ckpt").exists()
    logged = (run / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "val/source/auc" in logged  # the per-epoch selection metric on test labels
    report_md = tmp_path / "md"
    run_cli(cli_args("report", log_dir / "train", "--out", report_md), cwd=tmp_path)
    assert "selected their model on test labels" in (report_md / "results.md").read_text()
