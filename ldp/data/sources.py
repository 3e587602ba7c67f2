"""Dataset sources (``data:`` in params.yaml), normalised into the canonical DPDD layout + ``manifest.csv``.

Sources: ``synthetic`` (the simulator in :mod:`ldp.data.synthetic`), ``dpdd`` (Abuolaim & Brown 2020),
``dpd_disp`` (Punnappurath et al. 2020, no sharp target) and ``folder`` (a user's own captures, glob patterns).
:func:`prepare_dataset` is the entry point. Every dataset is validated before it appears: a bad file gives one
:class:`DatasetError` naming it, and nothing is left half-written (builds happen in a temporary folder that is
renamed when complete). See docs/data.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from ldp.config import ConfigError, from_dict, load_params, section, where_of
from ldp.data.download import (
    DEADLINE_S,
    MAX_RATIO,
    MAX_UNPACKED_BYTES,
    STALL_S,
    ChecksumError,
    DownloadDeadlineError,
    DownloadError,
    RemoteFile,
    fetch,
    safe_extract,
)
from ldp.data.manifest import (
    LAYOUT_DIR,
    MANIFEST_NAME,
    SOURCE_STAMP,
    UNVERIFIED_LISTS,
    categories_origin,
    layout_paths,
    write_manifest,
)
from ldp.fsutil import atomic_dir
from ldp.imageio import ImageReadError, bit_depth, depth_mismatch, read_image_raw, size_mismatch, too_small

SPLITS = ("train", "val", "test")
SPLITS_DIR = Path(__file__).resolve().parent / "splits"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

# Official DPDD archive (Abuolaim & Brown 2020) and Restormer's re-packaged test set (reference doc §2.2, §3.1).
DPDD_OFFICIAL_URL = "https://ln2.sync.com/dl/c45358c50/r7kpybwk-xw8hhszh-qkj249ap-y8k2344d"
DPDD_RESTORMER_TEST_URL = ("https://drive.usercontent.google.com/download?id=1dDWUQ_D93XGtcywoUcZE1HOXCV4EuLyw"
                           "&export=download&confirm=t")
DPD_DISP_URL = ("https://drive.usercontent.google.com/download?id=1MUWXW5JTF6F-nkMk0qJLB2qxUi1Zl_WR"
                "&export=download&confirm=t")


class DatasetError(ValueError):
    """Bad or missing input data; the message names the file (or folder, or params key)."""


# ------------------------------------------------------------------------------------------------- configs

@dataclass(frozen=True)
class DpddConfig:
    """DPDD download. Empty sha256 ⇒ recorded in ``<download_dir>/checksums.json`` on first download."""

    urls: tuple[str, ...] = (DPDD_OFFICIAL_URL,)
    sha256: str = ""
    test_urls: tuple[str, ...] = (DPDD_RESTORMER_TEST_URL,)  # second source: test split only
    test_sha256: str = ""
    splits: tuple[str, ...] = SPLITS


@dataclass(frozen=True)
class DpdDispConfig:
    urls: tuple[str, ...] = (DPD_DISP_URL,)
    sha256: str = ""


@dataclass(frozen=True)
class FolderConfig:
    """Glob patterns (relative to ``data.root``, or absolute); the ``*`` parts pair the files up."""

    left: str = "*_L.png"
    right: str = "*_R.png"
    target: str = ""  # empty ⇒ no ground truth ⇒ qualitative results only
    combined: str = ""
    split: str = "test"


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` section of params.yaml."""

    source: Literal["synthetic", "dpdd", "dpd_disp", "folder"] = "synthetic"
    root: str = ""  # an existing copy (folder or downloaded archive): skips the download
    download_dir: str = "data/downloads"
    download_deadline_s: float = DEADLINE_S  # one download (all its mirrors); the partial data is kept past it
    download_stall_s: float = STALL_S  # read timeout: a server silent this long is resumed
    extract_max_bytes: int = MAX_UNPACKED_BYTES  # total unpacked bytes an archive may hold
    extract_max_ratio: float = MAX_RATIO  # unpacked bytes per archive byte
    synthetic: dict[str, Any] = field(default_factory=dict)  # checked against ldp.data.synthetic.SyntheticConfig
    dpdd: DpddConfig = field(default_factory=DpddConfig)
    dpd_disp: DpdDispConfig = field(default_factory=DpdDispConfig)
    folder: FolderConfig = field(default_factory=FolderConfig)

    def check(self, where: str = "params.yaml") -> DataConfig:
        """Every value checked (``where``: the params file, named in the errors); returns ``self``."""
        for key in ("download_deadline_s", "download_stall_s", "extract_max_bytes", "extract_max_ratio"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{where}:data.{key}: must be positive, got {getattr(self, key)!r}")
        if self.source == "synthetic" or self.synthetic:
            self.synthetic_config(where)
        return self

    def synthetic_config(self, where: str = "params.yaml"):
        """The typed simulator config (:class:`ldp.data.synthetic.SyntheticConfig`) built strictly."""
        from ldp.data.synthetic import SyntheticConfig

        return from_dict(SyntheticConfig, self.synthetic, f"{where}:data.synthetic")


def load_data_config(params: Mapping[str, Any] | str | Path = "params.yaml") -> DataConfig:
    if not isinstance(params, Mapping):
        params = load_params(params)
    return section(params, "data", DataConfig).check(where_of(params))


# ------------------------------------------------------------------------------------------------- helpers

def natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def read_split_list(name: str) -> list[str]:
    """Scene names in ``ldp/data/splits/<name>.txt`` (``#`` lines are comments)."""
    path = SPLITS_DIR / f"{name}.txt"
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def dpdd_categories() -> dict[str, str]:
    cats = {s: "indoor" for s in read_split_list("dpdd_test_indoor")}
    cats.update({s: "outdoor" for s in read_split_list("dpdd_test_outdoor")})
    return cats


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file()),
                  key=lambda p: natural_key(p.name))


