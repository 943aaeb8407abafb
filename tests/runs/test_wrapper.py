"""The failure path of a run (``asd_ganomaly/runs/wrapper.py``): what a failed metrics.json says of a config
too broken for the full record."""

import json

import pytest
from hydra import compose, initialize_config_dir

from asd_ganomaly.data.dcase import ALL_SECTIONS
from asd_ganomaly.runs.checks import ConfigError
from asd_ganomaly.runs.wrapper import record_failure
from asd_ganomaly.train import CONF_DIR


def broken_config(*overrides: str):
    """The training config without data.root: :func:`~asd_ganomaly.runs.identity.run_info` cannot be built."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=["~data.root", *overrides])


@pytest.mark.parametrize(
    ("section", "recorded"), [("null", ALL_SECTIONS), ("all", ALL_SECTIONS), ("0", 0), ("2", 2), ("'???'", -1)]
)
def test_the_failed_record_of_a_broken_config_names_its_section(tmp_path, section, recorded):
    record_failure(broken_config(f"data.section={section}"), tmp_path, ConfigError("broken"), traceback=False)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "failed" and record["machine_type"] == "fan" and record["section"] == recorded
