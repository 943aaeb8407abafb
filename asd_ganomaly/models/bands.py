"""The band-error score: how far each mel band's reconstruction error is from its normal range (pure PyTorch).

A clip's error profile is its mean |X - X~| over time in each mel band. The mean and the standard deviation of
each band's error over the section's training clips are fitted with the weights that are tested; a clip's score
is the mean over bands of its squared z-scored errors. A band the network reconstructs well on normals (a small,
steady error) then counts as much as a noisy one when its error grows, where the plain reconstruction score
(mean |X - X~| over all bands) is dominated by the bands that are always poorly reconstructed.
"""

from __future__ import annotations

import torch
from torch import nn


def band_profile(residual: torch.Tensor) -> torch.Tensor:
    """(batch, n_mels, frames) residual X - X~ -> (batch, n_mels): each band's mean absolute error over time."""
    return residual.abs().mean(-1)


class BandErrorScore(nn.Module):
    """Per-band mean and std of the training clips' error profiles; ``scores`` gives each clip's band-error score.

    A checkpoint written before this score existed loads with the statistics unfitted (the score is then NaN).
    """

    def __init__(self, n_mels: int = 128) -> None:
        super().__init__()
        self.register_buffer("center", torch.zeros(n_mels))
        self.register_buffer("scale", torch.ones(n_mels))
        self.register_buffer("is_fitted", torch.tensor(False))

    @property
    def fitted(self) -> bool:
        """Whether the band statistics were fitted on training clips."""
        return bool(self.is_fitted)

    @torch.no_grad()
    def fit(self, train_residual: torch.Tensor) -> None:
        """Fit each band's error mean and std on the training clips' residuals (clips, n_mels, frames)."""
        profiles = band_profile(train_residual.float())
        self.center.copy_(profiles.mean(0))
        std = profiles.std(0) if len(profiles) > 1 else torch.ones_like(self.scale)
        self.scale.copy_(std.clamp_min(1e-6))
        self.is_fitted.fill_(True)

    def scores(self, residual: torch.Tensor) -> torch.Tensor:
        """Mean over bands of each clip's squared z-scored band errors, (batch,); NaN before :meth:`fit`."""
        z = (band_profile(residual.float()) - self.center) / self.scale
        score = z.pow(2).mean(1)
        return score if self.fitted else torch.full_like(score, float("nan"))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        if prefix + "is_fitted" not in state_dict:  # written before the score existed: load it unfitted
            unfitted = {"center": torch.zeros_like(self.center), "scale": torch.ones_like(self.scale)}
            state_dict.update({prefix + name: value for name, value in unfitted.items()})
            state_dict[prefix + "is_fitted"] = torch.tensor(False)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