_VIEW_SUFFIX = re.compile(r"_(l|r|L|R)$")


def _scene_key(path: Path) -> str:
    return _VIEW_SUFFIX.sub("", path.stem)


def _pair_split(split: str, left: list[Path], right: list[Path], combined: list[Path], target: list[Path],
                where: Path) -> list[dict]:
    """Pair L/R/C/target files of one split into scene rows (absolute paths)."""
    if not left and not right:
        return []
    lmap = {_scene_key(p): p for p in left}
    rmap = {_scene_key(p): p for p in right}
    for key, p in rmap.items():
        if key not in lmap:
            raise DatasetError(f"{p}: right view has no matching left view ({key}_L{p.suffix} missing)")
    for key, p in lmap.items():
        if key not in rmap:
            raise DatasetError(f"{p}: left view has no matching right view ({key}_R{p.suffix} missing)")
    keys = sorted(lmap, key=natural_key)
    cmap = {_scene_key(p): p for p in combined}
    tmap = {_scene_key(p): p for p in target}
    if target and not all(k in tmap for k in keys):
        # Official DPDD: targets are separate captures with their own frame numbers; pair by sorted order.
        if len(target) != len(keys):
            missing = next(k for k in keys if k not in tmap)
            raise DatasetError(f"{where}: missing target for scene '{missing}' ({len(target)} targets for "
                               f"{len(keys)} scenes in split '{split}')")
        tmap = dict(zip(keys, target, strict=True))
    rows = []
    for k in keys:
        rows.append({"scene": k, "split": split, "left": lmap[k], "right": rmap[k],
                     "combined": cmap.get(k, ""), "target": tmap.get(k, "")})
    return rows


# ------------------------------------------------------------------------------------- DPDD-layout reading

def find_layout_root(base: Path, max_depth: int = 4) -> Path | None:
    """The folder holding ``{split}_l`` (DPDD layout) or ``inputL`` (Restormer layout) folders, if any."""
    base = Path(base)
    frontier = [base]
    for _ in range(max_depth + 1):
        nxt = []
        for d in frontier:
            names = {p.name for p in d.iterdir() if p.is_dir()} if d.is_dir() else set()
            if any(f"{s}_l" in names for s in SPLITS) or "inputL" in names:
                return d
            if any(s in names and (d / s / "DPDD" / "inputL").is_dir() for s in SPLITS):
                return d
            nxt.extend(sorted(d / n for n in names if not n.startswith(".")))
        frontier = nxt
    return None


def _bare_split(folder: Path) -> str:
    """The split of a bare Restormer folder (``inputL/...``): ``train`` for ``.../train/DPDD``, test by default."""
    parent = folder.resolve()
    parent = parent.parent if parent.name == "DPDD" else parent
    return parent.name if parent.name in SPLITS else "test"


