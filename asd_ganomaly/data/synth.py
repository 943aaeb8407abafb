"""Synthetic machine sounds in the DCASE 2021 Task 2 dev layout, for tests and demos.

What it models, per machine type (each section is another machine instance: its own base frequency,
harmonic profile and noise colour, drawn from the seed and the section):

* fan, pump, ToyCar: harmonics of a rotation frequency (blade pass for the fan), slight speed jitter,
  broadband airflow / fluid / road noise;
* gearbox: gear-mesh harmonics with sidebands at the shaft frequency;
* slider, ToyTrain: motor hum plus periodic impacts (rail joints) that ring at a resonance;
* valve: irregular open/close clicks over a quiet background.

Every clip has a white microphone noise floor 40 dB below the machine, as real recordings do (without it the
quietest bands sit at 16-bit quantisation level and dominate any error measured in dB).
The target domain is shifted: another speed (x1.15 to x1.35) and another background (colour and level).
Anomalies, one kind per clip, scaled by ``severity`` (0: none, 1: the task is neither trivial nor
impossible, 3 and more: obvious in a log-mel spectrogram): a bearing whine (extra tone), imbalance
(amplitude modulation at the rotation frequency), extra or missing impacts, a speed drift, rattling
(bursts of high band noise). Everything is deterministic for a seed. These are not real machines:
results on them show that the code runs, not what the method does on MIMII DUE or ToyADMOS2.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal
from tqdm.auto import tqdm

from ..core.files import atomic_output
from .dcase import DOMAINS, EVAL_SECTIONS, MACHINE_TYPES

RECIPES: dict[str, dict] = {
    "fan": {"f0": (18.0, 30.0), "multiplier": 6, "harmonics": 6, "noise": 0.8, "impacts": 0.0},
    "pump": {"f0": (40.0, 60.0), "multiplier": 1, "harmonics": 10, "noise": 0.5, "impacts": 0.0},
    "gearbox": {"f0": (10.0, 20.0), "multiplier": 25, "harmonics": 4, "noise": 0.3, "impacts": 0.0},
    "slider": {"f0": (45.0, 55.0), "multiplier": 2, "harmonics": 4, "noise": 0.3, "impacts": 3.0},
    "valve": {"f0": (50.0, 60.0), "multiplier": 1, "harmonics": 2, "noise": 0.15, "impacts": 1.5},
    "ToyCar": {"f0": (90.0, 160.0), "multiplier": 1, "harmonics": 8, "noise": 0.5, "impacts": 0.0},
    "ToyTrain": {"f0": (60.0, 90.0), "multiplier": 1, "harmonics": 6, "noise": 0.4, "impacts": 2.0},
}
ANOMALIES = ("whine", "imbalance", "impacts", "drift", "rattle")
MARKER = "SYNTHETIC.txt"
MIC_FLOOR = 0.01
SEVERITY_SCALE = 0.4  # calibrated so that severity 1 gives a spectral-distance AUC of about 0.7-0.85


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


def _instance(machine_type: str, section: int, domain: str, seed: int) -> dict:
    """The machine instance of a section in a domain: base frequency, harmonic profile, background."""
    recipe = RECIPES[machine_type]
    rng = _rng(seed, MACHINE_TYPES.index(machine_type), section)
    f0 = rng.uniform(*recipe["f0"])
    profile = rng.uniform(0.3, 1.0, recipe["harmonics"]) / np.arange(1, recipe["harmonics"] + 1) ** 0.7
    instance = {
        "f0": f0,
        "profile": profile,
        "cutoff": rng.uniform(0.05, 0.3),
        "resonance": rng.uniform(1500, 4000),
        "noise": recipe["noise"],
    }
    if domain == "target":
        shift = _rng(seed, MACHINE_TYPES.index(machine_type), section, 99)
        instance["f0"] *= shift.uniform(1.15, 1.35)
        instance["cutoff"] = shift.uniform(0.3, 0.6)
        instance["noise"] *= shift.uniform(1.3, 1.8)
    return instance


def _colored_noise(rng: np.random.Generator, n: int, cutoff: float) -> np.ndarray:
    b, a = signal.butter(2, cutoff)
    noise = signal.lfilter(b, a, rng.standard_normal(n))
    return noise / (noise.std() + 1e-12)


def _impacts(rng: np.random.Generator, n: int, rate: float, resonance: float, sr: int, regular: bool) -> np.ndarray:
    """Decaying resonant clicks at ``rate`` per second (regular: a jittered train, else random times)."""
    count = max(1, int(rate * n / sr))
    if regular:
        times = (np.arange(count) + rng.uniform(0, 1)) * (n / count) + rng.normal(0, 0.005 * sr, count)
    else:
        times = rng.uniform(0, n, count)
    pulses = np.zeros(n)
    pulses[np.clip(times.astype(int), 0, n - 1)] = rng.uniform(0.7, 1.0, count)
    t = np.arange(int(0.03 * sr)) / sr
    kernel = np.exp(-t / 0.006) * np.sin(2 * np.pi * resonance * t)
    return signal.oaconvolve(pulses, kernel)[:n]


def _harmonics(rng: np.random.Generator, freq: np.ndarray, profile: np.ndarray, mult: int, sr: int) -> np.ndarray:
    """Sum of harmonics of a time-varying fundamental ``freq * mult`` (Hz per sample)."""
    phase = 2 * np.pi * np.cumsum(freq * mult) / sr
    out = np.zeros_like(freq)
    for k, amplitude in enumerate(profile, start=1):
        out += amplitude * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return out / np.sqrt(np.sum(profile**2))


def synthesize_clip(
    machine_type: str,
    section: int,
    domain: str,
    label: str,
    index: int,
    seconds: float = 10.0,
    sample_rate: int = 16000,
    severity: float = 1.0,
    seed: int = 0,
    split: str = "test",
) -> np.ndarray:
    """One clip as float32 in [-1, 1]: a normal sound of the section's machine, or an anomaly."""
    if machine_type not in RECIPES:
        raise ValueError(f"unknown machine type {machine_type!r}; valid: {list(MACHINE_TYPES)}")
    recipe, inst = RECIPES[machine_type], _instance(machine_type, section, domain, seed)
    keys = (DOMAINS.index(domain), ("train", "test").index(split), ("normal", "anomaly").index(label), index)
    rng = _rng(seed, MACHINE_TYPES.index(machine_type), section, *keys)
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    speed = inst["f0"] * (1 + rng.normal(0, 0.01)) * (1 + 0.003 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t))
    kind = anomaly_kind(machine_type, section, domain, index, seed) if label == "anomaly" else None
    severity = SEVERITY_SCALE * severity
    if kind == "drift":
        speed = speed * (1 + 0.04 * severity * t / max(seconds, 1e-9))
    harmonics = _harmonics(rng, speed, inst["profile"], recipe["multiplier"], sample_rate)
    regular = machine_type != "valve"
    impacts = (
        1.5 * _impacts(rng, n, recipe["impacts"], inst["resonance"], sample_rate, regular) if recipe["impacts"] else 0
    )
    noise = inst["noise"] * _colored_noise(rng, n, inst["cutoff"])
    # the level is set by the normal machine: an anomaly adds to it, it never turns the rest down
    gain = 0.05 / (np.std(harmonics + impacts + noise) + 1e-12) * rng.uniform(0.9, 1.1)
    if kind == "imbalance":
        harmonics = harmonics * (1 + min(0.9, 0.3 * severity) * np.sin(2 * np.pi * speed * t))
    if kind == "impacts" and recipe["impacts"]:
        extra = 0.5 * severity * recipe["impacts"]
        impacts = impacts + 1.5 * _impacts(rng, n, extra, inst["resonance"], sample_rate, regular=False)
    sound = gain * (harmonics + impacts + noise) + 0.05 * _anomaly(kind, rng, n, sample_rate, severity, recipe, inst)
    sound += MIC_FLOOR * 0.05 * rng.standard_normal(n)  # a microphone's white noise floor, 40 dB below the machine
    peak = np.abs(sound).max()
    if peak > 0.98:
        sound *= 0.98 / peak
    return sound.astype(np.float32)


