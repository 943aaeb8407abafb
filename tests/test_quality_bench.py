"""benchmarks/quality.py: the models it builds from conf/, and its tables over seeds."""

import importlib.util
from pathlib import Path
from statistics import mean, stdev

import torch
from hydra.utils import instantiate

from asd_ganomaly.evaluation.metrics import official_score
from asd_ganomaly.models.base import build_detector
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
    assert list(cfg.model.sections) == [0, 1] and build_detector(cfg.model).net.n_sections == 2


def test_overrides_reach_every_run_trained_and_one_step(tmp_path):
    extra = ["model.loss.adv=feature_mse", "model.loss.w_adv=10"]
    commands = quality.commands_for(
        ["ganomaly_demo"], quality.QUICK, ["fan"], tmp_path / "data", tmp_path / "out", overrides=extra
    )
    assert len(commands) == 2, "the trained run and its one-step self"
    for command in commands:
        model = compose_config(*command[command.index("asd_ganomaly.train") + 1 :]).model
        assert model.loss.adv == "feature_mse" and model.loss.w_adv == 10
    plain = quality.train_command("ganomaly_demo", 0, quality.QUICK, ["fan"], tmp_path / "data", tmp_path / "out")
    assert compose_config(*plain[plain.index("asd_ganomaly.train") + 1 :]).model.loss.w_adv == 1


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


def test_the_learned_gain_is_the_trained_minus_the_one_step_official_score_per_seed():
    runs = {"m": {}, "m_onestep": {}}
    for seed, trained, one_step in ((0, (0.8, 0.7), (0.6, 0.5)), (1, (0.7, 0.7), (0.6, 0.6)), (2, (0.9, 0.9), None)):
        runs["m"][seed] = [record("m", "fan", seed, trained)]
        if one_step:  # seed 2 has no one-step self: left out of the gain
            runs["m_onestep"][seed] = [record("m_onestep", "fan", seed, one_step)]
    summary = quality.summarise(runs)
    expected = [
        official_score([0.8, 0.7], [0.4, 0.35]) - official_score([0.6, 0.5], [0.3, 0.25]),
        official_score([0.7, 0.7], [0.35, 0.35]) - official_score([0.6, 0.6], [0.3, 0.3]),
    ]
    assert quality.learned_gain(summary["m"], summary["m_onestep"]) == expected
    assert quality.learned_gain(summary["m"], summary["m_onestep"], "latent") == expected
    assert quality.learned_gain(summary["m"], summary["m_onestep"], "reconstruction") == [0.0, 0.0]
    assert quality.learned_gain(summary["m"], summary["m_onestep"], "no_such_score") == []
    assert quality.learned_gain(summary["m"], None) == []
    assert quality.gain_cell(expected) == f"+{mean(expected):.3f} ± {stdev(expected):.3f}"


def test_a_gain_not_above_zero_is_labelled_no_gain():
    assert quality.gain_cell([0.012]) == "+0.012 ± 0.000"
    assert quality.gain_cell([-0.02, -0.01]) == f"-0.015 ± {stdev([-0.02, -0.01]):.3f} (no gain)"
    assert quality.gain_cell([0.0]) == "+0.000 ± 0.000 (no gain)"
    assert quality.gain_cell([]) == "-"


def test_the_tables_give_the_gain_and_keep_one_step_models_apart():
    runs = {
        "ganomaly_demo": {0: [record("ganomaly_demo", "fan", 0, (0.8, 0.7))]},
        "ganomaly_demo_onestep": {0: [record("ganomaly_demo_onestep", "fan", 0, (0.6, 0.5))]},
        "knn_baseline": {0: [record("knn_baseline", "fan", 0, (0.6, 0.6))]},
    }
    runs["ganomaly_demo_onestep"][0][0]["scores"]["reconstruction"]["source"]["auc"] = 0.95
    text = quality.to_markdown(quality.summarise(runs), ["# t"])
    one_step_score = official_score([0.6, 0.5], [0.3, 0.25])
    gain = official_score([0.8, 0.7], [0.4, 0.35]) - one_step_score
    rec_gain = official_score([0.9] * 2, [0.8] * 2) - official_score([0.95, 0.9], [0.8] * 2)
    main, choices, gains, one_step, machines = text.split("\n## ")[1:]
    assert "learned gain" in main and f"| +{gain:.3f} ± 0.000 |" in main
    assert f"| knn_baseline | latent | 1 | {official_score([0.6] * 2, [0.3] * 2):.3f} ± 0.000 | - |" in main
    assert "onestep" not in main + choices + machines, "one-step models only in their own table"
    assert gains.startswith("Learned gain") and f"| ganomaly_demo | +{gain:.3f} ± 0.000 |" in gains
    assert f"{rec_gain:+.3f} ± 0.000 (no gain)" in gains and "knn_baseline" not in gains
    assert one_step.startswith("One-step") and f"| ganomaly_demo_onestep | {one_step_score:.3f} ± 0.000 |" in one_step


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
