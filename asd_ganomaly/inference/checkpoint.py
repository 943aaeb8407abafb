"""Rebuild a trained detector from a run's ``model.ckpt`` for scoring, without Lightning.

A run's ``model.ckpt`` holds everything scoring needs: the resolved model config (``_target_`` included), the
feature parameters, the fitted normalisation and the calibrated decision threshold. :func:`load_detector`
rebuilds the pure scoring module of the package's detectors (:mod:`~asd_ganomaly.models.detector`) from it, so
neither Lightning nor torchmetrics is imported; any other detector config is built as it is.
"""

from __future__ import annotations

import inspect
import logging
import math
from pathlib import Path

import numpy as np
import torch

from ..core.errors import UserError
from ..models.detector import (
    AutoencoderDetector,
    Detector,
    GANomalyDetector,
    KNNBaselineDetector,
    SectionDetector,
    build_detector,
)
from ..models.scores import SCORE_KEYS

log = logging.getLogger(__name__)

SCORING_MODULES: dict[str, type[Detector]] = {
    "asd_ganomaly.models.lit_ganomaly.GANomalyModule": GANomalyDetector,
    "asd_ganomaly.models.lit_ae.AutoencoderModule": AutoencoderDetector,
    "asd_ganomaly.models.lit_knn.KNNModule": KNNBaselineDetector,
    "asd_ganomaly.models.lit_mobilenet.MobileNetV2Module": SectionDetector,
}
"""The pure scoring module of each of the package's LightningModules (a subclass of it: same weights)."""


class CheckpointError(UserError, ValueError):
    """A file that is not a usable checkpoint of this package."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device; a clear error for a CUDA device on a machine without one."""
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r} (use cpu or cuda)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA is not available on this machine: use --device cpu")
    return device


def scoring_config(model_config: dict) -> dict:
    """The config of the pure scoring module of a model config (:data:`SCORING_MODULES`): its target and the keys
    its constructors take (the training-only ones, losses and optimizers, left out); any other config as it is."""
    module = SCORING_MODULES.get(model_config.get("_target_"))
    if module is None:
        return model_config
    accepted = {
        name
        for klass in module.__mro__
        if issubclass(klass, Detector)
        for name in inspect.signature(klass.__init__).parameters
    }
    kept = {key: value for key, value in model_config.items() if key in accepted}
    return {"_target_": f"{module.__module__}.{module.__qualname__}", **kept}


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> Detector:
    """Rebuild a trained detector (any model of the package) from its checkpoint, in eval mode: the pure
    scoring module of the package's models (the weights of the LightningModule that trained it).

    The checkpoint is read with ``torch.load(weights_only=True)``: the checkpoints this package writes hold
    only tensors, numbers, strings, lists and dicts (the model config is stored as a plain dict, and no
    ``save_hyperparameters`` objects), so no code inside the file is ever executed while loading it.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    device = resolve_device(device)
    checkpoint = read_checkpoint(path)
    entry = checkpoint["asd_ganomaly"]
    try:
        detector = build_detector(scoring_config(entry["model_config"]))
    except Exception as error:
        raise CheckpointError(f"cannot rebuild the model of {path} from its config: {error}") from error
    if not isinstance(detector, Detector):
        raise CheckpointError(f"the model config of {path} builds a {type(detector).__name__}, not a detector")
    stored_features = entry.get("features")
    if stored_features is not None and stored_features != detector.feature_config.as_dict():
        raise CheckpointError(
            f"the feature parameters stored in {path} ({stored_features}) differ from its model config's "
            f"({detector.feature_config.as_dict()})"
        )
    try:
        detector.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, KeyError, ValueError) as error:
        raise CheckpointError(f"the weights in {path} do not fit its model config: {error}") from error
    detector.model_config = entry["model_config"]
    detector.trained_on = dict(entry.get("data") or {})
    if not bool(detector.normalizer.fitted):
        log.warning("%s: the normalisation was never fitted; scores use raw log-mel", path)
    if not math.isfinite(float(detector.threshold)):
        log.warning("%s has no calibrated threshold: decisions are left empty unless one is given", path)
    return detector.to(device).eval()


def read_checkpoint(path: Path) -> dict:
    """The contents of a run's ``model.ckpt``, refused with a one-line :class:`CheckpointError` when the file is
    not a PyTorch file, not one of this package's, a training-state checkpoint, or holds no weights."""
    _check_file_format(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and format errors: all mean "not one of our checkpoints"
        if "Weights only load failed" in str(error):
            raise CheckpointError(
                f"{path} holds Python objects that a weights-only load refuses: it is not a checkpoint of asd-ganomaly"
            ) from error
        reason = f"{type(error).__name__}: {error}"
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({reason})") from error

    entry = checkpoint.get("asd_ganomaly") if isinstance(checkpoint, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("model_config"), dict):
        raise CheckpointError(f"{path} is not a checkpoint of asd-ganomaly (no asd_ganomaly model config inside)")
    if entry.get("stage") == "fit":
        trained = path.parent.parent / "model.ckpt" if path.parent.name == "checkpoints" else None
        where = f"; this run's is {trained}" if trained is not None and trained.is_file() else ""
        raise CheckpointError(
            f"{path} is a training-state checkpoint (written during training, before the threshold and the score's "
            f"memory are fitted): score with a run's model.ckpt{where}"
        )
    if not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} is a checkpoint of asd-ganomaly without weights (no state_dict)")
    return checkpoint


def _check_file_format(path: Path) -> None:
    """A fast, clear refusal of files that are not PyTorch files at all (torch.save writes a zip archive, or a
    pickle in the legacy format); torch.load's own errors for them are cryptic (``pop from empty list``)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith((b"PK\x03\x04", b"\x80")):
        return
    if not head:
        what = "the file is empty"
    elif head == b"RIFF":
        what = "it is a WAV file"
    else:
        what = "unknown file format"
    raise CheckpointError(f"{path} is not a PyTorch checkpoint ({what})")


class DetectorScorer:
    """A trained detector behind the scorer interface: feature config, threshold, sections, per-batch scores."""

    def __init__(self, detector: Detector) -> None:
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
        device = self.detector.threshold.device
        waves = torch.from_numpy(np.stack(clips)).to(device)
        index = None if sections is None else torch.tensor(sections, device=device)
        with torch.no_grad():
            return {key: value.cpu().tolist() for key, value in self.detector.score_waveforms(waves, index).items()}
