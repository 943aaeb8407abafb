"""LightningModule of the k-NN baseline: no gradient training, the same DataModule, metrics, threshold,
run files and checkpoints as the trained detectors."""

from __future__ import annotations

import torch

from .base import AnomalyDetector
from .detector import KNNBaselineDetector
from .knn import KNNDetector


class KNNModule(KNNBaselineDetector, AnomalyDetector):
    """Fills the memory bank from the DataModule's training features when fit starts, then stops after one
    (empty) epoch: there is nothing to optimise. Score: mean distance to the k nearest training clips."""

    def __init__(self, net: KNNDetector, **base: object) -> None:
        super().__init__(net, **base)
        self.automatic_optimization = False

    def configure_optimizers(self) -> None:
        """No optimizer: the bank is fitted, not trained."""
        return None

    def on_fit_start(self) -> None:
        """Fit the bank on the section's normalised training clips (once; a resumed run keeps it)."""
        super().on_fit_start()
        if not self.net.fitted:
            features = self.trainer.datamodule.train_features
            self.net.fit(torch.cat([self.normalizer(part.to(self.device)) for part in features.split(256)]))

    def training_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> None:
        """Nothing to learn."""

    def on_train_epoch_end(self) -> None:
        """One epoch is all there is."""
        self.trainer.should_stop = True
