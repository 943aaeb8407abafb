"""The report's rows for malformed metrics and its output folder: ``asd_ganomaly/results/report.py``."""

import json

import pytest

from asd_ganomaly.core.files import OutputError
from asd_ganomaly.results.report import collect_runs, write_report


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
