"""ONNX export: the waveform front end, the metadata, any clip length, no tracer warnings."""

import torch
from conftest import small_trained_looking_detector

from asd_ganomaly.data.features import FeatureConfig, LogMel
from asd_ganomaly.data.synth import synthesize_clip
from asd_ganomaly.inference.export import ConvLogMel


def test_conv_logmel_matches_the_package_features():
    detector_features = LogMel(FeatureConfig(seconds=2.0, frames=56))
    wave = torch.from_numpy(synthesize_clip("fan", 0, "source", "normal", 0, seconds=2.0, split="train"))[None]
    assert torch.allclose(ConvLogMel(detector_features)(wave), detector_features(wave), atol=1e-3)


def test_export_warns_nothing_and_stores_the_metadata(tmp_path):
    import json
    import warnings

    import onnxruntime as ort

    from asd_ganomaly import __version__
    from asd_ganomaly.inference.export import export_onnx

    detector = small_trained_looking_detector()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export_onnx(detector, tmp_path / "m.onnx", include_features=True)
    said = [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
    assert not [m for m in said if "might" in m or "incorrect" in m or "Constant folding" in m], said
    session = ort.InferenceSession(str(path))
    meta = session.get_modelmeta().custom_metadata_map
    assert float(meta["threshold"]) == 7.25 and meta["score"] == detector.score_choice
    assert (meta["sample_rate"], meta["n_fft"], meta["hop_length"], meta["n_mels"]) == ("16000", "1024", "512", "128")
    assert (meta["seconds"], meta["samples"], meta["frames"]) == ("2.0", "32000", "56")
    assert json.loads(meta["features"]) == detector.feature_config.as_dict()
    assert meta["machine_type"] == "fan" and json.loads(meta["sections"]) == [0]
    assert meta["asd_ganomaly_version"] == __version__ and "zero-padded at the end or cropped" in meta["length"]
    outputs = [o.name for o in session.get_outputs()]
    assert outputs == json.loads(meta["outputs"]) and outputs[0] == "score" and "score_latent" in outputs


def test_the_waveform_graph_takes_any_length_and_scores_as_the_score_command(tmp_path):
    import numpy as np
    import onnxruntime as ort
    from conftest import read_csv, write_wav

    from asd_ganomaly.inference.export import export_onnx
    from asd_ganomaly.inference.scoring import score_files

    detector = small_trained_looking_detector()
    session = ort.InferenceSession(str(export_onnx(detector, tmp_path / "m.onnx", include_features=True)))
    rng = np.random.default_rng(0)
    clips = {seconds: (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32) for seconds in (1, 2, 10)}
    paths = [write_wav(tmp_path / f"clip_{s}s.wav", clip, subtype="FLOAT") for s, clip in clips.items()]
    score_files(detector, paths, tmp_path / "s.csv", progress=False, num_workers=1)
    expected = [float(row["score"]) for row in read_csv(tmp_path / "s.csv")]
    got = [session.run(["score"], {"waveform": clip[None]})[0][0] for clip in clips.values()]
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert expected[0] != expected[1]  # 1 s: half the clip is padding; 10 s is cropped to the first 2 s
