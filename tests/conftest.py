"""Shared fixtures and helpers: the real DCASE 2020 clips in ../shared/realdata, W&B kept offline, the session's
shared folders (a synthetic dataset, a finished GANomaly run, a sweep: built once, read by many tests, see
``shared_folders.py``), the argument builders of the CLI (train_args, cli_args), run_cli (in this interpreter) and
run_process (a new one, see ``runner.py``), run-folder lookup, CSV reading, WAV writing."""

import csv
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from runner import CLI, TRAIN, run_cli, run_process  # noqa: F401 (the tests import them from here)
from shared_folders import built_once, changed_files, session_folder, writable_copy  # noqa: F401

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
SR = 16000
"""The DCASE clips' sample rate."""


@pytest.fixture(autouse=True)
def _wandb_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The real clips shipped beside the repository (skipped where they are absent)."""
    if not REALDATA.is_dir():
        pytest.skip("shared/realdata is not beside this checkout")
    return REALDATA


def real_machine_layout(
    realdata: Path, root: Path, train: int, test_normals: int, other_anomalies: int = 0
) -> list[Path]:
    """Link real DCASE 2020 clips into ``root/machine/{train,test}``: ``train`` normals for training, the next
    ``test_normals`` normals, the real anomaly and ``other_anomalies`` anomalies of other machines for testing
    (renamed to id_00). Returns the real normal clips left over."""
    import os

    source = realdata / "dcase2020-zyy438" / "unknown_machine"
    normals = sorted((source / "train").glob("normal_id_00_*.wav"))
    machine = root / "machine"
    (machine / "train").mkdir(parents=True)
    (machine / "test").mkdir()
    for wav in normals[:train]:
        os.symlink(wav, machine / "train" / wav.name)
    for wav in normals[train : train + test_normals]:
        os.symlink(wav, machine / "test" / wav.name)
    anomalies = [source / "test" / "anomaly_id_00_00000000.wav"]
    anomalies += sorted((realdata / "dcase2020-yos95").glob("*/test/anomaly_id_*.wav"))[:other_anomalies]
    for i, wav in enumerate(anomalies):
        os.symlink(wav, machine / "test" / f"anomaly_id_00_{i:08d}.wav")
    return normals[train + test_normals :]


SMALL_RUN = [
    "model=ganomaly_small",
    "trainer=cpu",
    "data.batch_size=8",
    "data.eval_batch_size=16",
    "data.features.seconds=2.0",
    "data.features.frames=56",
    "data.num_workers=1",
    "data.progress=false",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.enable_model_summary=false",
]
"""Overrides that make a training run small enough for a test: 2 s clips, narrow channels, CPU."""

CSV_ONLY = ["logger=csv", "plots=false"]
"""Overrides that log to a CSV file only and draw no plots."""


def small_run(model: str = "ganomaly_small") -> list[str]:
    """:data:`SMALL_RUN` with another model config."""
    return [f"model={model}", *(o for o in SMALL_RUN if not o.startswith("model="))]


def small_ganomaly_config(*overrides: str):
    """The composed training config of ganomaly_small on 64-frame log-mels, ``overrides`` on top."""
    from asd_ganomaly.train import compose_config

    return compose_config("model=ganomaly_small", "data.features.frames=64", *overrides)


def small_ganomaly(*overrides: str):
    """The module of :func:`small_ganomaly_config`, instantiated (untrained, no normaliser fitted)."""
    from hydra.utils import instantiate

    return instantiate(small_ganomaly_config(*overrides).model)


def small_trained_looking_detector():
    """An untrained ganomaly_small on 2 s clips with a fitted normalisation, residual bank and band statistics (its
    configured score's), a threshold and a training section."""
    import torch

    detector = small_ganomaly("data.features.seconds=2.0", "data.features.frames=56")
    train = torch.randn(4, 128, 56) * 10 - 40
    detector.fit_normalizer(train)
    detector.eval().fit_memory([(train,)])
    detector.threshold.fill_(7.25)
    detector.trained_on = {"machine_type": "fan", "sections": [0]}
    return detector.eval()


def train_args(
    root: Path | str,
    work: Path,
    *overrides: str,
    model: str = "ganomaly_small",
    log_dir: Path | None = None,
    multirun: bool = False,
) -> list[str]:
    """Arguments of :func:`run_cli` for a small training run of the clips in ``root``: runs below ``work/logs``
    (or ``log_dir``), the feature cache in ``work/cache``, then ``overrides``."""
    log_dir = log_dir or Path(work) / "logs"
    paths = [f"data.root={root}", f"paths.log_dir={log_dir}", f"paths.cache_dir={Path(work) / 'cache'}"]
    return [TRAIN, *(["-m"] if multirun else []), *paths, *small_run(model), *overrides]


def cli_args(command: str, *args: object) -> list[str]:
    """Arguments of :func:`run_cli` for ``asd-ganomaly <command> <args>`` (paths turned into strings)."""
    return [CLI, command, *map(str, args)]


class SharedFolders:
    """The folders this session builds once and shares between its tests and workers (:mod:`shared`); at the
    worker's end, a failure names any file a test changed in one of them."""

    def __init__(self, folder: Path):
        self.folder, self.used = folder, set()

    def get(self, name: str, build) -> Path:
        """``name``'s folder, ``build(folder)`` making it the first time this session asks."""
        self.used.add(name)
        return built_once(self.folder, name, build)

    def changed(self) -> dict[str, list[str]]:
        return {name: files for name in sorted(self.used) if (files := changed_files(self.folder, name))}


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> SharedFolders:
    """The session's shared folders, checked unchanged at the end."""
    folders = SharedFolders(session_folder(tmp_path_factory.getbasetemp()))
    yield folders
    changed = folders.changed()
    assert not changed, f"tests changed shared folders (copy them with writable_copy): {changed}"


def keep_result(result, folder: Path) -> None:
    """Store a command's exit status and output beside what it built (see :func:`kept_result`)."""
    record = {"args": result.args, "returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}
    (folder / "result.json").write_text(json.dumps(record))


def kept_result(folder: Path):
    """The command result :func:`keep_result` stored in ``folder``."""
    import subprocess

    record = json.loads((folder / "result.json").read_text())
    return subprocess.CompletedProcess(record["args"], record["returncode"], record["stdout"], record["stderr"])


def write_small_synthetic_set(root: Path) -> None:
    """Fan and valve, section 0: 96 + 3 training clips and 10 test clips per label and domain, 2 s, clearly audible
    anomalies (severity 8)."""
    from asd_ganomaly.data.synth import write_synthetic_dataset

    write_synthetic_dataset(
        root,
        machine_types=["fan", "valve"],
        sections=[0],
        train_clips=96,
        target_train_clips=3,
        test_clips=10,
        seconds=2.0,
        severity=8.0,
        seed=0,
        progress=False,
    )


@pytest.fixture(scope="session")
def synthetic_root(shared) -> Path:
    """The session's small synthetic dataset (:func:`write_small_synthetic_set`), shared: read only."""
    return shared.get("synthetic", write_small_synthetic_set)


@pytest.fixture(scope="session")
def ganomaly_run(shared, synthetic_root) -> Path:
    """A finished run folder of ganomaly_small on fan section 0 (25 epochs, W&B offline with the model artifact,
    CSV, plots), shared: read only. Its log folder (``run.parents[3]``) holds this run alone; ``run.parents[4]``
    holds the command's result (:func:`kept_result`)."""

    def build(work: Path) -> None:
        env = {"WANDB_DATA_DIR": str(work / "wandb-data")}  # artifact staging: not in the home folder
        overrides = ["trainer.max_epochs=25", "logger=wandb", "logger.wandb.log_model=true"]
        keep_result(run_cli(train_args(synthetic_root, work, *overrides), cwd=work, env=env), work)

    return find_run(shared.get("ganomaly_run", build) / "logs")


@pytest.fixture(scope="session")
def tiny_sweep(shared, synthetic_root):
    """A real Hydra multirun, shared (read only): fan and valve complete, the unknown machine type 'drill' fails.
    Returns the sweep folder and the command's result."""

    def build(work: Path) -> None:
        overrides = [
            "experiment=dev_all",
            "data.machine_type=fan,valve,drill",
            "data.section=0",
            "trainer.max_epochs=2",
        ]
        result = run_cli(train_args(synthetic_root, work, *overrides, "logger=csv"), cwd=work, check=False)
        assert result.returncode == 1, f"a sweep with a failed run exits 1: {result.stderr[-2000:]}"
        keep_result(result, work)

    work = shared.get("tiny_sweep", build)
    return work / "logs" / "dev_all", kept_result(work)


def find_run(log_dir: Path, machine: str = "fan", section: int = 0) -> Path:
    """The one run folder of ``machine``/``section`` below ``log_dir``, wherever its config put it
    (``<task>/<model>/<label>-<hash>/<machine>_sec<section>``)."""
    found = [p for p in Path(log_dir).rglob(f"{machine}_sec{section}") if (p / "config.yaml").exists()]
    assert len(found) == 1, f"expected one run folder of {machine} section {section} below {log_dir}: {found}"
    return found[0]


def read_csv(path: Path | str) -> list[dict]:
    """The rows of the CSV file at ``path`` (scores.csv, results.csv...) as dicts keyed by its header."""
    with open(path) as handle:
        return list(csv.DictReader(handle))


def read_wandb_run(folder: Path) -> dict:
    """The offline W&B run below ``folder``, read with wandb's own reader (``wandb leet inspect --json``):
    id, name, group, tags, config, summary, artifacts (as logged: name, type, manifest, metadata...) and exit code.
    Fails unless the run was finished and flushed."""
    import json
    import os
    import subprocess
    import sys

    runs = list(Path(folder).rglob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, f"expected one offline W&B run below {folder}: {runs}"
    wandb_cli = Path(sys.executable).with_name("wandb")
    result = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--json", str(runs[0])],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WANDB_SILENT": "true"},
    )
    assert result.returncode == 0, result.stderr
    run: dict = {"config": {}, "summary": {}, "artifacts": [], "exit_code": None}
    for line in result.stdout.splitlines():
        record = json.loads(line)
        kind = record.get("type")
        if kind == "run":
            body = record["run"]
            run |= {"id": body.get("run_id"), "name": body.get("display_name"), "group": body.get("run_group")}
            run["tags"] = body.get("tags", [])
            run["config"] |= body.get("config", {}).get("update", {})
        elif kind == "config":
            run["config"] |= record["config"].get("update", {})
        elif kind == "summary":
            run["summary"] |= record["summary"].get("update", {})
        elif kind == "artifact":
            run["artifacts"].append(record["artifact"])
        elif kind == "exit":
            run["exit_code"] = record["exit"].get("exit_code", 0)
    assert run["exit_code"] == 0, f"the W&B run {runs[0]} was not finished: {run}"
    return run


def tone(seconds: float, rate: int = SR, channels: int = 1) -> np.ndarray:
    """A 440 Hz sine of amplitude 0.5 (``channels`` > 1: the same in each column)."""
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def write_wav(path: Path, audio, rate: int = SR, subtype: str = "PCM_16") -> Path:
    """Write ``audio`` as a WAV file (16-bit by default) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, subtype=subtype)
    return path


LOCK_HOLDER = textwrap.dedent(
    """
    import sys, time
    from asd_ganomaly.runs.lock import run_lock
    with run_lock(sys.argv[1], wait=0):
        print("locked", flush=True)
        time.sleep(600)
    """
)
"""A Python program that holds the run folder lock of ``argv[1]`` until it is killed (prints ``locked``)."""


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``alone`` share one pytest-xdist group: ``--dist loadgroup`` runs them in one worker, in turn
    (the Slurm tests share the session's cluster; the signal tests start processes of their own)."""
    for item in items:
        if item.get_closest_marker("alone"):
            item.add_marker(pytest.mark.xdist_group("alone"))


def pytest_configure(config) -> None:
    """Under pytest-xdist, each worker's torch (and the processes its tests start) gets its share of the cores:
    two workers of two threads each on two cores would spend their time waiting for each other."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
