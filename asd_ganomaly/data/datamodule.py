"""LightningDataModule for one (machine type, section), or for every section of a machine type
(``section="all"``, per-machine-type training as the official baselines), with features cached once and
batches that can live on the training device (no DataLoader round trip)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch

from .cache import extract_features
from .dcase import DOMAINS, ClipInfo, check_test_labels, list_clips, parse_section, train_clips
from .features import FeatureConfig

log = logging.getLogger(__name__)


class EpochShuffler:
    """Gives each epoch its own permutation from (seed, epoch), so a resumed run sees the same order.

    Lightning calls ``set_epoch`` on a loader's ``sampler`` before each training epoch.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = epoch

    def permutation(self, n: int, device: torch.device) -> torch.Tensor:
        """The current epoch's permutation of ``range(n)``."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(n, generator=generator).to(device)


class TensorBatches:
    """An iterable of batches sliced from tensors that stay where they are (CPU or GPU).

    Resumable: ``state_dict`` records the epoch and how many batches of it were handed out, and after
    ``load_state_dict`` the next pass over the same epoch starts at the next batch. Lightning saves this state
    in every checkpoint (it fetches no batch ahead of a loader of known length), so a run resumed from a
    checkpoint saved mid-epoch (Ctrl-C, SIGTERM) trains on exactly the batches an uninterrupted run would.
    ``draws``: the rows one pass hands out, repeats allowed (default: every row once).
    ``shard``: ``(rank, world size)`` of a DDP run: this rank's batches are every world-size-th batch of the pass,
    from the rank-th on; a rank short of one at the end repeats a batch from the pass's start (as PyTorch's
    ``DistributedSampler`` pads), so that every rank takes as many steps.
    """

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        draws: torch.Tensor | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.rank, self.world = shard
        self.tensors = tensors
        self.draws = draws if draws is not None else torch.arange(len(tensors[0]), device=tensors[0].device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last and len(self.draws) > batch_size
        self.sampler = EpochShuffler(seed)
        self.batch_sampler = None  # Lightning inspects loaders for these two attributes
        self.position = 0  # batches of the current pass handed out
        self._resume: dict | None = None

    def __len__(self) -> int:
        return -(-self._pass_length() // self.world)

    def _pass_length(self) -> int:
        """The batches of one pass over every rank."""
        n = len(self.draws)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def state_dict(self) -> dict:
        """The epoch and the number of its batches handed out so far."""
        return {"epoch": self.sampler.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Start the next pass over epoch ``state["epoch"]`` after its first ``state["position"]`` batches."""
        self._resume = dict(state)

    def _start(self) -> int:
        """The first batch of this pass: a loaded position once, for the epoch it was saved in; else 0."""
        resume, self._resume = self._resume, None
        if resume and resume["epoch"] == self.sampler.epoch and 0 < resume["position"] < len(self):
            return int(resume["position"])
        return 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.draws[self.sampler.permutation(len(self.draws), self.draws.device)] if self.shuffle else self.draws
        batches = self._pass_length()
        for i in range(self._start(), len(self)):
            b = (i * self.world + self.rank) % batches  # this rank's i-th batch of the pass
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            self.position = i + 1
            yield tuple(t[index] for t in self.tensors)


def balanced_draws(domains: torch.Tensor) -> torch.Tensor:
    """Row indices in which each target-domain row (domain 1) is repeated round(sources / targets) times, so
    that both domains are drawn about equally often; every row once when there is no target or no source row."""
    source, target = (domains == 0).nonzero().flatten(), (domains == 1).nonzero().flatten()
    if len(source) == 0 or len(target) == 0:
        return torch.arange(len(domains), device=domains.device)
    repeats = max(1, round(len(source) / len(target)))
    return torch.cat([source, target.repeat(repeats)]).sort().values


