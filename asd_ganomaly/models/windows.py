"""Windows of a clip's log-mel and the pooling of scores over time.

A window model (``model.window`` frames) trains on random crops of the training clips and scores a clip by
running it window by window and pooling the scores over time, as the official DCASE baselines do with their
5-frame (AE) and 64-frame (MobileNetV2) inputs. The pooling also serves whole-clip models: a 50 ms fault
is diluted by a mean over 10 s and stands out in a maximum or a mean of the top positions.
"""

from __future__ import annotations

import math

import torch

POOLS = ("mean", "max", "top")


def window_starts(frames: int, window: int, hop: int) -> list[int]:
    """First frames of the windows that cover ``frames``: every ``hop`` frames, and one more ending at the last
    frame when the hops do not reach it."""
    if window < 1 or hop < 1:
        raise ValueError(f"window ({window}) and hop ({hop}) must be positive")
    if frames < window:
        raise ValueError(f"a clip of {frames} frames is shorter than the model's window of {window} frames")
    starts = list(range(0, frames - window + 1, hop))
    return starts if starts[-1] == frames - window else [*starts, frames - window]


def split_windows(x: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """(batch, n_mels, frames) -> (batch * windows, n_mels, window), the windows of each clip in time order."""
    windows = torch.stack([x[..., s : s + window] for s in window_starts(x.shape[-1], window, hop)], dim=1)
    return windows.flatten(0, 1)


def join_windows(values: torch.Tensor, batch: int) -> torch.Tensor:
    """(batch * windows, ..., length) -> (batch, ..., windows * length): per-window series end to end in time."""
    values = values.unflatten(0, (batch, -1))  # (batch, windows, ..., length)
    return values.movedim(1, -2).flatten(-2)


def random_windows(x: torch.Tensor, window: int, per_clip: int = 1) -> torch.Tensor:
    """(batch, n_mels, frames) -> (batch * per_clip, n_mels, window): random crops, drawn with torch's generator
    (seeded by the run's seed)."""
    frames = x.shape[-1]
    window_starts(frames, window, 1)  # refuses a clip shorter than the window
    starts = torch.randint(frames - window + 1, (x.shape[0], per_clip)).tolist()
    return torch.stack([x[i, :, s : s + window] for i, row in enumerate(starts) for s in row])


def pool_time(values: torch.Tensor, how: str = "mean", top: float = 0.1) -> torch.Tensor:
    """(batch, positions) -> (batch,): the ``mean``, the ``max``, or the mean of the ``top`` fraction of the
    highest positions (at least one)."""
    if how == "mean":
        return values.mean(-1)
    if how == "max":
        return values.amax(-1)
    if how == "top":
        if not 0.0 < top <= 1.0:
            raise ValueError(f"the top fraction must lie in (0, 1], not {top}")
        k = max(1, math.ceil(top * values.shape[-1]))
        return values.topk(k, dim=-1).values.mean(-1)
    raise ValueError(f"pooling must be one of {list(POOLS)}, not {how!r}")
