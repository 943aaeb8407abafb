"""ONNX export helpers: ``asd_ganomaly/export.py``."""

import torch

from asd_ganomaly.data.features import FeatureConfig, LogMel
from asd_ganomaly.data.synth import synthesize_clip
from asd_ganomaly.inference.export import ConvLogMel


def test_conv_logmel_matches_the_package_features():
    detector_features = LogMel(FeatureConfig(seconds=2.0, frames=56))
    wave = torch.from_numpy(synthesize_clip("fan", 0, "source", "normal", 0, seconds=2.0, split="train"))[None]
    assert torch.allclose(ConvLogMel(detector_features)(wave), detector_features(wave), atol=1e-3)
