"""GANomaly losses as modules with their weights as constructor arguments.

Generator: ``w_rec * L_rec + w_ano * L_ano + w_adv * L_adv``.

* ``L_rec``: mean absolute error between X and X~ (both report and code).
* ``L_ano``: ``"l2"`` = per-clip L2 norm of Z - Z' (the report), ``"mse"`` = mean squared error (the code).
* ``L_adv``: ``"sigmoid_l2"`` = per-clip |sigmoid(D(X)) - sigmoid(D(X~))| (the report; D has one output),
  ``"feature_mse"`` = MSE between the discriminator's feature maps of X and X~ (the code, as GANomaly).

Discriminator: ``0.5 * (BCE(D(X), 1) + BCE(D(X~ detached), 0))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GeneratorLoss(nn.Module):
    """Weighted sum of reconstruction, latent (anomaly) and adversarial losses."""

    def __init__(
        self, w_rec: float = 50.0, w_ano: float = 1.0, w_adv: float = 1.0, ano: str = "l2", adv: str = "sigmoid_l2"
    ) -> None:
        super().__init__()
        if ano not in ("l2", "mse"):
            raise ValueError(f"ano must be 'l2' or 'mse', not {ano!r}")
        if adv not in ("sigmoid_l2", "feature_mse"):
            raise ValueError(f"adv must be 'sigmoid_l2' or 'feature_mse', not {adv!r}")
        self.w_rec, self.w_ano, self.w_adv = float(w_rec), float(w_ano), float(w_adv)
        self.ano, self.adv = ano, adv

    def forward(
        self,
        x: torch.Tensor,
        x_rec: torch.Tensor,
        z: torch.Tensor,
        z_prime: torch.Tensor,
        real: tuple[torch.Tensor, torch.Tensor] | None,
        fake: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> dict[str, torch.Tensor]:
        """Return the total ``loss`` and its terms ``rec``, ``ano``, ``adv`` (unweighted); without the
        discriminator's outputs (``real``/``fake`` None) the adversarial term is left out and ``adv`` not returned."""
        rec = F.l1_loss(x_rec, x)
        if self.ano == "l2":
            ano = (z - z_prime).flatten(1).norm(dim=1).mean()
        else:
            ano = F.mse_loss(z_prime, z)
        if real is None or fake is None:
            return {"loss": self.w_rec * rec + self.w_ano * ano, "rec": rec, "ano": ano}
        if self.adv == "sigmoid_l2":
            adv = (torch.sigmoid(real[0]) - torch.sigmoid(fake[0])).abs().mean()
        else:
            adv = F.mse_loss(fake[1], real[1])
        loss = self.w_rec * rec + self.w_ano * ano + self.w_adv * adv
        return {"loss": loss, "rec": rec, "ano": ano, "adv": adv}


class DiscriminatorLoss(nn.Module):
    """Binary cross-entropy on logits: real clips are 1, reconstructions 0."""

    def forward(self, real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
        """Return ``0.5 * (BCE(real, 1) + BCE(fake, 0))``."""
        real = F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
        fake = F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit))
        return 0.5 * (real + fake)
