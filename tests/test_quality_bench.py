"""benchmarks/quality.py: the models it builds from conf/, and its tables over seeds."""

import importlib.util
from pathlib import Path
from statistics import mean, stdev

import torch
from hydra.utils import instantiate

from asd_ganomaly.evaluation.metrics import official_score
from asd_ganomaly.train import compose_config

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"
spec = importlib.util.spec_from_file_location("quality", SCRIPT)
quality = importlib.util.module_from_spec(spec)
spec.loader.exec_module(quality)


def test_wide_ganomaly_is_the_demo_model_with_doubled_channels():
    demo = compose_config("experiment=demo").model
    wide = compose_config("experiment=demo", *quality.model_overrides("ganomaly_wide")).model
    assert wide._target_ == demo._target_ and wide.name == "ganomaly_wide"
    assert list(wide.net.encoder.channels) == [2 * c for c in demo.net.encoder.channels]
    assert list(wide.net.decoder.channels) == [*(2 * c for c in demo.net.decoder.channels[:-1]), 1]
    assert list(wide.net.discriminator.channels) == [2 * c for c in demo.net.discriminator.channels]
    net = instantiate(
        compose_config(
            "experiment=demo", "data.features.frames=64", *quality.model_overrides("ganomaly_wide")
        ).model.net
    )
    assert net.scores(torch.randn(2, 128, 64))["score"].shape == (2,)


def record(model, machine, seed, aucs):
    domains = {d: {"auc": a, "pauc": a / 2} for d, a in zip(("source", "target"), aucs, strict=True)}
    return {
        "model": model,
        "machine_type": machine,
        "config": {"seed": seed, "model": {"score": None}},
        "metrics": domains,
        "scores": {"latent": domains, "reconstruction": {d: {"auc": 0.9, "pauc": 0.8} for d in domains}},
        "run_dir": "no-such-run",
    }


def test_summary_gives_mean_and_std_over_seeds_and_every_score_choice():
    runs = {"m": {0: [record("m", "fan", 0, (0.6, 0.7)), record("m", "valve", 0, (0.8, 0.5))]}}
    runs["m"][1] = [record("m", "fan", 1, (0.9, 0.7)), record("m", "valve", 1, (0.6, 0.6))]
    summary = quality.summarise(runs)["m"]
    per_seed = [official_score([0.6, 0.7, 0.8, 0.5], [0.3, 0.35, 0.4, 0.25])]
    per_seed.append(official_score([0.9, 0.7, 0.6, 0.6], [0.45, 0.35, 0.3, 0.3]))
    assert [v for v, _ in summary["seeds"].values()] == per_seed
    assert summary["score"] == "latent" and summary["runs"] == 4
    assert summary["choices"]["reconstruction"] == [official_score([0.9] * 4, [0.8] * 4)] * 2
    text = quality.to_markdown({"m": summary}, ["# t"])
    assert f"| m | latent | 4 | {mean(per_seed):.3f} ± {stdev(per_seed):.3f} |" in text
    assert "| m | fan | valve |" not in text and "| model | fan | valve |" in text


def test_mobilenet_trains_per_machine_type_on_the_benchmarks_sections(tmp_path):
    assert quality.sections_for(["ae_baseline"], quality.QUICK) is quality.QUICK
    mode = quality.sections_for(["ae_baseline", "mobilenetv2_baseline"], quality.QUICK)
    assert mode["sections"] == [0, 1], "a section classifier needs two sections"
    ae = quality.train_command("ae_baseline", 0, mode, ["fan"], tmp_path / "data", tmp_path / "out")
    assert "data.section=0,1" in ae
    command = quality.train_command("mobilenetv2_baseline", 0, mode, ["fan"], tmp_path / "data", tmp_path / "out")
    cfg = compose_config(*command[command.index("asd_ganomaly.train") + 1 :])
    assert cfg.model.name == "mobilenetv2_baseline" and cfg.data.section == "all"
    assert list(cfg.model.sections) == [0, 1] and instantiate(cfg.model).net.n_sections == 2


