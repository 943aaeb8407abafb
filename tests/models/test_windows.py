"""Window-level training and scoring, pooling over time, the adversarial part every k-th batch and the fused
score's components: ``models/windows.py``, ``models/lit_ganomaly.py``, ``models/base.py``."""

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch
from conftest import CSV_ONLY, cli_args, find_run, read_csv, run_cli, small_ganomaly, train_args

from asd_ganomaly.inference.checkpoint import load_detector
from asd_ganomaly.inference.export import export_onnx
from asd_ganomaly.models.windows import join_windows, pool_time, random_windows, split_windows, window_starts

WINDOW = ["model=ganomaly_window"]


def test_windows_cover_every_frame_and_the_last_one_ends_the_clip():
    assert window_starts(64, 32, 16) == [0, 16, 32]
    assert window_starts(56, 32, 16) == [0, 16, 24]
    assert window_starts(32, 32, 16) == [0]
    with pytest.raises(ValueError, match="shorter than the model's window of 32 frames"):
        window_starts(20, 32, 16)


def test_split_then_join_puts_each_window_back_in_time_order():
    x = torch.arange(2 * 3 * 10, dtype=torch.float32).view(2, 3, 10)
    windows = split_windows(x, 4, 4)  # starts 0, 4, 6
    assert windows.shape == (6, 3, 4)
    assert torch.equal(windows[1], x[0, :, 4:8]) and torch.equal(windows[5], x[1, :, 6:10])
    joined = join_windows(windows, 2)
    assert joined.shape == (2, 3, 12)
    assert torch.equal(joined[:, :, :8], x[:, :, :8]) and torch.equal(joined[:, :, 8:], x[:, :, 6:10])


