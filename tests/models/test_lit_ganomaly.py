"""The GANomaly LightningModule's collapse handling: ``asd_ganomaly/models/lit_ganomaly.py``."""

import pytest
import torch
from conftest import small_ganomaly

from asd_ganomaly.data.datamodule import TensorBatches
from asd_ganomaly.models.lit_ganomaly import TrainingDivergedError


def test_collapse_stops_the_run_when_configured():
    module = small_module("model.on_collapse=stop", "model.collapse_threshold=1e9", "model.collapse_patience=2")
    with pytest.raises(TrainingDivergedError, match="GAN collapse: discriminator loss below"):
        fit_steps(module)


def test_collapse_reinitialises_the_discriminator(caplog):
    module = small_module("model.on_collapse=reinit", "model.collapse_threshold=1e9", "model.collapse_patience=1")
    calls = []
    original = module.net.discriminator.apply
    module.net.discriminator.apply = lambda fn: calls.append(fn) or original(fn)
    fit_steps(module, steps=2)
    assert len(calls) == 2 and "re-initialising the discriminator" in caplog.text


def small_module(*overrides):
    module = small_ganomaly(*overrides)
    module.fit_normalizer(torch.randn(8, 128, 64))
    return module


def fit_steps(module, steps=2):
    import lightning as L

    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, max_steps=2 * steps, enable_progress_bar=False
    )
    trainer.fit(module, train_dataloaders=TensorBatches((torch.randn(8, 128, 64),), batch_size=4))
