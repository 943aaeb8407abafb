"""LightningModule of the DCASE autoencoder baseline, on the same DataModule and metrics as GANomaly."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..data.dcase import check_scope
from .ae import DenseAutoencoder, context_vectors
from .base import AnomalyDetector


class AutoencoderModule(AnomalyDetector):
    """Trains on shuffled minibatches of ``vectors_per_batch`` context vectors (512 in the baseline).

    Each DataModule batch of clips is cut into context vectors, shuffled, and fed in minibatches, so an
    epoch sees every vector once as in the baseline (which shuffles over all clips, not within a batch).
    ``scope`` only tells ``experiment=dev_all`` its grid: ``section`` (21 runs) or ``machine_type`` (7 runs of
    ``data.section=all``, the official protocol); the run's ``data.section`` decides what it trains on.
    """

    components = ("reconstruction",)

    def __init__(
        self,
        net: DenseAutoencoder,
        optimizer: Callable[..., torch.optim.Optimizer],
        vectors_per_batch: int = 512,
        scope: str = "section",
        **base: object,
    ) -> None:
        super().__init__(**base)
        self.automatic_optimization = False
        self.net = net
        self.optimizer_factory = optimizer
        self.vectors_per_batch = vectors_per_batch
        self.scope = check_scope(scope)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam, lr 1e-3 in the baseline."""
        return self.optimizer_factory(params=self.net.parameters())

    def clip_scores(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean squared reconstruction error of each clip."""
        return self.net.scores(logmel)

    def training_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> None:
        """Several optimizer steps over the batch's shuffled context vectors."""
        optimizer = self.optimizers()
        vectors = context_vectors(self.normalizer(batch[0]), self.net.context)
        vectors = vectors.reshape(-1, vectors.shape[-1])
        order = torch.randperm(len(vectors), device=vectors.device)
        total = torch.zeros((), device=vectors.device)
        for chunk in order.split(self.vectors_per_batch):
            if len(chunk) < 2:  # BatchNorm needs two samples
                continue
            loss = F.mse_loss(self.net(vectors[chunk]), vectors[chunk])
            self.optimize(loss, optimizer, "autoencoder")
            total += loss.detach() * len(chunk)
        self.log("train/loss", total / len(vectors), on_step=True, on_epoch=True, prog_bar=True)