class SectionDataModule(L.LightningDataModule):
    """Normal training clips of one machine type and section (both domains); source and target test clips.
    With ``section="all"`` (``section`` None) the clips of every section of the machine type.

    Training batches are ``(features, section)``: features (batch, n_mels, frames) and each clip's section
    number. Test batches are ``(features, label, domain, index, section)`` with label 1 for anomaly, 0 normal,
    -1 unlabelled (an evaluation set), and domain 0 source / 1 target.
    ``extra_train_roots``: more data roots whose training clips of the machine type (and section) join the
    training set, e.g. the dev set's sections 00-02 beside the additional training set's 03-05; test clips come
    from ``root`` only.
    ``balance_domains``: each training epoch draws the target-domain clips (a few per section in DCASE 2021) as
    often as the source clips, each repeated a whole number of times, instead of once each.
    """

    def __init__(
        self,
        root: str,
        machine_type: str,
        section: int | str,
        features: dict | FeatureConfig | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 64,
        cache_dir: str | None = None,
        on_device: bool | str = "auto",
        num_workers: int = 2,
        drop_last: bool = True,
        on_bad_file: str = "error",
        max_train_clips: int | None = None,
        seed: int = 0,
        progress: bool = True,
        extra_train_roots: list[str] | tuple[str, ...] = (),
        balance_domains: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.machine_type = machine_type
        self.section = parse_section(section)
        self.config = features if isinstance(features, FeatureConfig) else FeatureConfig(**(features or {}))
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.cache_dir = cache_dir
        self.on_device = on_device
        self.num_workers = num_workers
        self.drop_last = drop_last
        self.on_bad_file = on_bad_file
        self.max_train_clips = max_train_clips
        self.seed = seed
        self.progress = progress
        self.extra_train_roots = [Path(r).expanduser() for r in extra_train_roots or ()]
        self.balance_domains = balance_domains
        self.train_features: torch.Tensor | None = None
        self.train_sections: torch.Tensor | None = None
        self.train_domains: torch.Tensor | None = None
        self.test_features: torch.Tensor | None = None
        self.test_clips: list[ClipInfo] = []
        self.labelled = True  # False for a test split without labels (after setup("test"))

    @property
    def device(self) -> torch.device:
        """The trainer's device, or the CPU outside a trainer."""
        trainer = self.trainer  # a LightningDataModule's (a LightningModule's is _trainer)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _keep_on_device(self) -> bool:
        if self.on_device == "auto":
            return self.device.type != "cpu"
        return bool(self.on_device)

    def _extract(self, clips: list[ClipInfo]) -> tuple[torch.Tensor, list[ClipInfo]]:
        by_path = {c.path: c for c in clips}
        features, kept = extract_features(
            [c.path for c in clips],
            self.config,
            cache_dir=self.cache_dir,
            device=self.device,
            num_workers=self.num_workers,
            on_bad_file=self.on_bad_file,
            progress=self.progress,
        )
        if self._keep_on_device():
            features = features.to(self.device)
        return features, [by_path[p] for p in kept]

    def setup(self, stage: str | None = None) -> None:
        """List the section's clips and load their (cached) features; repeated calls do nothing."""
        if stage in ("fit", None) and self.train_features is None:
            clips = [c for c in train_clips(self.root, self.machine_type, self.section, self.extra_train_roots)]
            if self.max_train_clips:
                clips = clips[: self.max_train_clips]
            self.train_features, kept = self._extract(clips)
            self.train_sections = self._sections(kept, self.train_features.device)
            domains = [DOMAINS.index(c.domain) for c in kept]
            self.train_domains = torch.tensor(domains, device=self.train_features.device)
            log.info("%d training clips of %s sections %s", len(kept), self.machine_type, self.sections)
        if stage in ("test", "validate", None) and self.test_features is None:
            clips = list_clips(self.root, self.machine_type, self.section, "test")
            self.labelled = check_test_labels(clips)
            self.test_features, self.test_clips = self._extract(clips)

    @staticmethod
    def _sections(clips: list[ClipInfo], device: torch.device) -> torch.Tensor:
        return torch.tensor([c.section for c in clips], dtype=torch.long, device=device)

    @property
    def sections(self) -> list[int]:
        """The sections of the training clips, sorted (after ``setup("fit")``)."""
        return sorted(set(self.train_sections.tolist())) if self.train_sections is not None else []

    def train_dataloader(self) -> TensorBatches:
        """Shuffled batches of (features, section), drawn from tensors that stay on their device; in a DDP run,
        each rank's share of them (every rank holds every clip: statistics, threshold and test use them all)."""
        tensors = (self.train_features, self.train_sections)
        draws = balanced_draws(self.train_domains) if self.balance_domains else None
        trainer = self.trainer
        shard = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return TensorBatches(
            tensors, self.batch_size, shuffle=True, drop_last=self.drop_last, seed=self.seed, draws=draws, shard=shard
        )

    def train_eval_batches(self) -> TensorBatches:
        """The training clips in order as (features, section), for threshold calibration."""
        return TensorBatches((self.train_features, self.train_sections), self.eval_batch_size)

    def test_dataloader(self) -> TensorBatches:
        """Test batches of (features, label, domain, index, section)."""
        device = self.test_features.device
        labels = torch.tensor([c.label_code for c in self.test_clips], device=device)
        domains = torch.tensor([DOMAINS.index(c.domain) for c in self.test_clips], device=device)
        index = torch.arange(len(self.test_clips), device=device)
        sections = self._sections(self.test_clips, device)
        return TensorBatches((self.test_features, labels, domains, index, sections), self.eval_batch_size)

    def val_dataloader(self) -> TensorBatches:
        """The test clips again: used only when a run selects its model on test labels (explicit option)."""
        if self.test_features is None:
            self.setup("test")
        return self.test_dataloader()
