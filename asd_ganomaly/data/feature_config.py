"""The log-mel parameters of a model (no torch: an ONNX scorer reads them from its metadata)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

FLOAT_EPS = 2.220446049250313e-16  # numpy's float64 eps, the DCASE baseline's log floor


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel parameters. ``frames`` crops the frame axis (312 as the authors do); None keeps all."""

    sample_rate: int = 16000
    seconds: float = 10.0
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    power: float = 2.0
    log_floor: float = FLOAT_EPS
    frames: int | None = 312

    def as_dict(self) -> dict:
        """Plain dict, stable for hashing and for checkpoints."""
        return asdict(self)

    @property
    def samples(self) -> int:
        """Number of audio samples of one clip."""
        return round(self.seconds * self.sample_rate)

    @property
    def n_frames(self) -> int:
        """Number of frames of one clip after cropping."""
        full = self.samples // self.hop_length + 1
        return min(full, self.frames) if self.frames else full
