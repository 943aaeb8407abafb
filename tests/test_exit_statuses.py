"""The exit statuses of README.md's table, one test per row (the others name their test in the table), and a check
that every test the table names exists: the table cannot promise what no test asserts."""

import re
import socket
from pathlib import Path

import pytest
from conftest import CLI, cli_args, kept_result, run_cli, tone, write_wav

README = Path(__file__).resolve().parents[1] / "README.md"


def exit_table_rows() -> list[tuple[str, str, str]]:
    """(situation, status, test) of each row of the README's exit-status table."""
    text = README.read_text().split("## Exit statuses", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    return [tuple(cell.strip() for cell in row) for row in rows[1:]]


def test_every_row_of_the_readme_exit_table_names_a_test_that_exists():
    rows = exit_table_rows()
    assert len(rows) >= 10, rows
    sources = {path: path.read_text() for path in Path(__file__).parent.rglob("test_*.py")}
    for situation, status, test in rows:
        assert re.fullmatch(r"\d+(, \d+)?", status), (situation, status)
        path, name = re.fullmatch(r"`(tests/\S+\.py)::(test_\w+)`", test).groups()
        source = sources.get(README.parent / path, "")
        assert f"def {name}(" in source, f"the README's exit table names {path}::{name}, which does not exist"


@pytest.mark.slow
def test_a_single_run_that_completes_exits_0(ganomaly_run):
    assert kept_result(ganomaly_run.parents[4]).returncode == 0


@pytest.mark.slow
def test_a_sweep_with_a_failed_run_exits_1_with_the_other_runs_written(tiny_sweep):
    sweep, result = tiny_sweep
    assert result.returncode == 1
    assert "1 failed" in result.stdout + result.stderr
    statuses = sorted(p.read_text().count('"completed"') > 0 for p in sweep.rglob("metrics.json"))
    assert statuses == [False, True, True], "drill failed, fan and valve written"


@pytest.fixture
def model_ckpt(ganomaly_run) -> Path:
    return ganomaly_run / "model.ckpt"  # the shared run's (read only)


@pytest.mark.slow
def test_score_exits_0_when_every_clip_is_scored_and_1_when_some_or_all_files_fail(model_ckpt, tmp_path):
    good = [write_wav(tmp_path / "in" / f"section_00_source_test_normal_{i:04d}.wav", tone(2.0)) for i in range(2)]
    done = run_cli(
        cli_args("score", "--ckpt", model_ckpt, *good, "--out", tmp_path / "a.csv", "--no-progress"), tmp_path
    )
    assert done.returncode == 0 and "scored 2 clips" in done.stdout
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    some = run_cli(cli_args("score", "--ckpt", model_ckpt, *good, bad, "--out", tmp_path / "b.csv", "--no-progress"),
                   tmp_path, check=False)  # fmt: skip
    assert some.returncode == 1 and "scored 2 clips" in some.stdout and "1 failed" in some.stdout
    every = run_cli(cli_args("score", "--ckpt", model_ckpt, bad, "--out", tmp_path / "c.csv", "--no-progress"),
                    tmp_path, check=False)  # fmt: skip
    assert every.returncode == 1 and "scored 0 clips" in every.stdout and (tmp_path / "c.csv").is_file()


def test_score_of_a_folder_without_wav_files_is_a_user_error_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "model.ckpt").write_bytes(b"never read")
    result = run_cli(cli_args("score", "--ckpt", tmp_path / "model.ckpt", tmp_path / "empty"), tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    *warnings, line = [x for x in result.stderr.splitlines() if x.strip()]  # a warning per empty folder, then why
    assert line.startswith("asd-ganomaly score: error: no WAV files found in "), line
    assert all(w.startswith("WARNING no WAV files under") for w in warnings), warnings


@pytest.mark.slow  # three retries with backoff: 7 s
def test_a_download_that_fails_for_want_of_a_network_exits_1(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [
        "download",
        "dev",
        "--root",
        tmp_path / "data",
        "--machines",
        "fan",
        "--api-url",
        f"http://127.0.0.1:{port}",
    ]
    result = run_cli([CLI, *map(str, args)], tmp_path, check=False)
    assert result.returncode == 1, result.stderr
    assert "failed after" in result.stderr and "Traceback" not in result.stderr
