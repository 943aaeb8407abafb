"""Read WAV clips with soundfile into fixed-length mono float32 arrays at the model's sample rate.

Defined behaviour for imperfect input:

* several channels: averaged to mono;
* another sample rate: resampled (torchaudio's band-limited resampler);
* shorter or longer than the clip length: zero-padded at the end or cropped;
* empty, corrupt, truncated or non-audio file: :class:`AudioError` naming the file. A WAV cut short (a
  copy or download that stopped) is told by its header: the data chunk declares more frames than the file
  holds (libsndfile itself reads what is there without a word).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import soundfile as sf

from ..core.errors import UserError

MIN_RATE, MAX_RATE = 1_000, 384_000
_STREAMING_SIZES = (0, 0xFFFFFFFF)  # data sizes of headers written before the length was known
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
"""The sample formats that can hold NaN or infinity (integer PCM cannot): read whole by :func:`check_header`."""
_CHECK_BLOCK = 1 << 16  # frames read at a time when a float file's samples are checked


class AudioError(UserError, ValueError):
    """Raised for a file that cannot be used as a clip."""


def read_wav(path: str | Path, sample_rate: int = 16000, seconds: float | None = 10.0) -> np.ndarray:
    """Read one clip as mono float32 at ``sample_rate``, padded or cropped to ``seconds`` (None: as is)."""
    path = Path(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            check_complete(path, handle.frames)
            rate, pcm16 = handle.samplerate, handle.subtype == "PCM_16"
            # 16-bit PCM (all of DCASE) is read as integers and scaled here: 3x faster than libsndfile's
            # float conversion, and the same values (both divide by 32768)
            audio = handle.read(dtype="int16" if pcm16 else "float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"cannot read {path}: {error}") from error
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"{path} claims an implausible sample rate of {rate} Hz")
    if audio.shape[0] == 0:
        raise AudioError(f"{path} holds no samples")
    if pcm16:
        audio = np.multiply(audio, np.float32(1 / 32768), dtype=np.float32)
    elif not np.isfinite(audio).all():
        raise AudioError(f"{path} holds NaN or infinite samples")
    mono = audio[:, 0] if audio.shape[1] == 1 else audio.mean(axis=1)
    if rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
    if seconds is not None:
        mono = fit_length(mono, round(seconds * sample_rate))
    return np.ascontiguousarray(mono, dtype=np.float32)


def check_header(path: str | Path) -> None:
    """Raise :class:`AudioError` unless ``path``'s header is readable, plausible and its data complete, and a
    float file's samples are finite (for checking a whole dataset before training: an integer PCM file, as
    every DCASE clip, is judged from its header alone; a float one is read once, in blocks)."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"cannot read {path}: {error}") from error
    if not MIN_RATE <= info.samplerate <= MAX_RATE:
        raise AudioError(f"{path} claims an implausible sample rate of {info.samplerate} Hz")
    if info.frames == 0:
        raise AudioError(f"{path} holds no samples")
    check_complete(path, info.frames)
    if info.subtype in FLOAT_SUBTYPES:
        check_finite(path)


def check_finite(path: Path) -> None:
    """Raise :class:`AudioError` when a sample of ``path`` is NaN or infinite (read in blocks)."""
    try:
        blocks = sf.blocks(str(path), blocksize=_CHECK_BLOCK, dtype="float32", always_2d=True)
        finite = all(np.isfinite(block).all() for block in blocks)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"cannot read {path}: {error}") from error
    if not finite:
        raise AudioError(f"{path} holds NaN or infinite samples")


def check_complete(path: Path, frames: int) -> None:
    """Raise :class:`AudioError` when a WAV header declares more frames than the ``frames`` the file holds."""
    declared = declared_frames(path)
    if declared is not None and frames < declared:
        raise AudioError(
            f"{path} is truncated: its header declares {declared} frames, the file holds {frames} "
            f"({frames / declared:.0%}); copy or download it again"
        )


def declared_frames(path: str | Path) -> int | None:
    """The frame count a RIFF/WAVE header declares for its data chunk; None for another format, a header
    written without a length (streaming) or one that cannot be parsed (libsndfile then judges the file)."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = 0
        while len(chunk := handle.read(8)) == 8:
            name, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"data":
                return size // block_align if block_align and size not in _STREAMING_SIZES else None
            if name == b"fmt " and size >= 14:
                block_align = int.from_bytes(handle.read(14)[12:14], "little")
                size -= 14
            handle.seek(size + (size & 1), 1)
    return None


def resample(audio: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resample a mono signal from ``rate`` to ``target_rate`` (torchaudio, imported here: only a clip at another
    rate needs torch, so scoring an ONNX file imports none for clips at the model's rate)."""
    import torch
    import torchaudio.functional as AF

    signal = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    return AF.resample(signal, int(rate), int(target_rate)).numpy()


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad at the end or crop to exactly ``length`` samples."""
    if audio.shape[0] >= length:
        return audio[:length]
    return np.pad(audio, (0, length - audio.shape[0]))


def read_ahead(count: int, submit: Callable[[int], list[Future]]) -> Iterator[list]:
    """The results of batches ``0 .. count - 1``, batch ``i + 1`` submitted before batch ``i`` is handed out.

    ``submit(i)`` starts reading batch ``i`` (in a thread pool) and returns its futures; while the caller works
    on one batch, the next one is being read, and no batch is submitted before the previous one is handed back.
    """
    pending = submit(0) if count else []
    for index in range(count):
        results = [future.result() for future in pending]
        pending = submit(index + 1) if index + 1 < count else []
        yield results
