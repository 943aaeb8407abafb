"""The HTTP side of the downloads: a Zenodo record's file list, and resumable fetches (``.part`` files, Range
requests, retries with backoff on transient errors), each verified against the record's MD5 and size.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

ZENODO_API = "https://zenodo.org/api"
CHUNK = 1 << 20
BACKOFF_S = 1.0
"""Pause before the first retry; it doubles on each further one, up to 30 s."""
USER_AGENT = "asd-ganomaly-downloader"
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
    record: int, api_url: str = ZENODO_API, timeout: float = 60.0, retries: int = 3
) -> dict[str, RemoteFile]:
    """File name -> :class:`RemoteFile` of the Zenodo ``record`` (tolerates the older API shapes)."""
    url = f"{api_url.rstrip('/')}/records/{record}"

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