def index_dpdd_layout(base: str | Path, splits: Iterable[str] = SPLITS) -> list[dict]:
    """Scene rows (absolute paths) of a DPDD-layout tree.

    Accepts ``dd_dp_dataset_canon/{split}_{c,l,r}/{source,target}`` (official; ``base`` may be the folder
    holding ``dd_dp_dataset_canon`` or any parent) and Restormer's ``{split}/DPDD/{inputL,inputR,inputC,target}``
    for each of train, val and test (its zips hold full-resolution images; the ``*_crops`` folders its scripts cut
    from them are not read), or a bare ``inputL/...``: the split its path names (``<split>/DPDD``), else test.
    Signed defocus maps ``{split}_c/defocus/<scene>.npy`` are picked up when present.
    """
    base = Path(base)
    if not base.is_dir():
        raise DatasetError(f"{base}: dataset folder not found")
    root = find_layout_root(base)
    if root is None:
        raise DatasetError(f"{base}: no DPDD layout found (expected {LAYOUT_DIR}/{{train,val,test}}_{{c,l,r}}/ "
                           "or Restormer's inputL/inputR/inputC/target)")
    rows: list[dict] = []
    for split in splits:
        if (root / f"{split}_l").is_dir() or (root / f"{split}_r").is_dir():
            c = root / f"{split}_c"
            split_rows = _pair_split(split, _images(root / f"{split}_l" / "source"),
                                     _images(root / f"{split}_r" / "source"), _images(c / "source"),
                                     _images(c / "target"), c / "target")
            for row in split_rows:
                dfile = c / "defocus" / f"{row['scene']}.npy"
                row["defocus"] = dfile if dfile.is_file() else ""
        else:
            rst = root / split / "DPDD" if (root / split / "DPDD").is_dir() else None
            if rst is None and (root / "inputL").is_dir() and split == _bare_split(root):
                rst = root
            if rst is None:
                continue
            split_rows = _pair_split(split, _images(rst / "inputL"), _images(rst / "inputR"),
                                     _images(rst / "inputC"), _images(rst / "target"), rst / "target")
        rows.extend(split_rows)
    if not rows:
        raise DatasetError(f"{root}: DPDD layout folders are empty (no *_L/*_R images for splits "
                           f"{', '.join(splits)})")
    return rows


def _find_label_npys(base: Path) -> tuple[Path, Path] | None:
    for ind in sorted(base.rglob("indoor_labels.npy")):
        out = ind.with_name("outdoor_labels.npy")
        if out.is_file():
            return ind, out
    return None


def assign_categories(rows: list[dict], base: Path | None = None) -> list[dict]:
    """Indoor/outdoor for DPDD test scenes: the official label npys if shipped, else the committed lists."""
    cats = dpdd_categories()
    test = sorted((r["scene"] for r in rows if r["split"] == "test"), key=natural_key)
    npys = _find_label_npys(base) if base is not None else None
    if npys is not None and test:
        official: dict[str, str] = {}
        for path, name in zip(npys, ("indoor", "outdoor"), strict=True):
            for idx in np.load(path).astype(int).ravel():  # 1-based positions in the natsorted test list
                if not 1 <= idx <= len(test):
                    raise DatasetError(f"{path}: index {idx} outside 1..{len(test)}")
                official[test[idx - 1]] = name
        diff = sorted(s for s in official if cats.get(s) and cats[s] != official[s])
        if diff:
            warnings.warn(f"{npys[0]}: official indoor/outdoor labels disagree with ldp/data/splits for "
                          f"{len(diff)} scenes (e.g. {diff[:3]}); using the official labels", stacklevel=2)
        cats = official
    origin = f"official labels ({npys[0].name}, {npys[1].name})" if npys is not None and test else UNVERIFIED_LISTS
    for r in rows:
        r["category"] = cats.get(r["scene"], "") if r["split"] == "test" else ""
        r["category_origin"] = origin if r["category"] else ""
    return rows


# ------------------------------------------------------------------------------------ dpd_disp and folder

_DISP_NAME = re.compile(r"^(?P<scene>.+)_(?P<view>[BLRblr])$")


