"""The detector base class's fast paths give the same scores as the plain path: channels-last, bf16 autocast,
features kept on the device, torch.compile (``asd_ganomaly/models/base.py``)."""

import pytest
import torch
from conftest import small_ganomaly_config
from hydra.utils import instantiate

from asd_ganomaly.data.datamodule import TensorBatches
from asd_ganomaly.models.base import build_detector
from asd_ganomaly.train import compose_config

QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def trained_small_module(**overrides):
    cfg = small_ganomaly_config()
    module = instantiate(cfg.model, **overrides)
    torch.manual_seed(0)
    gains = torch.linspace(0.2, 3.0, 32).view(32, 1, 1)  # clips far apart, so their scores are too
    features = torch.randn(32, 128, 64) * 10 * gains - 40
    module.fit_normalizer(features)
    module.train()
    with torch.no_grad():  # a few forward passes in train mode give BatchNorm real running statistics
        for _ in range(3):
            module.net(module.normalizer(features))
    module.eval().fit_memory([(features[16:],)])  # the bank of residual_knn, ganomaly_small's score
    return module, features


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ranks = [x.argsort().argsort().double() for x in (a, b)]
    return float(torch.corrcoef(torch.stack(ranks))[0, 1])


@pytest.mark.parametrize(
    ("option", "clips"),
    [
        ("channels_last", 16),  # clips 16-31 fill the residual bank: their distance to themselves is rounding noise
        # inductor builds C++ kernels: 15-20 s with a warm kernel cache, far more on a fresh machine
        pytest.param("compile_net", 4, marks=pytest.mark.slow),
    ],
)
def test_a_fast_path_gives_the_same_scores(option, clips):
    plain, features = trained_small_module()
    fast, _ = trained_small_module(**{option: True})
    fast.load_state_dict(plain.state_dict())
    fast.setup("test")
    with torch.no_grad():
        expected, got = plain.score_logmel(features[:clips])["score"], fast.score_logmel(features[:clips])["score"]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_scores_inside_a_bf16_autocast_region_are_fp32_accurate(device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU here")
    module, features = trained_small_module()
    module, features = module.to(device), features.to(device)
    with torch.no_grad():
        fp32 = module.score_logmel(features)
        with torch.autocast(device, dtype=torch.bfloat16):
            mixed = module.score_logmel(features)
            naive = module.net.scores(module.normalizer(features))["score"].float()
    for key in fp32:
        torch.testing.assert_close(mixed[key], fp32[key], rtol=1e-5, atol=1e-8)
    assert naive.unique().numel() < fp32["score"].unique().numel(), "bf16 itself would blur the latent distances"


@pytest.mark.slow  # two trainings of three epochs
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_bf16_mixed_training_tracks_fp32_training(device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU here")
    import lightning as L

    from asd_ganomaly.data.datamodule import TensorBatches

    results = []
    for precision in ("32-true", "bf16-mixed"):
        module, features = trained_small_module()
        module.load_state_dict(trained_small_module()[0].state_dict())  # identical start
        trainer = L.Trainer(
            accelerator=device, precision=precision, max_epochs=3, logger=False, enable_checkpointing=False
        )
        trainer.fit(module, train_dataloaders=TensorBatches((features.to(device),), batch_size=16, shuffle=True))
        module.eval()
        with torch.no_grad():
            results.append(module.score_logmel(features.to(device))["score_rec"].cpu())
    fp32, bf16 = results
    assert spearman(fp32, bf16) > 0.95
    assert ((bf16 - fp32).abs() / fp32.abs()).max() < 0.05


def test_the_autoencoder_steps_through_optimize_and_stops_on_a_non_finite_loss():
    import lightning as L

    from asd_ganomaly.models.base import TrainingDivergedError

    cfg = compose_config("model=ae_baseline", "data.features.frames=64", "model.vectors_per_batch=64")
    module = build_detector(cfg.model)
    module.fit_normalizer(torch.randn(8, 128, 64))
    before = [p.detach().clone() for p in module.net.parameters()]
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, max_steps=2, **QUIET)
    trainer.fit(module, train_dataloaders=TensorBatches((torch.randn(2, 128, 64),), batch_size=2))
    assert trainer.global_step == 2  # one optimizer step per 64 context vectors
    assert all(not torch.equal(a, b) for a, b in zip(before, module.net.parameters(), strict=True))

    bad = torch.full((2, 128, 64), float("nan"))  # every minibatch of vectors, whatever the shuffle
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, max_steps=1, **QUIET)
    with pytest.raises(TrainingDivergedError, match=r"autoencoder loss is nan at epoch 0, global step 0"):
        trainer.fit(module, train_dataloaders=TensorBatches((bad,), batch_size=2))
    assert issubclass(TrainingDivergedError, FloatingPointError)  # what callers caught before
