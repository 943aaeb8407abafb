"""A real Hydra multirun over machine types, a failing job among them, and the results report."""

import json
import re

import pytest
from conftest import (
    CSV_ONLY,
    cli_args,
    keep_result,
    kept_result,
    read_csv,
    read_wandb_run,
    run_cli,
    run_process,
    train_args,
    writable_copy,
)
from scipy import stats

from asd_ganomaly.results.report import collect_runs, summarise, write_report


@pytest.fixture(scope="module")
def sweep(tiny_sweep):
    return tiny_sweep


@pytest.mark.slow
def test_multirun_runs_every_combination_and_a_failure_does_not_stop_it(sweep):
    sweep_dir, result = sweep
    assert result.returncode == 1, "a sweep with a failed run exits 1 (the README's exit statuses)"
    statuses = {}
    for path in sweep_dir.rglob("metrics.json"):
        metrics = json.loads(path.read_text())
        statuses[metrics["machine_type"]] = metrics["status"]
    assert statuses == {"fan": "completed", "valve": "completed", "drill": "failed"}


@pytest.mark.slow
def test_report_csv_markdown_and_scores(sweep, tmp_path):
    sweep_dir, _ = sweep
    result = run_cli(cli_args("report", sweep_dir, "--out", tmp_path), cwd=tmp_path)
    assert "Official score" in result.stdout
    rows = read_csv(tmp_path / "results.csv")
    done = [r for r in rows if r["status"] == "completed"]
    assert {(r["machine_type"], r["domain"]) for r in done} == {
        (m, d) for m in ("fan", "valve") for d in ("source", "target")
    }
    assert [r["machine_type"] for r in rows if r["status"] == "failed"] == ["drill"]
    fan_source = next(r for r in done if r["machine_type"] == "fan" and r["domain"] == "source")
    assert float(fan_source["report_ganomaly_auc"]) == pytest.approx(0.575)  # Table 1, fan section 0
    assert float(fan_source["auc_minus_report_ganomaly"]) == pytest.approx(float(fan_source["auc"]) - 0.575)
    markdown = (tmp_path / "results.md").read_text()
    assert "Synthetic data" in markdown and "drill" in markdown and "unknown machine type" in markdown
    summary = summarise(collect_runs(sweep_dir))["ganomaly_small"]
    pooled = [float(r[k]) for r in done for k in ("auc", "pauc")]
    assert summary["official_score"] == pytest.approx(stats.hmean(pooled))
    fan = [float(r["auc"]) for r in done if r["machine_type"] == "fan"]
    assert summary["machines"]["fan"]["hmean_auc"] == pytest.approx(stats.hmean(fan))


@pytest.mark.slow
def test_rerunning_the_sweep_skips_finished_runs(sweep, synthetic_root, tmp_path):
    work = tmp_path
    sweep_dir = writable_copy(sweep[0], work / "logs" / "dev_all")
    before = {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("metrics.json")}
    assert before, f"no metrics.json below {sweep_dir}: nothing to check is left as it was"
    overrides = ["experiment=dev_all", "data.machine_type=fan,valve", "data.section=0", "trainer.max_epochs=2"]
    args = train_args(synthetic_root, work, *overrides, *CSV_ONLY)
    again = run_cli(args, cwd=work)
    assert (again.stdout + again.stderr).count("skipped (finished before)") == 2
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())


def test_unfinished_run_shows_as_missing_with_what_its_saved_config_says(tmp_path):
    from omegaconf import OmegaConf

    run = tmp_path / "ganomaly" / "default-0123abcd" / "trial_7"  # a folder name that says nothing
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(
        {"model": {"name": "ganomaly"}, "data": {"machine_type": "pump", "section": 1}}, run / ".hydra" / "config.yaml"
    )
    rows = collect_runs(tmp_path)
    assert len(rows) == 1 and rows[0]["status"] == "missing"
    assert (rows[0]["machine_type"], rows[0]["section"], rows[0]["model"]) == ("pump", 1, "ganomaly")
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nope")


