"""Download the official DCASE 2021 Task 2 archives from Zenodo: resumable, MD5-verified, atomically unpacked.

Records: dev 4562016 (``dev_data_<machine>.zip``), additional training 4660992
(``eval_data_<machine>_train.zip``), evaluation test 4884786 (``eval_data_<machine>_test.zip``); the organisers'
ground truth of the evaluation set 5257674 (:func:`download_ground_truth`, into ``ROOT/ground_truth/``).
Results: ``ROOT/dev_data/<machine>/`` and ``ROOT/eval_data/<machine>/`` (additional and eval merge there).
Safe to re-run: a machine folder holding the marker ``.complete-<kind>`` is skipped without any request.
Here: the records' layout, the safe unpacking and the loop over machine types; the HTTP fetches are in
``zenodo.py``.
"""

from __future__ import annotations

import logging
import re
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from ..core.files import atomic_output
from .dcase import MACHINE_TYPES
from .zenodo import ZENODO_API, DownloadError, fetch, record_files

log = logging.getLogger(__name__)

RECORDS = {"dev": 4562016, "additional": 4660992, "eval": 4884786}
_ARCHIVES = {
    "dev": "dev_data_{}.zip",
    "additional": "eval_data_{}_train.zip",
    "eval": "eval_data_{}_test.zip",
}
_FOLDERS = {"dev": "dev_data", "additional": "eval_data", "eval": "eval_data"}


def archive_name(kind: str, machine_type: str) -> str:
    """The archive file name of one machine type in the ``kind`` record."""
    _validate(kind, [machine_type])
    return _ARCHIVES[kind].format(machine_type)


def _validate(kind: str, machine_types: Sequence[str] | None) -> list[str]:
    if kind not in RECORDS:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(RECORDS)}")
    machines = list(dict.fromkeys(MACHINE_TYPES if machine_types is None else machine_types))
    unknown = [m for m in machines if m not in MACHINE_TYPES]
    if unknown:
        raise ValueError(f"unknown machine type(s) {unknown}; valid: {', '.join(MACHINE_TYPES)}")
    return machines


def _check_members(archive: zipfile.ZipFile, name: str) -> None:
    for member in archive.namelist():
        parts = PurePosixPath(member.replace("\\", "/")).parts
        if member.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise DownloadError(f"{name}: refusing the unsafe path {member!r}")


def _machine_folder(tree: Path, machine_type: str, name: str) -> Path:
    """``tree/<machine>`` or ``tree/<anything>/<machine>``: the archive's machine folder."""
    subfolders = sorted(tree.iterdir()) if tree.is_dir() else []
    for candidate in [tree / machine_type, *(sub / machine_type for sub in subfolders)]:
        if candidate.is_dir():
            return candidate
    raise DownloadError(f"{name} holds no {machine_type}/ folder")


