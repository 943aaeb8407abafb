"""Download the official DCASE 2021 Task 2 archives from Zenodo, resumably, verified and atomically unpacked.

Records: dev 4562016 (``dev_data_<machine>.zip``), additional training 4660992
(``eval_data_<machine>_train.zip``), evaluation test 4884786 (``eval_data_<machine>_test.zip``).
Results: ``ROOT/dev_data/<machine>/`` and ``ROOT/eval_data/<machine>/`` (additional and eval merge there).
Safe to re-run: a machine whose marker ``.complete-<kind>`` exists is skipped without any request.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from .dcase import MACHINE_TYPES

log = logging.getLogger(__name__)

RECORDS = {"dev": 4562016, "additional": 4660992, "eval": 4884786}
ZENODO_API = "https://zenodo.org/api"
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download that could not be completed or verified."""


def archive_name(kind: str, machine_type: str) -> str:
    """The archive file name of one machine type in a record."""
    return {
        "dev": f"dev_data_{machine_type}.zip",
        "additional": f"eval_data_{machine_type}_train.zip",
        "eval": f"eval_data_{machine_type}_test.zip",
    }[kind]


def _target_folder(kind: str) -> str:
    return "dev_data" if kind == "dev" else "eval_data"


def _check(kind: str, machine_types: Sequence[str] | None) -> list[str]:
    if kind not in RECORDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {sorted(RECORDS)}")
    machines = list(machine_types or MACHINE_TYPES)
    unknown = [m for m in machines if m not in MACHINE_TYPES]
    if unknown:
        raise ValueError(f"unknown machine types {unknown}; valid: {list(MACHINE_TYPES)}")
    return machines


def record_files(kind: str, api_url: str, timeout: float) -> dict[str, dict]:
    """File name -> {url, md5, size} of a Zenodo record (tolerates old and new API shapes)."""
    url = f"{api_url.rstrip('/')}/records/{RECORDS[kind]}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            record = json.load(response)
    except (urllib.error.URLError, TimeoutError, ValueError) as error:
        raise DownloadError(f"cannot read the Zenodo record {url}: {error}") from error
    files = {}
    for entry in record.get("files", []):
        name = entry.get("key") or entry.get("filename")
        links = entry.get("links", {})
        checksum = str(entry.get("checksum", ""))
        files[name] = {
            "url": links.get("self") or links.get("download") or links.get("content"),
            "md5": checksum.split(":", 1)[-1],
            "size": entry.get("size"),
        }
    return files


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_once(url: str, part: Path, size: int | None, timeout: float, progress: bool) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if have and response.status != 206:  # the server ignored the range: start again
            have = 0
        expected = int(response.headers.get("Content-Length") or -1)
        received = 0
        bar = tqdm(total=size, initial=have, unit="B", unit_scale=True, desc=part.stem, disable=not progress)
        with open(part, "ab" if have else "wb") as handle:
            for block in iter(lambda: response.read(CHUNK), b""):
                handle.write(block)
                received += len(block)
                bar.update(len(block))
        bar.close()
    if 0 <= received < expected:
        raise ConnectionError(f"connection closed after {received} of {expected} bytes")


def fetch(
    url: str, destination: Path, md5: str, size: int | None, timeout: float, retries: int, progress: bool
) -> Path:
    """Download ``url`` to ``destination`` through a resumable ``.part`` file, verified by MD5 and size."""
    part = destination.with_name(destination.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, size, timeout, progress)
            break
        except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) as error:
            if attempt == retries:
                raise DownloadError(f"downloading {url} failed after {retries + 1} tries: {error}") from error
            log.warning("download of %s interrupted (%s); resuming", destination.name, error)
            time.sleep(min(2**attempt, 30) * 0.1)
    actual = _md5(part)
    if (md5 and actual != md5) or (size is not None and part.stat().st_size != size):
        part.unlink()
        raise DownloadError(f"{destination.name}: checksum mismatch (expected md5 {md5}, got {actual}); deleted")
    part.replace(destination)
    return destination


def _safe_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    for member in archive.infolist():
        path = PurePosixPath(member.filename)
        if path.is_absolute() or ".." in path.parts:
            raise DownloadError(f"refusing unsafe path {member.filename!r} in {archive.filename}")
    return archive.infolist()


def unpack(archive_path: Path, root: Path, kind: str, machine_type: str) -> Path:
    """Unpack into a temporary folder inside ``root``, then move the machine folder into place."""
    target = root / _target_folder(kind) / machine_type
    with tempfile.TemporaryDirectory(dir=root, prefix=".unpack-") as tmp:
        with zipfile.ZipFile(archive_path) as archive:
            archive.extractall(tmp, members=_safe_members(archive))
        found = sorted(p for p in Path(tmp).rglob(machine_type) if p.is_dir())
        if not found:
            raise DownloadError(f"{archive_path.name} holds no {machine_type}/ folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            found[0].replace(target)
        else:  # additional + eval merge: move each split folder in
            for split in found[0].iterdir():
                destination = target / split.name
                if destination.exists():
                    shutil.rmtree(destination)
                split.replace(destination)
    return target


def download(
    kind: str,
    root: str | Path,
    machine_types: Sequence[str] | None = None,
    api_url: str = ZENODO_API,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = 3,
    keep_archives: bool = False,
) -> list[Path]:
    """Download, verify and unpack the ``kind`` archives of ``machine_types``; returns the machine folders."""
    machines = _check(kind, machine_types)
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    todo = [m for m in machines if not (root / _target_folder(kind) / m / f".complete-{kind}").exists()]
    files = record_files(kind, api_url, timeout) if todo else {}
    ready = []
    for machine in machines:
        target = root / _target_folder(kind) / machine
        if machine not in todo:
            log.info("%s %s is complete: skipped", kind, machine)
            ready.append(target)
            continue
        name = archive_name(kind, machine)
        if name not in files:
            raise DownloadError(f"{name} is not in Zenodo record {RECORDS[kind]}")
        info = files[name]
        archive = root / ".downloads" / name
        archive.parent.mkdir(exist_ok=True)
        if not (archive.exists() and _md5(archive) == info["md5"]):
            fetch(info["url"], archive, info["md5"], info["size"], timeout, retries, progress)
        unpack(archive, root, kind, machine)
        (target / f".complete-{kind}").write_text(info["md5"] + "\n")
        if not keep_archives:
            archive.unlink()
        ready.append(target)
    return ready
