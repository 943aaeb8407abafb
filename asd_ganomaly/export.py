"""Export a trained detector's scorer to ONNX.

Two graphs, both with a dynamic batch axis and one output ``score`` (batch,):

* ``include_features=False``: input ``logmel`` (batch, n_mels, frames), the package's log-mel in dB;
  the normalisation stored with the model and the network are inside the graph.
* ``include_features=True``: input ``waveform`` (batch, samples), mono at the model's sample rate and clip
  length; the log-mel front end is inside too. ONNX export cannot take torchaudio's complex STFT, so the
  graph computes the same spectrogram as a strided convolution with a windowed DFT basis, checked against
  :class:`~asd_ganomaly.data.features.LogMel` in the tests.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .data.features import LogMel
from .models.base import AnomalyDetector


class ConvLogMel(nn.Module):
    """The log-mel of :class:`LogMel` (centred frames, zero padding, periodic Hann window) without complex ops."""

    def __init__(self, logmel: LogMel) -> None:
        super().__init__()
        config = logmel.config
        self.config = config
        n_fft = config.n_fft
        bins = n_fft // 2 + 1
        time = torch.arange(n_fft, dtype=torch.float64)
        freq = torch.arange(bins, dtype=torch.float64).unsqueeze(1)
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        angle = 2 * math.pi * freq * time / n_fft
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])  # (2 * bins, n_fft)
        self.register_buffer("basis", basis.float().unsqueeze(1))
        self.register_buffer("mel_fb", logmel.mel.mel_scale.fb.detach().clone())  # (bins, n_mels)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, n_mels, frames) in dB, cropped like LogMel."""
        config = self.config
        padded = F.pad(waveform.unsqueeze(1), (config.n_fft // 2, config.n_fft // 2))
        spectrum = F.conv1d(padded, self.basis, stride=config.hop_length)  # (batch, 2 * bins, frames)
        real, imag = spectrum.chunk(2, dim=1)
        power = (real.pow(2) + imag.pow(2)).pow(config.power / 2)
        mel = torch.matmul(power.transpose(1, 2), self.mel_fb).transpose(1, 2)
        logmel = (20.0 / config.power) * torch.log10(mel.clamp_min(config.log_floor))
        return logmel[..., : config.frames] if config.frames else logmel


class Scorer(nn.Module):
    """Anomaly score of log-mel (or of waveforms with ``features``)."""

    def __init__(self, detector: AnomalyDetector, include_features: bool) -> None:
        super().__init__()
        self.detector = detector
        self.features = ConvLogMel(detector.features) if include_features else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n_mels, frames) or (batch, samples) -> (batch,)."""
        logmel = self.features(x) if self.features is not None else x
        return self.detector.score_logmel(logmel)["score"]


def export_onnx(
    detector: AnomalyDetector, out_path: str | Path, include_features: bool = False, opset: int = 17
) -> Path:
    """Write the scorer as an ONNX model; returns its path."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    scorer = Scorer(detector.cpu().eval(), include_features).eval()
    config = detector.feature_config
    example = torch.zeros(2, config.samples) if include_features else torch.zeros(2, config.n_mels, config.n_frames)
    name = "waveform" if include_features else "logmel"
    torch.onnx.export(
        scorer,
        (example,),
        str(out_path),
        dynamo=False,
        opset_version=opset,
        input_names=[name],
        output_names=["score"],
        dynamic_axes={name: {0: "batch"}, "score": {0: "batch"}},
    )
    return out_path
