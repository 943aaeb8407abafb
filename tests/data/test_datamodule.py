"""The DataModule over real DCASE 2020 clips (shapes, tags, the cache on the second pass) and the resumable
batches: ``asd_ganomaly/data/datamodule.py``."""

import functools
import itertools
import operator
from pathlib import Path

import pytest
import torch
from conftest import real_machine_layout

import asd_ganomaly.data.cache as cache_module
from asd_ganomaly.data.datamodule import SectionDataModule, TensorBatches, balanced_draws
from asd_ganomaly.data.synth import write_synthetic_dataset


@pytest.fixture(scope="module")
def real_layout(realdata, tmp_path_factory) -> Path:
    """20 real normal clips for training; 5 other normals and the real anomaly for testing."""
    root = tmp_path_factory.mktemp("real")
    real_machine_layout(realdata, root, train=20, test_normals=5)
    return root


def make(root: Path, cache: Path, **kwargs) -> SectionDataModule:
    return SectionDataModule(
        str(root), "machine", 0, batch_size=8, eval_batch_size=4, cache_dir=str(cache), progress=False, **kwargs
    )


def test_real_clips_load_with_tags_and_shapes(real_layout, tmp_path):
    dm = make(real_layout, tmp_path / "cache")
    dm.setup("fit")
    dm.setup("test")
    assert dm.train_features.shape == (20, 128, 312)
    assert torch.isfinite(dm.train_features).all()
    batches = list(dm.train_dataloader())
    assert len(batches) == 2 and all(b[0].shape == (8, 128, 312) for b in batches)  # drop_last
    features, labels, domains, index, sections = (torch.cat(t) for t in zip(*dm.test_dataloader(), strict=True))
    assert features.shape == (6, 128, 312)
    assert labels.tolist().count(1) == 1 and set(domains.tolist()) == {0} and set(sections.tolist()) == {0}
    assert dm.sections == [0] and all(b[1].tolist() == [0] * 8 for b in batches)
    assert dm.test_clips[int(index[labels == 1])].label == "anomaly"


def test_second_pass_reads_no_wav(real_layout, tmp_path, monkeypatch):
    first = make(real_layout, tmp_path / "cache")
    first.setup("fit")

    def no_wav(*args, **kwargs):
        raise AssertionError("a WAV was decoded although its features are cached")

    monkeypatch.setattr(cache_module, "read_wav", no_wav)
    second = make(real_layout, tmp_path / "cache")
    second.setup("fit")
    assert torch.equal(first.train_features, second.train_features)


def test_epochs_have_their_own_reproducible_order():
    batches = TensorBatches((torch.arange(12.0),), batch_size=4, shuffle=True, seed=3)
    first = [b[0].tolist() for b in batches]
    assert first == [b[0].tolist() for b in batches]
    batches.sampler.set_epoch(1)
    second = [b[0].tolist() for b in batches]
    assert second != first and sorted(functools.reduce(operator.iadd, second, [])) == list(range(12))


def test_a_loader_restored_mid_epoch_goes_on_with_the_next_batch():
    def loader() -> TensorBatches:
        batches = TensorBatches((torch.arange(20.0),), batch_size=4, shuffle=True, seed=5)
        batches.sampler.set_epoch(2)
        return batches

    whole = [b[0].tolist() for b in loader()]
    interrupted = loader()
    seen = [b[0].tolist() for b in itertools.islice(interrupted, 2)]
    state = interrupted.state_dict()
    assert state == {"epoch": 2, "position": 2}
    resumed = loader()
    resumed.load_state_dict(state)
    assert seen + [b[0].tolist() for b in resumed] == whole
    assert [b[0].tolist() for b in resumed] == whole, "skipped once, the next pass is whole"
    other_epoch = loader()
    other_epoch.load_state_dict(state)
    other_epoch.sampler.set_epoch(3)
    assert len(list(other_epoch)) == 5, "the state of epoch 2 does not skip batches of epoch 3"


def test_max_train_clips_and_bad_machine(real_layout, tmp_path):
    dm = make(real_layout, tmp_path / "cache", max_train_clips=5)
    dm.setup("fit")
    assert dm.train_features.shape[0] == 5
    from asd_ganomaly.data.dcase import DatasetError

    with pytest.raises(DatasetError, match="unknown machine type"):
        SectionDataModule(str(real_layout), "pumpp", 0, progress=False).setup("fit")


