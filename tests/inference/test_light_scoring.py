"""``score --ckpt`` rebuilds the pure scoring module (no Lightning, torchmetrics or torchvision but for MobileNetV2)
with the Lightning module's scores; ``score --onnx`` imports no torch at all."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import read_csv, write_wav
from omegaconf import OmegaConf

from asd_ganomaly.inference.checkpoint import DetectorScorer, load_detector
from asd_ganomaly.inference.deployed import NumpyLogMel, mel_filterbank
from asd_ganomaly.inference.export import export_onnx
from asd_ganomaly.inference.scoring import score_files
from asd_ganomaly.models.base import AnomalyDetector, build_detector
from asd_ganomaly.models.detector import Detector
from asd_ganomaly.models.ganomaly import ToVector
from asd_ganomaly.train import compose_config

SHORT_CLIPS = ["data.features.seconds=2.0", "data.features.frames=56"]
OVERRIDES = {"mobilenetv2_baseline": ["model.net.window=32"]}  # 4 windows of 32 frames per 2 s clip
HEAVY = ("lightning", "torchmetrics", "torchvision", "torch")
PROBE = (
    "import json, sys; from asd_ganomaly.cli import main; status = main(sys.argv[1:]); "
    f"print(json.dumps({{'status': status, 'modules': [m for m in {HEAVY!r} if m in sys.modules]}}))"
)


def trained_looking_checkpoint(model: str, path, *overrides: str) -> AnomalyDetector:
    """A ``model.ckpt`` as a run writes it, of an untrained ``model`` (config ``overrides`` on top) on 2 s clips
    with a fitted normalisation, score memory, fusion and threshold (calibrated on random log-mel); returns the
    LightningModule."""
    torch.manual_seed(0)
    cfg = compose_config(f"model={model}", *SHORT_CLIPS, *OVERRIDES.get(model, []), *overrides)
    config = OmegaConf.to_container(cfg.model, resolve=True)
    module = build_detector(config).eval()
    features = torch.randn(12, 128, 56) * 10 - 40
    module.fit_normalizer(features)
    if model == "knn_baseline":
        module.net.fit(module.normalizer(features))
    module.calibrate_threshold([(features[i : i + 4], torch.arange(i, i + 4) % 3) for i in range(0, 12, 4)])
    module.trained_on = {"machine_type": "fan", "sections": [0, 1, 2]}
    entry = {"model_config": config, "features": module.feature_config.as_dict(), "name": module.name}
    entry |= {"data": module.trained_on, "stage": "test"}
    torch.save({"state_dict": module.state_dict(), "asd_ganomaly": entry}, path)
    return module


def clips(folder) -> list:
    """Four 2 s clips of noise, named as DCASE clips of sections 0 to 2."""
    rng = np.random.default_rng(1)
    names = [f"section_0{i % 3}_source_test_normal_000{i}.wav" for i in range(4)]
    return [write_wav(folder / name, (0.1 * rng.standard_normal(32000)).astype(np.float32)) for name in names]


def score_in_fresh_process(tmp_path, *args) -> tuple[list[dict], list[str]]:
    """The rows ``asd-ganomaly score`` writes in a new interpreter, and the heavy modules imported by then."""
    out = tmp_path / "fresh.csv"
    command = [sys.executable, "-c", PROBE, "score", *map(str, args), "--out", str(out), "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 0
    return read_csv(out), report["modules"]


@pytest.mark.parametrize(
    "model",
    [  # each in a new interpreter: seconds
        pytest.param(name, marks=pytest.mark.slow)
        for name in (
            "ganomaly_small",
            "ganomaly",
            "ganomaly_window",
            "ae_baseline",
            "knn_baseline",
            "mobilenetv2_baseline",
        )
    ],
)
def test_score_ckpt_imports_no_lightning_and_scores_as_the_lightning_module(model, tmp_path):
    lightning = trained_looking_checkpoint(model, tmp_path / "model.ckpt")
    paths = clips(tmp_path)
    rows, modules = score_in_fresh_process(tmp_path, "--ckpt", tmp_path / "model.ckpt", *paths)
    assert "lightning" not in modules and "torchmetrics" not in modules
    assert ("torchvision" in modules) == (model == "mobilenetv2_baseline")

    score_files(lightning, paths, tmp_path / "lightning.csv", progress=False)
    assert rows == read_csv(tmp_path / "lightning.csv")
    assert all(row["status"] == "ok" for row in rows)

    pure = load_detector(tmp_path / "model.ckpt")
    assert isinstance(pure, Detector) and not isinstance(pure, AnomalyDetector)
    waves = [np.asarray(torch.randn(32000) * 0.1) for _ in range(3)]
    sections = [0, 1, 2] if pure.needs_section else None
    expected = DetectorScorer(lightning).scores(waves, sections)
    assert DetectorScorer(pure).scores(waves, sections) == expected


@pytest.mark.parametrize(
    ("include_features", "overrides"),
    [(False, ()), (True, ()), (True, ("model.net.latent_vector=32",))],
)
@pytest.mark.slow  # each in a new interpreter: seconds
def test_score_onnx_imports_no_torch_and_scores_as_the_checkpoint(include_features, overrides, tmp_path):
    trained_looking_checkpoint("ganomaly_small", tmp_path / "model.ckpt", *overrides)
    detector = load_detector(tmp_path / "model.ckpt")
    vectors = [m for m in detector.net.modules() if isinstance(m, ToVector)]
    assert len(vectors) == (2 if overrides else 0)  # E1's and E2's linear bottleneck
    export_onnx(detector, tmp_path / "m.onnx", include_features=include_features)
    paths = clips(tmp_path)
    rows, modules = score_in_fresh_process(tmp_path, "--onnx", tmp_path / "m.onnx", *paths)
    assert modules == []
    score_files(load_detector(tmp_path / "model.ckpt"), paths, tmp_path / "ckpt.csv", progress=False)
    expected = read_csv(tmp_path / "ckpt.csv")
    assert [row["path"] for row in rows] == [row["path"] for row in expected]
    got, want = ([float(row["score"]) for row in table] for table in (rows, expected))
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_numpy_logmel_matches_the_package_features():
    from asd_ganomaly.data.features import FeatureConfig, LogMel

    config = FeatureConfig(seconds=2.0, frames=56)
    features = LogMel(config)
    wave = torch.randn(2, config.samples) * 0.1
    np.testing.assert_allclose(mel_filterbank(config), features.mel.mel_scale.fb.double().numpy(), atol=1e-6)
    np.testing.assert_allclose(NumpyLogMel(config)(wave.numpy()), features(wave).numpy(), atol=1e-3)
