"""Hostile and careless use through the real command lines: a clear one-line message, no traceback, and no
file lost or left behind (issue 13)."""

import json
import shutil

import pytest
from conftest import CLI, CSV_ONLY, read_csv, run_cli, train_args

pytestmark = pytest.mark.slow  # every test here runs the real CLI


def assert_refused(result, *phrases):
    """Exit status 2, one error line naming what is wrong, no traceback."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("asd-train: error:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(errors) == 1 and all(p in errors[0] for p in phrases), result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr


def assert_no_run_left(work):
    logs = work / "logs"
    assert not list(logs.rglob("metrics.json")) and not list(logs.rglob(".hydra")) and not list(logs.rglob("wandb"))


@pytest.mark.parametrize(
    ("overrides", "phrases"),
    [
        (["data.batch_size=0"], ["data.batch_size must be an integer >= 1, not 0"]),
        (["data.batch_size=-4"], ["data.batch_size must be an integer >= 1, not -4"]),
        (["trainer.max_epochs=0"], ["trainer.max_epochs must be an integer >= 1"]),
        (["trainer.max_epochs=-1"], ["would train forever"]),
        (["model.loss.w_adv=-1"], ["model.loss.w_adv must be a number >= 0"]),
        (["model.optimizer_g.lr=0"], ["model.optimizer_g.lr must be a number > 0"]),
        (["~data.root"], ["data.root is not set"]),
        (["data.machine_type=drill"], ["unknown machine type 'drill'", "folders found there are ['fan', 'valve']"]),
        (["data.section=7"], ["no train clips of fan section 07", "sections found: [0]"]),
    ],
)
def test_bad_configuration_is_refused_before_any_work(synthetic_root, tmp_path, overrides, phrases):
    result = run_cli(train_args(synthetic_root, tmp_path, *CSV_ONLY, *overrides), tmp_path, check=False)
    assert_refused(result, *phrases)
    assert_no_run_left(tmp_path)


def test_a_missing_or_empty_data_root_says_how_to_get_data(tmp_path):
    for root in (tmp_path / "absent", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        result = run_cli(train_args(root, tmp_path, *CSV_ONLY), tmp_path, check=False)
        assert_refused(result, str(root), "asd-ganomaly download dev", "asd-ganomaly synth")
        assert_no_run_left(tmp_path)


@pytest.fixture(scope="module")
def damaged_root(synthetic_root, tmp_path_factory):
    """The fan machine of the synthetic set with one training clip cut short."""
    root = tmp_path_factory.mktemp("damaged")
    shutil.copytree(synthetic_root / "fan", root / "fan")
    clip = sorted((root / "fan" / "train").glob("*.wav"))[5]
    clip.write_bytes(clip.read_bytes()[:20_000])
    return root, clip


def test_a_truncated_wav_stops_training_before_it_starts_or_is_skipped(damaged_root, tmp_path):
    root, clip = damaged_root
    result = run_cli(train_args(root, tmp_path, *CSV_ONLY, "trainer.max_epochs=1"), tmp_path, check=False)
    assert_refused(result, clip.name, "is truncated", "data.on_bad_file=skip")
    assert_no_run_left(tmp_path)
    skipped = run_cli(train_args(root, tmp_path, *CSV_ONLY, "trainer.max_epochs=1", "data.on_bad_file=skip"), tmp_path)
    assert "1 of 99 clips will be skipped" in skipped.stdout + skipped.stderr
    assert "Traceback" not in skipped.stdout + skipped.stderr, "a recorded skip, not a traceback"
    metrics = json.loads(next((tmp_path / "logs").rglob("metrics.json")).read_text())
    assert metrics["status"] == "completed"


def test_a_test_domain_without_anomalies_is_refused_before_training(synthetic_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synthetic_root / "fan", root / "fan")
    for anomaly in (root / "fan" / "target_test").glob("*anomaly*"):
        anomaly.unlink()
    result = run_cli(train_args(root, tmp_path / "w", *CSV_ONLY, "trainer.max_epochs=50"), tmp_path, check=False)
    assert_refused(result, "target test clips", "have labels ['normal']")
    assert_no_run_left(tmp_path / "w")


@pytest.fixture
def model_ckpt(ganomaly_run):
    """The shared run's model (read only)."""
    return ganomaly_run / "model.ckpt"


