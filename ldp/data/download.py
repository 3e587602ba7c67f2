"""Dataset downloads: resumable HTTP, sha256 checks through pooch, and safe archive extraction.

* :func:`fetch` retrieves one :class:`RemoteFile` into a cache folder. pooch does the bookkeeping and the hash
  check; the transfer itself is :class:`ResumableDownloader`, which keeps a ``<name>.part`` file and continues
  it with an HTTP ``Range`` request when the server drops the connection mid-file.
* A file without a pinned sha256 gets its hash recorded in ``checksums.json`` beside it on first download
  (with a one-time warning); later runs check against the recorded value.
* :func:`safe_extract` unpacks zip/tar archives into a temporary folder and renames it into place, after
  refusing absolute paths, ``..`` components, links and device entries.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pooch
from tqdm import tqdm

from ldp.fsutil import atomic_write_json, sha256_file, temp_dir_beside

CHECKSUMS_NAME = "checksums.json"
_CHUNK = 1 << 20
_warned_unpinned: set[str] = set()


class DownloadError(RuntimeError):
    """A file could not be retrieved; the message names the file and how to supply it by hand."""


class ChecksumError(DownloadError):
    """A file's sha256 differs from the pinned or recorded one."""


class UnsafeArchiveError(DownloadError):
    """An archive holds an entry that could land outside the target folder (or is a link/device)."""


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: its cache name, mirrors tried in order, and sha256 when known."""

    name: str
    urls: tuple[str, ...]
    sha256: str = ""


class ResumableDownloader:
    """A pooch downloader (``downloader(url, output_file, pooch)``) that resumes a ``.part`` file.

    A connection failure before any byte of this call arrived raises at once (an offline machine gets one
    clear error, not a retry loop); a connection dropped mid-file is continued from the bytes already on disk
    with an HTTP Range request, up to ``max_resumes`` times.
    """

    def __init__(self, part_path: str | Path, max_resumes: int = 20, timeout: float = 30.0,
                 progress: bool = True, allow_html: bool = False):
        self.part_path = Path(part_path)
        self.max_resumes = max_resumes
        self.timeout = timeout
        self.progress = progress
        self.allow_html = allow_html
        self.requests: list[int] = []  # start offset of each HTTP request (for logs and tests)
        self.last_sha256 = ""
        self._bar = None
        self._got_bytes = False

    def __call__(self, url: str, output_file, pooch_instance=None, check_only: bool = False):
        if check_only:
            return self._reachable(url)
        self.download(url)
        self.last_sha256 = sha256_file(self.part_path)
        os.replace(self.part_path, output_file)
        return None

    def _reachable(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=self.timeout):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def download(self, url: str) -> Path:
        """Download ``url`` into :attr:`part_path`, resuming whatever is already there."""
        part = self.part_path
        part.parent.mkdir(parents=True, exist_ok=True)
        resumes = 0
        self._got_bytes = False
        try:
            while True:
                offset = part.stat().st_size if part.exists() else 0
                try:
                    total = self._request(url, offset)
                    if total is None or part.stat().st_size >= total:
                        return part
                    problem = f"ended early at {part.stat().st_size} of {total} bytes"
                except _Dropped as exc:
                    problem = f"dropped the connection ({exc.__cause__})"
                resumes += 1
                if resumes > self.max_resumes:
                    raise DownloadError(f"{part.name}: {url} {problem} {resumes} times; giving up "
                                        f"({part.stat().st_size} bytes kept in {part}; a later run resumes)")
                time.sleep(min(0.1 * resumes, 2.0))
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _request(self, url: str, offset: int) -> int | None:
        """One HTTP request from ``offset``; returns the expected total size (None if unknown)."""
        req = urllib.request.Request(url, headers={"User-Agent": "ldp-bench/0.1"})
        if offset:
            req.add_header("Range", f"bytes={offset}-")
        self.requests.append(offset)
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # nothing left to send: the .part is already complete
                return offset
            raise DownloadError(f"{self.part_path.name}: HTTP {exc.code} {exc.reason} from {url}") from exc
        except (urllib.error.URLError, OSError) as exc:
            if self._got_bytes:  # it worked a moment ago: a transient drop, resume
                raise _Dropped() from exc
            raise DownloadError(f"{self.part_path.name}: cannot reach {url} ({_reason(exc)})") from exc
        with resp:
            ctype = resp.headers.get("Content-Type", "")
            if ctype.startswith("text/html") and not self.allow_html:
                raise DownloadError(
                    f"{self.part_path.name}: {url} answered with a web page, not the file (the host probably "
                    "needs a browser)")
            if resp.status == 206:
                total = _total_from_content_range(resp.headers.get("Content-Range", ""))
                mode = "ab"
            else:  # 200: the server ignored the Range header, start again from byte 0
                offset = 0
                length = resp.headers.get("Content-Length")
                total = int(length) if length else None
                mode = "wb"
            if self.progress and self._bar is None:
                self._bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                 desc=self.part_path.name.removesuffix(".part"), leave=False)
            elif self._bar is not None:
                self._bar.n = offset
                self._bar.refresh()
            try:
                with open(self.part_path, mode) as fh:
                    while True:
                        block = resp.read(_CHUNK)
                        if not block:
                            break
                        fh.write(block)
                        self._got_bytes = True
                        if self._bar is not None:
                            self._bar.update(len(block))
            except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
                raise _Dropped() from exc
        return total


class _Dropped(Exception):
    """The connection broke mid-transfer (internal; turned into a resume)."""


def _total_from_content_range(value: str) -> int | None:
    # "bytes 100-199/200"
    try:
        total = value.rsplit("/", 1)[1]
        return None if total == "*" else int(total)
    except (IndexError, ValueError):
        return None


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", exc))


def _load_checksums(folder: Path) -> dict[str, str]:
    path = folder / CHECKSUMS_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DownloadError(f"{path}: not valid JSON ({exc}); fix or delete it") from exc
    return {str(k): str(v) for k, v in data.items()}


def _record_checksum(folder: Path, name: str, digest: str) -> None:
    data = _load_checksums(folder)
    data[name] = digest
    atomic_write_json(folder / CHECKSUMS_NAME, data, sort_keys=True)


def _mismatch(path: Path, expected: str, actual: str, where: str) -> ChecksumError:
    return ChecksumError(f"{path}: sha256 mismatch: expected {expected} ({where}), got {actual}. "
                         "The file is corrupt or the remote file changed; delete it and download again.")


def fetch(remote: RemoteFile, folder: str | Path, progress: bool = True, supply_hint: str = "") -> Path:
    """Return the local path of ``remote`` inside ``folder``, downloading (resumably) if needed.

    The sha256 is the pinned one, else the one recorded in ``folder/checksums.json``; without either the hash
    of the first download is recorded there (one warning). A mismatch raises :class:`ChecksumError`; when all
    mirrors fail, one :class:`DownloadError` says how to supply the file by hand (``supply_hint``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / remote.name
    recorded = _load_checksums(folder).get(remote.name, "")
    expected = remote.sha256.lower() or recorded
    where = "pinned in ldp-bench" if remote.sha256 else f"recorded in {folder / CHECKSUMS_NAME}"

    if target.is_file():
        actual = sha256_file(target)
        if expected and actual != expected:
            raise _mismatch(target, expected, actual, where)
        if not expected:
            _record_unpinned(folder, remote.name, actual)
        return target

    errors: list[str] = []
    for url in remote.urls:
        downloader = ResumableDownloader(folder / f"{remote.name}.part", progress=progress)
        try:
            pooch.retrieve(url, known_hash=f"sha256:{expected}" if expected else None, fname=remote.name,
                           path=folder, downloader=downloader, progressbar=False)
        except ValueError as exc:  # pooch's hash mismatch; it already removed the bad file
            raise _mismatch(target, expected, downloader.last_sha256 or "unknown", where) from exc
        except DownloadError as exc:
            errors.append(str(exc))
            continue
        if not expected:
            _record_unpinned(folder, remote.name, sha256_file(target))
        return target
    hint = supply_hint or f"put the file at {target}"
    raise DownloadError(
        f"{remote.name}: could not download from any source (is this machine offline?): "
        + "; ".join(errors) + f". To supply the data by hand: {hint}.")


def _record_unpinned(folder: Path, name: str, digest: str) -> None:
    recorded = _load_checksums(folder).get(name)
    if recorded == digest:
        return
    _record_checksum(folder, name, digest)
    if name not in _warned_unpinned:
        _warned_unpinned.add(name)
        warnings.warn(f"{name}: no pinned sha256 in ldp-bench; recorded sha256 {digest} in "
                      f"{folder / CHECKSUMS_NAME} on first download; later runs are checked against it",
                      stacklevel=3)


# ----------------------------------------------------------------------------------------------- extraction

def _check_member_name(archive: Path, name: str) -> PurePosixPath:
    clean = name.replace("\\", "/")
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: entry '{name}' has an absolute path; refusing to extract")
    parts = PurePosixPath(clean).parts
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: entry '{name}' contains '..'; refusing to extract")
    return PurePosixPath(*[p for p in parts if p not in ("", ".")]) if parts else PurePosixPath()


def _plan_zip(archive: Path, zf: zipfile.ZipFile) -> list[tuple[PurePosixPath, object, bool]]:
    plan = []
    for info in zf.infolist():
        rel = _check_member_name(archive, info.filename)
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            what = "a symbolic link" if kind == stat.S_IFLNK else "not a regular file"
            raise UnsafeArchiveError(f"{archive}: entry '{info.filename}' is {what}; refusing to extract")
        plan.append((rel, info, info.is_dir()))
    return plan


def _plan_tar(archive: Path, tf: tarfile.TarFile) -> list[tuple[PurePosixPath, object, bool]]:
    plan = []
    for member in tf.getmembers():
        rel = _check_member_name(archive, member.name)
        if member.issym() or member.islnk():
            raise UnsafeArchiveError(f"{archive}: entry '{member.name}' is a link; refusing to extract")
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"{archive}: entry '{member.name}' is a device/fifo/special entry; "
                                     "refusing to extract")
        plan.append((rel, member, member.isdir()))
    return plan


