"""Outputs never overwrite inputs and are written whole or not at all: ``asd_ganomaly/core/files.py``."""

import os

import pytest

from asd_ganomaly.core.files import OutputError, atomic_output, check_output
from asd_ganomaly.inference.scoring import is_listed


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "recordings"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.wav").write_bytes(b"RIFF")
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"PK")
    return ckpt, folder


def test_an_output_that_is_an_input_is_refused(inputs, tmp_path):
    ckpt, folder = inputs
    with pytest.raises(OutputError, match="one of the inputs"):
        check_output(ckpt, [ckpt, folder], picked=is_listed)
    with pytest.raises(OutputError, match="one of the inputs"):
        check_output(folder / "sub" / "a.wav", [folder / "sub" / "a.wav"], picked=is_listed)
    link = tmp_path / "link.csv"
    link.symlink_to(ckpt)
    with pytest.raises(OutputError, match="one of the inputs"):
        check_output(link, [ckpt], picked=is_listed)
    hard = tmp_path / "hard.csv"
    os.link(ckpt, hard)
    with pytest.raises(OutputError, match="one of the inputs"):
        check_output(hard, [ckpt], picked=is_listed)


def test_an_output_the_folder_listing_would_read_is_refused(inputs):
    ckpt, folder = inputs
    for name in ("new.wav", "sub/NEW.WAV"):
        with pytest.raises(OutputError, match="inside the input folder"):
            check_output(folder / name, [ckpt, folder], picked=is_listed)
    assert check_output(folder / "scores.csv", [ckpt, folder], picked=is_listed) == folder / "scores.csv"
    with pytest.raises(OutputError, match="is a folder"):
        check_output(folder, [ckpt], picked=is_listed)


def test_an_interrupted_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("the good one\n")
    with pytest.raises(KeyboardInterrupt), atomic_output(path) as tmp:
        tmp.write_text("half a fi")
        raise KeyboardInterrupt
    assert path.read_text() == "the good one\n" and os.listdir(tmp_path) == ["scores.csv"]
    with atomic_output(path) as tmp:
        tmp.write_text("new\n")
    assert path.read_text() == "new\n" and os.listdir(tmp_path) == ["scores.csv"]
