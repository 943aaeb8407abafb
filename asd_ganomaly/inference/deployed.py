"""The scorer of an exported ONNX file alone (its graph and its ``metadata_props``, see
:mod:`~asd_ganomaly.inference.export`) for :func:`~asd_ganomaly.inference.scoring.score_files`: numpy and
onnxruntime only, no torch (a checkpoint's scorer is :class:`~asd_ganomaly.inference.checkpoint.DetectorScorer`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.errors import UserError
from ..data.feature_config import FeatureConfig


class OnnxModelError(UserError, ValueError):
    """An ONNX file that is not a scorer exported by this package."""


REQUIRED_METADATA = ("threshold", "features", "input", "outputs", "score")


class OnnxScorer:
    """An exported scorer: the graph runs in onnxruntime (CPU), the threshold, features, sections and score name
    come from its metadata. A log-mel graph gets its log-mel computed here (:class:`NumpyLogMel`) from the stored
    feature parameters."""

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
        self.logmel = NumpyLogMel(self.feature_config) if self.input_name == "logmel" else None

    def scores(self, clips: list[np.ndarray], sections: list[int] | None) -> dict[str, list[float]]:
        """Every score output of the graph for equally long clips."""
        batch = np.stack(clips).astype(np.float32)
        if self.logmel is not None:
            batch = self.logmel(batch)
        feeds = {self.input_name: batch}
        if self.needs_section:
            feeds["section"] = np.asarray(sections, dtype=np.int64)
        values = self.session.run(self.outputs, feeds)
        return {name: [float(v) for v in value] for name, value in zip(self.outputs, values, strict=True)}


def slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Frequencies in Hz on the Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_part = 15.0 + np.log(np.maximum(hz, 1000.0) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, hz * 3.0 / 200.0)


def slaney_hz(mel: np.ndarray) -> np.ndarray:
    """The inverse of :func:`slaney_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    log_part = 1000.0 * np.exp(np.log(6.4) / 27.0 * (np.maximum(mel, 15.0) - 15.0))
    return np.where(mel >= 15.0, log_part, mel * 200.0 / 3.0)


def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular filters from 0 Hz to half the sample rate, equally spaced in Slaney mels
    and area-normalised: the filterbank of the package's log-mel (torchaudio ``norm="slaney"``,
    ``mel_scale="slaney"``)."""
    bins = np.linspace(0, config.sample_rate // 2, config.n_fft // 2 + 1)
    edges = slaney_hz(np.linspace(0.0, slaney_mel(config.sample_rate // 2), config.n_mels + 2))
    rising = (bins[:, None] - edges[None, :-2]) / np.diff(edges)[:-1]
    falling = (edges[None, 2:] - bins[:, None]) / np.diff(edges)[1:]
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return triangles * (2.0 / (edges[2:] - edges[:-2]))


class NumpyLogMel:
    """The log-mel of :class:`~asd_ganomaly.data.features.LogMel` in numpy (float64 inside, float32 out): centred
    frames with zero padding, a periodic Hann window, ``|STFT|^power``, the mel filterbank, ``10 * log10`` with the
    floor, the frame crop."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(config.n_fft) / config.n_fft)
        self.bank = mel_filterbank(config)

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        """(batch, samples) -> (batch, n_mels, frames) in dB, float32."""
        return np.stack([self.clip(wave) for wave in np.asarray(waveforms, dtype=np.float64)]).astype(np.float32)

    def clip(self, wave: np.ndarray) -> np.ndarray:
        """(samples,) -> (n_mels, frames), one clip at a time to keep the frames small."""
        config = self.config
        half = config.n_fft // 2
        frames = np.lib.stride_tricks.sliding_window_view(np.pad(wave, half), config.n_fft)[:: config.hop_length]
        power = np.abs(np.fft.rfft(frames * self.window, axis=-1)) ** config.power
        logmel = (20.0 / config.power) * np.log10(np.maximum(power @ self.bank, config.log_floor)).T
        return logmel[:, : config.frames] if config.frames else logmel
