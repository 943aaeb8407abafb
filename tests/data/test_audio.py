"""The WAV reader and its bad-input behaviour (fuzzed bytes included), read-ahead: ``asd_ganomaly/data/audio.py``."""

import numpy as np
import pytest
import soundfile as sf
from conftest import tone, write_wav

from asd_ganomaly.data.audio import AudioError, check_header, read_wav
from asd_ganomaly.data.cache import extract_features
from asd_ganomaly.data.features import FeatureConfig


def test_exact_clip_is_read_unchanged(tmp_path):
    audio = read_wav(write_wav(tmp_path / "a.wav", tone(2.0)), seconds=2.0)
    assert audio.dtype == np.float32 and audio.shape == (32000,)
    assert np.allclose(audio, tone(2.0), atol=1e-4)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_samples_equal_libsndfiles_float_conversion(tmp_path, subtype):
    """16-bit clips are read as integers and scaled here; every subtype gives libsndfile's float values."""
    audio = np.random.default_rng(1).uniform(-1, 1, (8000, 1))
    audio[:4, 0] = [-1.0, 0.999969, 0.0, -0.5]
    path = write_wav(tmp_path / "x.wav", audio, subtype=subtype)
    expected, _ = sf.read(path, dtype="float32")
    got = read_wav(path, seconds=None)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)


def test_short_clip_is_zero_padded_and_long_clip_cropped(tmp_path):
    short = read_wav(write_wav(tmp_path / "s.wav", tone(1.5)), seconds=2.0)
    assert short.shape == (32000,) and np.all(short[24000:] == 0) and np.abs(short[:24000]).max() > 0.4
    long = read_wav(write_wav(tmp_path / "l.wav", tone(3.0)), seconds=2.0)
    assert long.shape == (32000,)


def test_stereo_is_downmixed(tmp_path):
    stereo = tone(1.0, channels=2)
    stereo[:, 1] = 0
    audio = read_wav(write_wav(tmp_path / "st.wav", stereo), seconds=1.0)
    assert np.allclose(audio, tone(1.0) / 2, atol=1e-4)


def test_other_sample_rate_is_resampled(tmp_path):
    audio = read_wav(write_wav(tmp_path / "r.wav", tone(1.0, rate=44100), rate=44100), seconds=1.0)
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
    good = write_wav(tmp_path / "t.wav", tone(1.0))
    data = good.read_bytes()
    (tmp_path / "trunc.wav").write_bytes(data[: len(data) // 2])
    try:
        audio = read_wav(tmp_path / "trunc.wav", seconds=1.0)
    except AudioError as error:
        assert "trunc.wav" in str(error)
    else:  # libsndfile reads what is there: the missing half becomes zeros
        assert audio.shape == (16000,) and np.all(audio[9000:] == 0)


def test_header_only_wav_is_refused(tmp_path):
    path = write_wav(tmp_path / "zero.wav", np.zeros(0))
    with pytest.raises(AudioError, match="no samples"):
        read_wav(path)


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


def test_a_truncated_wav_is_an_audio_error_and_skipped_in_skip_mode(tmp_path):
    from asd_ganomaly.data.audio import check_header, declared_frames

    whole = write_wav(tmp_path / "whole.wav", tone(2.0), subtype="PCM_16")
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

    path = write_wav(tmp_path / "x.wav", tone(1.0, channels=2), subtype=subtype)
    assert declared_frames(path) == 16000 and read_wav(path, seconds=1.0).shape == (16000,)
    with sf.SoundFile(path, "r+") as handle:  # libsndfile writes a LIST chunk after the data
        handle.title = "a title"
    assert declared_frames(path) == 16000 and read_wav(path, seconds=1.0).shape == (16000,)


def test_fuzzed_wav_bytes_give_a_clear_error_or_audio(tmp_path):
    rng = np.random.default_rng(0)
    import soundfile as sf

    sf.write(tmp_path / "ok.wav", np.zeros(1600), 16000, subtype="PCM_16")
    valid = (tmp_path / "ok.wav").read_bytes()
    for trial in range(150):
        if trial % 3 == 0:
            data = rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
        else:  # a valid header with random corruption, the harder case
            data = bytearray(valid[: int(rng.integers(8, len(valid)))])
            for _ in range(int(rng.integers(1, 20))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
            data = bytes(data)
        path = tmp_path / f"fuzz{trial}.wav"
        path.write_bytes(data)
        try:
            audio = read_wav(path, seconds=0.1)
        except AudioError as error:
            assert path.name in str(error)
        else:
            assert audio.shape == (1600,) and np.isfinite(audio).all()


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_the_checks_before_training_read_a_float_file_whole_for_nan_and_inf(tmp_path, subtype, bad):
    audio = tone(10.0)  # longer than one block of the check
    clean = write_wav(tmp_path / "clean.wav", audio, subtype=subtype)
    check_header(clean)
    audio[-1] = bad  # the last sample: found only by reading the whole file
    broken = write_wav(tmp_path / "broken.wav", audio, subtype=subtype)
    with pytest.raises(AudioError, match="broken.wav holds NaN or infinite samples"):
        check_header(broken)
    check_header(write_wav(tmp_path / "pcm.wav", np.nan_to_num(audio, posinf=1.0, neginf=-1.0)))  # no NaN in PCM