def test_tensor_batches_resume_at_the_saved_position():
    data = (torch.arange(50).float(),)
    loader = TensorBatches(data, batch_size=8, shuffle=True, drop_last=True, seed=3)
    loader.sampler.set_epoch(2)
    whole = [b[0] for b in loader]
    loader.sampler.set_epoch(2)
    seen = []
    for batch in loader:
        seen.append(batch[0])
        if len(seen) == 4:
            break
    state = loader.state_dict()
    assert state == {"epoch": 2, "position": 4}
    fresh = TensorBatches(data, batch_size=8, shuffle=True, drop_last=True, seed=3)
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(2)
    rest = [b[0] for b in fresh]
    assert len(rest) == 2 and all(torch.equal(a, b) for a, b in zip(seen + rest, whole, strict=True))
    fresh.sampler.set_epoch(3)
    assert len(list(fresh)) == 6, "the position is used once, for its own epoch"
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        TensorBatches(data, batch_size=0)


def test_balanced_draws_repeat_the_target_clips_as_often_as_the_source_clips():
    domains = torch.tensor([0] * 32 + [1] * 3)
    draws = balanced_draws(domains)
    counts = torch.bincount(draws, minlength=35)
    assert counts[:32].tolist() == [1] * 32 and counts[32:].tolist() == [11] * 3
    assert balanced_draws(torch.zeros(5, dtype=torch.long)).tolist() == list(range(5)), "no target: each once"
    assert balanced_draws(torch.ones(4, dtype=torch.long)).tolist() == list(range(4)), "no source: each once"


def test_tensor_batches_hand_out_each_draw_once_per_epoch_in_a_new_order():
    draws = torch.tensor([0, 1, 2, 3, 3, 3])
    batches = TensorBatches((torch.arange(4.0) * 10,), batch_size=2, shuffle=True, seed=1, draws=draws)
    assert len(batches) == 3
    first = sorted(v for b in batches for v in b[0].tolist())
    assert first == [0.0, 10.0, 20.0, 30.0, 30.0, 30.0]
    orders = []
    for epoch in range(4):
        batches.sampler.set_epoch(epoch)
        orders.append([v for b in batches for v in b[0].tolist()])
    assert len({tuple(o) for o in orders}) > 1


def test_balance_domains_draws_the_target_training_clips_as_often_as_the_source_ones(tmp_path):
    root = write_synthetic_dataset(
        tmp_path / "synth",
        ["fan"],
        [0],
        train_clips=6,
        target_train_clips=2,
        test_clips=1,
        seconds=1.0,
        progress=False,
    )
    features = {"seconds": 1.0, "frames": 24}
    plain = SectionDataModule(
        str(root), "fan", 0, features, batch_size=2, cache_dir=str(tmp_path / "c"), progress=False
    )
    balanced = SectionDataModule(
        str(root),
        "fan",
        0,
        features,
        batch_size=2,
        cache_dir=str(tmp_path / "c"),
        progress=False,
        balance_domains=True,
    )
    for dm in (plain, balanced):
        dm.setup("fit")
    assert balanced.train_domains.tolist() == [0] * 6 + [1] * 2
    assert len(plain.train_dataloader()) == 4 and len(balanced.train_dataloader()) == 6
    drawn = torch.cat([b[0] for b in balanced.train_dataloader()])
    target_rows = balanced.train_features[balanced.train_domains == 1]
    times_drawn = [int((drawn == row).flatten(1).all(1).sum()) for row in target_rows]
    assert times_drawn == [3, 3]


def test_the_device_is_the_trainers_and_auto_keeps_features_there_off_the_cpu(tmp_path):
    """``data.on_device=auto``: on a trainer's accelerator (here the meta device, a stand-in for a GPU) the
    features are kept there; outside a trainer, the CPU."""
    from types import SimpleNamespace

    module = SectionDataModule(root=str(tmp_path), machine_type="fan", section=0)
    assert module.device == torch.device("cpu") and not module._keep_on_device()
    module.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")))
    assert module.device == torch.device("meta") and module._keep_on_device()
