"""The k-NN baseline: memory bank, leave-one-out calibration, a real run, and a checkpoint scored again."""

import pytest
import torch
from conftest import CSV_ONLY, find_run, read_csv, run_cli, train_args

from asd_ganomaly.cli import main as cli_main
from asd_ganomaly.inference.checkpoint import load_detector
from asd_ganomaly.models.knn import KNNDetector, clip_statistics
from asd_ganomaly.runs.files import read_metrics


def test_clip_statistics_are_band_means_then_band_stds():
    logmel = torch.stack([torch.full((3, 10), 2.0), torch.arange(30.0).view(3, 10)])
    stats = clip_statistics(logmel)
    assert stats.shape == (2, 6)
    assert torch.allclose(stats[0], torch.tensor([2.0, 2.0, 2.0, 0.0, 0.0, 0.0]))
    assert torch.allclose(stats[1, :3], torch.tensor([4.5, 14.5, 24.5]))
    assert torch.allclose(stats[1, 3:], torch.arange(10.0).std(unbiased=False).expand(3))


def test_scores_are_distances_to_the_nearest_training_clips_and_leave_one_out_skips_itself():
    torch.manual_seed(0)
    train = torch.randn(20, 8, 16)
    net = KNNDetector(n_mels=8, k=2)
    net.fit(train)
    assert net.bank.shape == (20, 16)
    own = net.scores(train)["score_knn"]
    loo = net.scores(train, leave_one_out=True)["score_knn"]
    distances = torch.cdist(net.embed(train), net.bank)
    expected = distances.sort(dim=1).values[:, 1:3].mean(1)
    assert torch.allclose(loo, expected, atol=1e-5)
    assert (loo > own).all(), "with itself in the bank a training clip is closer to its neighbours"
    far = net.scores(train[:4] + 5.0)["score_knn"]
    assert (far > loo.max()).all()


def test_a_fresh_module_takes_a_bank_of_any_size():
    net = KNNDetector(n_mels=8, k=3)
    net.fit(torch.randn(13, 8, 16))
    fresh = KNNDetector(n_mels=8, k=3)
    assert not fresh.fitted
    fresh.load_state_dict(net.state_dict())
    queries = torch.randn(5, 8, 16)
    assert fresh.bank.shape == (13, 16)
    assert torch.equal(fresh.scores(queries)["score_knn"], net.scores(queries)["score_knn"])
    with pytest.raises(RuntimeError, match="bank is empty"):
        KNNDetector(n_mels=8).scores(queries)


@pytest.fixture(scope="session")
def knn_run(shared, synthetic_root):
    """A finished k-NN run of fan section 0, shared (read only)."""

    def build(work):
        run_cli(train_args(synthetic_root, work, *CSV_ONLY, model="knn_baseline"), cwd=work)

    return find_run(shared.get("knn_run", build) / "logs")


@pytest.mark.slow
def test_knn_baseline_detects_clearly_anomalous_clips(knn_run):
    metrics = read_metrics(knn_run)
    assert metrics["status"] == "completed" and metrics["model"] == "knn_baseline"
    assert metrics["hmean"]["auc"] > 0.9, metrics["hmean"]
    assert set(metrics["scores"]) == {"knn"}
    assert metrics["metrics"]["source"]["auc_low"] <= metrics["metrics"]["source"]["auc"]
    rows = read_csv(knn_run / "scores.csv")
    normals = [r for r in rows if r["label"] == "0"]
    assert sum(r["decision"] == "1" for r in normals) < len(normals) / 2, "leave-one-out keeps the threshold up"


@pytest.mark.slow
def test_knn_checkpoint_scores_the_test_clips_again(knn_run, synthetic_root, tmp_path):
    detector = load_detector(knn_run / "model.ckpt")
    assert detector.net.bank.shape[0] == 96 + 3  # source and target training clips of fan section 0
    out = tmp_path / "scores.csv"
    ckpt = str(knn_run / "model.ckpt")
    assert cli_main(["score", "--ckpt", ckpt, str(synthetic_root / "fan"), "--out", str(out)]) == 0
    rescored = {r["path"]: float(r["score"]) for r in read_csv(out)}
    own = {r["path"]: float(r["score"]) for r in read_csv(knn_run / "scores.csv")}
    assert own and all(rescored[p] == pytest.approx(own[p], rel=1e-4) for p in own)
    assert (knn_run / "checkpoints").is_dir()