@pytest.mark.slow
def test_report_logs_a_wandb_table_artifact_offline(sweep, tmp_path):
    sweep_dir, _ = sweep
    from asd_ganomaly.results.report import log_report_to_wandb

    copy = tmp_path / "sweep"
    import shutil

    shutil.copytree(sweep_dir, copy)
    for wandb_dir in copy.rglob("wandb"):  # keep only the report's own W&B run
        shutil.rmtree(wandb_dir)
    rows = collect_runs(copy)
    log_report_to_wandb(copy, rows, project="asd-test", group="g1")
    wandb_run = read_wandb_run(copy / "wandb")
    assert wandb_run["group"] == "g1" and wandb_run["name"] == "ganomaly_small report"
    official = summarise(rows)["ganomaly_small"]["official_score"]
    assert wandb_run["summary"]["official_score"] == pytest.approx(official)
    assert wandb_run["summary"]["results._type"] == "table-file"


def small_sweep_args(root, work, *extra):
    return train_args(root, work, "data.section=0", "trainer.max_epochs=1", *CSV_ONLY, *extra)


@pytest.mark.slow
def test_parallel_launcher_runs_jobs_in_separate_processes(synthetic_root, tmp_path):
    args = small_sweep_args(
        synthetic_root,
        tmp_path,
        "experiment=dev_all",
        "data.machine_type=fan,valve",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
    )
    run_process(args, cwd=tmp_path)  # the launcher's own processes: from a new interpreter, as a user starts it
    done = {json.loads(p.read_text())["machine_type"] for p in (tmp_path / "logs").rglob("metrics.json")}
    assert done == {"fan", "valve"}


@pytest.mark.slow
def test_optuna_search_maximises_the_dcase_score(synthetic_root, tmp_path):
    args = small_sweep_args(
        synthetic_root, tmp_path, "hparams_search=optuna", "data.machine_type=fan", "hydra.sweeper.n_trials=2"
    )
    result = run_cli(args, cwd=tmp_path)
    trials = sorted((tmp_path / "logs" / "optuna").rglob("metrics.json"))
    assert len(trials) == 2
    scores = [json.loads(p.read_text())["dcase_score"] for p in trials]
    weights = {json.loads(p.read_text())["config"]["model"]["loss"]["w_rec"] for p in trials}
    assert len(weights) == 2, "each trial draws its own loss weights"
    for path in trials:  # every sampled key names the trial's setting, rounded for reading
        label = json.loads(path.read_text())["label"]
        assert re.fullmatch(r"w_rec-[\d.]+\+w_ano-[\d.]+\+w_adv-[\d.]+\+lr-[\de.-]+", label), label
        assert all(len(part.split("-", 1)[1].replace(".", "").lstrip("0")) <= 4 for part in label.split("+")[:3]), label
    assert f"Best value: {max(scores)}" in result.stdout + result.stderr


