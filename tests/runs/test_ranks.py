"""Which process of a DDP run owns the run folder, and what a sweep's job restores after its ranks ran."""

import os
import sys

import pytest

from asd_ganomaly.runs.ranks import LAUNCH_VARIABLES, RANK_VARIABLES, is_rank_zero, job_device, job_of_a_sweep


@pytest.fixture
def clean_ranks(monkeypatch):
    for name in {*RANK_VARIABLES, *LAUNCH_VARIABLES}:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("variable", "value", "owner"), [
    (None, None, True), ("LOCAL_RANK", "0", True), ("LOCAL_RANK", "1", False), ("NODE_RANK", "1", False),
    ("RANK", "3", False), ("SLURM_PROCID", "0", True), ("SLURM_PROCID", "2", False), ("LOCAL_RANK", "", True),
])  # fmt: skip
def test_only_rank_zero_owns_the_run_folder(clean_ranks, variable, value, owner):
    if variable:
        clean_ranks.setenv(variable, value)
    assert is_rank_zero() is owner


def test_a_sweeps_job_runs_as_its_own_command_and_leaves_no_launch_environment(clean_ranks):
    clean_ranks.setattr(sys, "argv", ["asd-train", "-m", "model.loss.w_rec=10,50"])
    clean_ranks.setenv("MASTER_PORT", "1234")  # set before the job: kept
    with job_of_a_sweep(["model.loss.w_rec=10", "sweep_keys=[model.loss.w_rec]"]):
        assert sys.argv == ["asd-train", "model.loss.w_rec=10", "sweep_keys=[model.loss.w_rec]"]
        os.environ.update({"LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "5678"})  # as Lightning's launcher
    assert sys.argv == ["asd-train", "-m", "model.loss.w_rec=10,50"]
    assert "LOCAL_RANK" not in os.environ and "WORLD_SIZE" not in os.environ and os.environ["MASTER_PORT"] == "1234"


@pytest.mark.parametrize("gpus", [1, 2, 3, 8])
def test_the_parallel_launchers_job_k_takes_gpu_k_mod_g(gpus):
    assert [job_device(job, gpus, 1, "gpu") for job in range(10)] == [job % gpus for job in range(10)]


@pytest.mark.parametrize(
    ("gpus", "devices", "accelerator"),
    [(0, 1, "auto"), (0, 1, "gpu"), (4, 2, "gpu"), (4, [1], "gpu"), (4, 1, "cpu")],
)
def test_without_a_gpu_or_with_devices_chosen_the_trainer_is_left_as_configured(gpus, devices, accelerator):
    assert job_device(3, gpus, devices, accelerator) is None


def test_the_parallel_launcher_config_is_the_one_the_training_app_spreads_over_gpus():
    from asd_ganomaly.train import compose_config

    launcher = compose_config("hydra/launcher=parallel", return_hydra_config=True).hydra.launcher
    assert "joblib" in launcher._target_.lower()
