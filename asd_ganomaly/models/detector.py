"""The scoring part of every detector as pure PyTorch modules (no Lightning): features, normalisation, the
network's scores, the fused score and the decision threshold.

Each training LightningModule (``lit_*.py``) inherits from one of these and adds training, calibration and test
metrics; ``asd-ganomaly score --ckpt`` rebuilds the pure module alone (see
:mod:`~asd_ganomaly.inference.checkpoint`), so scoring never imports Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..data.features import FeatureConfig, LogMel, Normalizer
from .bands import BandErrorScore
from .knn import KNNDetector
from .scores import SCORE_KEYS
from .windows import join_windows, pool_time, split_windows

if TYPE_CHECKING:
    from .ae import DenseAutoencoder
    from .ganomaly import GANomaly
    from .mobilenet import SectionClassifier

RUN_KEYS = ("scope", "max_epochs")
"""Keys a model config may hold for the run rather than the module: ``scope`` steers ``experiment=dev_all``'s grid,
``max_epochs`` is read by ``trainer.max_epochs``. :func:`build_detector` leaves them out of the constructor."""


def build_detector(model_config: Mapping[str, Any] | DictConfig) -> nn.Module:
    """The detector a model config describes (resolved if a ``DictConfig``), built by Hydra without the run's keys
    (:data:`RUN_KEYS`)."""
    if isinstance(model_config, DictConfig):
        model_config = OmegaConf.to_container(model_config, resolve=True)
    node = {key: value for key, value in model_config.items() if key not in RUN_KEYS}
    return hydra.utils.instantiate(node)


class Detector(nn.Module):
    """Scores of clips: subclasses implement ``clip_scores`` and name their ``components``, the score choices
    their network computes (``latent``, ``reconstruction``, ...).

    ``clip_scores`` takes normalised log-mel (batch, n_mels, frames) and returns a dict of per-clip scores
    keyed as in :data:`SCORE_KEYS` (higher = more anomalous). :meth:`score_logmel` adds ``score_fused`` (the
    sum of the components standardised on the training normals) and ``score``, the chosen one (``score``
    argument, default the first component). A model with ``needs_section`` scores a clip against its section:
    its ``clip_scores`` also takes each clip's section number.
    """

    components: tuple[str, ...] = ("default",)  # a subclass that names no scores: its clip_scores' ``score``
    needs_section: bool = False

    def __init__(
        self,
        features: dict | None = None,
        normalization: str = "minmax",
        norm_range: tuple[float, float] = (-1.0, 1.0),
        name: str = "detector",
        score: str | None = None,
        fuse: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.score_choice = score or self.components[0]
        if self.score_choice not in (*self.components, "fused"):
            raise ValueError(f"score must be one of {[*self.components, 'fused']} for {name}, not {score!r}")
        self.fuse_components = tuple(fuse or self.components)
        if unknown := [c for c in self.fuse_components if c not in self.components]:
            raise ValueError(f"fuse names {unknown}, which {name} does not compute: choose from {self.components}")
        # mean and std of each component's training scores, fitted with the threshold (for the fused score)
        self.register_buffer("score_mean", torch.zeros(len(self.components)))
        self.register_buffer("score_std", torch.ones(len(self.components)))
        self.scoring_training_clips = False  # True while the training clips score themselves (calibration)
        self.feature_config = FeatureConfig(**(features or {}))
        self.features = LogMel(self.feature_config)
        self.normalizer = Normalizer(self.feature_config.n_mels, normalization, tuple(norm_range))
        self.register_buffer("threshold", torch.tensor(float("inf")))
        self.name = name
        self.model_config: dict | None = None  # the resolved model config, stored in checkpoints
        self.trained_on: dict = {}  # machine_type and sections of the training clips, stored in checkpoints

    def clip_scores(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-clip scores of normalised log-mel features."""
        raise NotImplementedError

    def score_logmel(self, logmel: torch.Tensor, sections: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Scores of raw log-mel features (normalised here), computed in float32 even inside a bf16 autocast
        region: a latent distance between two close feature maps is below bf16's resolution. ``sections``
        (each clip's section number) is required by a model with ``needs_section`` and ignored by the others."""
        with torch.autocast(logmel.device.type, enabled=False):
            features = self.normalizer(logmel.float())
            if not self.needs_section:
                raw = self.clip_scores(features)
            elif sections is None:
                raise ValueError(f"{self.name} scores a clip against its section: give each clip's section")
            else:
                raw = self.clip_scores(features, torch.as_tensor(sections, device=logmel.device))
        scores = {SCORE_KEYS[name]: raw[SCORE_KEYS[name]].float() for name in self.components}
        scores["score_fused"] = self.fuse(scores)
        scores["score"] = scores[SCORE_KEYS[self.score_choice]]
        return scores

    def fuse(self, scores: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of the fused components (``fuse``, default all), each standardised by its training normals' mean
        and std."""
        index = [self.components.index(name) for name in self.fuse_components]
        stacked = torch.stack([scores[SCORE_KEYS[name]] for name in self.fuse_components], dim=-1)
        return ((stacked - self.score_mean[index]) / self.score_std[index]).sum(-1)

    def score_waveforms(self, waveforms: torch.Tensor, sections: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Scores of waveforms (batch, samples) at the feature sample rate (``sections`` as in score_logmel)."""
        return self.score_logmel(self.features(waveforms), sections)


class GANomalyDetector(Detector):
    """GANomaly's scores: ``latent`` (mean (Z - Z')^2), ``reconstruction``, ``discriminator`` (each pooled over time,
    ``pool``), ``residual_knn``, the distance of a clip's residual profile to the nearest training clips'
    (``residual_k``), and ``band_error``, each band's mean |X - X~| z-scored on the training clips, squared and
    averaged over bands (:mod:`~.bands`). ``window`` (frames) scores a clip window by window every ``window_hop``
    frames; ``bn_train_mode_at_test`` scores with batch statistics. See :class:`~.lit_ganomaly.GANomalyModule`."""

    components = ("latent", "reconstruction", "discriminator", "residual_knn", "band_error")

    def __init__(
        self,
        net: GANomaly,
        residual_k: int = 1,
        window: int | None = None,
        window_hop: int | None = None,
        pool: str = "mean",
        pool_top: float = 0.1,
        bn_train_mode_at_test: bool = False,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if window is not None and net.input_shape[-1] != window:
            raise ValueError(
                f"a window model's network takes windows: net.input_shape ends in {net.input_shape[-1]} frames, "
                f"the window is {window} (set model.net.input_shape to [n_mels, {window}])"
            )
        pool_time(torch.zeros(1, 1), pool, pool_top)  # refuses an unknown pooling or top fraction now
        self.net = net
        self.window = window
        self.window_hop = window_hop or max(1, (window or 2) // 2)
        self.pool, self.pool_top = pool, pool_top
        self.bn_train_mode_at_test = bn_train_mode_at_test
        self.residual_bank = KNNDetector(self.feature_config.n_mels, k=residual_k)
        self.band_errors = BandErrorScore(self.feature_config.n_mels)

    def clip_scores(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        """Latent (``score_latent``), reconstruction, discriminator, residual k-NN and band-error scores of
        normalised log-mel (the last two are NaN until fitted on training clips, e.g. when validating during
        training)."""
        scores = self._net_scores(logmel)
        residual = scores.pop("residual")
        if self.residual_bank.fitted:
            knn = self.residual_bank.scores(residual, leave_one_out=self.scoring_training_clips)["score_knn"]
        else:
            knn = torch.full_like(scores["score_rec"], float("nan"))
        band = self.band_errors.scores(residual)
        return {"score_latent": scores.pop("score"), **scores, "score_residual_knn": knn, "score_band_error": band}

    def _net_scores(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.bn_train_mode_at_test and not self.training:
            self.net.train()
            try:
                return self.pooled_scores(logmel)
            finally:
                self.net.eval()
        return self.pooled_scores(logmel)

    def profiles(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network's scores over time of normalised clips (see ``GANomaly.profiles``); a window model's
        windows end to end in time (``discriminator``: one value per window, (batch, windows))."""
        if self.window is None:
            profiles = self.net.profiles(logmel)
            return profiles | {"discriminator": profiles["discriminator"][:, None]}
        batch = logmel.shape[0]
        profiles = self.net.profiles(split_windows(logmel, self.window, self.window_hop))
        return {
            "latent": join_windows(profiles["latent"], batch),
            "reconstruction": join_windows(profiles["reconstruction"], batch),
            "discriminator": profiles["discriminator"].unflatten(0, (batch, -1)),
            "residual": join_windows(profiles["residual"], batch),
        }

    def pooled_scores(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        """``score`` (latent), ``score_rec``, ``score_disc`` pooled over time as configured, and ``residual``."""
        profiles = self.profiles(logmel)
        pooled = {
            key: pool_time(profiles[name], self.pool, self.pool_top)
            for key, name in (("score", "latent"), ("score_rec", "reconstruction"), ("score_disc", "discriminator"))
        }
        return pooled | {"residual": profiles["residual"]}


class AutoencoderDetector(Detector):
    """The DCASE autoencoder baseline's score: the mean squared reconstruction error of a clip's context vectors."""

    components = ("reconstruction",)

    def __init__(self, net: DenseAutoencoder, **base: Any) -> None:
        super().__init__(**base)
        self.net = net
        self.register_buffer("output_started", torch.tensor(False))  # the output bias was set from the data

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Weights written before ``output_started`` existed (a run's or a training checkpoint, read by Lightning or
        by ``asd-ganomaly score``) are trained weights: they load as started."""
        if "output_started" not in state_dict:
            state_dict = {**state_dict, "output_started": torch.tensor(True)}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def clip_scores(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean squared reconstruction error of each clip."""
        return self.net.scores(logmel)


class KNNBaselineDetector(Detector):
    """The k-NN baseline's score: the mean distance to the k nearest training clips."""

    components = ("knn",)

    def __init__(self, net: KNNDetector, **base: Any) -> None:
        super().__init__(**base)
        self.net = net

    def clip_scores(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        """k-NN distance of normalised log-mel; leave-one-out while the training clips score themselves."""
        return self.net.scores(logmel, leave_one_out=self.scoring_training_clips)


class SectionDetector(Detector):
    """The MobileNetV2 baseline's score: how little the section classifier believes a clip is of its own section.
    ``sections`` are the section numbers the classifier knows, in class order."""

    needs_section = True

    def __init__(self, net: SectionClassifier, sections: Sequence[int] = (0, 1, 2), **base: Any) -> None:
        super().__init__(**base)
        if len(sections) != net.n_sections or len(set(sections)) != len(sections):
            raise ValueError(f"sections {list(sections)} must be {net.n_sections} distinct numbers (net.n_sections)")
        self.net = net
        self.register_buffer("section_ids", torch.tensor(list(sections), dtype=torch.long))

    def class_index(self, sections: torch.Tensor) -> torch.Tensor:
        """The class of each section number; a section the classifier does not know is an error."""
        matches = sections.long().unsqueeze(1) == self.section_ids
        if not torch.jit.is_tracing() and not bool(matches.any(1).all()):
            unknown = sorted(set(sections.tolist()) - set(self.section_ids.tolist()))
            raise ValueError(f"sections {unknown} are not among the model's sections {self.section_ids.tolist()}")
        return matches.int().argmax(1)

    def clip_scores(self, logmel: torch.Tensor, sections: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean over windows of log((1 - p) / p), p the softmax probability of each clip's own section."""
        return self.net.scores(logmel, self.class_index(sections))
