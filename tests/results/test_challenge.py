"""DCASE 2021 Task 2 submissions: written from a real run, evaluated as the official evaluator does, and every
malformed submission refused with the file and clip named (``asd_ganomaly/results/challenge.py``)."""

import csv
import json
from pathlib import Path

import pytest
from conftest import cli_args, run_cli

from asd_ganomaly.results.challenge import SubmissionError, evaluate, parts_in, read_rows, summary

EXTRA = "section_03_source_test_0099.wav"
GROUND_TRUTH = Path(__file__).resolve().parents[3] / "shared" / "reference" / "dcase2021-eval-ground-truth"


def write(path: Path, rows: list[tuple[str, object]], newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name},{value}{newline}" for name, value in rows))
    return path


def _pairs(names: list[str], values: list) -> list[tuple[str, object]]:
    return list(zip(names, values, strict=True))


def toy(tmp_path: Path) -> tuple[Path, Path]:
    """Ground truth and a perfect submission for fan section 03 source (4 clips)."""
    names = [f"section_03_source_test_{i:04d}.wav" for i in range(4)]
    labels = [0, 1, 0, 1]
    truth = write(
        tmp_path / "gt" / "ground_truth_fan_section_03_source_test.csv", list(zip(names, labels, strict=True))
    )
    write(
        tmp_path / "sub" / "anomaly_score_fan_section_03_source_test.csv",
        list(zip(names, [0.1, 0.9, 0.2, 0.8], strict=True)),
    )
    write(tmp_path / "sub" / "decision_result_fan_section_03_source_test.csv", list(zip(names, labels, strict=True)))
    return truth.parent, tmp_path / "sub"


def test_the_organisers_ground_truth_parses_with_its_counts_and_crlf_file():
    if not GROUND_TRUTH.is_dir():
        pytest.skip("shared/reference is not beside this checkout")
    parts = parts_in(GROUND_TRUTH, "ground_truth")
    assert len(parts) == 42 and {p.section for p in parts} == {3, 4, 5}
    rows = {part: read_rows(path, binary=True) for part, path in parts.items()}
    assert sum(len(r) for r in rows.values()) == 8635
    crlf = next(r for p, r in rows.items() if (p.machine_type, p.section, p.domain) == ("fan", 5, "target"))
    assert len(crlf) == 200 and all(name.endswith(".wav") for name in crlf)
    assert all(set(r.values()) == {0.0, 1.0} for r in rows.values())


def test_a_perfect_submission_scores_one(tmp_path):
    truth, submission = toy(tmp_path)
    (row,) = evaluate(submission, truth)
    assert row["auc"] == row["pauc"] == row["precision"] == row["recall"] == row["f1"] == 1.0
    assert summary([row])["official_score"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda s: (s / "anomaly_score_fan_section_03_source_test.csv").unlink(), "lacks anomaly_score_fan"),
        (lambda s: _edit(s, "anomaly_score", lambda rows: rows[:-1]), "missing 1"),
        (
            lambda s: _edit(s, "anomaly_score", lambda rows: [*rows, ("section_03_source_test_0099.wav", "1")]),
            "extra 1",
        ),
        (lambda s: _edit(s, "anomaly_score", lambda rows: [("x.wav", rows[0][1]), *rows[1:]]), "missing 1.*extra 1"),
        (lambda s: _edit(s, "anomaly_score", lambda rows: [*rows, rows[0]]), "appears twice"),
        (lambda s: _edit(s, "anomaly_score", lambda rows: [(rows[0][0], "nan"), *rows[1:]]), "not a finite number"),
        (lambda s: _edit(s, "anomaly_score", lambda rows: [(rows[0][0], "high"), *rows[1:]]), "'high' is not a number"),
        (lambda s: _edit(s, "decision_result", lambda rows: [(rows[0][0], "2"), *rows[1:]]), "'2' is not 0 or 1"),
        (
            lambda s: _edit(s, "anomaly_score", lambda rows: [(*rows[0], "x"), *rows[1:]]),
            "expected '<file name>,<value>'",
        ),
    ],
)
def test_a_malformed_submission_is_refused_naming_the_file_and_clip(tmp_path, damage, message):
    truth, submission = toy(tmp_path)
    damage(submission)
    with pytest.raises(SubmissionError, match=message):
        evaluate(submission, truth)


def _edit(submission: Path, kind: str, change) -> None:
    path = submission / f"{kind}_fan_section_03_source_test.csv"
    rows = [tuple(r) for r in csv.reader(path.open())]
    path.write_text("".join(",".join(r) + "\n" for r in change(rows)))