def anomaly_kind(machine_type: str, section: int, domain: str, index: int, seed: int = 0) -> str:
    """Which kind of anomaly the anomalous test clip ``index`` carries."""
    rng = _rng(seed, MACHINE_TYPES.index(machine_type), section, DOMAINS.index(domain), index, 7)
    return ANOMALIES[int(rng.integers(len(ANOMALIES)))]


def _anomaly(kind: str | None, rng: np.random.Generator, n: int, sr: int, severity: float, recipe: dict, inst: dict):
    """Additive anomaly components (relative to a unit-RMS normal sound)."""
    if kind == "whine":
        t = np.arange(n) / sr
        return 0.25 * severity * np.sin(2 * np.pi * rng.uniform(1000, 6000) * t)
    if kind == "rattle":
        bursts = _impacts(rng, n, 6.0, rng.uniform(3000, 6000), sr, regular=False)
        return 0.6 * severity * bursts / (bursts.std() + 1e-12) * 0.5
    if kind == "impacts" and not recipe["impacts"]:
        return 0.8 * severity * _impacts(rng, n, 2.0, inst["resonance"], sr, regular=False)
    return np.zeros(n)


def _clip_plan(
    machine_types: Sequence[str], sections: Sequence[int], train: int, target_train: int, test: int
) -> list[tuple[str, int, str, str, str, int]]:
    """(machine, section, domain, split, label, index) of every clip to write."""
    plan = []
    for machine in machine_types:
        for section in sections:
            plan += [(machine, section, "source", "train", "normal", i) for i in range(train)]
            plan += [(machine, section, "target", "train", "normal", i) for i in range(target_train)]
            for domain in DOMAINS:
                for label in ("normal", "anomaly"):
                    plan += [(machine, section, domain, "test", label, i) for i in range(test)]
    return plan