def test_slurm_launcher_config_composes():
    from asd_ganomaly.train import compose_config

    cfg = compose_config("experiment=dev_all", "hydra/launcher=slurm", return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.sweeper.params["data.section"] == "0,1,2"


LOSS_WEIGHT_SWEEP = ["data.machine_type=fan,valve", "data.section=0", "trainer.max_epochs=1", "model.loss.w_rec=1,50"]
"""Two machines and two settings of a loss weight, with the small run's ~10 shared overrides beside them."""


@pytest.fixture(scope="session")
def loss_weight_sweep(shared, synthetic_root):
    """A real multirun with W&B offline, shared (read only): fan and valve, w_rec 1 and 50 (4 runs). Returns its
    work folder (the sweep below ``logs``) and the command's result."""

    def build(work):
        args = train_args(synthetic_root, work, *LOSS_WEIGHT_SWEEP, "plots=false", multirun=True)
        keep_result(run_cli(args, cwd=work), work)

    work = shared.get("loss_weight_sweep", build)
    return work, kept_result(work)


@pytest.mark.slow
def test_a_sweep_names_its_settings_by_the_swept_key_only(loss_weight_sweep):
    work, _ = loss_weight_sweep
    settings = sorted(p.name for p in (work / "logs" / "train" / "ganomaly_small").iterdir())
    assert [name.rsplit("-", 1)[0] for name in settings] == ["w_rec-1", "w_rec-50"], settings
    for folder in (work / "logs" / "train" / "ganomaly_small").glob("*/*_sec0"):
        wandb_run = read_wandb_run(folder)
        metrics = json.loads((folder / "metrics.json").read_text())
        label = metrics["label"]
        assert wandb_run["group"] == f"train/ganomaly_small/{metrics['run_id']}"
        assert wandb_run["name"] == f"ganomaly_small {metrics['machine_type']} sec0 {label}"
        assert sorted(wandb_run["tags"]) == sorted(
            ["ganomaly_small", metrics["machine_type"], "section_00", label.replace("-", "=")]
        )


@pytest.mark.slow
def test_a_sweeps_console_has_one_line_per_run_naming_its_setting_and_a_tally(
    loss_weight_sweep, synthetic_root, tmp_path
):
    shared_work, result = loss_weight_sweep
    work = tmp_path
    writable_copy(shared_work / "logs", work / "logs")  # the same sweep is run again there
    lines = result.stdout.splitlines()
    runs = [line for line in lines if "ganomaly_small w_rec-" in line]
    assert len(runs) == 4, result.stdout
    assert {line.split("ganomaly_small ", 1)[1].split("  ")[0] for line in runs} == {
        f"w_rec-{w} {m} sec0" for w in (1, 50) for m in ("fan", "valve")
    }
    assert not [line for line in lines if "model.loss.w_rec=" in line], "no launcher line per job"
    assert "sweep: varies data.machine_type, model.loss.w_rec" in result.stdout
    assert re.search(r"^sweep: 4 runs: 4 done, 0 skipped, 0 failed in (\d+ min )?\d+ s$", result.stdout, re.M), (
        result.stdout
    )
    train_log = next((work / "logs").rglob("fan_sec0/train.log")).read_text()
    assert "test/source/auc_low" in train_log and "test/source/auc_high" in train_log, "the test table, whole names"
    again = run_cli(train_args(synthetic_root, work, *LOSS_WEIGHT_SWEEP, *CSV_ONLY, multirun=True), cwd=work)
    assert again.stdout.count("skipped (finished before)") == 4
    assert "sweep: 4 runs: 0 done, 4 skipped, 0 failed" in again.stdout


@pytest.mark.slow
def test_the_report_of_a_loss_weight_sweep_reads_well_in_csv_markdown_and_wandb(loss_weight_sweep, tmp_path):
    work, _ = loss_weight_sweep
    result = run_cli(cli_args("report", work / "logs" / "train", "--out", tmp_path, "--wandb"), cwd=tmp_path)
    assert "wandb:" not in result.stdout + result.stderr, "silent like the training runs"
    rows = read_csv(tmp_path / "results.csv")
    assert {r["setting"] for r in rows} == {"ganomaly_small w_rec-1", "ganomaly_small w_rec-50"}
    assert {float(r["model.loss.w_rec"]) for r in rows} == {1.0, 50.0}, "one column per varied key"
    numbers = [r[k] for r in rows for k in ("auc", "pauc", "auc_low", "pauc_high") if r[k]]
    assert numbers and all(len(n.split(".")[-1]) <= 6 for n in numbers), numbers
    settings = (tmp_path / "results.md").read_text().split("## Settings")[1]
    assert "| ganomaly_small w_rec-1 | 1 |" in settings and "+" not in settings.replace("w_rec", "")
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2, "one W&B report run per setting"
    trained = {
        json.loads(p.read_text())["label"]: json.loads(p.read_text()) for p in work.rglob("fan_sec0/metrics.json")
    }
    for i, run in enumerate(runs):
        folder = tmp_path / f"report_run_{i}"  # read_wandb_run reads the one run below a folder
        folder.mkdir()
        run.rename(folder / run.name)
        wandb_run = read_wandb_run(folder)
        label = wandb_run["name"].removeprefix("ganomaly_small ").removesuffix(" report")
        assert wandb_run["group"] == f"train/ganomaly_small/{trained[label]['run_id']}", "the training runs' group"
        assert wandb_run["config"]["model.loss.w_rec"] == trained[label]["config"]["model"]["loss"]["w_rec"]
        keys = [k for k in wandb_run["summary"] if not k.startswith(("_", "results"))]
        assert {"official_score", "hmean_auc/fan", "hmean_pauc/valve"} <= set(keys)
        assert all(re.fullmatch(r"[a-z0-9_/]+", k) for k in keys), keys
