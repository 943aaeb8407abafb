"""Every config group composes, and every model config instantiates into a working module."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from asd_ganomaly.train import CONF_DIR

MODELS = sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml"))


def compose_config(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("model", MODELS)
def test_each_model_config_builds_a_scoring_module(model):
    cfg = compose_config(f"model={model}", "data.features.frames=64", "data.features.seconds=2.0")
    module = instantiate(cfg.model)
    module.fit_normalizer(torch.randn(4, 128, 64) * 10 - 40)
    if model == "knn_baseline":  # no weights to train: its memory bank is filled from training clips
        module.net.fit(torch.randn(4, 128, 64) * 10 - 40)
    module.eval()
    with torch.no_grad():
        scores = module.score_waveforms(torch.randn(3, 32000) * 0.05)
    assert scores["score"].shape == (3,) and torch.isfinite(scores["score"]).all()
    assert cfg.model.name == model


@pytest.mark.parametrize(
    "overrides",
    [
        ["debug=default"],
        ["experiment=demo"],
        ["experiment=dev_all", "model=ae_baseline"],
        ["trainer=gpu"],
        ["logger=csv"],
        ["callbacks=none"],
        ["hparams_search=optuna"],
    ],
)
def test_config_groups_compose(overrides):
    cfg = compose_config(*overrides)
    assert cfg.data.features.n_mels == 128 and cfg.model._target_


def test_demo_sweeps_all_21_combinations():
    cfg = compose_config("experiment=demo")
    params = cfg.hydra.sweeper.params
    assert len(params["data.machine_type"].split(",")) * len(params["data.section"].split(",")) == 21
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.trainer.accelerator == "cpu"