def index_dpd_disp(base: str | Path) -> list[dict]:
    """DPD-disp pairs: ``<scene>_L``, ``<scene>_R`` and optional ``<scene>_B`` (combined) anywhere below ``base``.

    No all-in-focus target exists in this release, so rows have no target (qualitative use only).
    """
    base = Path(base)
    if not base.is_dir():
        raise DatasetError(f"{base}: dataset folder not found")
    groups: dict[str, dict[str, Path]] = {}
    for p in sorted(base.rglob("*")):
        if p.suffix.lower() not in IMAGE_EXTS or not p.is_file() or any(s.startswith(".") for s in p.parts):
            continue
        m = _DISP_NAME.match(p.stem)
        if not m:
            continue
        rel_dir = p.parent.relative_to(base).parts
        scene = "_".join((*rel_dir, m["scene"]))
        groups.setdefault(scene, {})[m["view"].upper()] = p
    if not groups:
        raise DatasetError(f"{base}: no DPD-disp images (<scene>_L / <scene>_R) found")
    rows = []
    for scene in sorted(groups, key=natural_key):
        views = groups[scene]
        for need, other in (("L", "R"), ("R", "L")):
            if need not in views and other in views:
                raise DatasetError(f"{views[other]}: no matching {'left' if need == 'L' else 'right'} view")
        if "L" not in views:
            continue
        rows.append({"scene": scene, "split": "test", "left": views["L"], "right": views["R"],
                     "combined": views.get("B", ""), "target": ""})
    return rows


def _glob_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "((?:.*/)?)"
            i += 3
        elif pattern[i] == "*":
            out += "([^/]*)"
            i += 1
        elif pattern[i] == "?":
            out += "([^/])"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def _glob_keyed(base: Path, pattern: str, what: str) -> dict[str, Path]:
    """Files matching ``pattern`` keyed by the text its wildcards matched."""
    pat = Path(pattern).expanduser()
    anchor = Path(pat.anchor) if pat.is_absolute() else base
    rel_pattern = str(pat.relative_to(anchor)) if pat.is_absolute() else pattern
    regex = _glob_regex(rel_pattern.replace(os.sep, "/"))
    found: dict[str, Path] = {}
    for p in sorted(anchor.glob(rel_pattern)):
        if not p.is_file():
            continue
        m = regex.match(p.relative_to(anchor).as_posix())
        key = "/".join(m.groups()) if m and m.groups() else p.stem
        if key in found:
            raise DatasetError(f"{p}: {what} pattern '{pattern}' matches two files for '{key}' ({found[key]})")
        found[key] = p
    return found


def index_folder(cfg: FolderConfig, base: str | Path) -> list[dict]:
    """A user's own DP captures matched by the glob patterns in ``cfg``."""
    base = Path(base)
    if not base.is_dir():
        raise DatasetError(f"{base}: folder not found (data.root)")
    if not cfg.left or not cfg.right:
        raise DatasetError("data.folder: 'left' and 'right' glob patterns are required")
    left = _glob_keyed(base, cfg.left, "left")
    if not left:
        raise DatasetError(f"{base}: no files match the left pattern '{cfg.left}' (empty folder?)")
    right = _glob_keyed(base, cfg.right, "right")
    target = _glob_keyed(base, cfg.target, "target") if cfg.target else {}
    combined = _glob_keyed(base, cfg.combined, "combined") if cfg.combined else {}
    for key, p in right.items():
        if key not in left:
            raise DatasetError(f"{p}: right view has no matching left view (pattern '{cfg.left}')")
    rows = []
    for key in sorted(left, key=natural_key):
        if key not in right:
            raise DatasetError(f"{left[key]}: left view has no matching right view (pattern '{cfg.right}')")
        if cfg.target and key not in target:
            raise DatasetError(f"{left[key]}: missing target (no file matches '{cfg.target}' for '{key}')")
        scene = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_") or "scene"
        rows.append({"scene": scene, "split": cfg.split, "left": left[key], "right": right[key],
                     "target": target.get(key, ""), "combined": combined.get(key, "")})
    if len({r["scene"] for r in rows}) != len(rows):
        raise DatasetError(f"{base}: two captures map to the same scene name; rename the files")
    return rows


# ----------------------------------------------------------------------------------------------- validation

def _probe(path: Path) -> tuple[int, int, int]:
    try:
        img = read_image_raw(path)
    except ImageReadError as exc:
        raise DatasetError(str(exc)) from exc
    return img.shape[0], img.shape[1], bit_depth(img)


