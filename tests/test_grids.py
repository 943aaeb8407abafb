"""The dev-set grid follows the model's scope (experiment=dev_all: 21 runs per section, 7 per machine type), and
``asd-ganomaly report`` sets several sweep folders' models side by side with the report's numbers."""

import json

import pytest
from conftest import SMALL_RUN, read_csv, run_cli
from omegaconf.errors import InterpolationResolutionError

from asd_ganomaly.evaluation.metrics import harmonic_mean
from asd_ganomaly.runs.checks import ConfigError, validate_config
from asd_ganomaly.train import compose_config

SMALL = [o for o in SMALL_RUN if not o.startswith("model=")] + ["trainer.max_epochs=1", "logger=csv", "plots=false"]


def sweep_sections(*overrides):
    cfg = compose_config(*overrides, return_hydra_config=True)
    return cfg.hydra.sweeper.params["data.section"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["experiment=dev_all"], "0,1,2"),  # GANomaly declares no scope: per section
        (["experiment=dev_all", "model=knn_baseline"], "0,1,2"),
        (["experiment=dev_all", "model=ae_baseline"], "0,1,2"),  # the package's grid by default
        (["experiment=dev_all", "model=ae_baseline", "model.scope=machine_type"], "all"),  # the official protocol
        (["experiment=dev_all", "model=mobilenetv2_baseline"], "all"),
        (["experiment=dev_all_types"], "all"),  # 7 runs for any model
        (["experiment=dev_all_types", "model=ae_baseline"], "all"),
        (["experiment=demo"], "0,1,2"),
    ],
)
def test_the_section_sweep_follows_the_models_scope(overrides, expected):
    assert sweep_sections(*overrides) == expected


def test_an_unknown_scope_is_refused_by_the_grid_and_the_run_checks():
    with pytest.raises(InterpolationResolutionError, match="model.scope must be one of"):
        sweep_sections("experiment=dev_all", "model=ae_baseline", "model.scope=sections")
    for model in ("ae_baseline", "mobilenetv2_baseline"):
        cfg = compose_config(f"model={model}", "model.scope=machine", "data.root=somewhere")
        with pytest.raises(ConfigError, match=r"\['section', 'machine_type'\], not 'machine'"):
            validate_config(cfg)


@pytest.fixture(scope="session")
def sweeps(shared):
    """fan and valve, sections 0, 1, 2; two sweep folders of real multiruns, one epoch each:
    A: experiment=dev_all with MobileNetV2 (fan and valve); B: experiment=dev_all with the AE baseline on fan,
    per section (its default) and per machine type (model.scope=machine_type), and GANomaly on fan section 0.
    Shared (read only); returns the work folder and each sweep's console."""
    work = shared.get("grid_sweeps", build_grid_sweeps)
    return work, json.loads((work / "outputs.json").read_text())


def build_grid_sweeps(work):
    """The sweeps of :func:`sweeps`, their console output in ``outputs.json``."""
    from asd_ganomaly.data.synth import write_synthetic_dataset

    root = write_synthetic_dataset(
        work / "data",
        ["fan", "valve"],
        [0, 1, 2],
        train_clips=12,
        target_train_clips=2,
        test_clips=4,
        seconds=2.0,
        severity=8.0,
        progress=False,
    )
    common = ["asd_ganomaly.train", "experiment=dev_all", f"data.root={root}", f"paths.cache_dir={work / 'cache'}"]
    outputs = {}
    runs = {
        "mobilenet": ("A", ["model=mobilenetv2_baseline", "model.net.window=32", "data.machine_type=fan,valve"]),
        "ae": ("B", ["model=ae_baseline", "data.machine_type=fan"]),
        "ae_types": ("B", ["model=ae_baseline", "model.scope=machine_type", "data.machine_type=fan"]),
        "ganomaly": ("B", ["model=ganomaly_small", "data.machine_type=fan", "data.section=0"]),
    }
    for name, (folder, overrides) in runs.items():
        result = run_cli([*common, f"paths.log_dir={work / folder}", *overrides, *SMALL], cwd=work)
        outputs[name] = result.stdout + result.stderr
    (work / "outputs.json").write_text(json.dumps(outputs))


