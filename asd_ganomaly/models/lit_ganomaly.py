"""GANomaly LightningModule: manual optimization, a generator step then a discriminator step per batch."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from .base import AnomalyDetector, TrainingDivergedError
from .detector import GANomalyDetector
from .ganomaly import GANomaly, init_weights
from .loss import DiscriminatorLoss, GeneratorLoss
from .windows import random_windows

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class GANomalyModule(GANomalyDetector, AnomalyDetector):
    """E1-D-E2 generator and discriminator trained adversarially; score = mean((Z - Z')^2).

    Scores (``score``): ``latent`` (the report's), ``reconstruction`` (mean |X - X~|), ``discriminator`` and
    ``residual_knn``: the distance of a clip's residual profile (per-band mean and std over time of X - X~,
    z-scored) to the nearest training clip's (``residual_k`` neighbours), a memory bank filled from the training
    clips with the weights that are tested (it keeps the few target-domain training clips as references of their
    own instead of averaging them into what the network learnt from the source majority), and ``band_error``: each
    band's mean |X - X~| z-scored by the training clips' errors in that band (fitted with the bank), squared and
    averaged over bands.

    ``on_collapse`` says what happens when the discriminator loss stays below ``collapse_threshold`` for
    ``collapse_patience`` steps: ``"warn"``, ``"reinit"`` (re-initialise D, as original GANomaly) or
    ``"stop"``. ``bn_train_mode_at_test`` scores with batch statistics, as the authors' code did.

    ``window`` (frames; None: the whole clip, as the report) makes a window model: it trains on
    ``windows_per_clip`` random crops of each training clip per step and scores a clip window by window, every
    ``window_hop`` frames (default half a window), the windows' series end to end in time. ``pool`` (``mean``,
    ``max`` or ``top``: the mean of the highest ``pool_top`` fraction) turns the latent, reconstruction and
    discriminator scores over time into a clip's score, for whole-clip models too. ``disc_every`` runs the
    adversarial part of training (the discriminator step and the generator's adversarial term) on every k-th batch.
    """

    def __init__(
        self,
        net: GANomaly,
        loss: GeneratorLoss,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        scheduler_g: SchedulerFactory | None = None,
        scheduler_d: SchedulerFactory | None = None,
        on_collapse: str = "warn",
        collapse_threshold: float = 1e-5,
        collapse_patience: int = 20,
        bn_train_mode_at_test: bool = False,
        residual_k: int = 1,
        window: int | None = None,
        window_hop: int | None = None,
        windows_per_clip: int = 1,
        pool: str = "mean",
        pool_top: float = 0.1,
        disc_every: int = 1,
        **base: object,
    ) -> None:
        super().__init__(
            net,
            residual_k=residual_k,
            window=window,
            window_hop=window_hop,
            pool=pool,
            pool_top=pool_top,
            bn_train_mode_at_test=bn_train_mode_at_test,
            **base,
        )
        if on_collapse not in ("warn", "reinit", "stop"):
            raise ValueError(f"on_collapse must be warn, reinit or stop, not {on_collapse!r}")
        if disc_every < 1 or windows_per_clip < 1:
            raise ValueError(f"disc_every ({disc_every}) and windows_per_clip ({windows_per_clip}) must be >= 1")
        self.windows_per_clip = windows_per_clip
        self.disc_every = disc_every
        self.automatic_optimization = False
        self.loss = loss
        self.d_loss = DiscriminatorLoss()
        self.optimizer_factories = (optimizer_g, optimizer_d)
        self.scheduler_factories = (scheduler_g, scheduler_d)
        self.on_collapse = on_collapse
        self.collapse_threshold = collapse_threshold
        self.collapse_patience = collapse_patience
        self.collapsed_steps = 0

    def configure_optimizers(self) -> tuple[list, list]:
        """SGD/Adam (from config) for the generator and the discriminator, with optional schedulers."""
        opt_g = self.optimizer_factories[0](params=self.net.generator.parameters())
        opt_d = self.optimizer_factories[1](params=self.net.discriminator.parameters())
        schedulers = [
            make(optimizer=opt) for make, opt in zip(self.scheduler_factories, (opt_g, opt_d), strict=True) if make
        ]
        return [opt_g, opt_d], schedulers

    @torch.no_grad()
    def fit_memory(self, batches: list[tuple[torch.Tensor, ...]]) -> None:
        """Fill the residual bank and fit the band-error statistics from the training clips (raw log-mel batches)
        with the current weights."""
        residuals = [self._net_scores(self.normalizer(batch[0].to(self.device)))["residual"] for batch in batches]
        residual = torch.cat(residuals)
        self.residual_bank.fit(residual)
        self.band_errors.fit(residual)

    def on_validation_start(self) -> None:
        """The residual bank of the current weights, for scores computed while training (``select_on_test``)."""
        self.fit_memory(list(self.trainer.datamodule.train_eval_batches()))

    @torch.no_grad()
    def reconstruct(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised input and its reconstruction, both (batch, n_mels, frames), for plots."""
        x = self.normalizer(logmel)
        _, x_rec, _, _ = self.net(x)
        return x, x_rec[:, 0, : x.shape[-2], : x.shape[-1]]

    def training_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> None:
        """One generator step on the weighted loss, then one discriminator step on detached X~. With ``disc_every``
        k > 1 the adversarial part (the generator's adversarial term and the discriminator step) runs on every k-th
        batch only, the others are reconstruction and latent steps at about half the cost. A window model steps on
        random windows of the batch's clips."""
        opt_g, opt_d = self.optimizers()
        x = self.normalizer(batch[0])
        if self.window is not None:
            x = random_windows(x, self.window, self.windows_per_clip)

        adversarial = batch_idx % self.disc_every == 0
        self.toggle_optimizer(opt_g)
        x_pad, x_rec, z, z_prime = self.net(x)
        real, fake = (self.net.discriminator(x_pad), self.net.discriminator(x_rec)) if adversarial else (None, None)
        terms = self.loss(x_pad, x_rec, z, z_prime, real, fake)
        self.optimize(terms["loss"], opt_g, "generator")
        self.untoggle_optimizer(opt_g)

        logs = {f"train/loss_{name}": value.detach() for name, value in terms.items() if name != "loss"}
        logs["train/loss_g"] = terms["loss"].detach()
        if adversarial:
            self.toggle_optimizer(opt_d)
            loss_d = self.d_loss(self.net.discriminator(x_pad)[0], self.net.discriminator(x_rec.detach())[0])
            self.optimize(loss_d, opt_d, "discriminator")
            self.untoggle_optimizer(opt_d)
            self._watch_collapse(loss_d.detach())
            logs["train/loss_d"] = loss_d.detach()
        self.log_dict(logs, on_step=True, on_epoch=True, prog_bar=False)
        self.log("loss_g", terms["loss"].detach(), prog_bar=True, logger=False)

    def on_train_epoch_end(self) -> None:
        """Step the learning-rate schedulers once per epoch."""
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            if scheduler is not None:
                scheduler.step()

    def _watch_collapse(self, loss_d: torch.Tensor) -> None:
        self.collapsed_steps = self.collapsed_steps + 1 if loss_d < self.collapse_threshold else 0
        if self.collapsed_steps < self.collapse_patience:
            return
        why = (
            f"discriminator loss below {self.collapse_threshold} for {self.collapsed_steps} steps "
            f"(epoch {self.current_epoch}, global step {self.global_step})"
        )
        self.collapsed_steps = 0
        if self.on_collapse == "stop":
            raise TrainingDivergedError(f"GAN collapse: {why}")
        if self.on_collapse == "reinit":
            log.warning("GAN collapse: %s; re-initialising the discriminator", why)
            self.net.discriminator.apply(init_weights)
        else:
            log.warning("GAN collapse: %s", why)
