"""The downloader against a real HTTP server on 127.0.0.1: resume, bad checksum, re-run, layouts."""

import hashlib
import io
import json
import threading
import wave
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from asd_ganomaly.data.download import RECORDS, DownloadError, archive_name, download


def wav_bytes(frames: int = 1600) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(bytes(range(256)) * (frames * 2 // 256))
    return buffer.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class Zenodo:
    """A small Zenodo: /records/<id> JSON and /files/<name>, with Range support and injectable faults."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.checksums: dict[str, str] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: dict[str, int] = {}  # name -> bytes sent before dropping the connection (once)
        self.corrupt: set[str] = set()

    def add(self, name: str, data: bytes) -> None:
        self.files[name] = data
        self.checksums[name] = hashlib.md5(data).hexdigest()

    def handler(self):
        zenodo = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                zenodo.requests.append((self.path, self.headers.get("Range")))
                if self.path.startswith("/records/"):
                    body = json.dumps({"files": zenodo.entries(self.server.server_address[1])}).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                name = self.path.rsplit("/", 1)[-1]
                data = zenodo.files[name]
                if name in zenodo.corrupt:
                    data = data[:-10] + b"X" * 10
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                cut = zenodo.cut_after.pop(name, None)
                self.wfile.write(data[start : start + cut] if cut else data[start:])

        return Handler

    def entries(self, port: int) -> list[dict]:
        return [
            {
                "key": name,
                "size": len(data),
                "checksum": f"md5:{self.checksums[name]}",
                "links": {"self": f"http://127.0.0.1:{port}/files/{name}"},
            }
            for name, data in self.files.items()
        ]


@pytest.fixture
def zenodo():
    state = Zenodo()
    server = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.api = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def dev_archive(machine: str, top: str = "dev_data/") -> bytes:
    return make_zip(
        {
            f"{top}{machine}/train/section_00_source_train_normal_0000_a.wav": wav_bytes(),
            f"{top}{machine}/source_test/section_00_source_test_anomaly_0000.wav": wav_bytes(800),
        }
    )


def test_download_unpacks_and_rerun_makes_no_request(zenodo, tmp_path):
    zenodo.add(archive_name("dev", "fan"), dev_archive("fan"))
    zenodo.add(archive_name("dev", "valve"), dev_archive("valve", top=""))  # top-level <machine>/ is normalised
    ready = download("dev", tmp_path, ["fan", "valve"], api_url=zenodo.api, progress=False)
    assert ready == [tmp_path / "dev_data" / "fan", tmp_path / "dev_data" / "valve"]
    for machine in ("fan", "valve"):
        assert (tmp_path / f"dev_data/{machine}/train/section_00_source_train_normal_0000_a.wav").exists()
        assert (tmp_path / f"dev_data/{machine}/.complete-dev").exists()
    assert not list((tmp_path / ".downloads").iterdir()), "archives are removed after unpacking"
    zenodo.requests.clear()
    download("dev", tmp_path, ["fan", "valve"], api_url=zenodo.api, progress=False)
    assert zenodo.requests == []


def test_interrupted_download_resumes_with_a_range_request(zenodo, tmp_path):
    name = archive_name("dev", "pump")
    zenodo.add(name, dev_archive("pump"))
    zenodo.cut_after[name] = 300
    download("dev", tmp_path, ["pump"], api_url=zenodo.api, progress=False, retries=2)
    ranges = [r for path, r in zenodo.requests if path.endswith(name)]
    assert ranges[0] is None and ranges[1] == "bytes=300-"
    assert (tmp_path / "dev_data/pump/source_test/section_00_source_test_anomaly_0000.wav").exists()


def test_bad_checksum_leaves_nothing_behind(zenodo, tmp_path):
    name = archive_name("dev", "slider")
    zenodo.add(name, dev_archive("slider"))
    zenodo.corrupt.add(name)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download("dev", tmp_path, ["slider"], api_url=zenodo.api, progress=False)
    assert not (tmp_path / "dev_data" / "slider").exists()
    assert not list((tmp_path / ".downloads").glob("*.part")) and not list((tmp_path / ".downloads").glob("*.zip"))


def test_unsafe_zip_member_is_refused(zenodo, tmp_path):
    name = archive_name("dev", "gearbox")
    zenodo.add(name, make_zip({"../evil.wav": b"x", "dev_data/gearbox/train/a.wav": wav_bytes()}))
    with pytest.raises(DownloadError, match="unsafe path"):
        download("dev", tmp_path, ["gearbox"], api_url=zenodo.api, progress=False)
    assert not (tmp_path.parent / "evil.wav").exists() and not (tmp_path / "dev_data" / "gearbox").exists()


def test_additional_and_eval_merge_into_eval_data(zenodo, tmp_path):
    train = make_zip({"eval_data/ToyCar/train/section_03_source_train_normal_0000_a.wav": wav_bytes()})
    test = make_zip({"eval_data/ToyCar/source_test/section_03_source_test_0000.wav": wav_bytes()})
    zenodo.add(archive_name("additional", "ToyCar"), train)
    zenodo.add(archive_name("eval", "ToyCar"), test)
    download("additional", tmp_path, ["ToyCar"], api_url=zenodo.api, progress=False)
    download("eval", tmp_path, ["ToyCar"], api_url=zenodo.api, progress=False)
    folder = tmp_path / "eval_data" / "ToyCar"
    assert {p.name for p in folder.iterdir()} == {"train", "source_test", ".complete-additional", ".complete-eval"}


def test_bad_arguments_and_missing_archive(zenodo, tmp_path):
    with pytest.raises(ValueError, match="unknown kind"):
        download("test", tmp_path, api_url=zenodo.api)
    with pytest.raises(ValueError, match="unknown machine types"):
        download("dev", tmp_path, ["drill"], api_url=zenodo.api)
    with pytest.raises(DownloadError, match="not in Zenodo record"):
        download("dev", tmp_path, ["valve"], api_url=zenodo.api, progress=False)
    assert RECORDS == {"dev": 4562016, "additional": 4660992, "eval": 4884786}


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match="cannot read the Zenodo record"):
        download("dev", tmp_path, ["fan"], api_url="http://127.0.0.1:9", progress=False, timeout=5)
