"""The entry points' help: a short usage text with examples, not a config dump."""

import pytest
from conftest import TRAIN, run_process


@pytest.mark.slow
def test_asd_train_help_is_a_usage_text_with_examples_and_the_config_groups(tmp_path):
    shown = run_process([TRAIN, "--help"], tmp_path).stdout  # the entry point from a new interpreter
    assert shown.startswith("asd-train: ") and "Usage: asd-train" in shown and "Examples:" in shown
    assert "model: ae_baseline, ganomaly, ganomaly_authors, ganomaly_small" in shown
    assert "_target_" not in shown and len(shown.splitlines()) < 40


def test_asd_ganomaly_help_renders_without_markup_and_subcommands_show_defaults(capsys):
    from asd_ganomaly.cli import build_parser

    parser = build_parser()
    assert "``" not in parser.format_help()
    synth = parser._subparsers._group_actions[0].choices["synth"].format_help()
    assert "(default: 1000)" in synth and "9 GB" in synth and "(default: 10.0)" in synth


def test_a_threshold_that_is_not_finite_is_refused():
    from asd_ganomaly.cli import build_parser

    for bad in ("nan", "inf", "-inf"):
        with pytest.raises(SystemExit) as refused:
            build_parser().parse_args(["score", "--ckpt", "m.ckpt", "--threshold", bad, "a.wav"])
        assert refused.value.code == 2
    assert build_parser().parse_args(["score", "--ckpt", "m.ckpt", "--threshold", "1.5", "a.wav"]).threshold == 1.5