@pytest.mark.slow
def test_submit_then_evaluate_gives_the_runs_own_metrics(ganomaly_run, tmp_path):
    run = ganomaly_run  # the shared run (read only): its log folder holds it alone
    submission, truth = tmp_path / "submission", tmp_path / "truth"
    run_cli(cli_args("submit", run.parents[2], "--out", submission), cwd=tmp_path)
    with open(run / "scores.csv") as handle:  # the ground truth of the same clips, from the run's own labels
        for row in csv.DictReader(handle):
            name = Path(row["path"]).name
            write_row = truth / f"ground_truth_fan_section_00_{row['domain']}_test.csv"
            write_row.parent.mkdir(exist_ok=True)
            with open(write_row, "a") as out:
                out.write(f"{name},{row['label']}\n")
    shown = run_cli(cli_args("evaluate", submission, "--ground-truth", truth, "--out", tmp_path / "r.csv"), tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    rows = {r["domain"]: r for r in evaluate(submission, truth)}
    for domain in ("source", "target"):
        for key in ("auc", "pauc", "precision", "recall", "f1"):
            assert rows[domain][key] == pytest.approx(metrics["metrics"][domain][key], abs=1e-6), (domain, key)
    assert summary(list(rows.values()))["official_score"] == pytest.approx(metrics["dcase_score"], abs=1e-9)
    assert "official score" in shown.stdout and (tmp_path / "r.csv").read_text().count("\n") == 1 + 2 + 3 + 1
    assert (tmp_path / "r.csv").read_text().splitlines()[1].startswith("fan,0,source,")
    assert "harmonic_mean_auc" in (submission / "meta.yaml").read_text()
    scores = (submission / "anomaly_score_fan_section_00_source_test.csv").read_text().splitlines()
    assert scores[0].startswith("section_00_source_test_") and len(scores[0].split(",")) == 2


def _ground_truth_of(run: Path, truth: Path) -> Path:
    """The ground-truth files of a run's test clips, from the run's own labels."""
    with open(run / "scores.csv") as handle:
        for row in csv.DictReader(handle):
            path = truth / f"ground_truth_{run.name.split('_sec')[0]}_section_00_{row['domain']}_test.csv"
            path.parent.mkdir(exist_ok=True)
            with open(path, "a") as out:
                out.write(f"{Path(row['path']).name},{row['label']}\n")
    return truth


@pytest.mark.slow
def test_submit_refuses_a_folder_of_another_submission_unless_forced_and_evaluate_names_a_mix(
    tiny_sweep, ganomaly_run, tmp_path
):
    """A fan-only submission written over a fan + valve one: refused naming the valve files (nothing written);
    ``--force`` removes them first, and meta.yaml then lists the one run and fan's parts. A valve file copied back
    in by hand: evaluate names it instead of scoring the mix."""
    sweep, _ = tiny_sweep  # fan and valve completed, drill failed (shared: read only)
    out = tmp_path / "submission"
    run_cli(cli_args("submit", sweep, "--out", out, "--allow-partial"), tmp_path)
    both = sorted(p.name for p in out.iterdir())
    assert len(both) == 9 and "anomaly_score_valve_section_00_source_test.csv" in both
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fan_only = ganomaly_run.parents[2]
    refused = run_cli(cli_args("submit", fan_only, "--out", out), tmp_path, check=False)
    assert refused.returncode == 2
    (line,) = [x for x in refused.stderr.splitlines() if x.strip()]
    assert line.startswith("asd-ganomaly submit: error: ") and "holds files of another submission" in line, line
    assert "anomaly_score_valve_section_00_source_test.csv" in line and "--force" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "a refused submit writes nothing"
    run_cli(cli_args("submit", fan_only, "--out", out, "--force"), tmp_path)
    assert sorted(p.name for p in out.iterdir()) == [
        *(f"{kind}_fan_section_00_{domain}_test.csv" for kind in ("anomaly_score", "decision_result")
          for domain in ("source", "target")), "meta.yaml"]  # fmt: skip
    meta = (out / "meta.yaml").read_text()
    assert "runs: 1" in meta and "parts: [fan_section_00_source, fan_section_00_target]" in meta, meta
    truth = _ground_truth_of(ganomaly_run, tmp_path / "truth")
    assert {row["domain"] for row in evaluate(out, truth)} == {"source", "target"}
    valve = "anomaly_score_valve_section_00_source_test.csv"
    (out / valve).write_bytes(before[valve])
    with pytest.raises(SubmissionError, match="not in meta.yaml: valve_section_00_source \\(anomaly_score\\)"):
        evaluate(out, truth)
    (out / valve).unlink()
    (out / "decision_result_fan_section_00_target_test.csv").unlink()
    with pytest.raises(SubmissionError, match="in meta.yaml but absent: fan_section_00_target \\(decision_result\\)"):
        evaluate(out, truth)
