"""Outputs never overwrite inputs and are written whole or not at all; report rows for malformed metrics."""

import json
import os

import pytest

from asd_ganomaly.core.files import OutputError, atomic_output, check_output
from asd_ganomaly.inference.scoring import is_listed
from asd_ganomaly.results.report import collect_runs, write_report


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "recordings"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.wav").write_bytes(b"RIFF")
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"PK")
    return ckpt, folder


def test_an_output_that_is_an_input_is_refused(inputs, tmp_path):
    ckpt, folder = inputs
    with pytest.raises(OutputError, match="one of the inputs"):
        check_output(ckpt, [ckpt, folder], picked=is_listed)
    with pytest.raises(OutputError, match="one of the inputs"):
        check_output(folder / "sub" / "a.wav", [folder / "sub" / "a.wav"], picked=is_listed)
    link = tmp_path / "link.csv"
    link.symlink_to(ckpt)
    with pytest.raises(OutputError, match="one of the inputs"):
        check_output(link, [ckpt], picked=is_listed)
    hard = tmp_path / "hard.csv"
    os.link(ckpt, hard)
    with pytest.raises(OutputError, match="one of the inputs"):
        check_output(hard, [ckpt], picked=is_listed)


def test_an_output_the_folder_listing_would_read_is_refused(inputs):
    ckpt, folder = inputs
    for name in ("new.wav", "sub/NEW.WAV"):
        with pytest.raises(OutputError, match="inside the input folder"):
            check_output(folder / name, [ckpt, folder], picked=is_listed)
    assert check_output(folder / "scores.csv", [ckpt, folder], picked=is_listed) == folder / "scores.csv"
    with pytest.raises(OutputError, match="is a folder"):
        check_output(folder, [ckpt], picked=is_listed)


def test_an_interrupted_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("the good one\n")
    with pytest.raises(KeyboardInterrupt), atomic_output(path) as tmp:
        tmp.write_text("half a fi")
        raise KeyboardInterrupt
    assert path.read_text() == "the good one\n" and os.listdir(tmp_path) == ["scores.csv"]
    with atomic_output(path) as tmp:
        tmp.write_text("new\n")
    assert path.read_text() == "new\n" and os.listdir(tmp_path) == ["scores.csv"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{}", "KeyError"),
        ("[]", "a JSON list"),
        ("null", "a JSON NoneType"),
        ('{"model": "m", "machine_type": "fan", "section": "x", "status": "completed"}', "ValueError"),
        ('{"model": "m", "machine_type": "fan", "section": 0, "status": "completed", "metrics": []}', "per-domain"),
        ('{"model": "m", "machine_type": "fan", "section": 0, "status": "completed", "metrics": {"source": 1}}', "Ty"),
        ('{"model": "m", "machine_type": "fan", "section": 0, "status": "completed", "metrics": {}}', "per-domain"),
        ("{not json", "not JSON"),
    ],
)
def test_a_malformed_metrics_json_is_a_bad_run_row(tmp_path, content, reason):
    good = tmp_path / "ganomaly" / "fan_sec1"
    good.mkdir(parents=True)
    record = {"model": "ganomaly", "machine_type": "fan", "section": 1, "status": "completed"}
    record["metrics"] = {"source": {"auc": 0.8, "pauc": 0.6}}
    (good / "metrics.json").write_text(json.dumps(record))
    bad = tmp_path / "ganomaly" / "pump_sec2"
    (bad / ".hydra").mkdir(parents=True)  # what the run is comes from the config Hydra saved, not the folder name
    (bad / ".hydra" / "config.yaml").write_text("model: {name: ganomaly}\ndata: {machine_type: pump, section: 2}\n")
    (bad / "metrics.json").write_text(content)
    rows = collect_runs(tmp_path)
    assert [(r["machine_type"], r["status"]) for r in rows] == [("fan", "completed"), ("pump", "malformed")]
    assert reason in rows[1]["error"] and rows[1]["section"] == 2
    _, md_path = write_report(tmp_path)
    assert "pump section 2: malformed" in md_path.read_text()
    assert (bad / "metrics.json").read_text() == content


def test_report_refuses_a_file_as_its_output_folder(tmp_path):
    run = tmp_path / "sweep" / "ganomaly" / "pump_sec1"
    (run / ".hydra").mkdir(parents=True)
    target = tmp_path / "model.ckpt"
    target.write_bytes(b"PK")
    with pytest.raises(OutputError, match="is a file"):
        write_report(tmp_path / "sweep", target)
    assert target.read_bytes() == b"PK"
