"""Download the official DCASE 2021 Task 2 archives from Zenodo: resumable, MD5-verified, atomically unpacked.

Records: dev 4562016 (``dev_data_<machine>.zip``), additional training 4660992
(``eval_data_<machine>_train.zip``), evaluation test 4884786 (``eval_data_<machine>_test.zip``).
Results: ``ROOT/dev_data/<machine>/`` and ``ROOT/eval_data/<machine>/`` (additional and eval merge there).
Safe to re-run: a machine folder holding the marker ``.complete-<kind>`` is skipped without any request.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from tqdm.auto import tqdm

from .dcase import MACHINE_TYPES

log = logging.getLogger(__name__)

RECORDS = {"dev": 4562016, "additional": 4660992, "eval": 4884786}
ZENODO_API = "https://zenodo.org/api"
CHUNK = 1 << 20
BACKOFF_S = 1.0
"""Pause before the first retry; it doubles on each further one, up to 30 s."""
USER_AGENT = "asd-ganomaly-downloader"
_ARCHIVES = {
    "dev": "dev_data_{}.zip",
    "additional": "eval_data_{}_train.zip",
    "eval": "eval_data_{}_test.zip",
}
_FOLDERS = {"dev": "dev_data", "additional": "eval_data", "eval": "eval_data"}
_BYTES = {"unit": "B", "unit_scale": True, "unit_divisor": 1024}

_TRANSIENT = (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)
_T = TypeVar("_T")


class DownloadError(RuntimeError):
    """A download that could not be completed, verified or unpacked."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a Zenodo record."""

    name: str
    url: str
    md5: str
    size: int | None


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


def _permanent(error: Exception) -> bool:
    """An HTTP error that another try will not fix (a 4xx other than 408 and 429)."""
    return isinstance(error, urllib.error.HTTPError) and error.code < 500 and error.code not in (408, 429)


def _retrying(action: Callable[[], _T], what: str, retries: int) -> _T:
    """Run ``action``, retrying transient network errors with exponential backoff."""
    for attempt in range(retries + 1):
        try:
            return action()
        except _TRANSIENT as error:
            if _permanent(error) or attempt == retries:
                raise DownloadError(f"{what} failed after {attempt + 1} tries: {error}") from error
            log.warning("%s interrupted (%s); trying again", what, error)
            time.sleep(min(BACKOFF_S * 2**attempt, 30.0))
    raise AssertionError("unreachable")


def _open(url: str, timeout: float, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    return urllib.request.urlopen(request, timeout=timeout)


def _parse_entry(entry: dict[str, Any]) -> RemoteFile | None:
    name = entry.get("key") or entry.get("filename")
    links = entry.get("links") or {}
    url = links.get("self") or links.get("download") or links.get("content")
    if not name or not url:
        return None
    algorithm, _, digest = str(entry.get("checksum") or "").rpartition(":")
    size = entry.get("size", entry.get("filesize"))
    md5 = digest.lower() if algorithm in ("", "md5") else ""
    return RemoteFile(name, url, md5, int(size) if size is not None else None)


def record_files(
    kind: str, api_url: str = ZENODO_API, timeout: float = 60.0, retries: int = 3
) -> dict[str, RemoteFile]:
    """File name -> :class:`RemoteFile` of the ``kind`` record (tolerates the older API shapes)."""
    url = f"{api_url.rstrip('/')}/records/{RECORDS[kind]}"

    def read() -> Any:
        with _open(url, timeout, {"Accept": "application/json"}) as response:
            return json.load(response)

    try:
        record = _retrying(read, f"reading the Zenodo record {url}", retries)
    except ValueError as error:
        raise DownloadError(f"the Zenodo record {url} is not valid JSON: {error}") from error
    entries = record.get("files") or []
    if isinstance(entries, dict):  # the files endpoint shape: {"entries": [...] or {...}}
        entries = entries.get("entries") or []
        entries = list(entries.values()) if isinstance(entries, dict) else entries
    files = (_parse_entry(entry) for entry in entries if isinstance(entry, dict))
    return {file.name: file for file in files if file is not None}


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _resume_offset(response: http.client.HTTPResponse, have: int, part: Path) -> int:
    """Where the response body starts in the file: ``have`` for a matching 206, 0 for a full 200."""
    if response.status != 206:
        return 0
    start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0].strip()
    if start.isdigit() and int(start) != have:
        part.unlink()
        raise ConnectionError(f"the server resumed at byte {start} instead of {have}; starting again")
    return have


def _fetch_once(file: RemoteFile, part: Path, timeout: float, progress: bool) -> None:
    have = part.stat().st_size if part.exists() else 0
    if file.size is not None and have >= file.size:
        if have == file.size:
            return  # complete already; the caller verifies it
        part.unlink()
        have = 0
    try:
        response = _open(file.url, timeout, {"Range": f"bytes={have}-"} if have else None)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not have:
            raise
        part.unlink()  # the range lies past the end: the .part is stale
        return _fetch_once(file, part, timeout, progress)
    with response:
        have = _resume_offset(response, have, part)
        length = response.headers.get("Content-Length", "")
        expected = int(length) if length.isdigit() else None
        received = 0
        bar = tqdm(total=file.size, initial=have, desc=file.name, disable=not progress, leave=False, **_BYTES)
        with bar, open(part, "ab" if have else "wb") as handle:
            while block := response.read(CHUNK):
                handle.write(block)
                received += len(block)
                bar.update(len(block))
    if expected is not None and received < expected:
        raise ConnectionError(f"connection closed after {received} of {expected} bytes")


def _verify(path: Path, file: RemoteFile) -> str:
    """MD5 of ``path``; deletes it and raises :class:`DownloadError` when it does not match the record."""
    actual, size = _md5(path), path.stat().st_size
    if (file.md5 and actual != file.md5) or (file.size is not None and size != file.size):
        path.unlink()
        raise DownloadError(
            f"{file.name}: checksum mismatch: expected md5 {file.md5 or '?'} ({file.size} bytes), "
            f"got md5 {actual} ({size} bytes); the download was deleted, run again to fetch it afresh"
        )
    return actual


def fetch(file: RemoteFile, destination: Path, timeout: float = 60.0, retries: int = 3, progress: bool = True) -> str:
    """Download ``file`` through a resumable ``destination.part``; verify, then rename. Returns the MD5."""
    if destination.is_file():
        try:
            return _verify(destination, file)
        except DownloadError:
            log.warning("%s does not match the record: downloading it again", destination.name)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    _retrying(lambda: _fetch_once(file, part, timeout, progress), f"downloading {file.name}", retries)
    md5 = _verify(part, file)
    part.replace(destination)
    return md5


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
    files = record_files(kind, api_url, timeout, retries) if pending else {}
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
        staged = marker.with_name(marker.name + ".tmp")
        staged.write_text(md5 + "\n")
        staged.replace(marker)  # written last, in one step
        if not keep_archives:
            archive.unlink()
    return [folders[m] for m in machines]
