"""Dataset downloads: resumable HTTP, sha256 checks, content checks and safe archive extraction.

* :func:`fetch` retrieves one :class:`RemoteFile` into a cache folder through :class:`ResumableDownloader`, which
  keeps a ``<name>.part`` file and continues it with HTTP ``Range`` requests (within a run and across runs).
  Reads are small and have a read timeout, so a stall loses nothing that arrived; an overall deadline bounds
  the download, and its error says how many bytes are kept.
* The ``.part`` becomes the file only when it is complete by every sign the server gave (declared length,
  ``Content-Range`` totals, a range probe when nothing was declared) and passes :func:`check_content`: not a
  web page or JSON body (whatever the content type said), and a readable zip or tar when its name says so.
* A file without a pinned sha256 gets its hash recorded in ``checksums.json`` beside it on first download
  (with a one-time warning), after those checks; later runs check against the recorded value.
* :func:`safe_extract` unpacks zip/tar archives into a temporary folder and renames it into place, after
  refusing absolute paths, ``..`` components, links, device entries, entries that clash (a file and a folder of
  one name) and archives that would unpack beyond a size or compression-ratio limit (checked from the headers
  before writing, and again while writing).
"""

from __future__ import annotations

import gzip
import http.client
import json
import lzma
import os
import re
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ldp.fsutil import atomic_write_json, sha256_file, temp_dir_beside

CHECKSUMS_NAME = "checksums.json"
READ_SIZE = 64 * 1024  # small reads: a read that times out loses nothing already received
COPY_SIZE = 1 << 20
DEADLINE_S = 6 * 3600.0  # params.yaml:data.download_deadline_s
STALL_S = 60.0  # params.yaml:data.download_stall_s
MAX_IDLE_ATTEMPTS = 20  # attempts in a row that add no byte before giving up
MAX_UNPACKED_BYTES = 200 * 2**30  # params.yaml:data.extract_max_bytes
MAX_RATIO = 100.0  # params.yaml:data.extract_max_ratio (unpacked bytes per archive byte)
_SNIFF_BYTES = 512
_warned_unpinned: set[str] = set()


class DownloadError(RuntimeError):
    """A file could not be retrieved; the message names the file and how to supply it by hand."""


class ChecksumError(DownloadError):
    """A file's sha256 differs from the pinned or recorded one."""


class DownloadDeadlineError(DownloadError):
    """The overall download deadline passed; the partial data is kept for a later run."""


class NotTheFileError(DownloadError):
    """The server sent something other than the file: a web page, JSON, or a broken or short archive."""


