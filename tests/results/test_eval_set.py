"""The evaluation set end to end: unlabelled test clips are scored and decided (no AUC), ``experiment=eval_all``
grids sections 03-05 by the model's scope, ``synth --eval`` writes the layout and its ground truth, and the
submission of such a sweep evaluates to the numbers the package's metrics give on the same clips' labels."""

import json
from pathlib import Path

import pytest
import torch
from conftest import CSV_ONLY, cli_args, run_cli, train_args

from asd_ganomaly.data.dcase import DatasetError, check_test_labels, list_clips, parse_clip_name, train_clips
from asd_ganomaly.data.synth import ground_truth_path, write_synthetic_dataset, write_synthetic_eval_dataset
from asd_ganomaly.evaluation.metrics import auc_pauc, decision_metrics, official_score
from asd_ganomaly.evaluation.summary import run_results
from asd_ganomaly.results.challenge import evaluate, read_rows, summary
from asd_ganomaly.runs.console import run_summary
from asd_ganomaly.runs.files import read_scores
from asd_ganomaly.train import compose_config


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_an_evaluation_clip_name_parses_without_a_label():
    clip = parse_clip_name("eval_data/fan/test/section_03_source_test_0007.wav")
    assert (clip.section, clip.domain, clip.split, clip.index) == (3, "source", "test", 7)
    assert (clip.label, clip.is_labelled, clip.label_code) == ("unknown", False, -1)


def test_a_test_split_is_labelled_or_not_and_a_mix_is_refused_naming_the_files(tmp_path):
    touch(tmp_path / "fan/test/section_03_source_test_0000.wav")
    touch(tmp_path / "fan/test/section_03_target_test_0000.wav")
    assert check_test_labels(list_clips(tmp_path, "fan", 3, "test")) is False
    touch(tmp_path / "fan/test/section_03_source_test_normal_0001.wav")
    touch(tmp_path / "fan/test/section_03_source_test_anomaly_0002.wav")
    with pytest.raises(DatasetError, match=r"2 of 4 test clips .*section_03_source_test_0000.wav"):
        check_test_labels(list_clips(tmp_path, "fan", 3, "test"))


def test_unlabelled_scores_give_decisions_and_no_auc():
    scores = {
        "score": torch.tensor([0.1, 0.9, 0.5, 2.0]),
        "label": torch.full((4,), -1),
        "domain": torch.tensor([0, 0, 1, 1]),
    }
    results = run_results(scores, torch.tensor(0.7), {"default": "score"}, per_section=False)
    assert results["labelled"] is False and "source" not in results and "dcase_score" not in results
    assert results["decisions"] == {
        "source": {"clips": 2, "decided_anomalous": 1},
        "target": {"clips": 2, "decided_anomalous": 1},
    }
    line = run_summary(
        0, "fan sec3", {"test/decisions/source/clips": 2.0, "test/decisions/target/clips": 2.0}, 3, "completed"
    )
    assert "no test labels: 4 clips scored and decided" in line


def test_extra_train_roots_add_the_dev_sections_to_a_per_machine_type_run(tmp_path):
    for name in ("section_03_source_train_normal_0000_a.wav", "section_04_target_train_normal_0000_a.wav"):
        touch(tmp_path / "eval/fan/train" / name)
    touch(tmp_path / "dev/fan/train/section_00_source_train_normal_0000_a.wav")
    assert sorted(c.section for c in train_clips(tmp_path / "eval", "fan", None, [tmp_path / "dev"])) == [0, 3, 4]
    assert [c.section for c in train_clips(tmp_path / "eval", "fan", 3, [tmp_path / "dev"])] == [3]


def grid(*overrides: str) -> str:
    return compose_config("experiment=eval_all", *overrides, return_hydra_config=True).hydra.sweeper.params[
        "data.section"
    ]


def test_eval_all_grids_sections_3_to_5_by_the_models_scope():
    assert grid() == "3,4,5"
    assert grid("model=ae_baseline") == "3,4,5"
    assert grid("model=ae_baseline", "model.scope=machine_type") == "all"
    assert grid("model=mobilenetv2_baseline") == "all"
    assert compose_config("experiment=eval_all").data.extra_train_roots == []


def test_synth_eval_writes_unlabelled_test_clips_and_the_organisers_ground_truth(tmp_path):
    root = write_synthetic_eval_dataset(
        tmp_path, ["fan"], train_clips=2, target_train_clips=1, test_clips=3, seconds=0.5, progress=False
    )
    test = list_clips(root, "fan", None, "test")
    assert len(test) == 3 * 2 * 2 * 3 and {c.label for c in test} == {"unknown"}
    assert (root / "fan/test/section_05_target_test_0005.wav").is_file()
    assert sorted({c.section for c in list_clips(root, "fan", None, "train")}) == [3, 4, 5]
    truth = read_rows(ground_truth_path(root, "fan", 4, "source"), binary=True)
    assert sorted(truth) == [f"section_04_source_test_{i:04d}.wav" for i in range(6)]
    assert sum(truth.values()) == 3