def clip_path(root: Path, machine: str, section: int, domain: str, split: str, label: str, index: int, seed: int):
    """Where a clip goes, with a DCASE 2021 name (train clips carry an attribute suffix)."""
    if split == "train":
        inst = _instance(machine, section, domain, seed)
        name = f"section_{section:02d}_{domain}_train_{label}_{index:04d}_speed_{inst['f0']:.0f}_noise_{domain}.wav"
        return root / machine / "train" / name
    return root / machine / f"{domain}_test" / f"section_{section:02d}_{domain}_test_{label}_{index:04d}.wav"


def write_synthetic_dataset(
    root: str | Path,
    machine_types: Sequence[str] = MACHINE_TYPES,
    sections: Sequence[int] = (0, 1, 2),
    train_clips: int = 1000,
    target_train_clips: int = 3,
    test_clips: int = 100,
    seconds: float = 10.0,
    sample_rate: int = 16000,
    severity: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write a synthetic dataset: ``root/<machine>/{train,source_test,target_test}/section_XX_...wav``."""
    _check_request(machine_types, (train_clips, test_clips, target_train_clips + 1), seconds, sample_rate)
    root = _marked_root(root)
    plan = _clip_plan(machine_types, sections, train_clips, target_train_clips, test_clips)
    _write_plan(root, plan, seconds, sample_rate, severity, seed, progress)
    _mark_complete(root, seed, severity)
    return root


def _check_request(machine_types: Sequence[str], counts: Sequence[int], seconds: float, sample_rate: int) -> None:
    """Refuse unknown machine types, clip counts below 1, a length or sample rate that is not positive."""
    unknown = [m for m in machine_types if m not in RECIPES]
    if unknown:
        raise ValueError(f"unknown machine types {unknown}; valid: {list(MACHINE_TYPES)}")
    if min(counts) < 1 or seconds <= 0 or sample_rate <= 0:
        raise ValueError("clip counts, seconds and sample rate must be positive")


INCOMPLETE = "INCOMPLETE"
"""The first word of the marker file while a set is being written (and after an interrupted write)."""


def _marked_root(root: str | Path) -> Path:
    """``root``, made, with the marker file that says its clips are synthetic, marked incomplete until
    :func:`_mark_complete`: an interrupted write leaves a set that training refuses until a rerun completes it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _write_marker(root, f"{INCOMPLETE}: asd-ganomaly synth is writing this set, or was interrupted: run it again.\n")
    return root


def _mark_complete(root: Path, seed: int, severity: float) -> None:
    _write_marker(
        root,
        f"Synthetic machine sounds written by asd-ganomaly synth (seed {seed}, severity {severity}).\n"
        "Not DCASE data: results on it are not comparable with published numbers.\n",
    )


def _write_marker(root: Path, text: str) -> None:
    with atomic_output(root / MARKER) as tmp:
        tmp.write_text(text)


def is_incomplete(root: str | Path) -> bool:
    """True for a synthetic set whose writing has not finished (interrupted: the same command completes it)."""
    marker = Path(root) / MARKER
    return marker.is_file() and marker.read_text().startswith(INCOMPLETE)


def _write_plan(
    root: Path, plan: list[tuple], seconds: float, sample_rate: int, severity: float, seed: int, progress: bool
) -> None:
    """Synthesise and write every clip of a :func:`_clip_plan` with its dev-layout name."""
    for machine, section, domain, split, label, index in tqdm(plan, desc="synthetic clips", disable=not progress):
        audio = synthesize_clip(machine, section, domain, label, index, seconds, sample_rate, severity, seed, split)
        _write_wav(clip_path(root, machine, section, domain, split, label, index, seed), audio, sample_rate)


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """A 16-bit WAV, written whole or not at all (an interrupted write leaves no half file)."""
    with atomic_output(path) as tmp:
        sf.write(tmp, audio, sample_rate, subtype="PCM_16", format="WAV")


def is_synthetic(root: str | Path) -> bool:
    """True for a data root written by :func:`write_synthetic_dataset`."""
    return (Path(root) / MARKER).is_file()


GROUND_TRUTH = "ground_truth"
"""The folder below an evaluation root that holds the ground-truth files (``synth --eval``)."""


def eval_test_order(machine: str, section: int, domain: str, test_clips: int, seed: int) -> list[tuple[str, int]]:
    """The (label, index) of each unlabelled test clip ``0000``, ``0001``, ... of a section and domain: the normal
    and anomalous clips in a fixed random order, as the evaluation set hides which is which."""
    clips = [(label, i) for label in ("normal", "anomaly") for i in range(test_clips)]
    order = _rng(seed, MACHINE_TYPES.index(machine), section, DOMAINS.index(domain), 11).permutation(len(clips))
    return [clips[k] for k in order]


def eval_test_path(root: Path, machine: str, section: int, domain: str, number: int) -> Path:
    """An evaluation test clip's place and official name: ``<machine>/test/section_03_source_test_0000.wav``."""
    return root / machine / "test" / f"section_{section:02d}_{domain}_test_{number:04d}.wav"


def ground_truth_path(root: Path, machine: str, section: int, domain: str) -> Path:
    """``<root>/ground_truth/ground_truth_<machine>_section_<XX>_<domain>_test.csv``, the organisers' file name."""
    return root / GROUND_TRUTH / f"ground_truth_{machine}_section_{section:02d}_{domain}_test.csv"


def write_synthetic_eval_dataset(
    root: str | Path,
    machine_types: Sequence[str] = MACHINE_TYPES,
    sections: Sequence[int] = EVAL_SECTIONS,
    train_clips: int = 1000,
    target_train_clips: int = 3,
    test_clips: int = 100,
    seconds: float = 10.0,
    sample_rate: int = 16000,
    severity: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write a synthetic evaluation set: additional training clips (``<machine>/train/``, labelled normal), test
    clips without labels in their names (``<machine>/test/section_XX_<domain>_test_NNNN.wav``, ``test_clips``
    normal and ``test_clips`` anomalous per domain, shuffled) and their labels in the organisers' ground-truth
    files (``ground_truth/ground_truth_<machine>_section_XX_<domain>_test.csv``: ``<file name>,<0|1>``)."""
    _check_request(machine_types, (train_clips, test_clips, target_train_clips + 1), seconds, sample_rate)
    root = _marked_root(root)
    plan = _clip_plan(machine_types, sections, train_clips, target_train_clips, test=0)
    _write_plan(root, plan, seconds, sample_rate, severity, seed, progress)
    parts = [(m, s, d) for m in machine_types for s in sections for d in DOMAINS]
    for machine, section, domain in tqdm(parts, desc="synthetic evaluation clips", disable=not progress):
        _write_eval_part(root, machine, section, domain, test_clips, seconds, sample_rate, severity, seed)
    _mark_complete(root, seed, severity)
    return root


def _write_eval_part(
    root: Path,
    machine: str,
    section: int,
    domain: str,
    test_clips: int,
    seconds: float,
    sample_rate: int,
    severity: float,
    seed: int,
) -> None:
    """The unlabelled test clips of one machine type, section and domain, and their ground-truth file."""
    rows = []
    for number, (label, index) in enumerate(eval_test_order(machine, section, domain, test_clips, seed)):
        audio = synthesize_clip(machine, section, domain, label, index, seconds, sample_rate, severity, seed, "test")
        path = eval_test_path(root, machine, section, domain, number)
        _write_wav(path, audio, sample_rate)
        rows.append(f"{path.name},{int(label == 'anomaly')}\n")
    truth = ground_truth_path(root, machine, section, domain)
    with atomic_output(truth) as tmp:
        tmp.write_text("".join(rows))