def validate_rows(rows: list[dict], workers: int | None = None, progress: bool = True) -> list[dict]:
    """Decode every image once (catches truncated/corrupt files); check sizes and bit depths.

    Adds ``height``, ``width``, ``bit_depth`` to each row. Portrait and landscape frames may be mixed; within
    a scene all images share one size, no side is below :data:`ldp.imageio.MIN_SIDE`, and the whole dataset
    shares one bit depth.
    """
    if not rows:
        raise DatasetError("no scenes found (empty folder?)")
    jobs = [(i, col, Path(r[col])) for i, r in enumerate(rows) for col in ("left", "right", "combined", "target")
            if r.get(col)]
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        probes = list(tqdm(pool.map(lambda job: _probe(job[2]), jobs), total=len(jobs), desc="validate",
                           disable=not progress, leave=False))
    info: dict[tuple[int, str], tuple[int, int, int]] = {(i, col): pr for (i, col, _), pr in zip(jobs, probes,
                                                                                              strict=True)}
    first_depth: tuple[int, Path] | None = None
    for (i, _col, path), (h, w, depth) in zip(jobs, probes, strict=True):
        lh, lw, _ = info[(i, "left")]
        first_depth = first_depth or (depth, path)
        problem = (too_small(path, (h, w)) or size_mismatch(path, (h, w), f"the left view {rows[i]['left']}", (lh, lw))
                   or depth_mismatch(path, depth, first_depth[1], first_depth[0]))
        if problem:
            raise DatasetError(problem)
    for i, row in enumerate(rows):
        row["height"], row["width"], row["bit_depth"] = info[(i, "left")]
        if row.get("defocus"):
            d = np.load(row["defocus"], mmap_mode="r")
            if d.shape[:2] != (row["height"], row["width"]):
                raise DatasetError(f"{row['defocus']}: defocus map {d.shape} does not match the image size "
                                   f"{row['height']}x{row['width']}")
    return rows


# ------------------------------------------------------------------------------------------------ building

def manifest_rows(rows: list[dict], rel_to: Path) -> list[dict]:
    """Manifest rows with their image paths made relative to ``rel_to`` (the folder the manifest will live in)."""
    out = []
    for r in rows:
        row = dict(r)
        for col in ("left", "right", "target", "combined", "defocus"):
            v = row.get(col, "")
            row[col] = os.path.relpath(Path(v).resolve(), rel_to).replace(os.sep, "/") if v else ""
        row.setdefault("category", "")
        out.append(row)
    return out


def _move_into_layout(rows: list[dict], build: Path) -> list[dict]:
    """Rename extracted files into the canonical layout inside ``build`` (same filesystem, no copies)."""
    for r in rows:
        canon = layout_paths(r["split"], r["scene"], Path(r["left"]).suffix.lower())
        for col in ("left", "right", "combined", "target", "defocus"):
            src = r.get(col)
            if not src:
                continue
            ext = Path(src).suffix.lower()
            dst = build / (canon[col] if col == "defocus" else canon[col][: -len(Path(canon[col]).suffix)] + ext)
            if Path(src).resolve() != dst.resolve():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
            r[col] = dst
    return rows


def _config_stamp(cfg: DataConfig) -> dict:
    data = dataclasses.asdict(cfg)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"source": cfg.source, "config_sha": digest}


def _finish(build: Path, rows: list[dict], cfg: DataConfig, rel_to: Path, categories: str = "") -> None:
    """Write manifest + stamp into ``build`` (paths relative to ``rel_to``); ``atomic_dir`` renames it. The stamp
    says where the indoor/outdoor categories came from (``categories``, else the rows' ``category_origin``)."""
    write_manifest(build, manifest_rows(rows, rel_to.resolve()))
    origins = sorted({r.get("category_origin", "") for r in rows} - {""})
    stamp = {**_config_stamp(cfg), "categories": categories or "; ".join(origins) or "none"}
    (build / SOURCE_STAMP).write_text(json.dumps(stamp, indent=2) + "\n")


def _existing_output(out_root: Path, cfg: DataConfig) -> Path | None:
    if not out_root.exists():
        return None
    stamp = out_root / SOURCE_STAMP
    if (out_root / MANIFEST_NAME).is_file() and stamp.is_file():
        if json.loads(stamp.read_text()).get("config_sha") == _config_stamp(cfg)["config_sha"]:
            return out_root
    raise DatasetError(f"{out_root}: already exists and was not built from this data config; remove it first")


