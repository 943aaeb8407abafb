"""The training app end to end on synthetic data: metrics, resume equivalence, W&B offline files, failures."""

import csv
import json
from pathlib import Path

import pytest
from conftest import SMALL_RUN, run_cli


def train(root: Path, log_dir: Path, *overrides: str, check: bool = True, **kwargs):
    args = [
        "asd_ganomaly.train",
        f"data.root={root}",
        f"paths.log_dir={log_dir}",
        f"paths.cache_dir={log_dir.parent / 'cache'}",
        *SMALL_RUN,
        *overrides,
    ]
    return run_cli(args, cwd=log_dir.parent, check=check, **kwargs)


def run_dir(log_dir: Path, machine: str = "fan", section: int = 0, model: str = "ganomaly_small") -> Path:
    return log_dir / "train" / model / f"{machine}_sec{section}"


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


def test_wandb_offline_run_holds_the_test_metrics(trained):
    runs = list((trained / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, "one offline W&B run per training run"
    record = runs[0].read_bytes()  # protobuf records: keys and JSON values are stored as plain strings
    metrics = json.loads((trained / "metrics.json").read_text())
    for domain in ("source", "target"):
        for name in ("auc", "pauc"):
            key = f"test/{domain}/{name}".encode()
            value = metrics["metrics"][domain][name]
            forms = {json.dumps(value).encode()} | ({json.dumps(int(value)).encode()} if value == int(value) else set())
            assert key in record
            window = record[record.index(key) : record.index(key) + 64]
            assert any(form in window for form in forms), (forms, window)  # W&B writes an AUC of 1.0 as 1
    assert b"train/loss_g" in record and b"fan_sec0" in record
    assert list((trained / "csv").glob("metrics.csv")), "the CSV logger runs beside W&B"


def test_loss_weight_override_reaches_the_run(synthetic_root, tmp_path):
    log_dir = tmp_path / "logs"
    train(synthetic_root, log_dir, "trainer.max_epochs=1", "model.loss.w_rec=7.5", "logger=csv", "plots=false")
    metrics = json.loads((run_dir(log_dir) / "metrics.json").read_text())
    assert metrics["config"]["model"]["loss"]["w_rec"] == 7.5


def test_resumed_run_ends_like_an_uninterrupted_one(synthetic_root, tmp_path):
    common = ("logger=csv", "plots=false", "skip_finished=false")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(synthetic_root, straight, "trainer.max_epochs=4", *common)
    train(synthetic_root, resumed, "trainer.max_epochs=2", *common)
    second = train(synthetic_root, resumed, "trainer.max_epochs=4", *common)
    assert "resuming from" in second.stdout + second.stderr
    a = [float(r["score"]) for r in read_scores(run_dir(straight) / "scores.csv")]
    b = [float(r["score"]) for r in read_scores(run_dir(resumed) / "scores.csv")]
    assert a == pytest.approx(b, rel=1e-6)


def test_finished_run_is_skipped(synthetic_root, tmp_path):
    log_dir = tmp_path / "logs"
    train(synthetic_root, log_dir, "trainer.max_epochs=1", "logger=csv", "plots=false")
    before = (run_dir(log_dir) / "metrics.json").stat().st_mtime_ns
    again = train(synthetic_root, log_dir, "trainer.max_epochs=1", "logger=csv", "plots=false")
    assert "skipping" in again.stdout + again.stderr
    assert (run_dir(log_dir) / "metrics.json").stat().st_mtime_ns == before


def test_failed_single_run_exits_nonzero_and_records_the_error(synthetic_root, tmp_path):
    log_dir = tmp_path / "logs"
    result = train(synthetic_root, log_dir, "data.machine_type=fann", "logger=csv", check=False)
    assert result.returncode != 0
    metrics = json.loads((run_dir(log_dir, "fann") / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "unknown machine type 'fann'" in metrics["error"]


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
    run_cli(["asd_ganomaly.cli", "report", str(log_dir / "train"), "--out", str(report_md)], cwd=tmp_path)
    assert "selected their model on test labels" in (report_md / "results.md").read_text()
