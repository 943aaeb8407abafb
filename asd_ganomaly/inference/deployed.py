"""Scorers that :func:`~asd_ganomaly.inference.scoring.score_files` runs: a trained detector, or an exported ONNX
file alone (its graph and its ``metadata_props``, see :mod:`~asd_ganomaly.inference.export`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..core.errors import UserError
from ..data.features import FeatureConfig, LogMel
from ..models.base import AnomalyDetector
from ..models.scores import SCORE_KEYS


class OnnxModelError(UserError, ValueError):
    """An ONNX file that is not a scorer exported by this package."""


REQUIRED_METADATA = ("threshold", "features", "input", "outputs", "score")


class DetectorScorer:
    """A trained detector behind the scorer interface: feature config, threshold, sections, per-batch scores."""

    def __init__(self, detector: AnomalyDetector) -> None:
        self.detector = detector
        self.feature_config = detector.feature_config
        self.threshold = float(detector.threshold)
        self.needs_section = detector.needs_section
        self.known_sections = detector.section_ids.tolist() if detector.needs_section else None
        self.trained_sections = detector.trained_on.get("sections") or self.known_sections
        self.score_name = detector.score_choice
        # the keys of score_logmel: each component's, the fused one and the chosen one
        self.outputs = ["score", *(SCORE_KEYS[name] for name in detector.components), SCORE_KEYS["fused"]]

    def scores(self, clips: list[np.ndarray], sections: list[int] | None) -> dict[str, list[float]]:
        """Every score of equally long clips (``score`` the chosen one), one forward pass on the detector's device."""
        device = self.detector.device
        waves = torch.from_numpy(np.stack(clips)).to(device)
        index = None if sections is None else torch.tensor(sections, device=device)
        with torch.no_grad():
            return {key: value.cpu().tolist() for key, value in self.detector.score_waveforms(waves, index).items()}


class OnnxScorer:
    """An exported scorer: the graph runs in onnxruntime (CPU), the threshold, features, sections and score name
    come from its metadata. A log-mel graph gets its log-mel computed here from the stored feature parameters."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise OnnxModelError(f"ONNX file {path} does not exist")
        try:
            import onnxruntime as ort
        except ModuleNotFoundError as error:
            raise RuntimeError(f"scoring with ONNX needs: pip install 'asd-ganomaly[export]' ({error})") from error
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own errors for a file that is no ONNX model
            raise OnnxModelError(f"{path} is not a readable ONNX model ({type(error).__name__})") from error
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        if missing := [key for key in REQUIRED_METADATA if key not in meta]:
            raise OnnxModelError(
                f"{path} lacks the metadata {missing}: export it again with asd-ganomaly export (this version)"
            )
        self.metadata = meta
        self.feature_config = FeatureConfig(**json.loads(meta["features"]))
        self.threshold = float(meta["threshold"])
        self.input_name = meta["input"]
        self.outputs = json.loads(meta["outputs"])
        self.score_name = meta["score"]
        self.needs_section = json.loads(meta.get("needs_section", "false"))
        sections = json.loads(meta.get("sections", "null"))
        self.trained_sections = sections
        self.known_sections = sections if self.needs_section else None
        self.logmel = LogMel(self.feature_config) if self.input_name == "logmel" else None

    def scores(self, clips: list[np.ndarray], sections: list[int] | None) -> dict[str, list[float]]:
        """Every score output of the graph for equally long clips."""
        batch = np.stack(clips).astype(np.float32)
        if self.logmel is not None:
            with torch.no_grad():
                batch = self.logmel(torch.from_numpy(batch)).numpy()
        feeds = {self.input_name: batch}
        if self.needs_section:
            feeds["section"] = np.asarray(sections, dtype=np.int64)
        values = self.session.run(self.outputs, feeds)
        return {name: [float(v) for v in value] for name, value in zip(self.outputs, values, strict=True)}
