"""The Zenodo downloader against a real HTTP server on 127.0.0.1: resume, checksums, re-runs, layouts."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import wave
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import asd_ganomaly.data.zenodo as zenodo_module
from asd_ganomaly.data.download import RECORDS, DownloadError, archive_name, download


def wav_bytes(frames: int = 1600, seed: int = 0) -> bytes:
    """A short 16 kHz mono 16-bit WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(bytes((seed + i) % 256 for i in range(frames * 2)))
    return buffer.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


TRAIN_CLIP = "train/section_00_source_train_normal_0000_a.wav"
TEST_CLIP = "source_test/section_00_source_test_anomaly_0000.wav"


def dev_archive(machine: str, top: str = "dev_data/") -> bytes:
    """A dev archive in the DCASE layout; ``top=""`` puts ``<machine>/`` at the top."""
    return make_zip({f"{top}{machine}/{TRAIN_CLIP}": wav_bytes(), f"{top}{machine}/{TEST_CLIP}": wav_bytes(800, 7)})


class Zenodo:
    """A small Zenodo: ``/records/<id>`` JSON and ``/files/<name>``, with Range support and faults."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: dict[str, int] = {}  # name -> bytes sent before dropping the connection, once
        self.always_cut: set[str] = set()  # dropped half way through on every request
        self.ignore_range: set[str] = set()  # answered 200 with the whole file even to a Range request
        self.corrupt: set[str] = set()  # served with bytes that do not match the record's checksum
        self.legacy = False  # the older record shape: filename, filesize, bare md5, links.download
        self.api = ""

    def add(self, name: str, data: bytes) -> bytes:
        self.files[name] = data
        return data

    def file_requests(self, name: str) -> list[str | None]:
        """The Range headers of the requests for one file."""
        return [header for path, header in self.requests if path == f"/files/{name}"]

    def entry(self, name: str) -> dict:
        data, url = self.files[name], f"{self.api}/files/{name}"
        md5 = hashlib.md5(data).hexdigest()
        if self.legacy:
            return {"filename": name, "filesize": len(data), "checksum": md5, "links": {"download": url}}
        return {"key": name, "size": len(data), "checksum": f"md5:{md5}", "links": {"self": url}}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        zenodo = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                    self.send_header(key, value)
                self.end_headers()

            def do_GET(self) -> None:
                zenodo.requests.append((self.path, self.headers.get("Range")))
                if self.path.startswith("/records/"):
                    body = json.dumps({"id": int(self.path.rsplit("/", 1)[-1]), "files": zenodo.listing()})
                    self.send(200, body.encode())
                    self.wfile.write(body.encode())
                    return
                name = self.path.removeprefix("/files/")
                if name not in zenodo.files:
                    self.send(404, b"")
                    return
                data = zenodo.files[name]
                if name in zenodo.corrupt:
                    data = data[:-10] + b"X" * 10
                ranged = self.headers.get("Range") and name not in zenodo.ignore_range
                start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-")) if ranged else 0
                if start >= len(data) > 0:
                    self.send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    return
                body = data[start:]
                headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if ranged else {}
                self.send(206 if ranged else 200, body, headers)
                cut = zenodo.cut_after.pop(name, len(body) // 2 if name in zenodo.always_cut else None)
                self.wfile.write(body if cut is None else body[:cut])

        return Handler

    def listing(self) -> list[dict]:
        return [self.entry(name) for name in self.files]


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(zenodo_module, "BACKOFF_S", 0.0)


@pytest.fixture
def zenodo():
    state = Zenodo()
    server = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.api = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def fetch(zenodo: Zenodo, kind: str, root: Path, machines: list[str], **kwargs) -> list[Path]:
    return download(kind, root, machines, api_url=zenodo.api, progress=False, **kwargs)


def test_download_unpacks_normalises_and_rerun_makes_no_request(zenodo, tmp_path):
    fan = zenodo.add(archive_name("dev", "fan"), dev_archive("fan"))
    zenodo.add(archive_name("dev", "valve"), dev_archive("valve", top=""))  # top-level <machine>/
    ready = fetch(zenodo, "dev", tmp_path, ["fan", "valve"])
    assert ready == [tmp_path / "dev_data" / "fan", tmp_path / "dev_data" / "valve"]
    for machine in ("fan", "valve"):
        assert (tmp_path / "dev_data" / machine / TRAIN_CLIP).read_bytes() == wav_bytes()
        assert (tmp_path / "dev_data" / machine / TEST_CLIP).read_bytes() == wav_bytes(800, 7)
    marker = tmp_path / "dev_data" / "fan" / ".complete-dev"
    assert marker.read_text().strip() == hashlib.md5(fan).hexdigest()
    assert not list((tmp_path / ".downloads").iterdir()), "archives are deleted after unpacking"
    assert not list(tmp_path.glob(".unpack-*"))
    zenodo.requests.clear()
    assert fetch(zenodo, "dev", tmp_path, ["fan", "valve"]) == ready
    assert zenodo.requests == [], "a complete machine folder makes no request at all"


def test_interrupted_download_resumes_with_a_range_request(zenodo, tmp_path):
    name = archive_name("dev", "pump")
    data = zenodo.add(name, dev_archive("pump"))
    zenodo.cut_after[name] = 300
    fetch(zenodo, "dev", tmp_path, ["pump"], retries=2, keep_archives=True)
    assert zenodo.file_requests(name) == [None, "bytes=300-"]
    assert (tmp_path / ".downloads" / name).read_bytes() == data
    assert not (tmp_path / ".downloads" / f"{name}.part").exists()
    assert (tmp_path / "dev_data" / "pump" / TEST_CLIP).read_bytes() == wav_bytes(800, 7)


def test_a_server_ignoring_the_range_restarts_from_scratch(zenodo, tmp_path):
    name = archive_name("dev", "fan")
    data = zenodo.add(name, dev_archive("fan"))
    zenodo.ignore_range.add(name)
    (tmp_path / ".downloads").mkdir()
    (tmp_path / ".downloads" / f"{name}.part").write_bytes(data[:100])
    fetch(zenodo, "dev", tmp_path, ["fan"], keep_archives=True)
    assert zenodo.file_requests(name) == ["bytes=100-"]
    assert (tmp_path / ".downloads" / name).read_bytes() == data


def test_a_complete_part_or_archive_is_not_downloaded_again(zenodo, tmp_path):
    name = archive_name("dev", "slider")
    data = zenodo.add(name, dev_archive("slider"))
    (tmp_path / ".downloads").mkdir()
    (tmp_path / ".downloads" / f"{name}.part").write_bytes(data)  # interrupted before the rename
    fetch(zenodo, "dev", tmp_path, ["slider"], keep_archives=True)
    assert zenodo.file_requests(name) == []
    (tmp_path / "dev_data" / "slider" / ".complete-dev").unlink()  # e.g. interrupted before the marker
    fetch(zenodo, "dev", tmp_path, ["slider"])
    assert zenodo.file_requests(name) == [], "a verified archive is reused"
    assert (tmp_path / "dev_data" / "slider" / ".complete-dev").exists()
    assert not (tmp_path / ".downloads" / name).exists()


def test_bad_checksum_leaves_nothing_behind(zenodo, tmp_path):
    name = archive_name("dev", "slider")
    data = zenodo.add(name, dev_archive("slider"))
    zenodo.corrupt.add(name)
    with pytest.raises(DownloadError, match="checksum mismatch") as error:
        fetch(zenodo, "dev", tmp_path, ["slider"])
    served = data[:-10] + b"X" * 10
    assert name in str(error.value)
    assert hashlib.md5(data).hexdigest() in str(error.value)
    assert hashlib.md5(served).hexdigest() in str(error.value)
    assert not (tmp_path / "dev_data" / "slider").exists()
    assert not list((tmp_path / ".downloads").iterdir()), "neither a .part nor an archive is left"


def test_retries_run_out_with_a_clear_error_and_keep_the_part(zenodo, tmp_path):
    name = archive_name("dev", "ToyTrain")
    zenodo.add(name, dev_archive("ToyTrain"))
    zenodo.always_cut.add(name)
    with pytest.raises(DownloadError, match="failed after 3 tries"):
        fetch(zenodo, "dev", tmp_path, ["ToyTrain"], retries=2)
    assert len(zenodo.file_requests(name)) == 3
    assert zenodo.file_requests(name)[1].startswith("bytes=")
    assert (tmp_path / ".downloads" / f"{name}.part").stat().st_size > 0, "kept for the next run to resume"
    assert not (tmp_path / "dev_data" / "ToyTrain").exists()
    zenodo.always_cut.clear()
    fetch(zenodo, "dev", tmp_path, ["ToyTrain"])
    assert (tmp_path / "dev_data" / "ToyTrain" / TRAIN_CLIP).read_bytes() == wav_bytes()


@pytest.mark.parametrize("evil", ["../evil.wav", "/tmp/evil.wav", "dev_data/gearbox/../../evil.wav"])
def test_unsafe_zip_members_are_refused(zenodo, tmp_path, evil):
    root = tmp_path / "root"
    zenodo.add(archive_name("dev", "gearbox"), make_zip({f"dev_data/gearbox/{TRAIN_CLIP}": b"x", evil: b"x"}))
    with pytest.raises(DownloadError, match="unsafe path"):
        fetch(zenodo, "dev", root, ["gearbox"])
    assert not (tmp_path / "evil.wav").exists() and not (root / "dev_data" / "gearbox").exists()
    assert not list(root.glob(".unpack-*"))


def test_an_unreadable_or_foreign_archive_leaves_no_machine_folder(zenodo, tmp_path):
    zenodo.add(archive_name("dev", "fan"), b"not a zip at all")
    zenodo.add(archive_name("dev", "pump"), dev_archive("valve"))
    with pytest.raises(DownloadError, match="not a readable zip"):
        fetch(zenodo, "dev", tmp_path, ["fan"])
    with pytest.raises(DownloadError, match="holds no pump/ folder"):
        fetch(zenodo, "dev", tmp_path, ["pump"])
    assert not (tmp_path / "dev_data").exists() or not list((tmp_path / "dev_data").iterdir())
    assert not list(tmp_path.glob(".unpack-*"))


def test_additional_and_eval_merge_into_eval_data(zenodo, tmp_path):
    train = {f"eval_data/ToyCar/{TRAIN_CLIP}": wav_bytes()}
    test = {f"eval_data/ToyCar/{TEST_CLIP}": wav_bytes(800, 3), "eval_data/ToyCar/target_test/x.wav": b"y"}
    zenodo.add(archive_name("additional", "ToyCar"), make_zip(train))
    zenodo.add(archive_name("eval", "ToyCar"), make_zip(test))
    assert fetch(zenodo, "additional", tmp_path, ["ToyCar"]) == [tmp_path / "eval_data" / "ToyCar"]
    assert fetch(zenodo, "eval", tmp_path, ["ToyCar"]) == [tmp_path / "eval_data" / "ToyCar"]
    folder = tmp_path / "eval_data" / "ToyCar"
    names = {p.name for p in folder.iterdir()}
    assert names == {"train", "source_test", "target_test", ".complete-additional", ".complete-eval"}
    assert (folder / TRAIN_CLIP).read_bytes() == wav_bytes()
    zenodo.requests.clear()
    fetch(zenodo, "additional", tmp_path, ["ToyCar"])
    fetch(zenodo, "eval", tmp_path, ["ToyCar"])
    assert zenodo.requests == []


def test_the_older_record_shape_is_understood(zenodo, tmp_path):
    zenodo.legacy = True
    zenodo.add(archive_name("dev", "valve"), dev_archive("valve"))
    fetch(zenodo, "dev", tmp_path, ["valve"])
    assert (tmp_path / "dev_data" / "valve" / TRAIN_CLIP).exists()
    assert zenodo.requests[0][0] == f"/records/{RECORDS['dev']}"


def test_bad_arguments_and_a_missing_archive(zenodo, tmp_path):
    with pytest.raises(ValueError, match="unknown kind 'test'.*dev, additional, eval"):
        fetch(zenodo, "test", tmp_path, ["fan"])
    with pytest.raises(ValueError, match=r"unknown machine type\(s\) \['drill'\].*fan, gearbox"):
        fetch(zenodo, "dev", tmp_path, ["fan", "drill"])
    with pytest.raises(ValueError, match="unknown machine"):
        archive_name("dev", "drill")
    assert zenodo.requests == [], "bad arguments are refused before any request"
    zenodo.add(archive_name("dev", "fan"), dev_archive("fan"))
    with pytest.raises(DownloadError, match="dev_data_valve.zip not in Zenodo record 4562016"):
        fetch(zenodo, "dev", tmp_path, ["fan", "valve"])
    assert zenodo.file_requests(archive_name("dev", "fan")) == [], "nothing is fetched when one is missing"
    assert archive_name("eval", "fan") == "eval_data_fan_test.zip"
    assert archive_name("additional", "fan") == "eval_data_fan_train.zip"


def test_an_unreachable_server_is_a_clear_error(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match="reading the Zenodo record .* failed after 2 tries"):
        download("dev", tmp_path, ["fan"], api_url=f"http://127.0.0.1:{port}", progress=False, timeout=5, retries=1)


GROUND_TRUTH_CSV = "ground_truth_fan_section_03_source_test.csv"


def test_ground_truth_is_taken_from_the_records_archive_checked_and_not_fetched_again(zenodo, tmp_path):
    from asd_ganomaly.data.download import GROUND_TRUTH_RECORD, download_ground_truth

    rows = b"section_03_source_test_0000.wav,1\r\nsection_03_source_test_0001.wav,0\r\n"
    other = b"section_04_target_test_0000.wav,0\n"
    zenodo.add(
        "ground_truth.zip",
        make_zip(
            {
                f"x/ground_truth_data/{GROUND_TRUTH_CSV}": rows,
                "ground_truth_valve_section_04_target_test.csv": other,
                "x/README.md": b"not a label file",
            }
        ),
    )
    name = "ground_truth.zip"
    zenodo.cut_after[name] = 40  # a dropped connection: resumed with a Range request
    folder = download_ground_truth(tmp_path, api_url=zenodo.api, progress=False)
    assert folder == tmp_path / "ground_truth"
    assert sorted(p.name for p in folder.glob("*.csv")) == [
        GROUND_TRUTH_CSV,
        "ground_truth_valve_section_04_target_test.csv",
    ]
    assert (folder / GROUND_TRUTH_CSV).read_bytes() == rows
    assert zenodo.file_requests(name) == [None, "bytes=40-"]
    assert ("/records/" + str(GROUND_TRUTH_RECORD), None) in zenodo.requests
    assert not (tmp_path / ".downloads" / name).exists()
    zenodo.requests.clear()
    assert download_ground_truth(tmp_path, api_url=zenodo.api, progress=False) == folder
    assert zenodo.requests == [], "a complete ground-truth folder makes no request"


def test_ground_truth_with_a_bad_checksum_or_no_label_files_is_refused(zenodo, tmp_path):
    from asd_ganomaly.data.download import download_ground_truth

    zenodo.add("labels.zip", make_zip({GROUND_TRUTH_CSV: b"a.wav,1\n"}))
    zenodo.corrupt.add("labels.zip")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_ground_truth(tmp_path, api_url=zenodo.api, progress=False, retries=0)
    assert not (tmp_path / "ground_truth").exists()
    zenodo.corrupt.clear()
    zenodo.files = {"labels.zip": make_zip({"README.md": b"nothing"})}
    with pytest.raises(DownloadError, match="no ground_truth_"):
        download_ground_truth(tmp_path, api_url=zenodo.api, progress=False)
