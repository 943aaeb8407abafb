"""benchmarks/faults_table.py: the README's case table lists its cases, and the script writes that table in place."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "faults_table.py"
spec = importlib.util.spec_from_file_location("faults_table", SCRIPT)
faults_table = importlib.util.module_from_spec(spec)
sys.modules["faults_table"] = faults_table  # its dataclasses look their module up there
spec.loader.exec_module(faults_table)

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_table() -> list[list[str]]:
    text = README.read_text()
    start, end = text.index(faults_table.README_START), text.index(faults_table.README_END)
    rows = [line.split(" | ") for line in text[start:end].splitlines() if line.startswith("| ") and "---" not in line]
    return [[cell.strip("| ") for cell in row] for row in rows[1:]]


def test_the_readme_case_table_holds_every_case_of_the_script_once_each_ending_without_a_traceback():
    rows = readme_table()
    assert [row[0] for row in rows] == [name for name, _ in faults_table.ROUND_THREE]
    for name, status, _first, tracebacks, _ending in rows:
        assert tracebacks == "0", f"{name}: a traceback on the console"
        assert status in {"0", "1", "2", "130"}, (name, status)


def test_write_readme_replaces_only_the_table_between_its_markers(tmp_path):
    readme = tmp_path / "README.md"
    before = f"# title\n\n{faults_table.README_START}\nold table\n{faults_table.README_END}\n\nafter\n"
    readme.write_text(before)
    faults_table.write_readme("| case |\n|---|\n| a |", readme)
    assert readme.read_text() == before.replace("old table", "| case |\n|---|\n| a |")


def test_the_table_shows_no_machine_path():
    line = "asd-train: error: could not write /tmp/x/round3_2/disk/logs/train/m/label-1/fan_sec0/model.ckpt: full"
    assert faults_table.shorter(line) == "asd-train: error: could not write <run>/model.ckpt: full"
    assert faults_table.shorter("in /tmp/abc/round3_10/data/fan") == "in data/fan"
