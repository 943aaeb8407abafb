"""Run folders: ``asd_ganomaly/runs.py``."""

import pytest

from asd_ganomaly.runs.files import check_output_dir


def test_unwritable_or_full_output_is_refused_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        check_output_dir(blocker / "run", 0.0)
    with pytest.raises(OSError, match="GB free"):
        check_output_dir(tmp_path / "run", min_free_gb=1e12)
