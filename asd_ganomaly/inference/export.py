"""Export a trained detector's scorer to ONNX.

Two graphs, both with a dynamic batch axis, float32 throughout, and one output ``score`` (batch,), the
anomaly score (higher = more anomalous; compare it with the threshold stored in the checkpoint):

* ``include_features=False``: input ``logmel`` (batch, n_mels, frames), the package's log-mel in dB as
  :class:`~asd_ganomaly.data.features.LogMel` computes it. Inside the graph: the normalisation fitted on the
  section's training clips (stored with the model) and the network's score (for GANomaly the latent distance
  ``||z - z'||``, for the autoencoder the reconstruction error).
* ``include_features=True``: input ``waveform`` (batch, samples), mono float32 at the model's sample rate and
  exactly the clip length of training (``FeatureConfig.samples``; pad or crop as :func:`read_wav` does).
  Inside the graph, before the above: the log-mel front end. Neither the legacy (TorchScript) ONNX exporter
  nor torchaudio's ``MelSpectrogram`` handle the complex STFT ("STFT does not currently support complex
  types"), so :class:`ConvLogMel` computes the same spectrogram as a strided ``conv1d`` with a windowed DFT
  basis (centred frames, zero padding), then the mel filterbank as a matmul and ``10 * log10`` with the same
  floor; on real clips it matches ``LogMel`` to well under 1e-3 dB (checked in the tests).

A section classifier (the MobileNetV2 baseline) scores a clip against its section: its graphs take a second
input ``section`` (batch,) int64, each clip's section number (``section_XX`` in DCASE file names).

Reading WAV files, resampling and the decision threshold are not in the graph.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core.files import atomic_output
from ..data.features import LogMel
from ..models.base import AnomalyDetector


class ConvLogMel(nn.Module):
    """The log-mel of :class:`LogMel` without complex operations: an export-only module.

    The STFT is a ``conv1d`` whose 2 * (n_fft // 2 + 1) kernels are the windowed cosines and sines of the DFT
    (built in float64, stored in float32); padding, window, hop, power, mel filterbank, log floor and frame
    crop are taken from the given ``LogMel``.
    """

    def __init__(self, logmel: LogMel) -> None:
        super().__init__()
        config = logmel.config
        spectrogram = logmel.mel.spectrogram
        if spectrogram.win_length != config.n_fft:
            raise ValueError("ConvLogMel supports win_length == n_fft only")
        self.config = config
        n_fft = config.n_fft
        time = torch.arange(n_fft, dtype=torch.float64)
        freq = torch.arange(n_fft // 2 + 1, dtype=torch.float64).unsqueeze(1)
        window = spectrogram.window.detach().to(torch.float64)
        angle = 2 * math.pi * freq * time / n_fft
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])  # (2 * bins, n_fft)
        self.register_buffer("basis", basis.float().unsqueeze(1))  # (2 * bins, 1, n_fft)
        self.register_buffer("mel_fb", logmel.mel.mel_scale.fb.detach().clone().float())  # (bins, n_mels)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, n_mels, frames) in dB, cropped like LogMel."""
        config = self.config
        half = config.n_fft // 2
        padded = F.pad(waveform.float().unsqueeze(1), (half, half))  # torch.stft(center=True, pad_mode="constant")
        spectrum = F.conv1d(padded, self.basis, stride=config.hop_length)  # (batch, 2 * bins, frames)
        real, imag = spectrum.chunk(2, dim=1)
        power = real * real + imag * imag
        if config.power != 2.0:
            power = power.pow(config.power / 2)
        mel = torch.matmul(power.transpose(1, 2), self.mel_fb).transpose(1, 2)
        logmel = (20.0 / config.power) * torch.log10(mel.clamp_min(config.log_floor))
        return logmel[..., : config.frames] if config.frames else logmel


class Scorer(nn.Module):
    """The anomaly score alone: of raw log-mel, or of waveforms with ``include_features``."""

    def __init__(self, detector: AnomalyDetector, include_features: bool) -> None:
        super().__init__()
        self.detector = detector
        self.features = ConvLogMel(detector.features) if include_features else None

    def forward(self, x: torch.Tensor, section: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, n_mels, frames) or (batch, samples), and the sections where the model needs them -> (batch,)."""
        logmel = self.features(x) if self.features is not None else x
        return self.detector.score_logmel(logmel, section)["score"]


def export_onnx(
    detector: AnomalyDetector, out_path: str | Path, include_features: bool = False, opset: int = 17
) -> Path:
    """Write the detector's scorer as an ONNX model (see the module docstring); returns its path.

    The detector is traced on the CPU in eval mode and left on its device and in its mode afterwards.
    """
    if getattr(detector, "bn_train_mode_at_test", False):
        raise ValueError(
            "this model scores with batch statistics (bn_train_mode_at_test): a per-clip ONNX scorer would differ"
        )
    out_path = Path(out_path)
    config = detector.feature_config
    name = "waveform" if include_features else "logmel"
    example = torch.zeros(2, config.samples) if include_features else torch.zeros(2, config.n_mels, config.n_frames)
    inputs, names = (example,), [name]
    if detector.needs_section:
        inputs, names = (example, detector.section_ids[:1].repeat(2).cpu()), [name, "section"]
    device, training = detector.device, detector.training
    try:
        scorer = Scorer(detector.cpu().eval(), include_features).eval()
        with torch.no_grad(), atomic_output(out_path) as tmp:
            torch.onnx.export(
                scorer,
                inputs,
                str(tmp),
                dynamo=False,  # the dynamo exporter needs onnxscript, and gains nothing for this graph
                opset_version=opset,
                input_names=names,
                output_names=["score"],
                dynamic_axes={**{n: {0: "batch"} for n in names}, "score": {0: "batch"}},
            )
    except ModuleNotFoundError as error:
        raise RuntimeError(f"ONNX export needs: pip install 'asd-ganomaly[export]' ({error})") from error
    finally:
        detector.to(device).train(training)
    return out_path
