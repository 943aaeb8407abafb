"""Every config group composes, and every model config instantiates into a working module."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from asd_ganomaly.models.base import RUN_KEYS, build_detector
from asd_ganomaly.train import CONF_DIR, conf_fingerprint
from asd_ganomaly.train import compose_config as compose_with_hydra

MODELS = sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml"))


def compose_config(*overrides: str):
    return compose_with_hydra(*overrides, return_hydra_config=True)


@pytest.mark.parametrize("model", MODELS)
def test_each_model_config_builds_a_scoring_module(model):
    short = ["model.net.window=32"] if model == "mobilenetv2_baseline" else []  # 2 s clips: 63 frames
    cfg = compose_config(f"model={model}", "data.features.frames=64", "data.features.seconds=2.0", *short)
    module = build_detector(cfg.model)
    module.fit_normalizer(torch.randn(4, 128, 64) * 10 - 40)
    if model == "knn_baseline":  # no weights to train: its memory bank is filled from training clips
        module.net.fit(torch.randn(4, 128, 64) * 10 - 40)
    module.eval()
    module.fit_memory([(torch.randn(4, 128, 64) * 10 - 40,)])  # GANomaly's residual bank (residual_knn)
    with torch.no_grad():
        sections = torch.tensor([0, 1, 0]) if module.needs_section else None
        scores = module.score_waveforms(torch.randn(3, 32000) * 0.05, sections)
    assert scores["score"].shape == (3,) and torch.isfinite(scores["score"]).all()
    assert cfg.model.name == model
    assert not any(hasattr(module, key) for key in RUN_KEYS)  # the run's keys steer the grid and trainer only


@pytest.mark.parametrize(
    ("model", "keys"), [("ae_baseline", {"scope"}), ("mobilenetv2_baseline", {"scope", "max_epochs"})]
)
def test_a_models_run_keys_stay_in_its_config_and_out_of_its_constructor(model, keys):
    cfg = compose_config(f"model={model}")
    assert keys <= set(cfg.model)  # the grid (experiment=dev_all) and trainer.max_epochs read them there
    node = OmegaConf.to_container(cfg.model, resolve=True)
    with pytest.raises(Exception, match="unexpected keyword argument"):
        instantiate(node)  # the modules take no scope or max_epochs
    assert build_detector(node).__class__.__name__ in ("AutoencoderModule", "MobileNetV2Module")


@pytest.mark.parametrize(
    ("overrides", "key", "expected"),
    [
        (["debug=default"], "trainer.max_epochs", 1),
        (["experiment=demo"], "model.name", "ganomaly_small"),
        (["experiment=dev_all", "model=ae_baseline"], "model._target_", "asd_ganomaly.models.lit_ae.AutoencoderModule"),
        (["model=mobilenetv2_baseline"], "trainer.max_epochs", 20),
        (["model=ganomaly"], "trainer.max_epochs", 300),
        (["trainer=gpu"], "trainer.precision", "bf16-mixed"),
        (["logger=csv"], "logger.wandb", None),
        (["callbacks=none"], "callbacks.model_checkpoint", None),
        (["hparams_search=optuna"], "optimized_metric", "test/dcase_score"),
    ],
)
def test_config_groups_compose_with_their_own_settings(overrides, key, expected):
    cfg = compose_config(*overrides)
    assert OmegaConf.select(cfg, key, default=None) == expected


def test_demo_sweeps_all_21_combinations():
    cfg = compose_config("experiment=demo")
    params = cfg.hydra.sweeper.params
    assert len(params["data.machine_type"].split(",")) * len(params["data.section"].split(",")) == 21
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.trainer.accelerator == "cpu"


def test_dev_all_types_sweeps_7_machine_types_on_all_their_sections():
    cfg = compose_config("experiment=dev_all_types", "model=mobilenetv2_baseline")
    params = cfg.hydra.sweeper.params
    assert len(params["data.machine_type"].split(",")) == 7 and params["data.section"] == "all"
    assert cfg.task_name == "dev_all_types" and cfg.trainer.max_epochs == 20
    assert len(compose_config("experiment=dev_all").hydra.sweeper.params["data.section"].split(",")) == 3


@pytest.mark.slow
def test_the_optuna_study_lives_in_the_sweep_folder_and_a_second_search_continues_it(synthetic_root, tmp_path):
    import optuna
    from conftest import CSV_ONLY, run_cli, train_args

    search = ["hparams_search=optuna", "data.machine_type=fan", "data.section=0", "hydra.sweeper.n_trials=1"]
    args = train_args(synthetic_root, tmp_path, *search, "trainer.max_epochs=1", *CSV_ONLY)
    for _ in range(2):
        run_cli(args, cwd=tmp_path)
    database = tmp_path / "logs" / "optuna" / "optuna.db"
    study = optuna.load_study(study_name="ganomaly_fan_sec0", storage=f"sqlite:///{database}")
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all(trial.value is not None and set(trial.params) >= {"model.loss.w_rec"} for trial in study.trials)


@pytest.mark.slow  # MLflow's import and its SQLite store: seconds
@pytest.mark.parametrize(("logger", "store"), [("tensorboard", "tensorboard"), ("mlflow", "mlflow.db")])
def test_tensorboard_and_mlflow_loggers_keep_their_files_in_the_run_folder(logger, store, tmp_path):
    from asd_ganomaly.runs.tracking import instantiate_loggers

    cfg = compose_with_hydra(f"logger={logger}", f"paths.output_dir={tmp_path}")
    assert set(cfg.logger) == {logger, "csv"}
    loggers = instantiate_loggers(cfg.logger)
    for each in loggers:
        each.log_metrics({"test/dcase_score": 0.5}, step=0)
        each.finalize("success")
    assert (tmp_path / store).exists(), "a local store in the run folder, no server"


@pytest.mark.parametrize(("logger", "package"), [("tensorboard", "tensorboardX"), ("mlflow", "mlflow")])
def test_a_logger_whose_package_is_missing_stops_with_the_pip_command(logger, package, tmp_path, monkeypatch):
    import importlib.util

    from asd_ganomaly.core.errors import UserError
    from asd_ganomaly.runs.tracking import instantiate_loggers

    cfg = compose_with_hydra(f"logger={logger}", f"paths.output_dir={tmp_path}")
    find_spec = importlib.util.find_spec
    missing = {"tensorboardX", "tensorboard", "mlflow"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else find_spec(name, *a))
    with pytest.raises(UserError, match=rf"logger={logger} needs the {package} package.*\[trackers\]'$"):
        instantiate_loggers(cfg.logger)


def test_each_compose_is_a_copy_of_its_own_and_a_changed_config_file_is_read_again(tmp_path):
    first = compose_with_hydra("model=ae_baseline")
    first.model.name = "changed by the caller"
    assert compose_with_hydra("model=ae_baseline").model.name == "ae_baseline"
    (tmp_path / "model.yaml").write_text("w_rec: 1\n")
    before = conf_fingerprint(str(tmp_path))
    (tmp_path / "model.yaml").write_text("w_rec: 10\n")  # one byte longer: another fingerprint on any clock
    assert conf_fingerprint(str(tmp_path)) != before
    assert len(conf_fingerprint()) == len(list(Path(CONF_DIR).rglob("*.yaml"))) > 30


def test_a_users_config_folder_on_the_search_path_is_read_at_every_compose(tmp_path):
    """The folders of hydra.searchpath are the user's own: a change there shows in the next compose."""
    mine = tmp_path / "my_conf" / "experiment"
    mine.mkdir(parents=True)
    overrides = (f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", "experiment=my_plant")
    for seed in (1, 2):
        (mine / "my_plant.yaml").write_text(f"# @package _global_\nseed: {seed}\n")
        assert compose_with_hydra(*overrides).seed == seed