@pytest.mark.slow
def test_eval_all_then_submit_then_evaluate_equals_the_metrics_of_the_same_labels(tmp_path):
    """Per section (ganomaly_small, sections 03-05) and per machine type (the AE with model.scope=machine_type,
    training on the dev set's sections 00-02 too): every run completes without labels, and the evaluation of the
    submission equals auc_pauc and decision_metrics on scores.csv and the ground truth."""
    root = write_synthetic_eval_dataset(
        tmp_path / "eval", ["fan"], train_clips=10, test_clips=4, seconds=2.0, severity=8.0, progress=False
    )
    dev = write_synthetic_dataset(tmp_path / "dev", ["fan"], train_clips=6, test_clips=1, seconds=2.0, progress=False)
    quick = ["experiment=eval_all", "data.machine_type=fan", "trainer.max_epochs=1", *CSV_ONLY]
    run_cli(train_args(root, tmp_path, *quick), cwd=tmp_path)
    machine_type = ["model.scope=machine_type", f"data.extra_train_roots=[{dev}]"]
    per_type = train_args(root, tmp_path, *quick, *machine_type, model="ae_baseline", log_dir=tmp_path / "per_type")
    done = run_cli(per_type, cwd=tmp_path)
    assert "no test labels" in done.stdout + done.stderr
    for sweep in (tmp_path / "logs/eval_all", tmp_path / "per_type/eval_all"):
        records = [json.loads(p.read_text()) for p in sweep.rglob("metrics.json")]
        assert records and all(r["status"] == "completed" and r["labelled"] is False for r in records)
        reported = run_cli(cli_args("report", sweep, "--out", tmp_path / f"report-{sweep.parent.name}"), tmp_path)
        assert "unlabelled: the test clips carry no labels" in reported.stdout
        submission = tmp_path / f"submission-{sweep.parent.name}"
        run_cli(cli_args("submit", sweep, "--out", submission), cwd=tmp_path)
        shown = run_cli(cli_args("evaluate", submission, "--ground-truth", root / "ground_truth"), cwd=tmp_path)
        assert "official score" in shown.stdout
        rows = evaluate(submission, root / "ground_truth")
        assert len(rows) == 3 * 2
        expected = _metrics_from_scores(sweep, root)
        for row in rows:
            want = expected[(row["section"], row["domain"])]
            for key in ("auc", "pauc", "precision", "recall", "f1"):
                assert row[key] == pytest.approx(want[key], abs=1e-6), (row, key)
        pairs = list(expected.values())
        assert summary(rows)["official_score"] == pytest.approx(
            official_score([p["auc"] for p in pairs], [p["pauc"] for p in pairs]), abs=1e-9
        )
    per_type = next((tmp_path / "per_type/eval_all").rglob("train.log")).read_text()
    assert "training clips of fan sections [0, 1, 2, 3, 4, 5]" in per_type


def _metrics_from_scores(sweep: Path, root: Path) -> dict:
    """Per (section, domain): the package's metrics of the runs' scores.csv against the ground-truth labels."""
    rows = [r for path in sweep.rglob("scores.csv") for r in read_scores(path)]
    assert all(r["label"] is None for r in rows)
    out = {}
    for section in (3, 4, 5):
        for domain in ("source", "target"):
            truth = read_rows(ground_truth_path(root, "fan", section, domain), binary=True)
            mine = [r for r in rows if int(r["section"]) == section and r["domain"] == domain]
            labels = torch.tensor([int(truth[Path(r["path"]).name]) for r in mine])
            auc, pauc = auc_pauc(torch.tensor([r["score"] for r in mine], dtype=torch.float64), labels)
            decided = decision_metrics(torch.tensor([r["decision"] for r in mine]), labels)
            out[(section, domain)] = {"auc": auc, "pauc": pauc, **decided}
    return out


def test_selection_on_the_test_auc_is_refused_without_labels(tmp_path):
    from asd_ganomaly.runs.checks import ConfigError, check_selection

    clips = list_clips(touch(tmp_path / "fan/test/section_03_source_test_0000.wav").parents[2], "fan", 3, "test")
    check_selection(False, clips)
    with pytest.raises(ConfigError, match="carry no labels"):
        check_selection(True, clips)


def test_scores_csv_of_unlabelled_clips_has_an_empty_label_column(tmp_path):
    from asd_ganomaly.runs.files import write_scores

    clips = [parse_clip_name(f"fan/test/section_03_source_test_000{i}.wav") for i in range(2)]
    scores = {"score": torch.tensor([0.2, 0.8]), "index": torch.tensor([0, 1])}
    write_scores(tmp_path / "scores.csv", clips, scores, threshold=0.5)
    rows = read_scores(tmp_path / "scores.csv")
    assert [(r["label"], r["decision"]) for r in rows] == [(None, 0), (None, 1)]
    assert read_scores(tmp_path / "scores.csv", raw=True)[0]["label"] == ""