def score(ckpt, *inputs, out, cwd):
    return run_cli(
        [CLI, "score", "--ckpt", str(ckpt), *map(str, inputs), "--out", str(out), "--no-progress"], cwd, check=False
    )


def test_score_never_writes_over_its_checkpoint_or_its_recordings(model_ckpt, synthetic_root, tmp_path):
    ckpt = tmp_path / "victim.ckpt"
    shutil.copy(model_ckpt, ckpt)
    recordings = tmp_path / "recordings"
    shutil.copytree(synthetic_root / "fan" / "source_test", recordings)
    wav = sorted(recordings.glob("*.wav"))[0]
    before = {p: p.read_bytes() for p in [ckpt, *recordings.iterdir()]}
    cases = [
        (ckpt, [recordings], "one of the inputs"),
        (wav, [wav], "one of the inputs"),
        (recordings / "new.wav", [recordings], "inside the input folder"),
        (recordings / "deeper" / "x.WAV", [recordings], "inside the input folder"),
        (recordings, [wav], "is a folder"),
    ]
    for out, inputs, phrase in cases:
        result = score(ckpt, *inputs, out=out, cwd=tmp_path)
        assert result.returncode == 2 and phrase in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert {p: p.read_bytes() for p in [ckpt, *recordings.iterdir()]} == before
    export = run_cli([CLI, "export", "--ckpt", str(ckpt), "--onnx", str(ckpt)], tmp_path, check=False)
    assert export.returncode == 2 and "one of the inputs" in export.stderr and ckpt.read_bytes() == before[ckpt]


def test_score_marks_truncated_and_garbage_files_and_scores_the_rest(model_ckpt, synthetic_root, tmp_path):
    clips = sorted((synthetic_root / "fan" / "source_test").glob("*.wav"))[:3]
    cut, garbage = tmp_path / "cut.wav", tmp_path / "garbage.WAV"
    cut.write_bytes(clips[0].read_bytes()[:30_000])
    garbage.write_bytes(bytes(range(256)) * 10)
    out = tmp_path / "scores.csv"
    out.write_text("an older result\n")
    result = score(model_ckpt, *clips, cut, garbage, out=out, cwd=tmp_path)
    assert result.returncode == 1, f"some files failed, the others written: {result.stderr}"
    rows = {row["path"]: row for row in read_csv(out)}
    assert [rows[str(c)]["status"] for c in clips] == ["ok"] * 3
    assert rows[str(cut)]["status"] == "error" and "is truncated" in rows[str(cut)]["error"]
    assert rows[str(garbage)]["status"] == "error" and "garbage.WAV" in rows[str(garbage)]["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.wav", "garbage.WAV", "scores.csv"], "no temporary left"


def test_report_lists_malformed_metrics_json_as_bad_runs_and_refuses_a_file_as_folder(tmp_path):
    contents = ["{}", "[]", '{"status": "completed"}', "{broken", ""]
    sweep = tmp_path / "sweep"
    for section, content in enumerate(contents):
        run = sweep / "ganomaly" / f"fan_sec{section}"
        (run / ".hydra").mkdir(parents=True)  # what the run is: from the config Hydra saved, not the folder name
        saved = f"model: {{name: ganomaly}}\ndata: {{machine_type: fan, section: {section}}}\n"
        (run / ".hydra" / "config.yaml").write_text(saved)
        (run / "metrics.json").write_text(content)
    result = run_cli([CLI, "report", str(sweep)], tmp_path, check=False)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    table = (sweep / "results.md").read_text()
    for section, content in enumerate(contents):
        assert f"fan section {section}: malformed: metrics.json is malformed" in table
        assert (sweep / "ganomaly" / f"fan_sec{section}" / "metrics.json").read_text() == content
    occupied = tmp_path / "file"
    occupied.write_text("keep")
    refused = run_cli([CLI, "report", str(sweep), "--out", str(occupied)], tmp_path, check=False)
    assert refused.returncode == 2 and "is a file" in refused.stderr and occupied.read_text() == "keep"
