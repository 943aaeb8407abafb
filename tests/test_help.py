"""The entry points' help: a short usage text with examples, not a config dump."""

import pytest
from conftest import TRAIN, run_cli


@pytest.mark.slow
def test_asd_train_help_is_a_usage_text_with_examples_and_the_config_groups(tmp_path):
    shown = run_cli([TRAIN, "--help"], tmp_path).stdout
    assert shown.startswith("asd-train: ") and "Usage: asd-train" in shown and "Examples:" in shown
    assert "model: ae_baseline, ganomaly, ganomaly_authors, ganomaly_small" in shown
    assert "_target_" not in shown and len(shown.splitlines()) < 40
