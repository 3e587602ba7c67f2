"""Downloader (real HTTP server on 127.0.0.1 with Range support and mid-file drops) and safe extraction."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
import time
import warnings
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from ldp.config import ConfigError, Params, from_dict
from ldp.data.download import (
    CHECKSUMS_NAME,
    ChecksumError,
    DownloadDeadlineError,
    DownloadError,
    NotTheFileError,
    RemoteFile,
    ResumableDownloader,
    UnsafeArchiveError,
    check_content,
    copy_at_most,
    fetch,
    safe_extract,
)
from ldp.data.manifest import load_manifest
from ldp.data.sources import DataConfig, DatasetError, DpddConfig, prepare_dataset
from ldp.imageio import write_image

# The one-time "recorded sha256" warning is tested once (test_unpinned_hash_is_recorded_then_enforced).
pytestmark = pytest.mark.filterwarnings("ignore:.*no pinned sha256:UserWarning")


class _Server:
    """Serves ``files`` (path → bytes) on 127.0.0.1; honours ``Range: bytes=N-`` (416 past the end).

    Misbehaviour per path: ``drop_once`` (drop mid-file), ``truncate_once`` (path → bytes: end the first full answer
    there), ``no_length`` (no Content-Length; the end of the body is the closed connection), ``ignore_range``
    (always the whole file, 200), ``bad_range`` (answer a Range request with the whole file as 206 from byte 0),
    ``stall_once`` (path → (bytes, seconds): send that much, then go silent), ``trickle`` (path → (bytes, seconds):
    that many bytes per pause). Every pause is bounded, so the server always stops.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.types: dict[str, str] = {}
        self.drop_once: set[str] = set()
        self.truncate_once: dict[str, int] = {}
        self.no_length: set[str] = set()
        self.ignore_range: set[str] = set()
        self.bad_range: set[str] = set()
        self.stall_once: dict[str, tuple[int, float]] = {}
        self.trickle: dict[str, tuple[int, float]] = {}
        self.log: list[tuple[str, str]] = []  # (path, Range header)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                rng = self.headers.get("Range", "")
                outer.log.append((self.path, rng))
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng.startswith("bytes=") else 0
                if self.path in outer.ignore_range:
                    start = 0
                if start >= len(data) and start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                partial = bool(start) or (rng and self.path in outer.bad_range)
                if self.path in outer.bad_range:
                    start = 0
                body = data[start:]
                self.send_response(206 if partial else 200)
                self.send_header("Content-Type", outer.types.get(self.path, "application/octet-stream"))
                if self.path in outer.no_length and not partial:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(body)))
                if partial:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if self.path in outer.drop_once:
                    outer.drop_once.discard(self.path)
                    self._send_then_close(body[: len(body) // 3])
                elif not partial and self.path in outer.truncate_once:
                    self._send_then_close(body[: outer.truncate_once.pop(self.path)])
                elif self.path in outer.stall_once:
                    size, pause = outer.stall_once.pop(self.path)
                    self.wfile.write(body[:size])
                    self.wfile.flush()
                    time.sleep(pause)
                    self._send_then_close(b"")
                elif self.path in outer.trickle:
                    size, pause = outer.trickle[self.path]
                    for i in range(0, len(body), size):
                        self.wfile.write(body[i:i + size])
                        self.wfile.flush()
                        time.sleep(pause)
                else:
                    self.wfile.write(body)

            def _send_then_close(self, part: bytes):
                self.wfile.write(part)
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture()
def server():
    srv = _Server()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/data.zip"


def test_resume_after_server_drops_mid_file(server, tmp_path):
    payload = np.random.default_rng(0).bytes(3 * 1024 * 1024 + 17)
    server.files["/big.bin"] = payload
    server.drop_once.add("/big.bin")
    path = fetch(RemoteFile("big.bin", (server.url("/big.bin"),), _sha(payload)), tmp_path, progress=False)
    assert path.read_bytes() == payload
    ranges = [r for p, r in server.log if p == "/big.bin"]
    assert ranges[0] == ""  # first request: whole file
    assert len(ranges) == 2 and ranges[1].startswith("bytes=")
    resumed_at = int(ranges[1].split("=")[1].rstrip("-"))
    assert 0 < resumed_at < len(payload)  # continued the .part, did not start over
    assert not (tmp_path / "big.bin.part").exists()


def test_resume_keeps_part_file_across_calls(server, tmp_path):
    payload = np.random.default_rng(1).bytes(600_000)
    server.files["/f.bin"] = payload
    part = tmp_path / "f.bin.part"
    part.write_bytes(payload[:250_000])  # an earlier, interrupted run
    dl = ResumableDownloader(part, progress=False)
    dl.download(server.url("/f.bin"))
    assert part.read_bytes() == payload
    assert dl.requests == [250_000]


def test_checksum_mismatch_is_a_clear_error(server, tmp_path):
    server.files["/a.zip"] = b"not what you expected" * 100
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as err:
        fetch(RemoteFile("a.zip", (server.url("/a.zip"),), wrong), tmp_path, progress=False)
    msg = str(err.value)
    assert "a.zip" in msg and wrong in msg and _sha(server.files["/a.zip"]) in msg
    assert not (tmp_path / "a.zip").exists()


def test_unpinned_hash_is_recorded_then_enforced(server, tmp_path):
    server.files["/u.bin"] = b"abc" * 1000
    remote = RemoteFile("u.bin", (server.url("/u.bin"),))
    with pytest.warns(UserWarning, match="recorded sha256"):
        path = fetch(remote, tmp_path, progress=False)
    recorded = json.loads((tmp_path / CHECKSUMS_NAME).read_text())
    assert recorded == {"u.bin": _sha(b"abc" * 1000)}
    path.write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match="u.bin"):
        fetch(remote, tmp_path, progress=False)


def test_offline_is_one_quick_error_naming_data_root(tmp_path):
    cfg = DataConfig(source="dpdd", download_dir=str(tmp_path / "dl"),
                     dpdd=DpddConfig(urls=(_closed_port_url(),), test_urls=(_closed_port_url(),)))
    t0 = time.monotonic()
    with pytest.raises(DatasetError) as err:
        prepare_dataset(cfg, tmp_path / "out")
    assert time.monotonic() - t0 < 10
    assert "data.root" in str(err.value) and "dd_dp_dataset_canon.zip" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_html_page_instead_of_file_is_refused(server, tmp_path):
    server.files["/page"] = b"<html>sign in to download</html>"
    server.types["/page"] = "text/html; charset=utf-8"
    with pytest.raises(DownloadError, match="web page"):
        fetch(RemoteFile("x.zip", (server.url("/page"),)), tmp_path, progress=False)
    assert not (tmp_path / "x.zip").exists()


def _zip_payload(size: int = 200_000, seed: int = 5) -> bytes:
    """A valid zip of incompressible bytes (so truncations land inside the data)."""
    return _zip_bytes({"d/a.bin": np.random.default_rng(seed).bytes(size)})


def _only_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_early_end_without_content_length_is_completed_by_a_range_probe(server, tmp_path):
    payload = _zip_payload()
    server.files["/a.zip"] = payload
    server.no_length.add("/a.zip")
    server.truncate_once["/a.zip"] = 70_000
    path = fetch(RemoteFile("a.zip", (server.url("/a.zip"),)), tmp_path, progress=False)
    assert path.read_bytes() == payload
    assert [r for _, r in server.log] == ["", "bytes=70000-"]
    assert json.loads((tmp_path / CHECKSUMS_NAME).read_text()) == {"a.zip": _sha(payload)}


def test_early_end_without_length_or_ranges_is_never_recorded(server, tmp_path):
    payload = _zip_payload()
    server.files["/a.zip"] = payload
    server.no_length.add("/a.zip")
    server.ignore_range.add("/a.zip")
    server.truncate_once["/a.zip"] = 70_000
    with pytest.raises(DownloadError, match="not a complete zip archive"):
        fetch(RemoteFile("a.zip", (server.url("/a.zip"),)), tmp_path, progress=False)
    assert _only_files(tmp_path) == []  # no archive, no .part, no checksums.json
    path = fetch(RemoteFile("a.zip", (server.url("/a.zip"),)), tmp_path, progress=False)  # the retry works
    assert path.read_bytes() == payload
    assert json.loads((tmp_path / CHECKSUMS_NAME).read_text()) == {"a.zip": _sha(payload)}


@pytest.mark.parametrize("body, ctype", [
    (b"<!DOCTYPE html><html>sign in to download</html>", "Text/HTML"),
    (b"\n  <html><body>quota exceeded</body></html>", "application/octet-stream"),
    (b'{"error": "quota exceeded"}', "application/zip"),
    (b'{"error": "quota exceeded"}', "Application/JSON; charset=utf-8"),
], ids=["html-mixed-case-type", "html-as-octet-stream", "json-as-zip", "json-type"])
def test_web_page_or_json_is_refused_whatever_its_content_type(server, tmp_path, body, ctype):
    server.files["/dl"] = body
    server.types["/dl"] = ctype
    with pytest.raises(DownloadError, match="web page|JSON") as err:
        fetch(RemoteFile("x.zip", (server.url("/dl"),)), tmp_path, progress=False)
    assert "x.zip" in str(err.value)
    assert _only_files(tmp_path) == []  # nothing saved, no hash recorded
    server.files["/dl"], server.types["/dl"] = _zip_payload(), "application/octet-stream"  # delete-and-retry works
    assert fetch(RemoteFile("x.zip", (server.url("/dl"),)), tmp_path, progress=False).read_bytes() == _zip_payload()


def test_stale_part_larger_than_the_file_is_discarded(server, tmp_path):
    payload = _zip_payload(50_000)
    server.files["/a.zip"] = payload
    (tmp_path / "a.zip.part").write_bytes(payload + b"stale tail from another version")
    path = fetch(RemoteFile("a.zip", (server.url("/a.zip"),)), tmp_path, progress=False)
    assert path.read_bytes() == payload
    assert [r for _, r in server.log] == [f"bytes={len(payload) + 31}-", ""]  # 416, then from byte 0
    assert json.loads((tmp_path / CHECKSUMS_NAME).read_text()) == {"a.zip": _sha(payload)}


def test_range_answer_that_does_not_add_up_is_refused(server, tmp_path):
    payload = _zip_payload(50_000)
    server.files["/a.zip"] = payload
    server.bad_range.add("/a.zip")
    part = tmp_path / "a.zip.part"
    part.write_bytes(payload[:10_000])
    with pytest.raises(DownloadError, match="Content-Range"):
        ResumableDownloader(part, progress=False).download(server.url("/a.zip"))
    assert part.read_bytes() == payload[:10_000]  # nothing appended at the wrong place


def test_stall_below_the_old_read_size_resumes_at_the_byte_reached(server, tmp_path):
    payload = np.random.default_rng(6).bytes(900_000)
    server.files["/s.bin"] = payload
    server.stall_once["/s.bin"] = (512 * 1024, 1.0)
    t0 = time.monotonic()
    path = fetch(RemoteFile("s.bin", (server.url("/s.bin"),), _sha(payload)), tmp_path, progress=False,
                 stall_s=0.3)
    assert time.monotonic() - t0 < 3
    assert path.read_bytes() == payload
    assert [r for _, r in server.log] == ["", f"bytes={512 * 1024}-"]
    assert _only_files(tmp_path) == ["s.bin"]


def test_slow_server_hits_the_deadline_keeps_the_part_and_a_later_run_resumes(server, tmp_path):
    payload = np.random.default_rng(7).bytes(60_000)
    server.files["/slow.bin"] = payload
    server.trickle["/slow.bin"] = (100, 0.02)  # about 5 kB/s: never stalls, never finishes in time
    remote = RemoteFile("slow.bin", (server.url("/slow.bin"),), _sha(payload))
    t0 = time.monotonic()
    with pytest.raises(DownloadDeadlineError) as err:
        fetch(remote, tmp_path, progress=False, deadline_s=0.5)
    assert time.monotonic() - t0 < 2
    part = tmp_path / "slow.bin.part"
    kept = part.stat().st_size
    msg = str(err.value)
    assert 0 < kept < len(payload)
    assert "download_deadline_s" in msg and f"{kept} of {len(payload)} bytes are kept in {part}" in msg
    assert f"resume from byte {kept}" in msg
    assert _only_files(tmp_path) == ["slow.bin.part"]  # no temp files besides the resumable part
    del server.trickle["/slow.bin"]
    assert fetch(remote, tmp_path, progress=False).read_bytes() == payload
    assert server.log[-1] == ("/slow.bin", f"bytes={kept}-")
    assert _only_files(tmp_path) == ["slow.bin"]


def test_data_stage_passes_its_deadline_and_does_not_fall_back(server, tmp_path):
    server.files["/dd.zip"] = _zip_payload(60_000)
    server.trickle["/dd.zip"] = (100, 0.02)
    cfg = from_dict(DataConfig, {"source": "dpdd", "download_dir": str(tmp_path / "dl"), "download_deadline_s": 0.4,
                                 "dpdd": {"urls": [server.url("/dd.zip")], "test_urls": [server.url("/other.zip")]}},
                    "params.yaml:data")
    with pytest.raises(DownloadDeadlineError, match="dd_dp_dataset_canon.zip"):
        prepare_dataset(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert ("/other.zip", "") not in server.log  # a deadline is not a reason to switch to the test-only source
    assert _only_files(tmp_path / "dl") == ["dd_dp_dataset_canon.zip.part"]


@pytest.mark.parametrize("key", ["download_deadline_s", "download_stall_s", "extract_max_bytes", "extract_max_ratio"])
def test_download_and_extract_limits_must_be_positive(key, tmp_path):
    from ldp.data.sources import load_data_config

    with pytest.raises(ConfigError, match=f"^p.yaml:data.{key}: must be positive"):
        load_data_config(Params({"data": {key: 0}}, "p.yaml"))
    with pytest.raises(ConfigError, match=f"data.{key}: must be positive"):
        prepare_dataset(from_dict(DataConfig, {key: 0}, "params.yaml:data"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_file_put_by_hand_is_checked_before_its_hash_is_recorded(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"<html>download page</html>")
    with pytest.raises(NotTheFileError, match="a.zip.*web page"):
        fetch(RemoteFile("a.zip", ("http://127.0.0.1:9/unused",)), tmp_path, progress=False)
    assert not (tmp_path / CHECKSUMS_NAME).exists()


def _tar_payload(tmp_path: Path, mode: str = "w") -> Path:
    path = tmp_path / ("ok.tar" if mode == "w" else "ok.tar.gz")
    data = np.random.default_rng(8).bytes(30_000)
    with tarfile.open(path, mode) as tf:
        info = tarfile.TarInfo("d/a.bin")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_truncated_tar_is_not_a_complete_archive(tmp_path, mode):
    good = _tar_payload(tmp_path, mode)
    check_content(good, good.name)
    data = good.read_bytes()
    for cut in (len(data) // 2, 512 + 30_000 + 100 if mode == "w" else len(data) - 4):
        bad = tmp_path / f"cut{cut}{good.name}"
        bad.write_bytes(data[:cut])
        with pytest.raises(NotTheFileError, match="not a complete tar archive"):
            check_content(bad, good.name)


def test_truncated_zip_is_not_a_complete_archive(tmp_path):
    data = _zip_payload()
    (tmp_path / "a.zip").write_bytes(data[: len(data) - 30])
    with pytest.raises(NotTheFileError, match="not a complete zip archive"):
        check_content(tmp_path / "a.zip", "a.zip")


# ------------------------------------------------------------------------------------------- extraction

def _zip_bytes(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _tar_with(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tf:
        ok = tarfile.TarInfo("ok.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        tf.addfile(member, io.BytesIO(data) if data else None)
    return path


def _assert_nothing_written(tmp_path: Path, dest: Path):
    assert not dest.exists()
    assert not [p for p in tmp_path.iterdir() if ".extract-" in p.name]
    assert not (tmp_path.parent / "evil.txt").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/tmp/evil.txt"])
def test_zip_path_traversal_refused(tmp_path, name):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip_bytes({"good/file.txt": b"x", name: b"evil"}))
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        safe_extract(archive, dest, progress=False)
    _assert_nothing_written(tmp_path, dest)


def test_zip_symlink_refused(tmp_path):
    archive = tmp_path / "link.zip"
    archive.write_bytes(_zip_bytes({"a.txt": b"x"}, symlink="link"))
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "device", "dotdot"])
def test_tar_unsafe_entries_refused(tmp_path, kind):
    member = tarfile.TarInfo("entry")
    data = b""
    if kind == "symlink":
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        member.type, member.linkname = tarfile.LNKTYPE, "ok.txt"
    elif kind == "device":
        member.type, member.devmajor, member.devminor = tarfile.CHRTYPE, 1, 3
    else:
        member.name, data = "../evil.txt", b"evil"
        member.size = len(data)
    archive = _tar_with(tmp_path, member, data)
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        safe_extract(archive, tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path, tmp_path / "out")


def test_safe_extract_roundtrip_and_existing_dest(tmp_path):
    archive = tmp_path / "ok.zip"
    archive.write_bytes(_zip_bytes({"d/a.txt": b"hello", "d/e/b.txt": b"world", "d/empty/": b""}))
    out = safe_extract(archive, tmp_path / "out", progress=False)
    assert (out / "d/a.txt").read_bytes() == b"hello" and (out / "d/e/b.txt").read_bytes() == b"world"
    with pytest.raises(FileExistsError):
        safe_extract(archive, tmp_path / "out", progress=False)
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DownloadError, match="junk.zip"):
        safe_extract(tmp_path / "junk.zip", tmp_path / "out2", progress=False)


# ------------------------------------------------------------------------------ end to end over HTTP

def _dpdd_zip(tmp_path: Path) -> bytes:
    rng = np.random.default_rng(3)
    src = tmp_path / "zipsrc"
    files = {}
    for split, scenes in (("train", ["1P0A0001", "1P0A0005"]), ("test", ["1P0A0917", "1P0A1046"])):
        for s in scenes:
            n = int(s[4:])
            for rel in (f"{split}_l/source/{s}_L.png", f"{split}_r/source/{s}_R.png", f"{split}_c/source/{s}.png",
                        f"{split}_c/target/1P0A{n + 1:04d}.png"):  # official DPDD: target has its own number
                write_image(src / rel, rng.integers(0, 65536, (12, 20, 3), dtype=np.uint16))
                files[f"dd_dp_dataset_canon/{rel}"] = (src / rel).read_bytes()
    return _zip_bytes(files)


def test_prepare_dpdd_from_http_archive(server, tmp_path):
    server.files["/dd_dp_dataset_canon.zip"] = _dpdd_zip(tmp_path)
    server.drop_once.add("/dd_dp_dataset_canon.zip")
    cfg = DataConfig(source="dpdd", download_dir=str(tmp_path / "dl"),
                     dpdd=DpddConfig(urls=(server.url("/dd_dp_dataset_canon.zip"),),
                                     sha256=_sha(server.files["/dd_dp_dataset_canon.zip"])))
    root = prepare_dataset(cfg, tmp_path / "data" / "dpdd")
    table = load_manifest(root)
    assert sorted(table["split"]) == ["test", "test", "train", "train"]
    test = table[table["split"] == "test"].set_index("scene")
    assert test.loc["1P0A0917", "category"] == "outdoor" and test.loc["1P0A1046", "category"] == "indoor"
    assert test.loc["1P0A0917", "target"] == "dd_dp_dataset_canon/test_c/target/1P0A0917.png"
    assert (root / test.loc["1P0A0917", "left"]).is_file()
    assert set(table["bit_depth"]) == {16}
    assert prepare_dataset(cfg, tmp_path / "data" / "dpdd") == root  # second call reuses it
    assert not list((tmp_path / "data").glob(".dpdd.build-*"))


# ------------------------------------------------------------------------------ extraction: clashes and size

@pytest.mark.parametrize("entries", [
    {".": b"x"},
    {"d/": b"", "d": b"x"},
    {"d": b"x", "d/f.txt": b"y"},
    {"a/b.txt": b"1", "a/./b.txt": b"2"},
], ids=["dot-file", "folder-then-file", "file-then-folder", "stored-twice"])
def test_clashing_or_root_entries_refused_with_one_error(tmp_path, entries):
    archive = tmp_path / "clash.zip"
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names; that is the point
        for name, data in entries.items():
            zf.writestr(name, data)
    archive.write_bytes(buf.getvalue())
    with pytest.raises(UnsafeArchiveError, match="clash.zip.*refusing to extract"):
        safe_extract(archive, tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path, tmp_path / "out")


def test_tar_dot_folder_entry_is_fine(tmp_path):
    archive = tmp_path / "dot.tar"
    with tarfile.open(archive, "w") as tf:
        root = tarfile.TarInfo(".")
        root.type = tarfile.DIRTYPE
        tf.addfile(root)
        info = tarfile.TarInfo("./a.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"ok"))
    assert (safe_extract(archive, tmp_path / "out", progress=False) / "a.txt").read_bytes() == b"ok"


def test_compression_ratio_limit_refuses_before_writing(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(16 << 20))  # 16 MiB of zeros in about 16 KB
    with pytest.raises(UnsafeArchiveError, match="compression ratio of [0-9]+.*extract_max_ratio"):
        safe_extract(archive, tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path, tmp_path / "out")
    out = safe_extract(archive, tmp_path / "out", progress=False, max_ratio=5000)  # the override lets it through
    assert (out / "zeros.bin").stat().st_size == 16 << 20


def test_total_size_limit_from_params_refuses_before_writing(tmp_path):
    archive = tmp_path / "dpdd.zip"
    archive.write_bytes(_zip_bytes({"d/a.bin": np.random.default_rng(9).bytes(300_000)}))
    cfg = from_dict(DataConfig, {"source": "dpdd", "root": str(archive), "extract_max_bytes": 100_000},
                    "params.yaml:data")
    with pytest.raises(UnsafeArchiveError, match="300000 bytes.*limit of 100000.*extract_max_bytes"):
        prepare_dataset(cfg, tmp_path / "data")
    assert _only_files(tmp_path) == ["dpdd.zip"]


def test_lying_size_header_is_refused_while_writing(tmp_path):
    data = np.random.default_rng(10).bytes(200_000)
    raw = bytearray(_zip_bytes({"a.bin": data}))  # stored: the sizes are plain fields in both headers
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = raw.index(signature) + size_at
        raw[at:at + 4] = (1000).to_bytes(4, "little")  # uncompressed size: 1000, a lie
    archive = tmp_path / "liar.zip"
    archive.write_bytes(bytes(raw))
    with pytest.raises(DownloadError, match="liar.zip.*a.bin"):
        safe_extract(archive, tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path, tmp_path / "out")
    sink = io.BytesIO()
    with pytest.raises(UnsafeArchiveError, match="more than the 1000 bytes its header declares"):
        copy_at_most(io.BytesIO(data), sink, 1000, archive, "a.bin")
    assert sink.tell() == 0  # the block that went past the limit was not written