def _index(cfg: DataConfig, base: Path) -> list[dict]:
    if cfg.source == "dpdd":
        return assign_categories(index_dpdd_layout(base, cfg.dpdd.splits), base)
    if cfg.source == "dpd_disp":
        return index_dpd_disp(base)
    return index_folder(cfg.folder, base)


def _remotes(cfg: DataConfig) -> list[tuple[RemoteFile, str]]:
    if cfg.source == "dpdd":
        return [(RemoteFile("dd_dp_dataset_canon.zip", cfg.dpdd.urls, cfg.dpdd.sha256), "all splits"),
                (RemoteFile("dpdd_test_restormer.zip", cfg.dpdd.test_urls, cfg.dpdd.test_sha256), "test split only")]
    return [(RemoteFile("dpd_disp.zip", cfg.dpd_disp.urls, cfg.dpd_disp.sha256), "all")]


def _fetch_archive(cfg: DataConfig) -> Path:
    """Download the source's archive, trying the official one first, then the second source (if any)."""
    download_dir = Path(cfg.download_dir)
    reasons = []
    remotes = _remotes(cfg)
    for remote, what in remotes:
        try:
            archive = fetch(remote, download_dir, deadline_s=cfg.download_deadline_s, stall_s=cfg.download_stall_s)
        except (ChecksumError, DownloadDeadlineError):
            raise
        except DownloadError as exc:
            reasons.append(str(exc).split(". To supply")[0])
            continue
        if what == "test split only":
            warnings.warn(f"{remote.name}: the official archive was not available; using the second source "
                          f"({what})", stacklevel=2)
        return archive
    first = remotes[0][0].name
    raise DatasetError(
        f"{cfg.source}: could not download the data (is this machine offline?). Tried: {' | '.join(reasons)}. "
        f"To supply it by hand: download {first} (links in docs/data.md) and set data.root in params.yaml to "
        f"the archive or to its extracted folder, or save it as {download_dir / first}.")


def prepare_dataset(cfg: DataConfig, out_root: str | Path) -> Path:
    """Build (or locate) the dataset described by ``cfg``; return the root that holds ``manifest.csv``.

    * ``synthetic``: runs :func:`ldp.data.synthetic.generate_synthetic` into ``out_root``.
    * ``data.root`` given: a folder with a ``manifest.csv`` is used as is; any other folder is indexed in place
      (no copy) and a manifest pointing at it is written into ``out_root``; an archive file is extracted.
    * otherwise ``dpdd``/``dpd_disp`` are downloaded into ``data.download_dir`` and extracted into ``out_root``.
    """
    cfg.check()
    out_root = Path(out_root)
    if cfg.source == "synthetic":
        from ldp.data.synthetic import generate_synthetic

        result = generate_synthetic(cfg.synthetic_config(), out_root, stamp=_config_stamp(cfg))
        return Path(result) if result else out_root

    root = Path(cfg.root).expanduser() if cfg.root else None
    if root is not None and not root.exists():
        raise DatasetError(f"data.root: {root} does not exist")
    if (done := _existing_output(out_root, cfg)) is not None:
        return done
    if root is not None and root.is_dir() and (root / MANIFEST_NAME).is_file():
        # A prepared dataset: its manifest, re-pointed at its files, becomes out_root's (the later stages read it).
        from ldp.data.manifest import load_manifest

        rows = [{**r, **{c: str(root / r[c]) if r[c] else "" for c in ("left", "right", "target", "combined",
                                                                       "defocus")}}
                for r in load_manifest(root).to_dict("records")]
        with atomic_dir(out_root, "build") as build:
            _finish(build, validate_rows(rows), cfg, rel_to=out_root.parent.resolve() / out_root.name,
                    categories=categories_origin(root))
        return out_root
    if cfg.source == "folder" or (root is not None and root.is_dir()):
        base = root if root is not None else Path(".")
        rows = validate_rows(_index(cfg, base))
        with atomic_dir(out_root, "build") as build:
            _finish(build, rows, cfg, rel_to=out_root.parent.resolve() / out_root.name)
        return out_root

    archive = root if root is not None else _fetch_archive(cfg)
    with atomic_dir(out_root, "build") as build:
        raw = safe_extract(archive, build / "raw", max_bytes=cfg.extract_max_bytes, max_ratio=cfg.extract_max_ratio)
        rows = validate_rows(_index(cfg, raw))
        rows = _move_into_layout(rows, build)
        _finish(build, rows, cfg, rel_to=build)
    return out_root
