"""Log-mel features (shape, determinism, the fast path against torchaudio and librosa, band groups) and the
normaliser: ``asd_ganomaly/data/features.py``."""

import numpy as np
import pytest
import torch
from conftest import SR, tone

from asd_ganomaly.data.features import FeatureConfig, LogMel, Normalizer, band_groups


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


@pytest.mark.slow  # librosa's import: seconds
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
