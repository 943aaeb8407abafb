"""The checkpoint a resumed run starts from: ``asd_ganomaly/resume.py``."""

import os
from pathlib import Path

import torch

from asd_ganomaly.runs.resume import resume_checkpoint


def test_resume_prefers_a_complete_last_checkpoint(tmp_path):
    save(tmp_path / "epoch0001.ckpt", 1)
    os.symlink("epoch0001.ckpt", tmp_path / "last.ckpt")
    assert resume_checkpoint(tmp_path) == tmp_path / "last.ckpt"
    assert resume_checkpoint(tmp_path / "absent") is None


def test_a_truncated_last_checkpoint_falls_back_to_the_newest_complete_one(tmp_path, caplog):
    save(tmp_path / "epoch0001.ckpt", 1)
    newest = save(tmp_path / "epoch0002.ckpt", 2)
    os.utime(newest, ns=(2 * 10**18, 2 * 10**18))
    last = save(tmp_path / "last.ckpt", 3)
    last.write_bytes(last.read_bytes()[:300])
    assert resume_checkpoint(tmp_path) == newest
    assert (tmp_path / "last.ckpt.corrupt").exists() and not (tmp_path / "last.ckpt").exists()
    assert "not a complete checkpoint" in caplog.text
    assert torch.load(resume_checkpoint(tmp_path), weights_only=True)["epoch"] == 2


def test_a_dangling_last_link_or_no_usable_checkpoint_starts_afresh_with_a_warning(tmp_path, caplog):
    os.symlink("epoch0009.ckpt", tmp_path / "last.ckpt")
    (tmp_path / "epoch0003.ckpt").write_bytes(b"PK\x03\x04 not a whole archive")
    assert resume_checkpoint(tmp_path) is None
    assert not os.path.lexists(tmp_path / "last.ckpt"), "a new last.ckpt can be written, no last-v1.ckpt"
    assert "links to a missing file" in caplog.text and "starting afresh" in caplog.text


class NotAWeight:
    """A Python object a weights-only load refuses to unpickle."""


def test_a_last_checkpoint_that_a_weights_only_load_refuses_is_set_aside(tmp_path, caplog):
    good = save(tmp_path / "epoch0001.ckpt", 1)
    torch.save({"w": torch.zeros(4), "payload": NotAWeight()}, tmp_path / "last.ckpt")
    assert resume_checkpoint(tmp_path) == good
    assert (tmp_path / "last.ckpt.corrupt").exists() and not (tmp_path / "last.ckpt").exists()
    assert "weights-only load refuses it" in caplog.text


def save(path: Path, value: float) -> Path:
    torch.save({"w": torch.full((64,), value), "epoch": value}, path)
    return path