def test_random_windows_are_crops_of_their_own_clip():
    x = torch.arange(2 * 10, dtype=torch.float32).view(2, 1, 10).expand(2, 4, 10).contiguous()
    crops = random_windows(x, 3, per_clip=5)
    assert crops.shape == (10, 4, 3)
    for i, crop in enumerate(crops):
        start = int(crop[0, 0]) - 10 * (i // 5)
        assert 0 <= start <= 7 and torch.equal(crop, x[i // 5, :, start : start + 3])


def test_pooling_over_time():
    values = torch.tensor([[1.0, 2.0, 3.0, 10.0], [4.0, 4.0, 4.0, 4.0]])
    assert pool_time(values, "mean").tolist() == [4.0, 4.0]
    assert pool_time(values, "max").tolist() == [10.0, 4.0]
    assert pool_time(values, "top", 0.5).tolist() == [6.5, 4.0]
    assert pool_time(values, "top", 0.01).tolist() == [10.0, 4.0]  # at least one position
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool_time(values, "median")
    with pytest.raises(ValueError, match="top fraction"):
        pool_time(values, "top", 0.0)


def test_a_window_model_needs_a_network_of_window_size_and_a_known_pooling():
    # Hydra wraps the module's ValueError in an InstantiationException that keeps its message
    with pytest.raises(Exception, match=r"set model.net.input_shape to \[n_mels, 32\]"):
        small_ganomaly("model.window=32")
    with pytest.raises(Exception, match="pooling must be one of"):
        small_ganomaly("model.pool=median")
    with pytest.raises(Exception, match="fuse names"):
        small_ganomaly("model.fuse=[latent,knn]")


def test_a_window_model_scores_a_clip_from_its_windows():
    module = small_ganomaly(*WINDOW).eval()
    module.fit_normalizer(torch.randn(8, 128, 64))
    x = torch.randn(3, 128, 64)  # windows at 0, 16, 32
    with torch.no_grad():
        profiles = module.profiles(module.normalizer(x))
        assert profiles["reconstruction"].shape == (3, 96) and profiles["residual"].shape == (3, 128, 96)
        assert profiles["discriminator"].shape == (3, 3)
        scores = module.score_logmel(x)
        one = module.net.scores(module.normalizer(x)[1:2, :, 16:48])  # the second clip's middle window alone
    assert scores["score_rec"].shape == (3,)
    assert profiles["reconstruction"][1, 32:64].mean() == pytest.approx(one["score_rec"].item(), rel=1e-5)
    module.pool = "max"
    with torch.no_grad():
        assert torch.all(module.score_logmel(x)["score_rec"] >= scores["score_rec"])


def test_mean_pooling_of_a_whole_clip_model_is_the_networks_own_mean():
    module = small_ganomaly().eval()
    module.fit_normalizer(torch.randn(8, 128, 64))
    x = torch.randn(2, 128, 64)
    with torch.no_grad():
        pooled = module.pooled_scores(module.normalizer(x))
        own = module.net.scores(module.normalizer(x))
    for key in ("score", "score_rec", "score_disc"):
        torch.testing.assert_close(pooled[key], own[key])


def test_the_fused_score_sums_only_the_named_components():
    module = small_ganomaly("model.fuse=[latent,reconstruction]")
    module.score_mean.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    module.score_std.copy_(torch.tensor([1.0, 2.0, 1.0, 1.0, 1.0]))
    scores = {"score_latent": torch.tensor([2.0]), "score_rec": torch.tensor([6.0])}
    others = ("score_disc", "score_residual_knn", "score_band_error")
    scores |= {key: torch.tensor([100.0]) for key in others}
    assert module.fuse(scores).item() == pytest.approx(1.0 + 2.0)


def fit_batches(module, batches: int) -> list[str]:
    """Train ``module`` on ``batches`` batches of 4 random clips; the names of the optimizers that stepped."""
    import lightning as L

    from asd_ganomaly.data.datamodule import TensorBatches

    module.fit_normalizer(torch.randn(8, 128, 64))
    stepped = []
    original = module.optimize
    module.optimize = lambda loss, optimizer, name: stepped.append(name) or original(loss, optimizer, name)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        max_epochs=1,
        limit_train_batches=batches,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=TensorBatches((torch.randn(4 * batches, 128, 64),), batch_size=4))
    return stepped


def test_the_adversarial_part_runs_on_every_kth_batch_and_a_window_model_steps_on_windows():
    module = small_ganomaly(*WINDOW, "model.disc_every=3")
    shapes = []
    module.net.generator.register_forward_hook(lambda _m, args, _out: shapes.append(tuple(args[0].shape)))
    stepped = fit_batches(module, 4)
    assert stepped == ["generator", "discriminator", "generator", "generator", "generator", "discriminator"]
    assert set(shapes) == {(4 * 4, 1, 128, 32)}  # 4 clips x 4 windows of 32 frames


@pytest.fixture(scope="session")
def window_run(shared, synthetic_root):
    """A finished run of the windowed GANomaly on fan section 0 (2 epochs), shared (read only)."""

    def build(work):
        run_cli(train_args(synthetic_root, work, *WINDOW, "trainer.max_epochs=2", *CSV_ONLY), cwd=work)

    return find_run(shared.get("window_run", build) / "logs", "fan")


@pytest.mark.slow
def test_a_window_run_trains_scores_new_clips_and_exports_to_onnx(window_run, synthetic_root, tmp_path):
    own = {row["path"]: float(row["score"]) for row in read_csv(window_run / "scores.csv")}
    out = tmp_path / "s.csv"
    run_cli(cli_args("score", "--ckpt", window_run / "model.ckpt", *sorted(own), "--out", out), cwd=tmp_path)
    rescored = {row["path"]: float(row["score"]) for row in read_csv(out)}
    assert rescored.keys() == own.keys() and all(rescored[p] == pytest.approx(own[p], rel=1e-4) for p in own)

    detector = load_detector(window_run / "model.ckpt")
    assert detector.window == 32
    path = export_onnx(detector, tmp_path / "model.onnx", include_features=True)
    clips = sorted((synthetic_root / "fan" / "source_test").glob("*.wav"))[:4]
    waves = torch.from_numpy(np.stack([sf.read(c, dtype="float32")[0] for c in clips]))
    with torch.no_grad():
        expected = detector.score_waveforms(waves)["score"].numpy()
    session = ort.InferenceSession(str(path))
    got = session.run(None, {session.get_inputs()[0].name: waves.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
