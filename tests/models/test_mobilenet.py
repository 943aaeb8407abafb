"""The MobileNetV2 baseline and per-machine-type training: the score formula, a classifier that learns the
sections of synthetic machines, per-section results of a per-machine-type run, scoring and ONNX export."""

import json
import math
import sys

import lightning as L
import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import CSV_ONLY, cli_args, read_csv, run_cli, train_args

from asd_ganomaly.data.datamodule import SectionDataModule
from asd_ganomaly.evaluation.metrics import official_score
from asd_ganomaly.inference.checkpoint import load_detector
from asd_ganomaly.inference.export import export_onnx
from asd_ganomaly.inference.scoring import score_files
from asd_ganomaly.models.lit_mobilenet import MobileNetV2Module
from asd_ganomaly.models.mobilenet import SectionClassifier, log_odds_against

FEATURES = {"seconds": 2.0, "frames": 56}
QUIET = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
SMALL_MOBILENET = ["model.net.window=32", "model.optimizer.lr=1e-3"]  # 4 windows of 32 frames per 2 s clip


def write_three_sections(root):
    """Synthetic fan with sections 0, 1, 2 (each another machine instance): 24 + 2 training clips per section,
    6 test clips per label and domain, 2 s, clear anomalies."""
    from asd_ganomaly.data.synth import write_synthetic_dataset

    write_synthetic_dataset(
        root, ["fan"], [0, 1, 2], train_clips=24, target_train_clips=2, test_clips=6, seconds=2.0, severity=8.0
    )


@pytest.fixture(scope="session")
def three_sections(shared):
    """:func:`write_three_sections`, shared (read only)."""
    return shared.get("three_sections", write_three_sections)


def test_score_is_the_mean_log_odds_against_the_clips_own_section():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [1 - 1e-30, 5e-31, 5e-31]])
    target = np.array([0, 2, 0])
    p = probabilities[np.arange(3), target]
    eps = sys.float_info.epsilon  # the baseline's floor on p and 1 - p
    expected = np.log(np.maximum(1 - p, eps)) - np.log(np.maximum(p, eps))
    logits = torch.tensor(np.log(probabilities))
    got = log_odds_against(logits, torch.tensor(target))
    assert got.numpy() == pytest.approx(expected, rel=1e-6)
    assert got[0].item() == pytest.approx(math.log(0.3 / 0.7)) and got[2].item() == pytest.approx(math.log(eps))

    net = SectionClassifier(n_sections=3, window=16, hop=8).eval()
    logmel = torch.randn(2, 128, 40)
    with torch.no_grad():
        score = net.scores(logmel, torch.tensor([1, 2]))["score"]
        windows = net.windows(logmel)  # (2, 4, 16, 128): frames 0-15, 8-23, 16-31, 24-39
        per_window = torch.softmax(net(windows.reshape(-1, 16, 128)), 1).view(2, 4, 3).double()
    assert windows.shape == (2, 4, 16, 128) and torch.equal(windows[1, 2], logmel[1, :, 16:32].T)
    own = torch.stack([per_window[0, :, 1], per_window[1, :, 2]])
    assert score.double() == pytest.approx(torch.log((1 - own) / own).mean(1), rel=1e-4)


@pytest.mark.slow  # five epochs of training
def test_classifier_learns_to_tell_synthetic_sections_apart(three_sections, tmp_path):
    L.seed_everything(0)
    datamodule = SectionDataModule(
        str(three_sections),
        "fan",
        "all",
        features=FEATURES,
        batch_size=8,
        cache_dir=str(tmp_path),
        num_workers=1,
        progress=False,
    )
    net = SectionClassifier(n_sections=3, window=32, hop=8)
    module = MobileNetV2Module(
        net, lambda params: torch.optim.Adam(params, lr=1e-3), features=FEATURES, normalization="none"
    )
    trainer = L.Trainer(accelerator="cpu", max_epochs=5, limit_val_batches=0, **QUIET)
    trainer.fit(module, datamodule=datamodule)
    assert datamodule.sections == [0, 1, 2] and len(datamodule.train_features) == 78
    accuracy = trainer.callback_metrics["train/accuracy_epoch"].item()
    assert accuracy > 0.6, f"window accuracy {accuracy:.2f} in the 5th epoch (chance: 0.33)"


