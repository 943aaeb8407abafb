"""The DCASE 2021 Task 2 autoencoder baseline as a pure PyTorch module.

Input vectors are ``context`` consecutive log-mel frames concatenated (5 x 128 = 640). Dense layers
128-128-128-128 -> 8 -> 128-128-128-128 -> 640, each hidden layer followed by BatchNorm and ReLU.
The clip score is the mean squared reconstruction error over all its vectors.
Source: the organisers' baseline (Kawaguchi et al.), see docs reference section 3.2.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn


def context_vectors(logmel: torch.Tensor, context: int) -> torch.Tensor:
    """(batch, n_mels, frames) -> (batch, frames - context + 1, context * n_mels), frame-major like the baseline."""
    count = logmel.shape[-1] - context + 1
    frames = torch.arange(count, device=logmel.device).unsqueeze(1) + torch.arange(context, device=logmel.device)
    # indexing, not Tensor.unfold: the ONNX exporter writes unfold followed by a permute in another order
    return logmel[..., frames].permute(0, 2, 3, 1).flatten(2)  # (batch, n_mels, vectors, context) -> frame-major


class DenseAutoencoder(nn.Module):
    """Dense autoencoder over context vectors; ``scores`` gives the per-clip mean squared error."""

    def __init__(
        self, n_mels: int = 128, context: int = 5, hidden: Sequence[int] = (128, 128, 128, 128), bottleneck: int = 8
    ) -> None:
        super().__init__()
        self.context = context
        sizes = [n_mels * context, *hidden, bottleneck, *reversed(hidden)]
        layers: list[nn.Module] = []
        for size_in, size_out in pairwise(sizes):
            layers += [nn.Linear(size_in, size_out), nn.BatchNorm1d(size_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(sizes[-1], n_mels * context))
        self.layers = nn.Sequential(*layers)

    @torch.no_grad()
    def start_at(self, mean_vector: torch.Tensor) -> None:
        """Set the output layer's bias to ``mean_vector`` (the training vectors' mean), so that training starts from
        the mean reconstruction instead of zero. On raw dB (tens of dB below zero) a zero bias leaves the output
        above every input for thousands of Adam steps, and the error then ranks clips by how quiet they are."""
        self.layers[-1].bias.copy_(mean_vector.to(self.layers[-1].bias))

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """(n, context * n_mels) -> reconstruction of the same shape."""
        return self.layers(vectors)

    def scores(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-clip mean squared error of (batch, n_mels, frames) log-mel."""
        vectors = context_vectors(logmel, self.context)
        batch, count, size = vectors.shape
        error = (self(vectors.reshape(-1, size)) - vectors.reshape(-1, size)).pow(2).mean(1)
        score = error.view(batch, count).mean(1)
        return {"score": score, "score_rec": score}
