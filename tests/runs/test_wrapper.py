"""The failure path of a run (``asd_ganomaly/runs/wrapper.py``): what a failed metrics.json says of a config
too broken for the full record; a user error raised inside Hydra as one line."""

import json
import os

import pytest
from omegaconf.errors import InterpolationResolutionError

from asd_ganomaly.core.errors import UserError, error_line
from asd_ganomaly.data.dcase import ALL_SECTIONS
from asd_ganomaly.runs.checks import ConfigError
from asd_ganomaly.runs.wrapper import one_line_user_errors, record_failure, user_error_cause
from asd_ganomaly.train import compose_config


def broken_config(*overrides: str):
    """The training config without data.root: :func:`~asd_ganomaly.runs.identity.run_info` cannot be built."""
    return compose_config("~data.root", *overrides)


@pytest.mark.parametrize(
    ("section", "recorded"), [("null", ALL_SECTIONS), ("all", ALL_SECTIONS), ("0", 0), ("2", 2), ("'???'", -1)]
)
def test_the_failed_record_of_a_broken_config_names_its_section(tmp_path, section, recorded):
    record_failure(broken_config(f"data.section={section}"), tmp_path, ConfigError("broken"), traceback=False)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "failed" and record["machine_type"] == "fan" and record["section"] == recorded


def resolver_refusal() -> None:
    """What Hydra raises for ``data.machine_type=../fan``: OmegaConf's error, caused by the resolver's."""
    from omegaconf.errors import InterpolationResolutionError

    from asd_ganomaly.core.files import plain_name

    try:
        plain_name("../fan")
    except UserError:  # as OmegaConf raises it: the cause cleared, the resolver's error only the context
        refusal = InterpolationResolutionError("PathNameError raised while resolving interpolation")
        refusal.__cause__ = None
        raise refusal  # noqa: B904


def test_a_user_error_inside_hydra_is_one_line_and_exit_2(capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exited:
        one_line_user_errors(resolver_refusal, prog="asd-train")()
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("asd-train: error: '../fan' cannot be part of a run folder")
    assert "HYDRA_FULL_ERROR" not in os.environ and "ASD_GANOMALY_FULL_ERROR" not in os.environ, "restored"


def test_other_errors_inside_hydra_are_reported_as_hydra_does_and_full_error_keeps_tracebacks(capsys, monkeypatch):
    def bug() -> None:
        raise KeyError("a bug")

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exited:
        one_line_user_errors(bug)()
    assert exited.value.code == 1 and "KeyError: 'a bug'" in capsys.readouterr().err
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(InterpolationResolutionError):
        one_line_user_errors(resolver_refusal)()
    assert os.environ["HYDRA_FULL_ERROR"] == "1"


def test_the_user_error_of_a_chain_is_found_through_its_causes_only():
    refusal = ConfigError("seed must be an integer")
    try:
        try:
            raise refusal
        except ConfigError:
            raise RuntimeError("a bug while handling it")  # noqa: B904 (the context, not a cause)
    except RuntimeError as outer:
        assert user_error_cause(outer) is None, "a bug raised while handling a user error stays a bug"
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = refusal
    assert user_error_cause(wrapped) is refusal and user_error_cause(KeyError("x")) is None
    assert error_line("asd-train", ValueError("two\n  lines")) == "asd-train: error: two; lines"