def test_a_per_machine_type_run_is_summarised_per_section():
    sections = {
        s: {d: {"auc": a, "pauc": a / 2} for d, a in zip(("source", "target"), aucs, strict=True)}
        for s, aucs in (("00", (0.6, 0.7)), ("01", (0.8, 0.9)))
    }
    for values in sections.values():
        values["scores"] = {"default": {d: values[d] for d in ("source", "target")}}
    record = {"model": "mobilenetv2_baseline", "machine_type": "fan", "section": "all", "metrics": {}}
    record |= {"sections": sections, "config": {"seed": 0, "model": {}}, "run_dir": "no-such-run"}
    records = quality.per_section_records(record)
    assert [r["section"] for r in records] == [0, 1] and records[1]["metrics"]["target"]["auc"] == 0.9
    summary = quality.summarise({"mobilenetv2_baseline": {0: records}})["mobilenetv2_baseline"]
    assert summary["seeds"][0][0] == official_score([0.6, 0.7, 0.8, 0.9], [0.3, 0.35, 0.4, 0.45])
    assert summary["score"] == "default" and summary["choices"]["default"] == [summary["seeds"][0][0]]
    assert quality.per_section_records(records[0]) == [records[0]]


def test_a_one_step_run_stops_after_one_optimizer_step_under_its_own_names(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    for label in ("ganomaly_demo", "ganomaly_wide", "ae_baseline", "mobilenetv2_baseline"):
        mode = quality.sections_for([label], quality.QUICK)  # one section: a run, not a sweep, to compose
        trained = quality.train_command(label, 1, mode, ["fan"], data, out)
        command = quality.train_command(label, 1, mode, ["fan"], data, out, one_step=True)
        assert f"task_name={label}_onestep_seed1" in command and f"task_name={label}_seed1" in trained
        assert {"trainer.max_epochs=1", "+trainer.limit_train_batches=1"} <= set(command)
        assert not {"trainer.max_epochs=1", "+trainer.limit_train_batches=1"} & set(trained)
        cfg = compose_config(*command[command.index("asd_ganomaly.train") + 1 :])
        base = compose_config(*trained[trained.index("asd_ganomaly.train") + 1 :])
        assert cfg.model.name == f"{label}_onestep" and base.model.name == label
        assert cfg.trainer.max_epochs == 1 and cfg.trainer.limit_train_batches == 1 and base.trainer.max_epochs > 1
        assert cfg.seed == base.seed == 1 and cfg.data == base.data
        frames = cfg.data.batch_size * cfg.data.features.frames
        for key in ("vectors_per_batch", "windows_per_batch"):  # one chunk: one step of the AE or MobileNetV2
            assert cfg.model.get(key) == (frames if key in base.model else None)
        changed = {k for k in base.model if base.model[k] != cfg.model[k]}
        assert changed <= {"name", "vectors_per_batch", "windows_per_batch"}


def test_knn_baseline_gets_no_one_step_run(tmp_path):
    commands = quality.commands_for(
        ["ganomaly_demo", "knn_baseline"], quality.FULL, ["fan"], tmp_path / "data", tmp_path / "out"
    )
    names = [next(a.split("=")[1] for a in c if a.startswith("task_name=")) for c in commands]
    expected = ["ganomaly_demo_seed{s}", "ganomaly_demo_onestep_seed{s}", "knn_baseline_seed{s}"]
    assert names == [n.format(s=s) for s in quality.FULL["seeds"] for n in expected]
    assert not quality.trains("knn_baseline") and quality.trains("ae_baseline")
    without = quality.commands_for(["ganomaly_demo"], quality.QUICK, ["fan"], tmp_path, tmp_path, one_step=False)
    assert len(without) == 1 and "trainer.max_epochs=1" not in without[0]