def unpack(archive_path: Path, root: Path, kind: str, machine_type: str) -> Path:
    """Unpack into a temporary folder inside ``root``, then rename the machine folder into place."""
    target = root / _FOLDERS[kind] / machine_type
    with tempfile.TemporaryDirectory(dir=root, prefix=".unpack-") as tmp:
        tree = Path(tmp) / "tree"
        try:
            with zipfile.ZipFile(archive_path) as archive:
                _check_members(archive, archive_path.name)
                archive.extractall(tree)
        except (zipfile.BadZipFile, zipfile.LargeZipFile) as error:
            raise DownloadError(f"{archive_path.name} is not a readable zip archive: {error}") from error
        source = _machine_folder(tree, machine_type, archive_path.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            source.rename(target)
            return target
        for child in sorted(source.iterdir()):  # merge (additional + eval): swap each split folder in
            destination = target / child.name
            if destination.exists():
                destination.rename(Path(tmp) / f"replaced-{child.name}")
            child.rename(destination)
    return target


def download(
    kind: str,
    root: str | Path,
    machine_types: Sequence[str] | None = None,
    api_url: str = ZENODO_API,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = 3,
    *,
    keep_archives: bool = False,
) -> list[Path]:
    """Download, verify and unpack the ``kind`` archives of ``machine_types`` (default: all seven).

    Archives go through ``ROOT/.downloads/`` and are deleted after unpacking unless ``keep_archives``.
    Returns the machine folders made ready, in the order asked for.
    """
    machines = _validate(kind, machine_types)
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    folders = {m: root / _FOLDERS[kind] / m for m in machines}
    pending = [m for m in machines if not (folders[m] / f".complete-{kind}").is_file()]
    files = record_files(RECORDS[kind], api_url, timeout, retries) if pending else {}
    missing = [archive_name(kind, m) for m in pending if archive_name(kind, m) not in files]
    if missing:
        raise DownloadError(f"{', '.join(missing)} not in Zenodo record {RECORDS[kind]} ({api_url})")
    for machine in machines:
        if machine not in pending:
            log.info("%s %s is complete: skipped", kind, machine)
            continue
        file = files[archive_name(kind, machine)]
        archive = root / ".downloads" / file.name
        md5 = fetch(file, archive, timeout, retries, progress)
        unpack(archive, root, kind, machine)
        marker = folders[machine] / f".complete-{kind}"
        with atomic_output(marker) as staged:  # written last, in one step
            staged.write_text(md5 + "\n")
        if not keep_archives:
            archive.unlink()
    return [folders[m] for m in machines]


GROUND_TRUTH_RECORD = 5257674
"""The organisers' ground truth of the evaluation set (the labels of sections 03-05), Zenodo record 5257674.

The record's file names and MD5 sums were not at hand when this was written (no network, not in the stored
docs): nothing here is hard-coded. Every file is checked against the MD5 and size the record's own listing
gives, as for the other records, and the ground-truth CSV files are taken from whatever ``.zip`` archives or
CSV files the record holds."""
GROUND_TRUTH_FOLDER = "ground_truth"
_GROUND_TRUTH_FILE = re.compile(r"^ground_truth_.+_section_\d{2}_(source|target)_test\.csv$")
_GROUND_TRUTH_MARKER = ".complete-ground-truth"


def download_ground_truth(
    root: str | Path,
    api_url: str = ZENODO_API,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = 3,
) -> Path:
    """Download the ground-truth files of the evaluation set into ``ROOT/ground_truth/`` (the folder
    ``asd-ganomaly evaluate --ground-truth`` takes): fetched through ``ROOT/.downloads/`` (resumable, MD5-checked),
    the ``ground_truth_<machine>_section_<XX>_<domain>_test.csv`` files taken out of the record's archives.
    Safe to re-run: a folder holding the marker ``.complete-ground-truth`` is left as it is, without a request."""
    root = Path(root).expanduser()
    target = root / GROUND_TRUTH_FOLDER
    if (target / _GROUND_TRUTH_MARKER).is_file():
        log.info("ground truth is complete: skipped")
        return target
    root.mkdir(parents=True, exist_ok=True)
    files = record_files(GROUND_TRUTH_RECORD, api_url, timeout, retries)
    wanted = {n: f for n, f in files.items() if n.lower().endswith(".zip") or _GROUND_TRUTH_FILE.match(n)}
    if not wanted:
        raise DownloadError(f"Zenodo record {GROUND_TRUTH_RECORD} holds no .zip or ground_truth_*.csv: {sorted(files)}")
    found: dict[str, bytes] = {}
    digests = []
    for name, file in sorted(wanted.items()):
        archive = root / ".downloads" / file.name
        digests.append(f"{fetch(file, archive, timeout, retries, progress)}  {name}")
        found |= _ground_truth_members(archive)
        archive.unlink()
    if not found:
        raise DownloadError(f"no ground_truth_*.csv files in Zenodo record {GROUND_TRUTH_RECORD} ({sorted(wanted)})")
    _install_folder(root, target, found)
    with atomic_output(target / _GROUND_TRUTH_MARKER) as staged:  # written last, in one step
        staged.write_text("\n".join(digests) + "\n")
    return target


def _ground_truth_members(path: Path) -> dict[str, bytes]:
    """``{file name: bytes}`` of the ground-truth CSV files in a downloaded file: the file itself, or the members
    of a zip archive (at any depth)."""
    if _GROUND_TRUTH_FILE.match(path.name):
        return {path.name: path.read_bytes()}
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(archive, path.name)
            members = [m for m in archive.namelist() if _GROUND_TRUTH_FILE.match(PurePosixPath(m).name)]
            return {PurePosixPath(m).name: archive.read(m) for m in members}
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as error:
        raise DownloadError(f"{path.name} is not a readable zip archive: {error}") from error


def _install_folder(root: Path, target: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a temporary folder inside ``root``, then swap it in as ``target``."""
    with tempfile.TemporaryDirectory(dir=root, prefix=".unpack-") as tmp:
        staged = Path(tmp) / "staged"
        staged.mkdir()
        for name, data in files.items():
            (staged / name).write_bytes(data)
        if target.exists():
            target.rename(Path(tmp) / "replaced")
        staged.rename(target)
