"""Sweeps through a real one-node Slurm cluster (tests/slurm/up.sh): the launcher's array job, every run's files and
the report, then pre-emption (``scontrol requeue``) and the requeued job resuming from last.ckpt.

The cluster comes up once per session and goes down at the end (a cluster already up, from ``make slurm-up``, is
used and left up). Where Slurm cannot start (not root, no package), the sweep runs through submitit's local
executor instead, with the reason printed; ``ASD_SLURM_REQUIRED=1`` makes that a failure instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import training_probes
from conftest import cli_args, find_run, read_csv, run_cli, run_process, train_args

pytestmark = [pytest.mark.slow, pytest.mark.alone]

SCRIPTS = Path(__file__).resolve().parent / "slurm"
EPOCHS = 3  # the requeue lands in epoch 1: the job waits there for it (training_probes.PauseAtBatch)
REQUEUE_JOB = "asd-requeue"


@dataclass
class Cluster:
    """How the tests submit: ``launcher`` is ``slurm`` or, where Slurm cannot start, ``submitit_local``."""

    launcher: str
    env: dict[str, str] = field(default_factory=dict)
    reason: str = ""


def _script(name: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / name)], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def slurm_cluster(pytestconfig):
    """The cluster of tests/slurm/up.sh, torn down at the end of the session if this session brought it up."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    up = _script("up.sh", env)
    if up.returncode != 0:
        reason = (up.stderr.strip().splitlines() or [f"up.sh exited {up.returncode}"])[-1]
        if os.environ.get("ASD_SLURM_REQUIRED") == "1":
            pytest.fail(f"Slurm did not start and ASD_SLURM_REQUIRED=1: {up.stderr}")
        message = f"Slurm cannot start here ({reason}): the sweep runs through submitit_local instead"
        with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
            print(f"\n{message}", file=sys.stderr)
        warnings.warn(message, stacklevel=1)
        yield Cluster("submitit_local", env, reason)
        return
    env["SLURM_CONF"] = up.stdout.strip().splitlines()[-1].removeprefix("export SLURM_CONF=")
    owned = "already up" not in up.stderr
    try:
        yield Cluster("slurm", env)
    finally:
        if owned:
            down = _script("down.sh", env)
            assert down.returncode == 0, down.stderr


def launcher_overrides(cluster: Cluster, job_name: str = "asd-sweep") -> list[str]:
    """Tiny tasks: one CPU, no GPU, 2 GB, one thread (a `setup` line, as a cluster user loads modules)."""
    common = ["hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=15", f"hydra.launcher.name={job_name}"]
    if cluster.launcher == "slurm":
        return [
            "hydra/launcher=slurm",
            "hydra.launcher.gpus_per_node=null",
            "hydra.launcher.mem_gb=2",
            'hydra.launcher.setup=["export OMP_NUM_THREADS=1"]',
            *common,
        ]
    return ["hydra/launcher=submitit_local", *common]


def sweep_args(
    cluster: Cluster, root: Path, log_dir: Path, machines: str, *extra: str, job_name: str = "asd-sweep"
) -> list[str]:
    """``asd-train -m experiment=demo hydra/launcher=slurm ...`` on the synthetic data, small runs."""
    overrides = ["experiment=demo", *launcher_overrides(cluster, job_name), f"data.machine_type={machines}"]
    overrides += ["data.section=0", f"trainer.max_epochs={EPOCHS}", "logger=csv", *extra]
    return train_args(root, log_dir.parent, *overrides, log_dir=log_dir, multirun=True)


@pytest.fixture(scope="module")
def slurm_sweep(slurm_cluster, synthetic_root, tmp_path_factory):
    """fan and valve, section 0, submitted as one array job (the command fails unless it exits 0); returns the
    log folder."""
    work = tmp_path_factory.mktemp("slurm_sweep")
    log_dir = work / "logs"
    run_process(sweep_args(slurm_cluster, synthetic_root, log_dir, "fan,valve"), work, 900, env=slurm_cluster.env)
    return log_dir


