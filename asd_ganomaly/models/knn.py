"""A detector with no gradient training: k nearest neighbours of clip-level log-mel statistics (pure PyTorch).

Each clip becomes one embedding, the mean and the standard deviation over time of each mel band of its log-mel
(2 x n_mels values): the machine's stationary spectrum and how much each band fluctuates, which is where a
changed harmonic, an added tone, noise bursts or impacts show up in a machine sound. Embeddings are z-scored
per dimension on the section's training clips and kept as a memory bank; a clip's score is its mean Euclidean
distance to the ``k`` nearest training embeddings. With few target-domain training clips, a small ``k`` lets a
target clip be compared with its own domain's clips instead of being pulled toward the source majority.
"""

from __future__ import annotations

import torch
from torch import nn


def clip_statistics(logmel: torch.Tensor) -> torch.Tensor:
    """(batch, n_mels, frames) -> (batch, 2 * n_mels): per-band mean over time, then per-band std."""
    mean = logmel.mean(-1)
    std = (logmel - mean.unsqueeze(-1)).pow(2).mean(-1).sqrt()
    return torch.cat([mean, std], dim=-1)


class KNNDetector(nn.Module):
    """Memory bank of z-scored training embeddings; ``scores`` gives each clip's mean k-NN distance.

    The bank's size is the number of training clips: loading a state dict resizes it, so a freshly built
    module takes any checkpoint's bank.
    """

    def __init__(self, n_mels: int = 128, k: int = 1, chunk: int = 256) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        self.k = k
        self.chunk = chunk
        self.register_buffer("center", torch.zeros(2 * n_mels))
        self.register_buffer("scale", torch.ones(2 * n_mels))
        self.register_buffer("bank", torch.zeros(0, 2 * n_mels))

    @property
    def fitted(self) -> bool:
        """Whether the bank holds training embeddings."""
        return self.bank.shape[0] > 0

    def embed(self, logmel: torch.Tensor) -> torch.Tensor:
        """(batch, n_mels, frames) -> z-scored embeddings (batch, 2 * n_mels)."""
        return (clip_statistics(logmel.float()) - self.center) / self.scale

    @torch.no_grad()
    def fit(self, train_logmel: torch.Tensor) -> None:
        """Fit the z-scoring and fill the bank from training log-mel (clips, n_mels, frames), in chunks."""
        stats = torch.cat([clip_statistics(part.float()) for part in train_logmel.split(self.chunk)])
        self.center = stats.mean(0).to(self.center.device)
        std = stats.std(0) if len(stats) > 1 else torch.ones_like(self.scale)
        self.scale = std.clamp_min(1e-6).to(self.scale.device)
        self.bank = ((stats - self.center) / self.scale).to(self.bank.device)

    def scores(self, logmel: torch.Tensor, leave_one_out: bool = False) -> dict[str, torch.Tensor]:
        """Mean distance of each clip to its ``k`` nearest bank entries (``score_knn``).

        ``leave_one_out``: the clips are the bank's own training clips; each one's nearest entry (itself, at
        distance 0) is skipped, so training scores are those of unseen normals (for threshold calibration).
        """
        if not self.fitted:
            raise RuntimeError("the k-NN memory bank is empty: fit it on training clips first")
        skip = int(leave_one_out)
        k = min(self.k, self.bank.shape[0] - skip)
        if k < 1:
            raise ValueError("leave-one-out scoring needs at least two clips in the bank")
        distances = torch.cdist(self.embed(logmel), self.bank)
        nearest = distances.topk(k + skip, dim=1, largest=False).values[:, skip:]
        return {"score_knn": nearest.mean(1)}

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        bank = state_dict.get(prefix + "bank")
        if bank is not None and bank.shape != self.bank.shape:
            self.bank = torch.empty_like(bank, device=self.bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