class UnsafeArchiveError(DownloadError):
    """An archive holds an entry that could land outside the target folder, clashes, or unpacks too large."""


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: its cache name, mirrors tried in order, and sha256 when known."""

    name: str
    urls: tuple[str, ...]
    sha256: str = ""


# ---------------------------------------------------------------------------------------------- content checks

_WEB_PAGE = re.compile(rb"\s*<(!doctype|html|head|body|\?xml|!--|script|meta|title)", re.IGNORECASE)
_JSON = re.compile(rb"\s*(\{\s*[\"}]|\[\s*[\[{\"\]])")


def web_body_kind(head: bytes) -> str | None:
    """``"a web page"`` or ``"a JSON document"`` when ``head`` (a body's first bytes) starts like one, else None."""
    head = head.removeprefix(b"\xef\xbb\xbf")
    if _WEB_PAGE.match(head):
        return "a web page"
    if _JSON.match(head):
        return "a JSON document"
    return None


def archive_kind(name: str) -> str | None:
    """``"zip"`` or ``"tar"`` when the file name says so, else None."""
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return "tar"
    return None


def _zip_problem(path: Path) -> str | None:
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
            infos = zf.infolist()
            for info in infos:
                fh.seek(info.header_offset)
                if fh.read(4) != b"PK\x03\x04" or info.header_offset + info.compress_size > size:
                    return f"entry '{info.filename}' lies outside the file"
    except (zipfile.BadZipFile, OSError) as exc:
        return f"its central directory cannot be read: {exc}"
    return None if infos else "it has no entries"


def _tar_problem(path: Path) -> str | None:
    try:
        with tarfile.open(path) as tf:
            end = 0
            for member in tf:
                end = member.offset_data + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            if end == 0:
                return "it has no entries"
            stream = tf.fileobj
            stream.seek(end)
            if stream.read(tarfile.BLOCKSIZE) != tarfile.NUL * tarfile.BLOCKSIZE:
                return "it ends before the end-of-archive marker"
            while stream.read(COPY_SIZE):  # compressed: reach the stream's end, where its check sum is tested
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        return f"its headers cannot be read: {exc}"
    return None


def check_content(path: str | Path, name: str) -> None:
    """Refuse ``path`` (the file called ``name``) when it is a web page or JSON, or is not the archive it claims.

    A zip must have a readable central directory whose entries lie inside the file; a tar must have readable
    headers up to its end-of-archive marker (a compressed tar must also decompress to its end).
    """
    path = Path(path)
    with open(path, "rb") as fh:
        what = web_body_kind(fh.read(_SNIFF_BYTES))
    if what:
        raise NotTheFileError(f"{name}: the server sent {what}, not the file (the host probably needs a browser)")
    kind = archive_kind(name)
    problem = {"zip": _zip_problem, "tar": _tar_problem}[kind](path) if kind else None
    if problem:
        raise NotTheFileError(f"{name}: not a complete {kind} archive ({problem})")


# ------------------------------------------------------------------------------------------------- transfer

class _Outcome(Enum):
    COMPLETE = "complete"  # every available sign says the .part is the whole file
    INCOMPLETE = "incomplete"  # more bytes are due
    UNDECLARED = "undeclared"  # the body ended, but the server declared no length: probe with a Range request


class _Dropped(Exception):
    """The connection broke or stalled mid-transfer (internal; turned into a resume)."""


class _PastDeadline(Exception):
    """The deadline passed mid-transfer (internal; reported once the ``.part`` is closed)."""


def _content_range(value: str) -> tuple[int | None, int | None, int | None]:
    """``"bytes 100-199/200"`` → ``(100, 199, 200)``; ``"bytes */200"`` → ``(None, None, 200)``; unknown: None."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None, None
    start, end, total = m.groups()
    return (int(start) if start else None, int(end) if end else None, int(total) if total and total != "*" else None)


class ResumableDownloader:
    """Download one URL into ``part_path``, continuing whatever is already there with HTTP Range requests.

    Reads are :data:`READ_SIZE` bytes with a ``stall_s`` read timeout; a stalled or dropped connection is
    resumed from the byte on disk. A connection failure before any byte arrived raises at once (an offline
    machine gets one clear error, not a retry loop). ``max_idle`` attempts in a row that add no byte, or the
    overall ``deadline_s`` (checked between reads), end it with a :class:`DownloadError` that says how many bytes
    are kept; a later run resumes from there.
    """

    def __init__(self, part_path: str | Path, *, stall_s: float = STALL_S, deadline_s: float = DEADLINE_S,
                 max_idle: int = MAX_IDLE_ATTEMPTS, progress: bool = True):
        self.part_path = Path(part_path)
        self.stall_s = stall_s
        self.deadline_s = deadline_s
        self.max_idle = max_idle
        self.progress = progress
        self.requests: list[int] = []  # start offset of each HTTP request (for logs and tests)
        self._total: int | None = None
        self._undeclared = False
        self._got_bytes = False
        self._discarded = False
        self._deadline = 0.0
        self._bar = None

    @property
    def _name(self) -> str:
        return self.part_path.name.removesuffix(".part")

    def _size(self) -> int:
        return self.part_path.stat().st_size if self.part_path.exists() else 0

    def _kept(self) -> str:
        """What is kept for a later run, for an error message (an empty ``.part`` is removed)."""
        size = self._size()
        if size == 0:
            self.part_path.unlink(missing_ok=True)
            return "nothing was received"
        of = f" of {self._total}" if self._total else ""
        return (f"{size}{of} bytes are kept in {self.part_path}; run the same command again to resume from "
                f"byte {size}")

    def _deadline_error(self, url: str) -> DownloadDeadlineError:
        return DownloadDeadlineError(
            f"{self._name}: {url} did not finish before the download deadline (params.yaml:data."
            f"download_deadline_s; {self.deadline_s:g} s for this source); {self._kept()}")

    def download(self, url: str) -> Path:
        """Download ``url`` into :attr:`part_path`, resuming whatever is already there."""
        part = self.part_path
        part.parent.mkdir(parents=True, exist_ok=True)
        self._deadline = time.monotonic() + self.deadline_s
        self._total, self._undeclared, self._got_bytes, self._discarded = None, False, False, False
        idle = 0
        try:
            while True:
                if time.monotonic() >= self._deadline:
                    raise self._deadline_error(url)
                offset = self._size()
                try:
                    if self._request(url, offset) is _Outcome.COMPLETE:
                        return part
                    of = f" of {self._total}" if self._total else ""
                    problem = f"ended early at byte {self._size()}{of}"
                except _Dropped as exc:
                    problem = str(exc)
                except _PastDeadline:
                    raise self._deadline_error(url) from None
                idle = 0 if self._size() > offset else idle + 1
                if idle >= self.max_idle:
                    raise DownloadError(f"{self._name}: {url} {problem}; {idle} attempts in a row added nothing, "
                                        f"giving up ({self._kept()})")
                time.sleep(max(0.0, min(0.1 * idle, 2.0, self._deadline - time.monotonic())))
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _request(self, url: str, offset: int) -> _Outcome:
        """One HTTP request from ``offset``, appended to the ``.part``."""
        req = urllib.request.Request(url, headers={"User-Agent": "ldp-bench/0.1"})
        if offset:
            req.add_header("Range", f"bytes={offset}-")
        self.requests.append(offset)
        timeout = max(0.01, min(self.stall_s, self._deadline - time.monotonic()))
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                return self._past_the_end(offset, _content_range(exc.headers.get("Content-Range", ""))[2])
            if exc.code >= 500 and self._got_bytes:
                raise _Dropped(f"answered HTTP {exc.code} {exc.reason}") from exc
            raise DownloadError(f"{self._name}: HTTP {exc.code} {exc.reason} from {url}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if self._got_bytes:  # it worked a moment ago: a transient drop, resume
                raise _Dropped(f"dropped the connection ({reason})") from exc
            raise DownloadError(f"{self._name}: cannot reach {url} ({reason})") from exc
        with resp:
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype in ("text/html", "application/xhtml+xml", "application/json"):
                raise NotTheFileError(f"{self._name}: {url} answered with {ctype} (a web page, not the file; the "
                                      "host probably needs a browser)")
            length = resp.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            if resp.status == 206:
                mode, due = "ab", self._check_range(url, offset, length, resp.headers.get("Content-Range", ""))
            elif self._undeclared:  # a Range probe the server ignored: no further sign to be had
                return _Outcome.COMPLETE
            else:  # 200: the whole file (the server ignored a Range header, if any)
                offset, mode, self._total, due = 0, "wb", length, length
            self._receive(url, resp, offset, mode)
        size = self._size()
        if due is None:
            self._undeclared = True
            return _Outcome.UNDECLARED
        if self._total is not None and size > self._total:
            raise NotTheFileError(f"{self._name}: {url} sent {size} bytes, more than the {self._total} it declared")
        return _Outcome.COMPLETE if self._total is not None and size == self._total else _Outcome.INCOMPLETE

    def _past_the_end(self, offset: int, total: int | None) -> _Outcome:
        """A 416 answer to a Range request from ``offset``: complete if the sizes agree, else start again."""
        if total == offset or (total is None and self._undeclared):
            self._total = offset
            return _Outcome.COMPLETE
        self.part_path.unlink(missing_ok=True)  # the .part does not fit this file (larger, or of unknown fit)
        if self._discarded:
            raise DownloadError(f"{self._name}: the server's sizes do not add up (a {offset}-byte download is "
                                f"past the end of a {total}-byte file again); the partial data was discarded")
        self._undeclared, self._discarded = False, True
        return _Outcome.INCOMPLETE

    def _check_range(self, url: str, offset: int, length: int | None, value: str) -> int | None:
        """Check a 206 answer's ``Content-Range`` against the request and the size known so far; the byte due."""
        start, end, total = _content_range(value)
        if start != offset or end is None or (length is not None and length != end - start + 1):
            raise DownloadError(f"{self._name}: {url} answered a request from byte {offset} with Content-Range "
                                f"{value!r} (Content-Length {length}); the partial data is kept")
        if self._total is not None and total is not None and total != self._total:
            self.part_path.unlink(missing_ok=True)
            raise DownloadError(f"{self._name}: {url} changed size during the download ({self._total} → {total} "
                                "bytes); the partial data was discarded, run again")
        if total is not None:
            self._total = total
            self._undeclared = False
        return total

    def _receive(self, url: str, resp, offset: int, mode: str) -> None:
        if self.progress and self._bar is None:
            self._bar = tqdm(total=self._total, initial=offset, unit="B", unit_scale=True, desc=self._name,
                             leave=False)
        elif self._bar is not None:
            self._bar.n = offset
            self._bar.refresh()
        block = self._read(resp)
        if offset == 0 and (what := web_body_kind(block)):
            raise NotTheFileError(f"{self._name}: {url} sent {what}, not the file (the host probably needs a "
                                  "browser)")
        with open(self.part_path, mode) as fh:
            while block:
                fh.write(block)
                self._got_bytes = True
                if self._bar is not None:
                    self._bar.update(len(block))
                block = self._read(resp)

    def _read(self, resp) -> bytes:
        if time.monotonic() >= self._deadline:
            raise _PastDeadline()
        try:
            return resp.read1(READ_SIZE)
        except TimeoutError as exc:
            raise _Dropped(f"stalled (no data for {self.stall_s:g} s)") from exc
        except (http.client.HTTPException, OSError) as exc:
            raise _Dropped(f"dropped the connection ({type(exc).__name__}: {exc})") from exc


# ------------------------------------------------------------------------------------------------- checksums

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


def _mismatch(path: Path, expected: str, actual: str, where: str, recorded: bool) -> ChecksumError:
    advice = "delete it and download again"
    if recorded:
        advice += (f"; if the recorded hash itself came from a bad download, also remove the '{path.name}' entry "
                   f"from {path.parent / CHECKSUMS_NAME}")
    return ChecksumError(f"{path}: sha256 mismatch: expected {expected} ({where}), got {actual}. "
                         f"The file is corrupt or the remote file changed; {advice}.")


def fetch(remote: RemoteFile, folder: str | Path, progress: bool = True, supply_hint: str = "", *,
          deadline_s: float = DEADLINE_S, stall_s: float = STALL_S) -> Path:
    """Return the local path of ``remote`` inside ``folder``, downloading (resumably) if needed.

    The sha256 is the pinned one, else the one recorded in ``folder/checksums.json``; without either, the file
    must pass :func:`check_content`, and then its hash is recorded there (one warning). A mismatch raises
    :class:`ChecksumError` (and the bad download is deleted); running past ``deadline_s`` (all mirrors together)
    raises :class:`DownloadDeadlineError` and keeps the ``.part``; when all mirrors fail, one
    :class:`DownloadError` says how to supply the file by hand (``supply_hint``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / remote.name
    pinned = remote.sha256.lower()
    expected = pinned or _load_checksums(folder).get(remote.name, "")
    where = "pinned in ldp-bench" if pinned else f"recorded in {folder / CHECKSUMS_NAME}"

    if target.is_file():
        actual = sha256_file(target)
        if expected and actual != expected:
            raise _mismatch(target, expected, actual, where, recorded=not pinned)
        if not expected:
            try:
                check_content(target, remote.name)
            except NotTheFileError as exc:
                raise NotTheFileError(f"{target}: not recorded as trusted: {exc}; delete it and download "
                                      "again") from exc
            _record_unpinned(folder, remote.name, actual)
        return target

    part = folder / f"{remote.name}.part"
    errors: list[str] = []
    end = time.monotonic() + deadline_s
    for url in remote.urls:
        downloader = ResumableDownloader(part, stall_s=stall_s, deadline_s=max(0.0, end - time.monotonic()),
                                         progress=progress)
        try:
            downloader.download(url)
            actual = sha256_file(part)
            if expected and actual != expected:
                part.unlink()
                raise _mismatch(target, expected, actual, where, recorded=not pinned)
            if not expected:
                check_content(part, remote.name)
        except NotTheFileError as exc:
            part.unlink(missing_ok=True)  # not the file: nothing worth resuming
            errors.append(str(exc))
            continue
        except (ChecksumError, DownloadDeadlineError):
            raise
        except DownloadError as exc:
            errors.append(str(exc))
            continue
        os.replace(part, target)
        if not expected:
            _record_unpinned(folder, remote.name, actual)
        return target
    hint = supply_hint or f"put the file at {target}"
    raise DownloadError(f"{remote.name}: could not download from any source: " + "; ".join(errors)
                        + f". To supply the data by hand: {hint}.")


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

@dataclass(frozen=True)
class _Entry:
    name: str  # as stored in the archive
    rel: PurePosixPath  # normalised relative path; empty for the archive root
    member: zipfile.ZipInfo | tarfile.TarInfo
    is_dir: bool
    size: int  # declared uncompressed size


def _check_member_name(archive: Path, name: str) -> PurePosixPath:
    clean = name.replace("\\", "/")
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: entry '{name}' has an absolute path; refusing to extract")
    parts = PurePosixPath(clean).parts
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: entry '{name}' contains '..'; refusing to extract")
    return PurePosixPath(*[p for p in parts if p not in ("", ".")]) if parts else PurePosixPath()


def _plan_zip(archive: Path, zf: zipfile.ZipFile) -> list[_Entry]:
    plan = []
    for info in zf.infolist():
        rel = _check_member_name(archive, info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            what = "a symbolic link" if kind == stat.S_IFLNK else "not a regular file"
            raise UnsafeArchiveError(f"{archive}: entry '{info.filename}' is {what}; refusing to extract")
        plan.append(_Entry(info.filename, rel, info, info.is_dir(), info.file_size))
    return plan


def _plan_tar(archive: Path, tf: tarfile.TarFile) -> list[_Entry]:
    plan = []
    for member in tf.getmembers():
        rel = _check_member_name(archive, member.name)
        if member.issym() or member.islnk():
            raise UnsafeArchiveError(f"{archive}: entry '{member.name}' is a link; refusing to extract")
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"{archive}: entry '{member.name}' is a device/fifo/special entry; "
                                     "refusing to extract")
        plan.append(_Entry(member.name, rel, member, member.isdir(), member.size))
    return plan


def _check_clashes(archive: Path, plan: list[_Entry]) -> None:
    """Refuse a file at the archive root, a file stored twice, and a path used both as a file and a folder."""
    files: dict[PurePosixPath, str] = {}
    folders: set[PurePosixPath] = set()
    for entry in plan:
        folders.update(entry.rel.parents[:-1])
        if entry.is_dir:
            folders.add(entry.rel)
        elif not entry.rel.parts:
            raise UnsafeArchiveError(f"{archive}: entry '{entry.name}' is a file named like the archive's root "
                                     "folder; refusing to extract")
        elif entry.rel in files:
            raise UnsafeArchiveError(f"{archive}: entry '{entry.name}' is stored twice (also as "
                                     f"'{files[entry.rel]}'); refusing to extract")
        else:
            files[entry.rel] = entry.name
    clash = next((rel for rel in files if rel in folders), None)
    if clash is not None:
        raise UnsafeArchiveError(f"{archive}: entry '{files[clash]}' is a file, but other entries use '{clash}' as "
                                 "a folder; refusing to extract")


def _check_size(archive: Path, plan: list[_Entry], dest: Path, max_bytes: int, max_ratio: float) -> None:
    """Refuse, from the declared sizes, an archive that unpacks beyond the limits or the free disk space."""
    total = sum(e.size for e in plan if not e.is_dir)
    ratio = total / max(archive.stat().st_size, 1)
    if total > max_bytes:
        raise UnsafeArchiveError(f"{archive}: would unpack {total} bytes, more than the limit of {max_bytes} "
                                 "(params.yaml:data.extract_max_bytes); refusing to extract")
    if ratio > max_ratio:
        raise UnsafeArchiveError(f"{archive}: would unpack {total} bytes from {archive.stat().st_size}, a "
                                 f"compression ratio of {ratio:.0f}, more than the limit of {max_ratio:g} "
                                 "(params.yaml:data.extract_max_ratio); refusing to extract")
    free = shutil.disk_usage(dest.parent).free
    if total > free:
        raise DownloadError(f"{archive}: needs {total} bytes to unpack, but {dest.parent} has {free} bytes free")


def copy_at_most(src, dst, limit: int, archive: Path, name: str) -> int:
    """Copy ``src`` to ``dst``, refusing before writing a byte beyond ``limit`` (the entry's declared size)."""
    written = 0
    while block := src.read(COPY_SIZE):
        written += len(block)
        if written > limit:
            raise UnsafeArchiveError(f"{archive}: entry '{name}' holds more than the {limit} bytes its header "
                                     "declares; refusing to extract")
        dst.write(block)
    return written


_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, lzma.LZMAError, gzip.BadGzipFile)


def safe_extract(archive: str | Path, dest: str | Path, progress: bool = True, *,
                 max_bytes: int = MAX_UNPACKED_BYTES, max_ratio: float = MAX_RATIO) -> Path:
    """Extract a zip or tar archive into ``dest`` (which must not exist yet), atomically.

    Every entry is checked before anything is written: names, types, clashes, and the declared sizes against
    ``max_bytes`` (total unpacked), ``max_ratio`` (unpacked bytes per archive byte) and the free disk space.
    While writing, no entry may exceed its declared size. Files go to a temporary folder beside ``dest`` that is
    renamed to ``dest`` only when complete.
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
    entry_name = ""
    try:
        with opener(archive) as handle:
            plan = planner(archive, handle)
            _check_clashes(archive, plan)
            _check_size(archive, plan, dest, max_bytes, max_ratio)
            root = tmp.resolve()
            is_zip = isinstance(handle, zipfile.ZipFile)
            for entry in tqdm(plan, desc=f"extract {archive.name}", disable=not progress, leave=False):
                entry_name = entry.name
                out = (tmp / entry.rel).resolve() if entry.rel.parts else root
                if out != root and root not in out.parents:
                    raise UnsafeArchiveError(f"{archive}: entry '{entry.name}' would land outside {dest}")
                if entry.is_dir:
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with (handle.open(entry.member) if is_zip else handle.extractfile(entry.member)) as src, \
                        open(out, "wb") as fh:
                    copy_at_most(src, fh, entry.size, archive, entry.name)
        os.replace(tmp, dest)
    except _CORRUPT as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{archive}: corrupt archive (entry '{entry_name}': {exc}); download it again") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
