"""A resumed run is one W&B run: the run id lives in the run folder (real offline W&B runs)."""

import os
import re

import pytest

from asd_ganomaly.runs.tracking import WANDB_ID_FILE, finish_wandb, start_wandb


def _start(run_dir):
    node = {
        "_target_": "lightning.pytorch.loggers.WandbLogger",
        "project": "asd-ganomaly-test",
        "name": "fan sec0",
        "group": "g",
        "save_dir": str(run_dir),
        "offline": True,
        "init_timeout": 5,
    }
    logger = start_wandb(node)
    assert logger is not None
    run_id = logger.experiment.id
    finish_wandb()
    return run_id


@pytest.mark.slow  # three real W&B runs
def test_the_second_start_in_a_run_folder_continues_the_first_w_and_b_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    first, again = _start(tmp_path / "run"), _start(tmp_path / "run")
    assert first == again == (tmp_path / "run" / WANDB_ID_FILE).read_text().strip()
    folders = sorted(p.name for p in (tmp_path / "run" / "wandb").glob("offline-run-*"))
    # offline-run-<start second>-<run id>, and -1, -2... where two segments started within one second
    assert len(folders) >= 1 and all(re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{first}(-\d+)?", n) for n in folders)
    assert _start(tmp_path / "other") != first, "another run folder is another W&B run"
    assert os.path.isfile(tmp_path / "other" / WANDB_ID_FILE)
