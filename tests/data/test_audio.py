"""Bad-input behaviour of the WAV reader, log-mel shapes and determinism, the feature cache."""

import numpy as np
import pytest
import soundfile as sf
import torch

from asd_ganomaly.data.audio import AudioError, read_wav
from asd_ganomaly.data.cache import FeatureCache, extract_features
from asd_ganomaly.data.features import FeatureConfig, LogMel, Normalizer, band_groups

SR = 16000


def tone(seconds: float, rate: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def write(path, audio, rate=SR, subtype="PCM_16"):
    sf.write(path, audio, rate, subtype=subtype)
    return path


def test_exact_clip_is_read_unchanged(tmp_path):
    audio = read_wav(write(tmp_path / "a.wav", tone(2.0)), seconds=2.0)
    assert audio.dtype == np.float32 and audio.shape == (32000,)
    assert np.allclose(audio, tone(2.0), atol=1e-4)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_samples_equal_libsndfiles_float_conversion(tmp_path, subtype):
    """16-bit clips are read as integers and scaled here; every subtype gives libsndfile's float values."""
    audio = np.random.default_rng(1).uniform(-1, 1, (8000, 1))
    audio[:4, 0] = [-1.0, 0.999969, 0.0, -0.5]
    path = write(tmp_path / "x.wav", audio, subtype=subtype)
    expected, _ = sf.read(path, dtype="float32")
    got = read_wav(path, seconds=None)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)


def test_short_clip_is_zero_padded_and_long_clip_cropped(tmp_path):
    short = read_wav(write(tmp_path / "s.wav", tone(1.5)), seconds=2.0)
    assert short.shape == (32000,) and np.all(short[24000:] == 0) and np.abs(short[:24000]).max() > 0.4
    long = read_wav(write(tmp_path / "l.wav", tone(3.0)), seconds=2.0)
    assert long.shape == (32000,)


def test_stereo_is_downmixed(tmp_path):
    stereo = tone(1.0, channels=2)
    stereo[:, 1] = 0
    audio = read_wav(write(tmp_path / "st.wav", stereo), seconds=1.0)
    assert np.allclose(audio, tone(1.0) / 2, atol=1e-4)


def test_other_sample_rate_is_resampled(tmp_path):
    audio = read_wav(write(tmp_path / "r.wav", tone(1.0, rate=44100), rate=44100), seconds=1.0)
    assert audio.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins: the tone stays at 440 Hz


@pytest.mark.parametrize(
    "content",
    [b"", b"RIFF\x00\x00\x00\x00WAVEjunk", b"not audio at all" * 10],
    ids=["empty", "corrupt-header", "text"],
)
def test_unreadable_files_raise_audio_error_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match="bad.wav"):
        read_wav(path)


