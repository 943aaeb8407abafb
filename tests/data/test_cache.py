"""The feature store and the extraction loop that fills it: ``asd_ganomaly/data/feature_store.py``, ``cache.py``."""

import numpy as np
import pytest
import torch
from conftest import tone, write_wav

from asd_ganomaly.data.audio import AudioError
from asd_ganomaly.data.cache import extract_features
from asd_ganomaly.data.feature_store import FeatureCache
from asd_ganomaly.data.features import FeatureConfig
from asd_ganomaly.data.synth import write_synthetic_dataset


def test_cache_is_used_then_rebuilt_when_corrupt_or_stale(tmp_path):
    wavs = [write_wav(tmp_path / f"c{i}.wav", tone(1.0) * (i + 1) / 3) for i in range(3)]
    config = FeatureConfig(seconds=1.0, frames=None)
    cache_dir = tmp_path / "cache"
    first, kept = extract_features(wavs, config, cache_dir=cache_dir, progress=False)
    assert first.shape == (3, 128, 32) and kept == wavs
    cache = FeatureCache(cache_dir, config)
    assert all(cache.load(w) is not None for w in wavs)
    pack, packed_clips = cache.load_pack(wavs, skip_bad=False)
    assert torch.equal(pack, first) and packed_clips == wavs
    assert cache.load_pack(wavs[:2], skip_bad=False) is None, "a pack belongs to its exact list of clips"
    # a subset: from the per-clip entries, which must then be used (a corrupt one would be rebuilt)
    entry = cache.entry_path(wavs[0])
    entry.write_bytes(entry.read_bytes()[:50])
    assert cache.load(wavs[0]) is None
    subset, _ = extract_features(wavs[:2], config, cache_dir=cache_dir, progress=False)
    assert torch.equal(subset, first[:2]) and cache.load(wavs[0]) is not None
    # a truncated pack: detected and rebuilt
    pack_file = cache.pack_path(wavs)
    pack_file.write_bytes(pack_file.read_bytes()[:50])
    assert cache.load_pack(wavs, skip_bad=False) is None
    again, _ = extract_features(wavs, config, cache_dir=cache_dir, progress=False)
    assert torch.equal(again, first) and cache.load_pack(wavs, skip_bad=False) is not None
    # other feature parameters: another cache folder, never the old entries
    other = FeatureCache(cache_dir, FeatureConfig(seconds=1.0, frames=None, n_mels=64))
    assert other.dir != cache.dir and other.load(wavs[0]) is None and other.load_pack(wavs, skip_bad=False) is None
    # the WAV changed on disk: its entry and the pack are stale, and the new audio is used
    write_wav(wavs[1], tone(1.0) * 0.01)
    assert cache.load(wavs[1]) is None and cache.load_pack(wavs, skip_bad=False) is None
    changed, _ = extract_features(wavs, config, cache_dir=cache_dir, progress=False)
    assert torch.equal(changed[[0, 2]], first[[0, 2]]) and changed[1].max() < first[1].max() - 30


def test_a_pack_that_skipped_a_bad_clip_is_not_used_to_hide_the_error(tmp_path):
    good = write_wav(tmp_path / "good.wav", tone(1.0))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"garbage")
    config = FeatureConfig(seconds=1.0, frames=None)
    cache_dir = tmp_path / "cache"
    features, kept = extract_features([good, bad], config, cache_dir=cache_dir, on_bad_file="skip", progress=False)
    assert kept == [good]
    again, kept_again = extract_features([good, bad], config, cache_dir=cache_dir, on_bad_file="skip", progress=False)
    assert kept_again == [good] and torch.equal(again, features)
    with pytest.raises(AudioError, match="bad.wav"):
        extract_features([good, bad], config, cache_dir=cache_dir, progress=False)


def test_bad_file_error_or_skip(tmp_path):
    good = write_wav(tmp_path / "good.wav", tone(1.0))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"garbage")
    config = FeatureConfig(seconds=1.0, frames=None)
    with pytest.raises(AudioError, match="bad.wav"):
        extract_features([good, bad], config, progress=False)
    features, kept = extract_features([good, bad], config, on_bad_file="skip", progress=False)
    assert kept == [good] and features.shape[0] == 1


def test_cache_entries_hold_one_clip_and_the_cache_stays_under_its_bound(tmp_path):
    """Each entry is one clip's float32 values plus a small fixed overhead; entries + pack stay near 2x."""
    n = 40
    wavs = [write_wav(tmp_path / f"c{i}.wav", tone(2.0) * (i + 1) / n) for i in range(n)]
    config = FeatureConfig(seconds=2.0, frames=56)
    cache_dir = tmp_path / "cache"
    extract_features(wavs, config, cache_dir=cache_dir, batch_size=16, progress=False)
    raw = _raw_bytes(config, 56)
    cache = FeatureCache(cache_dir, config)
    sizes = [cache.entry_path(w).stat().st_size for w in wavs]
    overhead = 2048  # zip headers and the pickled parameters
    assert all(raw <= size <= 1.1 * raw + overhead for size in sizes), (raw, sorted(set(sizes)))
    total = sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file())
    assert total <= 1.1 * (2 * n * raw) + (n + 1) * overhead, (total, 2 * n * raw)


def test_a_bloated_cache_entry_is_rewritten_compactly(tmp_path):
    """An entry saved as a row view of a whole batch (as an older version did) is used and shrunk."""
    wav = write_wav(tmp_path / "a.wav", tone(1.0))
    config = FeatureConfig(seconds=1.0, frames=None)
    cache = FeatureCache(tmp_path / "cache", config)
    features, _ = extract_features([wav], config, progress=False)
    batch = torch.cat([features, torch.zeros(31, *features.shape[1:])])
    entry = cache.entry_path(wav)
    entry.parent.mkdir(parents=True)
    stat = wav.stat()
    payload = {"params": cache.params, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "features": batch[0]}
    torch.save(payload, entry)
    bloated = entry.stat().st_size
    assert bloated > 20 * _raw_bytes(config, features.shape[2])
    loaded = cache.load(wav)
    assert torch.equal(loaded, features[0])
    assert entry.stat().st_size < bloated / 20 and torch.equal(cache.load(wav), features[0])


def test_feature_batch_size_and_threads_do_not_change_features(tmp_path):
    write_synthetic_dataset(tmp_path, ["pump"], [0], train_clips=5, target_train_clips=0, test_clips=1, seconds=1.0)
    files = sorted(tmp_path.glob("pump/train/*.wav"))
    config = FeatureConfig(seconds=1.0, frames=None)
    one, _ = extract_features(files, config, batch_size=1, num_workers=1, progress=False)
    many, _ = extract_features(files, config, batch_size=16, num_workers=2, progress=False)
    np.testing.assert_allclose(one.numpy(), many.numpy(), rtol=1e-5, atol=1e-4)


def _raw_bytes(config: FeatureConfig, frames: int) -> int:
    return config.n_mels * frames * 4
