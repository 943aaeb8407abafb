"""The synthetic machine-sound generator: layout, determinism, format, detectable anomalies, domain shift."""

import numpy as np
import pytest
import soundfile as sf
import torch

from asd_ganomaly.data.dcase import list_clips, parse_clip_name
from asd_ganomaly.data.features import FeatureConfig, LogMel
from asd_ganomaly.data.synth import synthesize_clip, write_synthetic_dataset
from asd_ganomaly.evaluation.metrics import auc_pauc


def test_layout_counts_and_names(tmp_path):
    write_synthetic_dataset(
        tmp_path,
        ["fan", "valve"],
        [0, 2],
        train_clips=3,
        target_train_clips=2,
        test_clips=2,
        seconds=0.5,
        progress=False,
    )
    for machine in ("fan", "valve"):
        for section in (0, 2):
            train = list_clips(tmp_path, machine, section, "train")
            assert [c.domain for c in train].count("source") == 3 and [c.domain for c in train].count("target") == 2
            test = list_clips(tmp_path, machine, section, "test")
            assert len(test) == 8
            assert {(c.domain, c.label) for c in test} == {
                (d, lab) for d in ("source", "target") for lab in ("normal", "anomaly")
            }
    for wav in tmp_path.rglob("*.wav"):
        info = parse_clip_name(wav)
        assert info.split == ("train" if wav.parent.name == "train" else "test")
        assert wav.parent.name in ("train", f"{info.domain}_test")


def test_deterministic_for_a_seed(tmp_path):
    kwargs = {"machine_types": ["gearbox"], "sections": [1], "train_clips": 2, "test_clips": 1, "seconds": 0.5}
    write_synthetic_dataset(tmp_path / "a", seed=3, progress=False, **kwargs)
    write_synthetic_dataset(tmp_path / "b", seed=3, progress=False, **kwargs)
    write_synthetic_dataset(tmp_path / "c", seed=4, progress=False, **kwargs)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.wav"))
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert any(
        not (tmp_path / "c" / f).exists() or (tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes()
        for f in files
    )


def test_format_is_16_bit_mono_16k_exact_length_unclipped(tmp_path):
    write_synthetic_dataset(tmp_path, ["ToyTrain"], [0], train_clips=1, test_clips=1, seconds=1.5, progress=False)
    for wav in tmp_path.rglob("*.wav"):
        info = sf.info(wav)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 24000, "PCM_16")
        audio, _ = sf.read(wav)
        assert np.abs(audio).max() < 0.99 and audio.std() > 0.01


def spectral_auc(machine: str, severity: float, domain: str = "source") -> float:
    logmel = LogMel(FeatureConfig(seconds=2.0, frames=None))

    def feats(label, count):
        clips = [synthesize_clip(machine, 0, domain, label, i, 2.0, severity=severity) for i in range(count)]
        return logmel(torch.from_numpy(np.stack(clips)))

    normal, anomaly = feats("normal", 24), feats("anomaly", 14)
    reference = normal[:10].mean(0)
    scores = torch.cat([(x - reference).pow(2).mean(dim=(1, 2)) for x in (normal[10:], anomaly)])
    return auc_pauc(scores, torch.tensor([0] * 14 + [1] * 14))[0]


@pytest.mark.parametrize("machine", ["fan", "slider", "ToyCar"])
def test_anomalies_are_detectable_at_high_severity_and_not_at_zero(machine):
    assert spectral_auc(machine, severity=4.0) > 0.8
    assert 0.2 < spectral_auc(machine, severity=0.0) < 0.8


def test_anomalies_add_to_the_machine_sound_rather_than_turn_it_down():
    """A reconstruction model scores what it cannot explain: anomalies must not lower the normal parts' level."""
    logmel = LogMel(FeatureConfig(seconds=2.0, frames=None))
    for machine in ("pump", "slider", "valve"):
        clips = {
            label: logmel(
                torch.from_numpy(
                    np.stack([synthesize_clip(machine, 0, "source", label, i, 2.0, severity=4.0) for i in range(16)])
                )
            )
            for label in ("normal", "anomaly")
        }
        reference = clips["normal"][:8].mean(0)
        above = [(x - reference).clamp_min(0).mean(dim=(1, 2)) for x in (clips["normal"][8:], clips["anomaly"][:8])]
        assert auc_pauc(torch.cat(above), torch.tensor([0] * 8 + [1] * 8))[0] > 0.6, machine


def test_target_domain_is_shifted():
    logmel = LogMel(FeatureConfig(seconds=2.0, frames=None))

    def mean_spectrum(domain, start):
        clips = [synthesize_clip("pump", 0, domain, "normal", i, 2.0, split="train") for i in range(start, start + 6)]
        return logmel(torch.from_numpy(np.stack(clips))).mean(dim=(0, 2))

    source_a, source_b, target = mean_spectrum("source", 0), mean_spectrum("source", 6), mean_spectrum("target", 0)
    within = (source_a - source_b).abs().mean()
    across = (source_a - target).abs().mean()
    assert across > 3 * within


@pytest.mark.parametrize(
    "kwargs",
    [{"machine_types": ["drill"]}, {"train_clips": 0}, {"test_clips": -1}, {"seconds": 0}],
)
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        write_synthetic_dataset(tmp_path, **{"progress": False, **kwargs})


@pytest.mark.slow
def test_ctrl_c_during_synth_exits_130_without_a_traceback_and_leaves_a_set_marked_incomplete(tmp_path):
    """A real Ctrl-C (SIGINT) once the first clips are written: exit 130, one line saying the set is incomplete,
    every WAV written whole, and training refuses the set until the same command completes it."""
    import signal
    import subprocess
    import sys
    import time

    import soundfile as sf

    from asd_ganomaly.data.dcase import DatasetError
    from asd_ganomaly.data.synth import is_incomplete
    from asd_ganomaly.runs.checks import check_data

    root = tmp_path / "data"
    command = [sys.executable, "-m", "asd_ganomaly.cli", "synth", str(root), "--machines", "fan", "--sections", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # 1,000 clips, 10 s
    try:
        while not list(root.rglob("*.wav")) and process.poll() is None:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stdout + stderr, stderr
    assert "marked incomplete until the same command completes it" in stderr
    assert is_incomplete(root)
    for path in root.rglob("*.wav"):  # whole files only: each written to a temporary name, then renamed
        assert sf.info(str(path)).frames == 160_000, path
    data = {"root": str(root), "machine_type": "fan", "section": 0}
    with pytest.raises(DatasetError, match="has not finished writing .* run the same synth command again"):
        check_data(data)


def test_a_rerun_completes_a_set_an_interruption_left_incomplete(tmp_path):
    from asd_ganomaly.data.synth import MARKER, is_incomplete, write_synthetic_dataset

    arguments = {"machine_types": ["fan"], "sections": [0], "train_clips": 2, "test_clips": 1, "seconds": 1.0}
    root = write_synthetic_dataset(tmp_path, **arguments, progress=False)
    complete = (root / MARKER).read_text()
    (root / MARKER).write_text("INCOMPLETE: as an interrupted synth leaves it\n")
    assert is_incomplete(root)
    write_synthetic_dataset(tmp_path, **arguments, progress=False)
    assert not is_incomplete(root) and (root / MARKER).read_text() == complete