def test_truncated_file_is_padded_or_refused(tmp_path):
    good = write(tmp_path / "t.wav", tone(1.0))
    data = good.read_bytes()
    (tmp_path / "trunc.wav").write_bytes(data[: len(data) // 2])
    try:
        audio = read_wav(tmp_path / "trunc.wav", seconds=1.0)
    except AudioError as error:
        assert "trunc.wav" in str(error)
    else:  # libsndfile reads what is there: the missing half becomes zeros
        assert audio.shape == (16000,) and np.all(audio[9000:] == 0)


def test_header_only_wav_is_refused(tmp_path):
    path = write(tmp_path / "zero.wav", np.zeros(0))
    with pytest.raises(AudioError, match="no samples"):
        read_wav(path)


def test_logmel_shape_and_determinism():
    config = FeatureConfig()
    wave = torch.from_numpy(tone(10.0).astype(np.float32)).repeat(2, 1)
    features = LogMel(config)(wave)
    assert features.shape == (2, 128, 312)
    assert config.n_frames == 312 and FeatureConfig(frames=None).n_frames == 313
    assert torch.equal(features, LogMel(config)(wave))
    assert torch.isfinite(features).all()
    # silence hits the floor: 10 * log10(eps)
    silent = LogMel(config)(torch.zeros(1, 16000 * 10))
    assert torch.allclose(silent, torch.full_like(silent, 10 * np.log10(config.log_floor)))


@pytest.mark.parametrize(
    "config",
    [
        FeatureConfig(seconds=1.0),
        FeatureConfig(seconds=1.0, n_mels=64, n_fft=512, hop_length=256),
        FeatureConfig(sample_rate=22050, seconds=1.0, n_mels=40, n_fft=2048, frames=None),
    ],
    ids=["dcase", "narrow", "22k"],
)
def test_fast_path_equals_torchaudio(config):
    """Grouped filterbank, power from the real and imaginary parts, CPU chunks: torchaudio's values."""
    logmel = LogMel(config, cpu_chunk=2)
    wave = torch.randn(5, config.samples) * 0.1
    wave[3] *= 1e-3  # a quiet clip, far below the others
    assert torch.allclose(logmel.mel_power(wave), logmel.mel(wave), rtol=1e-4, atol=1e-12)
    reference = 10 * torch.log10(logmel.mel(wave).clamp_min(config.log_floor))[..., : config.frames or None]
    chunked = logmel(wave)  # 5 clips through chunks of 2, 2 and 1
    assert chunked.shape == reference.shape
    assert (chunked - reference).abs().max() < 1e-3
    assert torch.equal(chunked[3:4], logmel(wave[3:4])), "a clip's features do not depend on its batch"


def test_band_groups_cover_every_weight_of_the_filterbank():
    bank = LogMel(FeatureConfig()).mel.mel_scale.fb  # (bins, bands)
    groups = band_groups(bank, 16)
    assert [g[:2] for g in groups] == [(b, b + 16) for b in range(0, 128, 16)]
    covered = torch.zeros_like(bank, dtype=torch.bool)
    for b0, b1, lo, hi in groups:
        covered[lo:hi, b0:b1] = True
    assert not (bank != 0)[~covered].any(), "a non-zero weight outside its group's bin range"
    assert covered.sum() < 0.2 * bank.numel(), "the groups skip most of the bank"


def test_logmel_matches_librosa_within_tolerance():
    librosa = pytest.importorskip("librosa")
    audio = (tone(2.0) + 0.01 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)
    ours = LogMel(FeatureConfig(seconds=2.0, frames=None))(torch.from_numpy(audio)[None])[0].numpy()
    mel = librosa.feature.melspectrogram(y=audio, sr=SR, n_fft=1024, hop_length=512, n_mels=128, power=2.0)
    theirs = 10 * np.log10(np.maximum(mel, np.finfo(float).eps))
    assert ours.shape == theirs.shape
    assert np.median(np.abs(ours - theirs)) < 0.05


def test_normalizer_minmax_and_standard():
    features = torch.randn(5, 4, 10) * 3 + 7
    norm = Normalizer(4, "minmax", (-1, 1))
    norm.fit(features)
    out = norm(features)
    assert out.min().item() == pytest.approx(-1, abs=1e-5) and out.max().item() == pytest.approx(1, abs=1e-5)
    standard = Normalizer(4, "standard")
    standard.fit(features)
    z = standard(features)
    assert torch.allclose(z.mean(dim=(0, 2)), torch.zeros(4), atol=1e-5)


def test_cache_is_used_then_rebuilt_when_corrupt_or_stale(tmp_path):
    wavs = [write(tmp_path / f"c{i}.wav", tone(1.0) * (i + 1) / 3) for i in range(3)]
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
    write(wavs[1], tone(1.0) * 0.01)
    assert cache.load(wavs[1]) is None and cache.load_pack(wavs, skip_bad=False) is None
    changed, _ = extract_features(wavs, config, cache_dir=cache_dir, progress=False)
    assert torch.equal(changed[[0, 2]], first[[0, 2]]) and changed[1].max() < first[1].max() - 30


def test_a_pack_that_skipped_a_bad_clip_is_not_used_to_hide_the_error(tmp_path):
    good = write(tmp_path / "good.wav", tone(1.0))
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
    good = write(tmp_path / "good.wav", tone(1.0))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"garbage")
    config = FeatureConfig(seconds=1.0, frames=None)
    with pytest.raises(AudioError, match="bad.wav"):
        extract_features([good, bad], config, progress=False)
    features, kept = extract_features([good, bad], config, on_bad_file="skip", progress=False)
    assert kept == [good] and features.shape[0] == 1


def test_read_ahead_submits_the_next_batch_before_handing_out_the_current_one():
    from concurrent.futures import ThreadPoolExecutor

    from asd_ganomaly.data.audio import read_ahead

    events = []
    with ThreadPoolExecutor(2) as pool:

        def submit(index):
            events.append(f"submit {index}")
            return [pool.submit(lambda i=index, k=k: (i, k)) for k in range(3)]

        for results in read_ahead(3, submit):
            events.append(f"got {results[0][0]}")
            assert results == [(results[0][0], k) for k in range(3)]
    assert events == ["submit 0", "submit 1", "got 0", "submit 2", "got 1", "got 2"]
    assert list(read_ahead(0, submit)) == []


def _raw_bytes(config: FeatureConfig, frames: int) -> int:
    return config.n_mels * frames * 4


def test_cache_entries_hold_one_clip_and_the_cache_stays_under_its_bound(tmp_path):
    """Each entry is one clip's float32 values plus a small fixed overhead; entries + pack stay near 2x."""
    n = 40
    wavs = [write(tmp_path / f"c{i}.wav", tone(2.0) * (i + 1) / n) for i in range(n)]
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
    wav = write(tmp_path / "a.wav", tone(1.0))
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


def test_a_truncated_wav_is_an_audio_error_and_skipped_in_skip_mode(tmp_path):
    from asd_ganomaly.data.audio import check_header, declared_frames

    whole = write(tmp_path / "whole.wav", tone(2.0), subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: 44 + 2 * 12_000])
    assert declared_frames(whole) == declared_frames(cut) == 32_000
    assert sf.info(str(cut)).frames == 12_000, "libsndfile reads what is there without a word"
    assert read_wav(whole, seconds=2.0).shape == (32000,)
    check_header(whole)
    for check in (lambda: read_wav(cut, seconds=2.0), lambda: check_header(cut)):
        with pytest.raises(AudioError, match="cut.wav is truncated: its header declares 32000 frames"):
            check()
    config = FeatureConfig(seconds=2.0, frames=None)
    with pytest.raises(AudioError, match="truncated"):
        extract_features([whole, cut], config, progress=False)
    features, kept = extract_features([whole, cut], config, on_bad_file="skip", progress=False)
    assert kept == [whole] and features.shape[0] == 1


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT"])
def test_complete_wavs_with_extra_chunks_are_not_called_truncated(tmp_path, subtype):
    from asd_ganomaly.data.audio import declared_frames

    path = write(tmp_path / "x.wav", tone(1.0, channels=2), subtype=subtype)
    assert declared_frames(path) == 16000 and read_wav(path, seconds=1.0).shape == (16000,)
    with sf.SoundFile(path, "r+") as handle:  # libsndfile writes a LIST chunk after the data
        handle.title = "a title"
    assert declared_frames(path) == 16000 and read_wav(path, seconds=1.0).shape == (16000,)
