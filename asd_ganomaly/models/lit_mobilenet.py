"""LightningModule of the DCASE 2021 MobileNetV2 baseline: a section classifier trained per machine type."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .base import AnomalyDetector
from .detector import SectionDetector
from .mobilenet import SectionClassifier


class MobileNetV2Module(SectionDetector, AnomalyDetector):
    """Trains ``net`` to tell the sections of a machine type apart (cross-entropy on log-mel windows); the
    anomaly score of a clip is how little the classifier believes it belongs to its own section.

    ``sections`` are the section numbers the classifier knows, in class order (a clip of section
    ``sections[i]`` is class ``i``); the DataModule must hold every section of the machine type
    (``data.section=all``). Each DataModule batch of clips is cut into windows, shuffled, and fed in minibatches
    of ``windows_per_batch`` (32 in the baseline). The config's ``max_epochs`` and ``scope`` are the run's
    (:data:`~asd_ganomaly.models.detector.RUN_KEYS`), not this module's.
    """

    def __init__(
        self,
        net: SectionClassifier,
        optimizer: Callable[..., torch.optim.Optimizer],
        sections: Sequence[int] = (0, 1, 2),
        windows_per_batch: int = 32,
        **base: object,
    ) -> None:
        super().__init__(net, sections, **base)
        self.automatic_optimization = False
        self.optimizer_factory = optimizer
        self.windows_per_batch = windows_per_batch

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam, lr 1e-5 in the baseline."""
        return self.optimizer_factory(params=self.net.parameters())

    def on_fit_start(self) -> None:
        """Fit the normalisation, after checking that the training clips span the classifier's sections."""
        found = self.trainer.datamodule.sections
        known = self.section_ids.tolist()
        if len(found) < 2:
            raise ValueError(
                f"{self.name} classifies the sections of a machine type, and the training clips hold sections "
                f"{found}: train it on all of them (data.section=all; experiment=dev_all does so for this model)"
            )
        if not set(found) <= set(known):
            raise ValueError(
                f"training clips of sections {found}, but the model knows sections {known}: "
                f"set model.sections={found} and model.net.n_sections={len(found)}"
            )
        super().on_fit_start()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Several optimizer steps over the batch's shuffled windows; logs loss and window accuracy."""
        optimizer = self.optimizers()
        windows = self.net.windows(self.normalizer(batch[0]))
        count = windows.shape[1]
        windows = windows.reshape(-1, *windows.shape[2:])
        targets = self.class_index(batch[1]).repeat_interleave(count)
        order = self.batch_order(len(windows), batch_idx, windows.device)
        total, correct = torch.zeros((), device=windows.device), torch.zeros((), device=windows.device)
        for chunk in order.split(self.windows_per_batch):
            logits = self.net(windows[chunk])
            loss = F.cross_entropy(logits, targets[chunk])
            self.optimize(loss, optimizer, "classifier")
            total += loss.detach() * len(chunk)
            correct += (logits.detach().argmax(1) == targets[chunk]).sum()
        logs = {"train/loss": total / len(windows), "train/accuracy": correct / len(windows)}
        self.log_dict(logs, on_step=True, on_epoch=True, prog_bar=True)
