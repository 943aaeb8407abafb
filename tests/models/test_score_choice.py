"""model.score: the chosen score, the fused score's statistics, every score's metrics, checkpoint and ONNX."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import CSV_ONLY, find_run, read_csv, run_cli, small_ganomaly_config, train_args
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from asd_ganomaly.cli import main as cli_main
from asd_ganomaly.data.datamodule import TensorBatches
from asd_ganomaly.inference.checkpoint import load_detector
from asd_ganomaly.inference.export import export_onnx
from asd_ganomaly.models.base import SCORE_KEYS, AnomalyDetector, build_detector
from asd_ganomaly.results.report import write_report
from asd_ganomaly.runs.files import read_metrics
from asd_ganomaly.train import compose_config


def small_detector(score: str):
    torch.manual_seed(0)
    cfg = small_ganomaly_config(f"++model.score={score}")
    module = instantiate(cfg.model)
    module.fit_normalizer(torch.randn(16, 128, 64))
    return module, cfg


@pytest.mark.parametrize("score", ["latent", "reconstruction", "discriminator", "residual_knn", "band_error", "fused"])
def test_the_chosen_score_is_the_detector_score_and_the_others_stay(score):
    module, _ = small_detector(score)
    module.calibrate_threshold(TensorBatches((torch.randn(16, 128, 64),), batch_size=8))
    scores = module.eval().score_logmel(torch.randn(6, 128, 64))
    names = ("latent", "reconstruction", "discriminator", "residual_knn", "band_error", "fused")
    assert set(scores) == {"score", *(SCORE_KEYS[n] for n in names)}
    assert torch.equal(scores["score"], scores[SCORE_KEYS[score]])


def test_fused_score_standardises_each_score_on_the_training_normals():
    module, cfg = small_detector("fused")
    train = torch.randn(16, 128, 64)
    threshold = module.calibrate_threshold(TensorBatches((train,), batch_size=8))
    module.eval()
    components = [SCORE_KEYS[n] for n in module.components]
    module.scoring_training_clips = True  # as in calibration: each clip left out of the residual bank
    train_scores = module.score_logmel(train)
    module.scoring_training_clips = False
    stacked = torch.stack([train_scores[k] for k in components], dim=-1).double()
    assert torch.allclose(module.score_mean.double(), stacked.mean(0), rtol=1e-4)
    assert torch.allclose(module.score_std.double(), stacked.std(0), rtol=1e-4)
    standardised = (stacked - module.score_mean.double()) / module.score_std.double()
    assert torch.allclose(train_scores["score"].double(), standardised.sum(-1), atol=1e-4)
    assert standardised.std(0).sub(1).abs().max() < 1e-3, "each standardised score has unit std on the normals"
    assert np.isfinite(threshold) and threshold > train_scores["score"].median().item()

    fresh = instantiate(cfg.model)
    fresh.load_state_dict(module.state_dict())
    test = torch.randn(5, 128, 64)
    assert torch.allclose(fresh.eval().score_logmel(test)["score"], module.score_logmel(test)["score"])


@pytest.mark.parametrize(("score", "atol"), [("fused", 1e-4), ("residual_knn", 1e-3), ("band_error", 1e-3)])
def test_onnx_export_reproduces_the_score(score, atol, tmp_path):
    module, _ = small_detector(score)
    module.calibrate_threshold(TensorBatches((torch.randn(16, 128, 64),), batch_size=8))
    # an untrained discriminator's score barely varies (std ~1e-6 at 0.48): float32 rounding divided by that std
    # would swamp the fused comparison, so its statistics are widened to 1 % of its mean for this check
    module.score_std.clamp_(min=module.score_mean.abs() * 1e-2)
    path = export_onnx(module, tmp_path / f"{score}.onnx")
    logmel = torch.randn(3, 128, 64)
    onnx_scores = ort.InferenceSession(str(path)).run(["score"], {"logmel": logmel.numpy()})[0]
    with torch.no_grad():
        expected = module.eval().score_logmel(logmel)["score"].numpy()
    assert np.allclose(onnx_scores, expected, atol=atol)


def test_residual_knn_compares_a_clip_residual_with_the_nearest_training_clip():
    module, cfg = small_detector("residual_knn")
    train = torch.randn(12, 128, 64)
    module.calibrate_threshold(TensorBatches((train,), batch_size=5))
    module.eval()
    assert len(module.residual_bank.bank) == len(train), "one bank entry per training clip"
    # a training clip is its own nearest neighbour (distance 0) unless it is left out, as in calibration
    assert module.score_logmel(train[:3])["score"].abs().max() < 1e-3
    module.scoring_training_clips = True
    assert module.score_logmel(train[:3])["score"].min() > 0.1
    module.scoring_training_clips = False
    louder = train[:4].clone()
    louder[:, 40:44] += 3.0  # four bands 3 standard deviations up: a residual no training clip has
    assert (module.score_logmel(louder)["score"] > module.score_logmel(train[:4] + 0.01)["score"]).all()

    fresh = instantiate(cfg.model)  # an empty bank takes the checkpoint's, whatever its size
    fresh.load_state_dict(module.state_dict())
    test = torch.randn(5, 128, 64)
    assert torch.allclose(fresh.eval().score_logmel(test)["score"], module.score_logmel(test)["score"])


def test_residual_knn_is_not_a_number_before_the_bank_is_filled():
    module, _ = small_detector("latent")
    scores = module.eval().score_logmel(torch.randn(2, 128, 64))
    assert scores["score_residual_knn"].isnan().all() and scores["score"].isfinite().all()


def test_band_error_standardises_each_band_error_on_the_training_clips():
    module, cfg = small_detector("band_error")
    train = torch.randn(12, 128, 64)
    module.calibrate_threshold(TensorBatches((train,), batch_size=5))
    module.eval()
    # the training clips' squared z-scores average (n - 1) / n in every band (the std is the unbiased one)
    assert module.score_logmel(train)["score"].mean().item() == pytest.approx(11 / 12, rel=1e-3)
    quieter = train[:4].clone()
    quieter[:, 40:44] *= 0.2  # four bands far quieter: their error leaves the normal range, the mean error does not
    scores, plain = module.score_logmel(quieter), module.score_logmel(train[:4])
    assert (scores["score"] > plain["score"] + 0.5).all()

    fresh = instantiate(cfg.model)
    fresh.load_state_dict(module.state_dict())
    assert torch.allclose(fresh.eval().score_logmel(quieter)["score"], scores["score"])
    before = {k: v for k, v in module.state_dict().items() if not k.startswith("band_errors.")}
    older = instantiate(cfg.model)  # a checkpoint written before the score existed loads, the score unfitted
    older.load_state_dict(before)
    loaded = older.eval().score_logmel(quieter)
    assert loaded["score_band_error"].isnan().all()
    assert torch.allclose(loaded["score_rec"], scores["score_rec"])


def test_band_error_is_not_a_number_before_it_is_fitted():
    module, _ = small_detector("latent")
    assert module.eval().score_logmel(torch.randn(2, 128, 64))["score_band_error"].isnan().all()


def test_a_score_the_model_does_not_compute_is_refused():
    with pytest.raises(InstantiationException, match="score must be one of .'reconstruction', 'fused'.*'latent'"):
        build_detector(compose_config("model=ae_baseline", "model.score=latent").model)
    with pytest.raises(InstantiationException, match="score must be one of"):
        small_detector("loudness")


@pytest.fixture(scope="session")
def reconstruction_run(shared, synthetic_root):
    """A finished run of fan section 0 with another score than ganomaly_small's own, shared (read only); returns
    its sweep folder."""

    def build(work):
        args = train_args(synthetic_root, work, "++model.score=reconstruction", "trainer.max_epochs=2", *CSV_ONLY)
        run_cli(args, cwd=work)

    return shared.get("reconstruction_run", build) / "logs" / "train"


@pytest.mark.slow
def test_metrics_carry_every_score_and_intervals(reconstruction_run):
    run = find_run(reconstruction_run)
    metrics = read_metrics(run)
    assert set(metrics["scores"]) == {
        "latent",
        "reconstruction",
        "discriminator",
        "residual_knn",
        "band_error",
        "fused",
    }
    for domain in ("source", "target"):
        chosen = metrics["metrics"][domain]
        assert chosen["auc"] == metrics["scores"]["reconstruction"][domain]["auc"]
        assert chosen["auc_low"] <= chosen["auc"] <= chosen["auc_high"]
        assert chosen["pauc_low"] <= chosen["pauc"] <= chosen["pauc_high"]
    rows = read_csv(run / "scores.csv")
    assert all(r["score"] == r["score_rec"] for r in rows) and any(r["score"] != r["score_latent"] for r in rows)


@pytest.mark.slow
def test_checkpoint_scores_with_the_chosen_score(reconstruction_run, synthetic_root, tmp_path):
    run = find_run(reconstruction_run)
    assert load_detector(run / "model.ckpt").score_choice == "reconstruction"
    out = tmp_path / "scores.csv"
    clips = str(synthetic_root / "fan" / "source_test")
    assert cli_main(["score", "--ckpt", str(run / "model.ckpt"), clips, "--out", str(out)]) == 0
    rescored = {r["path"]: float(r["score"]) for r in read_csv(out)}
    own = {r["path"]: float(r["score_rec"]) for r in read_csv(run / "scores.csv") if r["domain"] == "source"}
    assert own and all(rescored[p] == pytest.approx(own[p], rel=1e-4) for p in own)


@pytest.mark.slow
def test_report_shows_every_score_and_the_official_interval(reconstruction_run, tmp_path):
    _, md_path = write_report(reconstruction_run, tmp_path)
    text = md_path.read_text()
    header = (
        "| setting | machine | section | domain | latent | reconstruction | discriminator | residual_knn | band_error "
        "| fused |"
    )
    assert header in text
    line = next(line for line in text.splitlines() if line.startswith("- ganomaly_small:"))
    point = float(line.split()[2])
    low, high = (float(v) for v in line.split("95 % interval ")[1].split(")")[0].split("-"))
    assert low <= point <= high


def test_a_detector_that_names_no_scores_keeps_its_own_score():
    class Plain(AnomalyDetector):
        def clip_scores(self, logmel):
            return {"score": logmel.mean(dim=(1, 2))}

    detector = Plain(features={"frames": 64}, normalization="none")
    logmel = torch.randn(4, 128, 64)
    scores = detector.score_logmel(logmel)
    assert torch.equal(scores["score"], logmel.mean(dim=(1, 2)))
    assert detector.score_names() == ["default"] and "score_fused" in scores
