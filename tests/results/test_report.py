"""The report's rows for malformed metrics and its output folder: ``asd_ganomaly/results/report.py``."""

import hashlib
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


def _setting_run(root, label: str, machine: str, config: dict, auc: float) -> None:
    """A completed run's metrics.json as training writes it, of one setting (``label``) and machine."""
    run_id = f"{label}-{hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]}"
    folder = root / "ganomaly" / run_id / f"{machine}_sec0"
    folder.mkdir(parents=True)
    domains = {d: {"auc": auc, "pauc": auc - 0.1} for d in ("source", "target")}
    record = {"model": "ganomaly", "machine_type": machine, "section": 0, "status": "completed", "task": "train"}
    record |= {"run_id": run_id, "label": label, "config": config, "metrics": domains}
    (folder / "metrics.json").write_text(json.dumps(record))


def _config(w_rec: float, seed: int, lr: float = 0.0047) -> dict:
    return {"seed": seed, "model": {"_target_": "G", "loss": {"w_rec": w_rec}, "optimizer_g": {"lr": lr}}}


def test_a_seed_sweep_is_aggregated_mean_std_n_and_config_values_read_as_values(tmp_path):
    from asd_ganomaly.results.markdown import render_markdown
    from asd_ganomaly.results.report import sweep_tables

    for seed, auc in ((0, 0.8), (1, 0.9), (2, 0.7)):
        _setting_run(tmp_path, f"w_rec-55.33+seed-{seed}", "fan", _config(55.333333, seed), auc)
    _setting_run(tmp_path, "w_rec-10+seed-0", "fan", _config(10.0, 0, lr=0.000431), 0.6970000000000001)
    tables = sweep_tables([tmp_path])
    seeds = {row[0]: row for row in tables.seeds.rows}
    assert set(seeds) == {"ganomaly w_rec-55.33", "ganomaly w_rec-10"}
    official, _, _, n = seeds["ganomaly w_rec-55.33"][1:]
    assert n == 3 and official.n == 3 and official.std > 0
    markdown = render_markdown(tables)
    assert "(n=3)" in markdown and " ± " in markdown
    settings = markdown.split("## Settings")[1]
    assert "+55" not in settings and "| 55.33 |" in settings and "| 0.0047 |" in settings and "| 0.000431 |" in settings
    # results.csv: one column per varied key, exact; metrics rounded
    columns = tables.results.columns
    assert {"model.loss.w_rec", "model.optimizer_g.lr", "seed"} <= set(columns)
    by_setting = {row[0]: dict(zip(columns, row, strict=True)) for row in tables.results.rows}
    assert by_setting["ganomaly w_rec-10+seed-0"]["model.optimizer_g.lr"] == 0.000431
    assert by_setting["ganomaly w_rec-10+seed-0"]["auc"] == 0.697


def test_the_report_names_settings_by_label_and_by_run_id_where_labels_collide(tmp_path):
    _setting_run(tmp_path / "a", "w_rec-10", "fan", _config(10.0, 0), 0.8)
    _setting_run(tmp_path / "b", "w_rec-10", "fan", _config(10.0, 1), 0.8)  # another sweep's w_rec-10
    _setting_run(tmp_path / "a", "w_rec-50", "fan", _config(50.0, 0), 0.8)
    settings = sorted({row["setting"] for row in collect_runs(tmp_path)})
    assert "ganomaly w_rec-50" in settings
    assert [s for s in settings if "w_rec-10" in s and s.startswith("ganomaly w_rec-10-")] == [
        s for s in settings if "w_rec-10" in s
    ]