def test_sweep_through_slurm_writes_every_run_and_the_report(slurm_cluster, slurm_sweep, tmp_path):
    log_dir = slurm_sweep
    for machine in ("fan", "valve"):
        metrics = json.loads((find_run(log_dir, machine) / "metrics.json").read_text())
        assert metrics["status"] == "completed" and metrics["machine_type"] == machine
        assert 0 < metrics["dcase_score"] <= 1
    tasks = [p for p in (log_dir / "demo" / ".submitit").iterdir() if list(p.glob("*_result.pkl"))]
    assert len(tasks) == 2, f"one submitit task per run: {tasks}"
    if slurm_cluster.launcher == "slurm":
        scripts = list((log_dir / "demo" / ".submitit").rglob("*_submission.sh"))
        assert len(scripts) == 1 and "#SBATCH --array=0-1" in scripts[0].read_text(), "one Slurm array job"
        assert "#SBATCH --requeue" in scripts[0].read_text()
    report = run_cli(cli_args("report", log_dir / "demo", "--out", tmp_path), tmp_path)
    assert "Official score" in report.stdout
    rows = read_csv(tmp_path / "results.csv")
    assert {(r["machine_type"], r["domain"], r["status"]) for r in rows} == {
        (m, d, "completed") for m in ("fan", "valve") for d in ("source", "target")
    }


def wait_for(condition, timeout: float, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the sweep ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.2)


def requeue_mid_run(paused: Path, env: dict[str, str], process: subprocess.Popen) -> None:
    """Once the job waits mid-epoch (``paused`` is written), ``scontrol requeue`` it: Slurm sends SIGTERM and queues
    it again."""
    wait_for(paused.exists, 600, process, "job waiting mid-epoch")
    squeue = ["squeue", "-h", "-n", REQUEUE_JOB, "-t", "RUNNING", "-o", "%i"]
    job = subprocess.run(squeue, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert len(job) == 1, f"one running job named {REQUEUE_JOB}: {job}"
    subprocess.run(["scontrol", "requeue", job[0]], env=env, check=True, timeout=60)


def test_requeued_job_resumes_from_last_ckpt_and_ends_like_an_uninterrupted_run(
    slurm_cluster, slurm_sweep, synthetic_root, tmp_path
):
    if slurm_cluster.launcher != "slurm":
        pytest.skip(f"needs Slurm for scontrol requeue: {slurm_cluster.reason}")
    log_dir, paused = tmp_path / "logs", tmp_path / "paused"
    pause = training_probes.pause_overrides(paused, epoch=1, batch=5)
    args = sweep_args(slurm_cluster, synthetic_root, log_dir, "fan", *pause, job_name=REQUEUE_JOB)
    env = {**slurm_cluster.env, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = training_probes.python_path()  # the job imports training_probes
    with (tmp_path / "sweep.log").open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", *args], cwd=tmp_path, env=env, stdout=output, stderr=output)
        try:
            requeue_mid_run(paused, env, process)
            assert process.wait(timeout=600) == 0, (tmp_path / "sweep.log").read_text()[-4000:]
        finally:
            process.kill()
    run = find_run(log_dir, "fan")
    slurm_log = "".join(p.read_text() for p in (log_dir / "demo" / ".submitit").rglob("*_log.err"))
    assert "DUE TO JOB REQUEUE" in slurm_log, "Slurm requeued the job"
    train_log = (run / "train.log").read_text()
    interrupted, resumed = train_log.find("interrupted (SIGTERM) at epoch"), train_log.find("resuming from")
    assert 0 <= interrupted < resumed, f"saved last.ckpt on SIGTERM, then resumed from it:\n{train_log[-3000:]}"
    assert "dataloader is not resumable" not in train_log
    # the same config (same folder name) as the sweep's fan run, which was not interrupted: the same result
    reference = find_run(slurm_sweep, "fan")
    assert run.parent.name == reference.parent.name
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert (run / "scores.csv").read_text() == (reference / "scores.csv").read_text()
    metrics, expected = (json.loads((r / "metrics.json").read_text()) for r in (run, reference))
    assert metrics["metrics"] == expected["metrics"] and metrics["dcase_score"] == expected["dcase_score"]
