"""GANomaly modules, losses, one manual optimisation step, configs composed by Hydra."""

import numpy as np
import pytest
import torch
from conftest import small_ganomaly
from hydra.utils import instantiate

from asd_ganomaly.data.datamodule import TensorBatches
from asd_ganomaly.models.ganomaly import Decoder, Encoder, GANomaly
from asd_ganomaly.models.lit_ganomaly import TrainingDivergedError
from asd_ganomaly.models.loss import GeneratorLoss
from asd_ganomaly.train import compose_config


@pytest.mark.parametrize(
    ("model", "latent", "activation"),
    [("ganomaly", (256, 16, 39), torch.nn.Tanh), ("ganomaly_authors", (256, 16, 39), torch.nn.ReLU)],
)
def test_full_size_configs_have_the_published_shapes(model, latent, activation):
    cfg = compose_config(f"model={model}")
    net: GANomaly = instantiate(cfg.model.net)
    x = torch.randn(2, 128, 312)
    with torch.no_grad():
        x_pad, x_rec, z, z_prime = net(x)
        logit, features = net.discriminator(x_pad)
    assert x_pad.shape == x_rec.shape == (2, 1, 128, 312)
    assert z.shape == z_prime.shape == (2, *latent)
    assert logit.shape == (2,)
    assert isinstance(net.generator.decoder.layers[-1], activation)
    generator_params = sum(p.numel() for p in net.generator.parameters())
    assert generator_params == pytest.approx(15.59e6, rel=0.01)  # reference.md 1.3: E1 + D + E2
    if model == "ganomaly_authors":
        assert features.shape == (2, 256, 8, 20)  # Linear(40960, 1) as in the authors' code
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.generator.encoder1.layers[-2:])


@pytest.mark.parametrize("frames", [312, 313, 100, 64])
def test_other_frame_counts_are_padded_to_the_stride(frames):
    net = GANomaly(
        [128, frames],
        encoder={"channels": [4, 4, 8, 8], "strides": [2, 2, 2, 2]},
        decoder={"channels": [8, 8, 4, 1], "strides": [2, 2, 2, 2]},
        discriminator={"channels": [4, 4, 4, 4, 4], "strides": [2] * 5},
    )
    scores = net.scores(torch.randn(3, 128, frames))
    assert set(scores) == {"score", "score_rec", "score_disc"}
    assert all(s.shape == (3,) and torch.isfinite(s).all() for s in scores.values())


def test_mismatched_strides_are_refused():
    with pytest.raises(ValueError, match="downsamples by 16"):
        GANomaly(
            [128, 64],
            encoder={"channels": [4] * 4, "strides": [2] * 4},
            decoder={"channels": [4, 4, 1], "strides": [2] * 3},
            discriminator={"channels": [4] * 5, "strides": [2] * 5},
        )


def test_a_latent_vector_is_the_only_path_from_the_input_to_the_reconstruction():
    module = small_ganomaly("model.net.latent_vector=16")
    net = module.net.eval()
    x = torch.randn(3, 128, 64)
    with torch.no_grad():
        _, x_rec, z, z_prime = net(x)
        assert z.shape == z_prime.shape == (3, 16, 1, 1)
        assert torch.equal(net.generator.decoder(z), x_rec)  # the decoder sees the 16 numbers and nothing else
        assert net.profiles(x)["latent"].shape == (3, 1)
        assert torch.allclose(net.scores(x)["score"], (z - z_prime).pow(2).mean((1, 2, 3)))
    with pytest.raises(ValueError, match="latent_vector must be >= 1"):
        GANomaly(
            [128, 64],
            encoder={"channels": [4] * 4, "strides": [2] * 4},
            decoder={"channels": [4, 4, 4, 1], "strides": [2] * 4},
            discriminator={"channels": [4] * 5, "strides": [2] * 5},
            latent_vector=0,
        )


def test_encoder_block_order_is_conv_leakyrelu_batchnorm():
    layers = list(Encoder([4, 8], [2, 1]).layers)
    assert [type(m).__name__ for m in layers[:3]] == ["Conv2d", "LeakyReLU", "BatchNorm2d"]
    assert Decoder(8, [4, 1], [2, 2]).total_stride == 4


def test_loss_weights_from_the_command_line_reach_the_loss():
    overrides = ("model.loss.w_rec=10", "model.loss.w_adv=0.5", "model.optimizer_g.lr=0.01", "model.loss.ano=l2")
    module = small_ganomaly(*overrides)
    assert (module.loss.w_rec, module.loss.w_ano, module.loss.w_adv) == (10.0, 1.0, 0.5)
    opt_g, _ = module.configure_optimizers()[0]
    assert opt_g.param_groups[0]["lr"] == 0.01
    same = torch.ones(2, 1, 4, 4)
    logits = (torch.zeros(2), None)
    terms = module.loss(same, same, torch.zeros(2, 3), torch.ones(2, 3), logits, logits)
    assert terms["ano"].item() == pytest.approx(np.sqrt(3))  # the report's L2 norm per clip
    assert terms["loss"].item() == pytest.approx(10 * 0 + 1 * np.sqrt(3) + 0.5 * 0)


