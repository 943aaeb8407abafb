"""The DCASE 2021 Task 2 MobileNetV2 baseline as a pure PyTorch module: a section classifier over log-mel windows.

Each clip's log-mel (n_mels, frames) is cut into windows of ``window`` frames every ``hop`` frames (64 and 8 in
the baseline); each window is an image of (window, n_mels) repeated to 3 channels, classified into the machine
type's sections by torchvision's MobileNetV2 (width 0.5, no pretrained weights). The anomaly score of a clip is
the mean over its windows of ``log((1 - p) / p)``, p the softmax probability of the clip's own section.
Source: the organisers' baseline (Kawaguchi et al.), see docs reference section 3.3.
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from torchvision.models import mobilenet_v2

EPS = sys.float_info.epsilon
"""The baseline floors p and 1 - p at float64 epsilon: scores are bounded by +-log(1 / EPS), about 36."""


def log_odds_against(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``log((1 - p) / p)`` of each row, p = softmax(logits)[target], with p and 1 - p floored at ``EPS``.

    Computed from the logits (``logsumexp`` of the other classes minus the target's logit), so it does not
    lose precision where p is close to 1 as ``log(1 - softmax)`` would in float32; then clamped to the bounds
    that the baseline's floors give.
    """
    own = logits.gather(1, target.unsqueeze(1)).squeeze(1)
    is_own = nn.functional.one_hot(target, logits.shape[1]).bool()
    others = torch.logsumexp(logits.masked_fill(is_own, float("-inf")), dim=1)
    bound = -torch.log(torch.tensor(EPS, dtype=logits.dtype, device=logits.device))
    return (others - own).clamp(-bound, bound)


class SectionClassifier(nn.Module):
    """MobileNetV2 classifying log-mel windows into ``n_sections`` classes.

    Args:
        n_sections: number of classes (the sections of the machine type the model is trained on).
        window: frames per window (64 in the baseline).
        hop: frames between window starts (8 in the baseline).
        width_mult: MobileNetV2 width multiplier (Keras ``alpha``; 0.5 in the baseline).
        dropout: dropout before the classifier; 0 as Keras' MobileNetV2 (torchvision's default is 0.2).
    """

    def __init__(
        self, n_sections: int = 3, window: int = 64, hop: int = 8, width_mult: float = 0.5, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if n_sections < 2:
            raise ValueError(f"a section classifier needs at least 2 sections, not {n_sections}")
        self.n_sections = n_sections
        self.window = window
        self.hop = hop
        self.mobilenet = mobilenet_v2(weights=None, num_classes=n_sections, width_mult=width_mult, dropout=dropout)

    def windows(self, logmel: torch.Tensor) -> torch.Tensor:
        """(batch, n_mels, frames) -> (batch, n_windows, window, n_mels): frames as rows, as the baseline."""
        if logmel.shape[-1] < self.window:
            raise ValueError(f"clips of {logmel.shape[-1]} frames are shorter than a window of {self.window} frames")
        count = (logmel.shape[-1] - self.window) // self.hop + 1
        starts = torch.arange(count, device=logmel.device).unsqueeze(1) * self.hop
        frames = starts + torch.arange(self.window, device=logmel.device)  # (n_windows, window)
        # indexing, not Tensor.unfold: the ONNX exporter writes unfold followed by a permute in another order
        return logmel[..., frames].permute(0, 2, 3, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Windows (n, window, n_mels), repeated to 3 channels -> section logits (n, n_sections)."""
        return self.mobilenet(images.unsqueeze(1).expand(-1, 3, -1, -1))

    def scores(self, logmel: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per clip, the mean over windows of ``log((1 - p) / p)`` for class ``target`` (batch,) of each clip."""
        images = self.windows(logmel)
        batch, count = images.shape[:2]
        logits = self(images.reshape(batch * count, self.window, -1))
        score = log_odds_against(logits, target.repeat_interleave(count)).view(batch, count).mean(1)
        return {"score": score}