def safe_extract(archive: str | Path, dest: str | Path, progress: bool = True) -> Path:
    """Extract a zip or tar archive into ``dest`` (which must not exist yet), atomically.

    Every entry is checked before anything is written. Files go to a temporary folder beside ``dest``
    that is renamed to ``dest`` only when complete.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists; remove it before extracting {archive.name}")
    if not archive.is_file():
        raise DownloadError(f"{archive}: archive not found")
    if zipfile.is_zipfile(archive):
        opener, planner = zipfile.ZipFile, _plan_zip
    elif tarfile.is_tarfile(archive):
        opener, planner = tarfile.open, _plan_tar
    else:
        raise DownloadError(f"{archive}: not a zip or tar archive (truncated download?)")
    tmp = temp_dir_beside(dest, "extract")
    try:
        with opener(archive) as handle:
            plan = planner(archive, handle)
            root = tmp.resolve()
            for rel, member, is_dir in tqdm(plan, desc=f"extract {archive.name}", disable=not progress,
                                            leave=False):
                out = (tmp / rel).resolve() if rel.parts else root
                if out != root and root not in out.parents:
                    raise UnsafeArchiveError(f"{archive}: entry '{rel}' would land outside {dest}")
                if is_dir:
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                is_zip = isinstance(handle, zipfile.ZipFile)
                with (handle.open(member) if is_zip else handle.extractfile(member)) as src, \
                        open(out, "wb") as fh:
                    shutil.copyfileobj(src, fh, _CHUNK)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