def test_a_per_section_datamodule_is_refused(tmp_path):
    from asd_ganomaly.data.synth import write_synthetic_dataset

    root = write_synthetic_dataset(
        tmp_path / "data",
        ["fan"],
        [0, 1],
        train_clips=2,
        target_train_clips=1,
        test_clips=1,
        seconds=2.0,
        progress=False,
    )
    datamodule = SectionDataModule(
        str(root), "fan", 1, features=FEATURES, cache_dir=str(tmp_path / "cache"), num_workers=1, progress=False
    )
    module = MobileNetV2Module(SectionClassifier(3, window=32), torch.optim.Adam, features=FEATURES)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_val_batches=0, **QUIET)
    with pytest.raises(ValueError, match=r"hold sections \[1\]: train it on all of them \(data.section=all"):
        trainer.fit(module, datamodule=datamodule)


@pytest.fixture(scope="session")
def sweep(shared, three_sections):
    """The 7-run grid cut to fan: MobileNetV2 (2 epochs) and the AE baseline (1 epoch), per machine type; shared
    (read only). Returns the work folder (the sweeps below ``logs``) and the run folder of each model."""

    def build(work):
        common = ["experiment=dev_all_types", "data.machine_type=fan", *CSV_ONLY]
        mobilenet = [*common, *SMALL_MOBILENET, "trainer.max_epochs=2"]
        run_cli(train_args(three_sections, work, *mobilenet, model="mobilenetv2_baseline", multirun=True), work)
        ae = [*common, "trainer.max_epochs=1"]
        run_cli(train_args(three_sections, work, *ae, model="ae_baseline", multirun=True), work)

    work = shared.get("per_machine_type_sweep", build)
    runs = {json.loads(p.read_text())["model"]: p.parent for p in (work / "logs").rglob("metrics.json")}
    return work, runs


@pytest.mark.slow
def test_per_machine_type_runs_write_per_section_metrics(sweep):
    _, runs = sweep
    assert set(runs) == {"mobilenetv2_baseline", "ae_baseline"}
    for run in runs.values():
        assert run.name == "fan_secall" and run.parent.parent.parent.name == "dev_all_types"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "completed" and metrics["section"] == "all" and metrics["metrics"] == {}
        sections = metrics["sections"]
        assert sorted(sections) == ["00", "01", "02"]
        pairs = [sections[s][d] for s in sections for d in ("source", "target")]
        assert all({"auc", "pauc", "precision", "recall", "f1"} <= set(pair) for pair in pairs)
        expected = official_score([p["auc"] for p in pairs], [p["pauc"] for p in pairs])
        assert metrics["dcase_score"] == pytest.approx(expected)
        assert metrics["logged"]["test/sections/01/target/pauc"] == pytest.approx(sections["01"]["target"]["pauc"])
        rows = read_csv(run / "scores.csv")
        assert len(rows) == 72 and {r["section"] for r in rows} == {"0", "1", "2"}
        assert all(f"section_0{r['section']}_" in r["path"] for r in rows)


@pytest.mark.slow
def test_report_sets_per_machine_type_models_side_by_side_per_section(sweep, tmp_path):
    work, _ = sweep
    run_cli(cli_args("report", work / "logs", "--out", tmp_path / "report"), tmp_path)
    rows = read_csv(tmp_path / "report" / "results.csv")
    settings = {r["setting"] for r in rows}
    assert settings == {"mobilenetv2_baseline per machine type", "ae_baseline per machine type"}
    for setting in settings:
        mine = [r for r in rows if r["setting"] == setting]
        assert sorted((r["section"], r["domain"]) for r in mine) == [
            (s, d) for s in ("0", "1", "2") for d in ("source", "target")
        ]
    fan0 = next(r for r in rows if r["section"] == "0" and r["domain"] == "source")
    assert float(fan0["report_mobilenet_auc"]) == pytest.approx(0.436)
    assert "over 6 section-domain pairs" in (tmp_path / "report" / "results.md").read_text()