def test_authors_loss_is_mse_with_feature_matching():
    loss = GeneratorLoss(ano="mse", adv="feature_mse")
    terms = loss(
        torch.zeros(2, 1, 2, 2),
        torch.ones(2, 1, 2, 2),
        torch.zeros(2, 3),
        torch.full((2, 3), 2.0),
        (torch.zeros(2), torch.zeros(2, 5)),
        (torch.zeros(2), torch.full((2, 5), 3.0)),
    )
    assert (terms["rec"].item(), terms["ano"].item(), terms["adv"].item()) == (1.0, 4.0, 9.0)
    assert terms["loss"].item() == pytest.approx(50 + 4 + 9)


@pytest.mark.parametrize("overrides", [(), ("model.net.latent_vector=8",)])
def test_one_manual_step_changes_generator_and_discriminator(overrides):
    import lightning as L

    module = small_ganomaly(*overrides)
    module.fit_normalizer(torch.randn(8, 128, 64))
    batches = TensorBatches((torch.randn(4, 128, 64),), batch_size=4)
    before_g = [p.detach().clone() for p in module.net.generator.parameters()]
    before_d = [p.detach().clone() for p in module.net.discriminator.parameters()]
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, max_steps=1, enable_progress_bar=False
    )
    trainer.fit(module, train_dataloaders=batches)
    changed_g = sum(not torch.equal(a, b) for a, b in zip(before_g, module.net.generator.parameters(), strict=True))
    changed_d = sum(not torch.equal(a, b) for a, b in zip(before_d, module.net.discriminator.parameters(), strict=True))
    assert module.automatic_optimization is False
    assert changed_g == len(before_g) and changed_d == len(before_d)
    assert trainer.global_step == 2  # one step of each optimizer


def test_non_finite_loss_stops_with_a_message_naming_the_step():
    import lightning as L

    module = small_ganomaly()
    module.fit_normalizer(torch.randn(8, 128, 64))
    bad = torch.randn(4, 128, 64)
    bad[0, 0, 0] = float("nan")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, max_steps=1)
    with pytest.raises(TrainingDivergedError, match=r"generator loss is nan at epoch 0, global step 0"):
        trainer.fit(module, train_dataloaders=TensorBatches((bad,), batch_size=4))


def test_schedulers_from_config_step_each_epoch():
    import lightning as L

    module = small_ganomaly(
        "model/scheduler@model.scheduler_g=step",
        "model.scheduler_g.step_size=1",
        "model/scheduler@model.scheduler_d=cosine",
        "trainer.max_epochs=2",
    )
    module.fit_normalizer(torch.randn(8, 128, 64))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, max_epochs=2)
    trainer.fit(module, train_dataloaders=TensorBatches((torch.randn(4, 128, 64),), batch_size=4))
    opt_g, opt_d = module.optimizers()
    assert opt_g.param_groups[0]["lr"] == pytest.approx(5e-4 * 0.25)  # halved after each of 2 epochs
    assert opt_d.param_groups[0]["lr"] < 5e-4 * 0.01  # cosine over trainer.max_epochs reaches ~0


def test_reconstruction_score_leaves_the_zero_padding_out():
    net = GANomaly(
        [128, 100],  # padded to 112 frames: 12 frames of zeros
        encoder={"channels": [4, 4, 8, 8], "strides": [2, 2, 2, 2]},
        decoder={"channels": [8, 8, 4, 1], "strides": [2, 2, 2, 2]},
        discriminator={"channels": [4, 4, 4, 4, 4], "strides": [2] * 5},
    ).eval()
    x = torch.randn(3, 128, 100)
    with torch.no_grad():
        x_pad, x_rec, z, z_prime = net(x)
        scores = net.scores(x)
    assert x_pad.shape[-1] == 112 and z.shape[-1] == 7
    on_clip = (x_pad - x_rec)[..., :100].abs().flatten(1).mean(1)
    with_padding = (x_pad - x_rec).abs().flatten(1).mean(1)
    assert torch.allclose(scores["score_rec"], on_clip)
    assert not torch.allclose(scores["score_rec"], with_padding, rtol=1e-3)
    assert torch.allclose(scores["score"], (z - z_prime).pow(2).flatten(1).mean(1))


def test_small_config_standardises_bands_and_the_report_config_stays_as_published():
    small = compose_config("model=ganomaly_small").model
    report = compose_config("model=ganomaly").model
    assert (small.normalization, small.net.decoder.output_activation, small.loss.ano) == ("standard", "none", "mse")
    assert (report.normalization, report.net.decoder.output_activation, report.loss.ano) == ("minmax", "tanh", "l2")
    module = small_ganomaly()
    features = torch.randn(6, 128, 64) * torch.linspace(1, 20, 128)[:, None] - 40
    module.fit_normalizer(features)
    normalised = module.normalizer(features)
    assert torch.allclose(normalised.mean(dim=(0, 2)), torch.zeros(128), atol=1e-4)
    assert torch.allclose(normalised.std(dim=(0, 2)), torch.ones(128), atol=1e-3)
    assert isinstance(module.net.generator.decoder.layers[-1], torch.nn.Identity)
