"""What every detector of the package shares: features and normalisation stored with the model, test
metrics per domain (AUC, pAUC, decisions), and the decision threshold calibrated on training normals."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import lightning as L
import torch

from ..core.errors import HandledFailure
from ..data.dcase import DOMAINS
from ..evaluation.metrics import flatten_metrics, gamma_threshold
from ..evaluation.summary import domain_results, run_results
from .detector import RUN_KEYS, Detector, build_detector  # noqa: F401 (RUN_KEYS, build_detector: re-exported)
from .scores import SCORE_KEYS

log = logging.getLogger(__name__)


DIVERGED_GROWTH = 1e6
"""A training loss this many times its first value is taken as diverged."""


class TrainingDivergedError(HandledFailure, FloatingPointError):
    """A loss became NaN or infinite, or the GAN collapsed and the config says stop."""


class AnomalyDetector(Detector, L.LightningModule):
    """Base LightningModule: a :class:`~.detector.Detector` (features, normalisation, scores, threshold) with
    training, threshold calibration and test metrics. Subclasses inherit from the pure detector of their kind
    first, then this class, and implement ``training_step``.
    """

    def __init__(
        self,
        threshold_quantile: float = 0.9,
        channels_last: bool = False,
        compile_net: bool = False,
        **detector: Any,
    ) -> None:
        super().__init__(**detector)
        self.threshold_quantile = threshold_quantile
        self.channels_last = channels_last
        self.compile_net = compile_net
        self._outputs: list[dict[str, torch.Tensor]] = []
        self._first_losses: dict[str, float] = {}
        self.test_results: dict = {}
        self.test_metrics: dict[str, float] = {}
        self.test_scores: dict[str, torch.Tensor] = {}

    def batch_order(self, n: int, batch_idx: int, device: torch.device) -> torch.Tensor:
        """A permutation of ``range(n)`` drawn from the run's seed (``torch.initial_seed``, set by
        ``seed_everything``), the epoch and ``batch_idx``: a resumed run draws what an uninterrupted one draws, as
        no checkpoint holds the global random state."""
        seed = (torch.initial_seed() * 1_000_003 + self.current_epoch) * 100_003 + batch_idx
        generator = torch.Generator().manual_seed(seed % 2**63)
        return torch.randperm(n, generator=generator).to(device)

    def optimize(self, loss: torch.Tensor, optimizer: L.pytorch.core.optimizer.LightningOptimizer, name: str) -> None:
        """One manual optimisation step: a NaN or infinite ``loss``, or one that grew by more than
        :data:`DIVERGED_GROWTH` times its first value (and past 1000), stops training with a
        :class:`TrainingDivergedError` naming ``name``, the epoch and the step; else zero the gradients,
        backpropagate and step ``optimizer``."""
        value = loss.item()
        first = self._first_losses.setdefault(name, abs(value))
        if not math.isfinite(value) or abs(value) > max(DIVERGED_GROWTH * first, 1000.0):
            grew = f" (it was {first:.4g} at the first step)" if math.isfinite(value) else ""
            raise TrainingDivergedError(
                f"{name} loss is {value:.4g}{grew} at epoch {self.current_epoch}, global step {self.global_step}: "
                "training diverged (try a lower learning rate or other loss weights)"
            )
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()

    def setup(self, stage: str) -> None:
        """Fast-path options: channels-last memory format and ``torch.compile`` of the network."""
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.compile_net and getattr(self.net, "_compiled_call_impl", None) is None:
            self.net.compile()

    def on_fit_start(self) -> None:
        """Fit the normalisation on the DataModule's training features before the first step (a resumed run
        keeps the fitted one; without a DataModule it must have been fitted before)."""
        if bool(self.normalizer.fitted):
            return
        features = getattr(self.trainer.datamodule, "train_features", None)
        if features is None:
            raise RuntimeError("the normalisation is not fitted and there is no DataModule with training features")
        self.fit_normalizer(features)

    @torch.no_grad()
    def fit_normalizer(self, train_features: torch.Tensor) -> None:
        """Fit the normalisation on the section's training features (once; a resumed run keeps it)."""
        if not bool(self.normalizer.fitted):
            self.normalizer.fit(train_features.to(self.normalizer.scale.device))

    @torch.no_grad()
    def calibrate_threshold(self, batches: Iterable[tuple[torch.Tensor, ...]]) -> float:
        """Fit a gamma distribution to the training normals' scores; the threshold is its quantile."""
        was_training = self.training
        self.eval()
        batches = list(batches)
        self.fit_memory(batches)
        self.scoring_training_clips = True
        try:
            outputs = [self.score_logmel(*(t.to(self.device) for t in batch[:2])) for batch in batches]
        finally:
            self.scoring_training_clips = False
            self.train(was_training)
        scores = {key: torch.cat([o[key] for o in outputs]) for key in outputs[0]}
        self.fit_fusion(scores)
        chosen = self.fuse(scores) if self.score_choice == "fused" else scores["score"]
        values = chosen.double().cpu().numpy()
        threshold = gamma_threshold(values, self.threshold_quantile)
        self.threshold.fill_(threshold)
        log.info("decision threshold %.6g (gamma quantile %.2f of training scores)", threshold, self.threshold_quantile)
        return threshold

    def fit_memory(self, batches: list[tuple[torch.Tensor, ...]]) -> None:
        """Fit what a score needs from the training clips of the weights that are tested (before the threshold
        is calibrated); nothing by default."""

    @torch.no_grad()
    def fit_fusion(self, scores: dict[str, torch.Tensor]) -> None:
        """Store the mean and std of each component over the training normals' scores."""
        stacked = torch.stack([scores[SCORE_KEYS[name]] for name in self.components], dim=-1).double()
        self.score_mean.copy_(stacked.mean(0))
        std = stacked.std(0) if len(stacked) > 1 else torch.ones_like(self.score_mean, dtype=torch.float64)
        self.score_std.copy_(std.clamp_min(1e-12))

    def _collect(self, batch: tuple[torch.Tensor, ...]) -> None:
        logmel, label, domain, index, *section = batch
        scores = self.score_logmel(logmel, *section)
        extra = {"section": section[0]} if section else {}
        self._outputs.append({**scores, "label": label, "domain": domain, "index": index, **extra})

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        """Score a test batch; metrics are computed per domain at the end of the epoch."""
        self._collect(batch)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        """Only used with ``select_on_test``: validation is the test set (explicit, optimistic option)."""
        self._collect(batch)

    def on_test_epoch_end(self) -> None:
        """Compute the run's results once (``test_results``, nested, with 95 % intervals of AUC and pAUC and every
        score choice's figures under ``scores``) and log the same values, flattened (``test_metrics``):
        test/<domain>/{auc,pauc,auc_low,...,f1}, test/hmean/{auc,pauc}, test/dcase_score, test/scores/<name>/...;
        in a per-machine-type run test/sections/<NN>/<domain>/... per section instead of test/<domain>/..."""
        self.test_scores = self._gather()
        self._check_test_scores(self.test_scores)
        self.test_results = self._results(self.test_scores)
        self.test_metrics = flatten_metrics("test", self.test_results)
        self.log_dict(self.test_metrics)

    def _check_test_scores(self, scores: dict[str, torch.Tensor]) -> None:
        """Fail the run (:class:`TrainingDivergedError`) when the chosen score is not finite or is the same for every
        clip of a domain: such scores rank nothing, and an AUC of 0.5 from them is no result."""
        for code, domain in enumerate(DOMAINS):
            values = scores["score"][scores["domain"] == code].double()
            if values.numel() == 0:
                continue
            bad = int((~torch.isfinite(values)).sum())
            if bad:
                raise TrainingDivergedError(
                    f"{bad} of {values.numel()} {domain} test scores ({self.score_choice}) are not finite: "
                    "training diverged (lower the learning rates or the loss weights)"
                )
            if values.numel() > 1 and bool(values.min() == values.max()):
                raise TrainingDivergedError(
                    f"every {domain} test score ({self.score_choice}) is {values[0].item():.6g}: the model ranks no "
                    "clip (training diverged or collapsed; lower the learning rates or the loss weights)"
                )

    def on_validation_epoch_end(self) -> None:
        """Log val/<domain>/auc and pauc (test labels: optimistic selection)."""
        self.log_dict(flatten_metrics("val", domain_results(self._gather(), self.threshold.cpu(), self.score_keys())))

    def _gather(self) -> dict[str, torch.Tensor]:
        outputs, self._outputs = self._outputs, []
        return {key: torch.cat([o[key] for o in outputs]).cpu() for key in outputs[0]}

    def _results(self, scores: dict[str, torch.Tensor]) -> dict:
        """Per domain, or per section and domain when the DataModule holds every section (``section`` None)."""
        datamodule = getattr(self._trainer, "datamodule", None)
        per_section = datamodule is not None and getattr(datamodule, "section", 0) is None
        return run_results(scores, self.threshold.cpu(), self.score_keys(), per_section)

    def score_names(self) -> list[str]:
        """The score choices whose metrics are reported: the components, and ``fused`` when there are several."""
        return [*self.components, "fused"] if len(self.components) > 1 else list(self.components)

    def score_keys(self) -> dict[str, str]:
        """Each reported score choice and its key in the score dicts."""
        return {name: SCORE_KEYS[name] for name in self.score_names()}

    def training_data(self) -> dict:
        """The machine type and sections of the training clips (from the DataModule when there is one, else as
        loaded from a checkpoint); ``score`` warns about clips of other sections, the ONNX metadata names them."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and getattr(datamodule, "sections", None):
            self.trained_on = {"machine_type": datamodule.machine_type, "sections": list(datamodule.sections)}
        return dict(self.trained_on)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the model config, the feature parameters and the training data's machine type and sections, so a
        checkpoint alone can score new clips, and the stage
        it was written in: ``fit`` for training-state checkpoints (no threshold or score memory fitted yet),
        ``test`` for a run's ``model.ckpt``."""
        trainer = self._trainer
        checkpoint["asd_ganomaly"] = {
            "model_config": self.model_config,
            "features": self.feature_config.as_dict(),
            "name": self.name,
            "data": self.training_data(),
            "stage": trainer.state.fn.value if trainer is not None and trainer.state.fn is not None else None,
        }