@pytest.mark.slow
def test_score_a_mobilenet_checkpoint_with_sections_from_names_or_given(sweep, tmp_path):
    _, runs = sweep
    run = runs["mobilenetv2_baseline"]
    detector = load_detector(run / "model.ckpt")
    assert detector.needs_section and detector.section_ids.tolist() == [0, 1, 2]
    own = {r["path"]: float(r["score"]) for r in read_csv(run / "scores.csv")}
    counts = score_files(detector, sorted(own), tmp_path / "s.csv", batch_size=5, progress=False)
    rescored = {r["path"]: float(r["score"]) for r in read_csv(tmp_path / "s.csv")}
    assert counts["scored"] == len(own) and counts["failed"] == 0
    assert all(rescored[p] == pytest.approx(own[p], rel=1e-4, abs=1e-5) for p in own)

    clip = next(p for p in own if "section_02_source_test_anomaly" in p)
    renamed = tmp_path / "clips" / "recording.wav"
    renamed.parent.mkdir()
    renamed.symlink_to(clip)
    score_files(detector, [renamed], tmp_path / "unnamed.csv", progress=False)
    (row,) = read_csv(tmp_path / "unnamed.csv")
    assert row["status"] == "error" and "pass --section" in row["error"]
    out = tmp_path / "given.csv"
    run_cli(
        cli_args("score", "--ckpt", run / "model.ckpt", renamed, "--out", out, "--section", 2, "--no-progress"),
        tmp_path,
    )
    (row,) = read_csv(out)
    assert row["status"] == "ok" and float(row["score"]) == pytest.approx(own[clip], rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_onnx_export_of_a_mobilenet_takes_the_section(sweep, tmp_path):
    _, runs = sweep
    detector = load_detector(runs["mobilenetv2_baseline"] / "model.ckpt")
    path = export_onnx(detector, tmp_path / "mobilenet.onnx")
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["logmel", "section"]
    logmel = torch.randn(3, 128, 56) * 10 - 30
    sections = torch.tensor([2, 0, 1])
    onnx_scores = session.run(["score"], {"logmel": logmel.numpy(), "section": sections.numpy()})[0]
    with torch.no_grad():
        expected = detector.score_logmel(logmel, sections)["score"]
    assert onnx_scores == pytest.approx(expected.numpy(), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("model", ["ae_baseline", "mobilenetv2_baseline"])
@pytest.mark.parametrize("include_features", [False, True])
def test_onnx_export_of_both_baselines_equals_pytorch(model, include_features, tmp_path):

    from asd_ganomaly.models.base import build_detector
    from asd_ganomaly.train import compose_config

    short = ["model.net.window=32"] if model == "mobilenetv2_baseline" else []
    cfg = compose_config(f"model={model}", "data.features.seconds=2.0", "data.features.frames=56", *short)
    detector = build_detector(cfg.model).eval()
    detector.fit_normalizer(torch.randn(4, 128, 56) * 10 - 40)
    path = export_onnx(detector, tmp_path / "m.onnx", include_features=include_features)
    x = torch.randn(3, 32000) * 0.05 if include_features else torch.randn(3, 128, 56) * 10 - 40
    sections = torch.tensor([1, 0, 2])
    feeds = {"waveform" if include_features else "logmel": x.numpy()}
    feeds |= {"section": sections.numpy()} if detector.needs_section else {}
    session = ort.InferenceSession(str(path))
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    with torch.no_grad():
        score = detector.score_waveforms if include_features else detector.score_logmel
        expected = score(x, sections if detector.needs_section else None)
    assert next(iter(outputs)) == "score" and set(outputs) <= set(expected)
    for name, values in outputs.items():
        assert values.shape == (3,) and values == pytest.approx(expected[name].numpy(), rel=1e-3, abs=1e-4), name
