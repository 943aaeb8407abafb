"""Export a trained detector's scorer to ONNX.

Two graphs, both with a dynamic batch axis, float32 throughout. Their outputs: ``score`` (batch,), the chosen
anomaly score (higher = more anomalous), then every per-score column of scores.csv the model computes
(``score_latent``, ``score_rec``, ..., ``score_fused``), each (batch,):

* ``include_features=False``: input ``logmel`` (batch, n_mels, frames), the package's log-mel in dB as
  :class:`~asd_ganomaly.data.features.LogMel` computes it. Inside the graph: the normalisation fitted on the
  section's training clips (stored with the model) and the network's score (for GANomaly the latent distance
  ``||z - z'||``, for the autoencoder the reconstruction error).
* ``include_features=True``: input ``waveform`` (batch, samples), mono float32 at the model's sample rate, of
  any length: inside the graph it is zero-padded at the end or cropped to the training clip length
  (``FeatureConfig.samples``), exactly as :func:`~asd_ganomaly.data.audio.read_wav` does for training and
  scoring, so a clip gets the score ``asd-ganomaly score`` gives it. Then the log-mel front end. Neither the
  legacy (TorchScript) ONNX exporter nor torchaudio's ``MelSpectrogram`` handle the complex STFT ("STFT does not
  currently support complex types"), so :class:`ConvLogMel` computes the same spectrogram as a strided ``conv1d``
  with a windowed DFT basis (centred frames, zero padding), then the mel filterbank as a matmul and
  ``10 * log10`` with the same floor; on real clips it matches ``LogMel`` to well under 1e-3 dB (in the tests).

A section classifier (the MobileNetV2 baseline) scores a clip against its section: its graphs take a second
input ``section`` (batch,) int64, each clip's section number (``section_XX`` in DCASE file names).

The file's ``metadata_props`` (:func:`onnx_metadata`) hold what a deployment needs besides the graph: the
calibrated ``threshold`` (a clip is anomalous when its score is above it; ``inf`` when none was calibrated), the
feature parameters (``sample_rate``, ``n_fft``, ``hop_length``, ``n_mels``, ``seconds``, ``samples``,
``frames``, and all of them as JSON in ``features``), the ``length`` policy, the ``machine_type`` and
``sections`` trained on, the ``score`` choice, the ``outputs`` and ``asd_ganomaly_version``.
``asd-ganomaly score --onnx`` scores and decides with the file alone. Reading WAV files and resampling are not in
the graph.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from ..core.files import atomic_output
from ..data.features import LogMel
from ..models.detector import Detector
from ..models.scores import SCORE_COLUMNS


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


def fit_samples(waveform: torch.Tensor, samples: int) -> torch.Tensor:
    """Zero-pad at the end or crop (batch, any samples) to exactly ``samples``, as :func:`fit_length` does when a
    clip is read for training or scoring. Written with a fixed pad and a fixed slice, so a traced graph takes any
    length (no Python branch on the input's shape)."""
    return F.pad(waveform, (0, samples))[:, :samples]


class Scorer(nn.Module):
    """The scores of raw log-mel, or of waveforms of any length with ``include_features``: the chosen ``score``
    first, then the per-score columns (``outputs``, as in scores.csv)."""

    def __init__(self, detector: Detector, include_features: bool, outputs: Sequence[str]) -> None:
        super().__init__()
        self.detector = detector
        self.features = ConvLogMel(detector.features) if include_features else None
        self.samples = detector.feature_config.samples
        self.outputs = tuple(outputs)

    def forward(self, x: torch.Tensor, section: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """(batch, n_mels, frames) or (batch, samples), and the sections where the model needs them -> (batch,)
        per output."""
        logmel = self.features(fit_samples(x.float(), self.samples)) if self.features is not None else x
        scores = self.detector.score_logmel(logmel, section)
        return tuple(scores[name] for name in self.outputs)


def score_outputs(detector: Detector, example: tuple[torch.Tensor, ...]) -> list[str]:
    """The score keys the detector computes, ``score`` first and the others in scores.csv's order."""
    with torch.no_grad():
        keys = detector.score_logmel(*example).keys()
    return [key for key in ("score", *SCORE_COLUMNS) if key in keys]


LENGTH_POLICY = (
    "waveform zero-padded at the end or cropped to {samples} samples ({seconds:g} s at {sample_rate} Hz) inside the "
    "graph, as clips are read for training and scoring; then {frames} log-mel frames"
)
"""The ``length`` metadata of a waveform graph."""


def onnx_metadata(detector: Detector, input_name: str, outputs: Sequence[str]) -> dict[str, str]:
    """What a deployment needs besides the graph: threshold, feature parameters, what the model was trained on,
    the score's name and the package version, as ONNX ``metadata_props`` (strings; lists and dicts as JSON)."""
    config = detector.feature_config
    trained_on = getattr(detector, "trained_on", None) or {}
    sections = trained_on.get("sections")
    if sections is None and detector.needs_section:
        sections = detector.section_ids.tolist()
    length = LENGTH_POLICY.format(
        samples=config.samples, seconds=config.seconds, sample_rate=config.sample_rate, frames=config.n_frames
    )
    meta = {
        "asd_ganomaly_version": __version__,
        "model": detector.name,
        "machine_type": str(trained_on.get("machine_type", "unknown")),
        "sections": json.dumps(sections),
        "score": detector.score_choice,
        "outputs": json.dumps(list(outputs)),
        "threshold": repr(float(detector.threshold)),
        "input": input_name,
        "needs_section": json.dumps(detector.needs_section),
        "features": json.dumps(config.as_dict()),
        **{key: str(value) for key, value in config.as_dict().items()},
        "samples": str(config.samples),
        "n_frames": str(config.n_frames),
        "length": length if input_name == "waveform" else f"log-mel of exactly {config.n_frames} frames",
    }
    return meta


def write_metadata(path: Path, meta: dict[str, str]) -> None:
    """Store ``meta`` as the ONNX file's ``metadata_props`` (replacing any of the same keys)."""
    import onnx

    model = onnx.load(str(path))
    kept = [prop for prop in model.metadata_props if prop.key not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def export_onnx(detector: Detector, out_path: str | Path, include_features: bool = False, opset: int = 17) -> Path:
    """Write the detector's scorer as an ONNX model with its metadata (see the module docstring); returns its path.

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
    device, training = detector.threshold.device, detector.training
    try:
        detector.cpu().eval()
        logmel = (ConvLogMel(detector.features)(example),) if include_features else (example,)
        outputs = score_outputs(detector, logmel + inputs[1:])
        scorer = Scorer(detector, include_features, outputs).eval()
        axes = {name: {0: "batch", 1: "samples"}} if include_features else {name: {0: "batch"}}
        axes |= {n: {0: "batch"} for n in names[1:]} | {n: {0: "batch"} for n in outputs}
        with torch.no_grad(), atomic_output(out_path) as tmp, quiet_export():
            torch.onnx.export(
                scorer,
                inputs,
                str(tmp),
                dynamo=False,  # the dynamo exporter needs onnxscript, and gains nothing for this graph
                opset_version=opset,
                input_names=names,
                output_names=outputs,
                dynamic_axes=axes,
            )
            write_metadata(tmp, onnx_metadata(detector, name, outputs))
    except ModuleNotFoundError as error:
        raise RuntimeError(f"ONNX export needs: pip install 'asd-ganomaly[export]' ({error})") from error
    finally:
        detector.to(device).train(training)
    return out_path


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence the exporter's benign warnings, and only those.

    * "Converting a tensor to a Python boolean/integer" from the k-NN memory bank (``models.knn`` and the
      GANomaly detector that asks ``residual_bank.fitted``) and from the band-error score's ``fitted`` flag
      (``models.bands``): the bank is a buffer, so the tracer sees its size as a
      tensor, but its size is fixed by the trained model: the branch and ``k`` taken while tracing are those of
      every input. Shapes that follow the input (the batch, the waveform length) are not branched on.
    * "Constant folding - Only steps=1 can be constant folded": a strided slice is left for the runtime to compute
      instead of being precomputed; the graph computes the same.
    """
    with warnings.catch_warnings():
        for module in (r"asd_ganomaly\.models\.knn", r"asd_ganomaly\.models\.detector", r"asd_ganomaly\.models\.bands"):
            warnings.filterwarnings(
                "ignore", message="Converting a tensor to a Python", category=torch.jit.TracerWarning, module=module
            )
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        yield
