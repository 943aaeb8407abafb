"""The run folder lock, against a real second process (``asd_ganomaly/runs/lock.py``)."""

import os
import signal
import subprocess
import sys

import pytest
from conftest import LOCK_HOLDER as HOLD

from asd_ganomaly.runs.lock import RunLockedError, run_lock


@pytest.fixture
def holder_process(tmp_path):
    """A second process that holds ``tmp_path/run``'s lock until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    yield process
    process.kill()
    process.wait()


def test_a_second_process_is_refused_at_once_naming_the_holder(tmp_path, holder_process):
    with pytest.raises(RunLockedError) as refused, run_lock(tmp_path / "run", wait=0):
        pass
    message = str(refused.value)
    assert f"pid {holder_process.pid} on " in message and "started 20" in message
    assert len(message.splitlines()) == 1


def test_kill_9_of_the_holder_leaves_no_stale_lock(tmp_path, holder_process):
    os.kill(holder_process.pid, signal.SIGKILL)
    holder_process.wait()
    with run_lock(tmp_path / "run", wait=5) as lock:  # the kernel released it with the process
        assert str(os.getpid()) in lock.read_text()


def test_a_requeued_slurm_task_waits_for_the_old_holder(tmp_path, holder_process, monkeypatch):
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    subprocess.Popen(["sh", "-c", f"sleep 1; kill -9 {holder_process.pid}"])
    with run_lock(tmp_path / "run", poll=0.05) as lock:  # default wait for a requeue: the holder's exit
        assert str(os.getpid()) in lock.read_text()


def test_the_same_process_can_lock_again_after_the_block(tmp_path):
    with run_lock(tmp_path / "run", wait=0):
        pass
    with run_lock(tmp_path / "run", wait=0):
        pass
