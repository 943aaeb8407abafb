"""LightningModule of the DCASE autoencoder baseline, on the same DataModule and metrics as GANomaly."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .ae import DenseAutoencoder, context_vectors
from .base import AnomalyDetector
from .detector import AutoencoderDetector


class AutoencoderModule(AutoencoderDetector, AnomalyDetector):
    """Trains on shuffled minibatches of ``vectors_per_batch`` context vectors (512 in the baseline).

    Each DataModule batch of clips is cut into context vectors, shuffled, and fed in minibatches, so an
    epoch sees every vector once as in the baseline (which shuffles over all clips, not within a batch).
    The config's ``scope`` is the run's (:data:`~asd_ganomaly.models.detector.RUN_KEYS`): it tells
    ``experiment=dev_all`` its grid, ``section`` (21 runs) or ``machine_type`` (7 runs of ``data.section=all``,
    the official protocol).
    ``output_bias``: ``mean`` starts the output layer's bias at the mean of the normalised training vectors, once,
    when training starts (a buffer in the checkpoint says it was done: a resumed run keeps its weights); ``zero``
    keeps PyTorch's initialisation (the baseline's Keras code starts at zero and converges in its ~10^5 steps; a
    short run does not, see docs/diagnosis.md).
    """

    def __init__(
        self,
        net: DenseAutoencoder,
        optimizer: Callable[..., torch.optim.Optimizer],
        vectors_per_batch: int = 512,
        output_bias: str = "mean",
        **base: object,
    ) -> None:
        super().__init__(net, **base)
        self.automatic_optimization = False
        self.optimizer_factory = optimizer
        self.vectors_per_batch = vectors_per_batch
        if output_bias not in ("mean", "zero"):
            raise ValueError(f"output_bias must be mean or zero, not {output_bias!r}")
        self.output_bias = output_bias

    def on_fit_start(self) -> None:
        """Fit the normalisation, then (``output_bias=mean``, first start only) the output bias, on the training
        features of the DataModule."""
        super().on_fit_start()
        if self.output_bias == "mean" and not bool(self.output_started):
            features = getattr(self.trainer.datamodule, "train_features", None)
            if features is None:
                raise RuntimeError("output_bias=mean needs a DataModule with training features")
            self.start_output(features)

    @torch.no_grad()
    def fit_normalizer(self, train_features: torch.Tensor) -> None:
        """Fit the normalisation (once) and, with ``output_bias=mean``, the output bias (once)."""
        super().fit_normalizer(train_features)
        if self.output_bias == "mean" and not bool(self.output_started):
            self.start_output(train_features)

    @torch.no_grad()
    def start_output(self, train_features: torch.Tensor) -> None:
        """Set the output layer's bias to the mean normalised training vector and mark it done."""
        self.net.start_at(self.mean_vector(train_features))
        self.output_started.fill_(True)

    @torch.no_grad()
    def mean_vector(self, train_features: torch.Tensor) -> torch.Tensor:
        """The mean of the normalised training context vectors, without cutting the clips into vectors: the mean
        of each of the ``context`` frame offsets over the frames it covers, then the (per-band affine) normalisation."""
        context, count = self.net.context, train_features.shape[-1] - self.net.context + 1
        features = train_features.to(self.normalizer.scale.device)
        offsets = [features[..., j : j + count].mean((0, 2), dtype=torch.float64) for j in range(context)]
        means = torch.stack(offsets, dim=-1)
        return self.normalizer(means.float()).T.flatten()  # (n_mels, context) -> frame-major like context_vectors

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam, lr 1e-3 in the baseline."""
        return self.optimizer_factory(params=self.net.parameters())

    def training_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> None:
        """Several optimizer steps over the batch's shuffled context vectors."""
        optimizer = self.optimizers()
        vectors = context_vectors(self.normalizer(batch[0]), self.net.context)
        vectors = vectors.reshape(-1, vectors.shape[-1])
        order = self.batch_order(len(vectors), batch_idx, vectors.device)
        total = torch.zeros((), device=vectors.device)
        for chunk in order.split(self.vectors_per_batch):
            if len(chunk) < 2:  # BatchNorm needs two samples
                continue
            loss = F.mse_loss(self.net(vectors[chunk]), vectors[chunk])
            self.optimize(loss, optimizer, "autoencoder")
            total += loss.detach() * len(chunk)
        self.log("train/loss", total / len(vectors), on_step=True, on_epoch=True, prog_bar=True)
