"""Downloader (real HTTP server on 127.0.0.1 with Range support and mid-file drops) and safe extraction."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from ldp.data.download import (
    CHECKSUMS_NAME,
    ChecksumError,
    DownloadError,
    RemoteFile,
    ResumableDownloader,
    UnsafeArchiveError,
    fetch,
    safe_extract,
)
from ldp.data.manifest import load_manifest
from ldp.data.sources import DataConfig, DatasetError, DpddConfig, prepare_dataset
from ldp.imageio import write_image


class _Server:
    """Serves ``files`` (path → bytes); honours ``Range: bytes=N-``; drops paths in ``drop_once`` mid-file."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_once: set[str] = set()
        self.types: dict[str, str] = {}
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
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", outer.types.get(self.path, "application/octet-stream"))
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if self.path in outer.drop_once:
                    outer.drop_once.discard(self.path)
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # drop mid-file
                    self.close_connection = True
                    return
                self.wfile.write(body)

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