def run_folders(log_dir, model):
    return {
        p.parent.name: json.loads(p.read_text())
        for p in log_dir.rglob("metrics.json")
        if json.loads(p.read_text())["model"] == model
    }


@pytest.mark.slow
def test_dev_all_runs_a_per_machine_type_model_once_per_machine_type(sweeps):
    work, outputs = sweeps
    assert "sweep: 2 runs: 2 done" in outputs["mobilenet"] and "sweep: 1 runs: 1 done" in outputs["ae_types"]
    assert "sweep: 3 runs: 3 done" in outputs["ae"]  # the sweep's tally
    mobilenet = run_folders(work / "A" / "dev_all", "mobilenetv2_baseline")
    assert set(mobilenet) == {"fan_secall", "valve_secall"}
    ae = run_folders(work / "B" / "dev_all", "ae_baseline")
    assert set(ae) == {"fan_sec0", "fan_sec1", "fan_sec2", "fan_secall"}
    for metrics in [*mobilenet.values(), ae["fan_secall"]]:
        assert metrics["status"] == "completed" and metrics["section"] == "all"
        assert sorted(metrics["sections"]) == ["00", "01", "02"]
        pairs = [metrics["sections"][s][d] for s in ("00", "01", "02") for d in ("source", "target")]
        assert all({"auc", "pauc"} <= set(pair) for pair in pairs)
    assert ae["fan_sec1"]["section"] == 1 and "sections" not in ae["fan_sec1"]


@pytest.mark.slow
def test_report_over_two_sweep_folders_sets_the_models_side_by_side(sweeps, tmp_path):
    work, _ = sweeps
    refused = run_cli(["asd_ganomaly.cli", "report", str(work / "A"), str(work / "B")], tmp_path, check=False)
    assert refused.returncode == 2 and "give --out" in refused.stderr
    out = tmp_path / "R"
    result = run_cli(["asd_ganomaly.cli", "report", str(work / "A"), str(work / "B"), "--out", str(out)], tmp_path)
    assert "Side by side" in result.stdout
    rows = [r for r in read_csv(out / "results.csv") if r["status"] == "completed"]
    settings = {
        "mobilenetv2_baseline per machine type",
        "ae_baseline",
        "ae_baseline per machine type",
        "ganomaly_small",
    }
    assert {r["setting"] for r in rows} == settings
    assert len(rows) == 12 + 6 + 6 + 2  # MobileNetV2: 2 machines x 3 sections x 2 domains; AE twice; GANomaly
    markdown = (out / "results.md").read_text()
    table = markdown.split("## Side by side")[1].split("\n## ")[0]
    header = next(line for line in table.splitlines() if line.startswith("| machine |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[-3:] == ["report AE", "report MobileNet", "report GANomaly"] and set(columns[1:-3]) == settings
    cells = {line.split("|")[1].strip(): line.strip("|").split("|") for line in table.splitlines()[4:] if line}
    fan = dict(zip(columns, (c.strip() for c in cells["fan"]), strict=True))
    published = [0.436, 0.783, 0.742, 0.533, 0.781, 0.603]  # Tables 1/2, MobileNetV2, fan sections 0-2
    assert fan["report MobileNet"] == f"{harmonic_mean(published):.3f}"
    ours = [float(r["auc"]) for r in rows if r["setting"] == "ae_baseline" and r["machine_type"] == "fan"]
    assert fan["ae_baseline"] == f"{harmonic_mean(ours):.3f}"
    valve = dict(zip(columns, (c.strip() for c in cells["valve"]), strict=True))
    assert valve["ae_baseline"] == "-" and valve["mobilenetv2_baseline per machine type"] != "-"
