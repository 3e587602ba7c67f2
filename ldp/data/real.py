"""Real dual-pixel test sets (params ``real_sets``) as prepared datasets: ``manifest.csv`` + ``source.json``.

Every trained row is also scored on them (split ``test`` only). Two sources:

* ``dpdd_layout``: a folder in the DPDD layout (``dd_dp_dataset_canon/test_{c,l,r}/...``), indexed in place as the
  data stage indexes a folder root (nothing is copied; the manifest points at the files with relative paths);
  the combined image is the camera's ``test_c/source``.
* ``pixel4``: the CMU Google Pixel 4 scenes (Xin et al., ICCV 2021): 14-bit green-channel L/R views and an
  all-in-focus GT of another intensity scale, converted into 16-bit gamma-encoded RGB PNGs (:func:`convert_pixel4`).

A relative ``root`` resolves against the working folder (the repo root under ``dvc repro``). See docs/data-real.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ldp.config import ConfigError, from_dict, subsection, where_of
from ldp.data.manifest import SOURCE_STAMP, layout_paths, write_manifest
from ldp.data.sources import (
    DatasetError,
    assign_categories,
    index_dpdd_layout,
    manifest_rows,
    natural_key,
    validate_rows,
)
from ldp.data.synthetic import to_display
from ldp.fsutil import atomic_dir, atomic_write_json
from ldp.imageio import ImageReadError, read_image_raw, to_float, write_image

SPLIT = "test"
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
DEFAULT_LABELS = {
    "dpdd_layout": "real Canon DP scenes in the DPDD layout (camera combined image test_c/source)",
    "pixel4": "real Google Pixel 4 DP scenes (Xin et al., ICCV 2021): green channel, gamma-encoded here",
}
CONVERSION_JSON = "conversion.json"
INDEX_JSON = "index.json"  # <paths.real>/index.json (stage real_data) and results/real/index.json (evaluate_real)

# Pixel 4 raw values (the CMU repository's README and code): 14-bit with black level 1024.
PIXEL4_DIR = "DP_data_pixel_4"
PIXEL4_GT_DIR = "gt_all_in_focus_im"
PIXEL4_BLACK = 1024
PIXEL4_WHITE = 2**14 - 1
# One exposure per scene: this percentile of (L+R)/2 maps to this level (same scale for L, R and the target).
EXPOSURE_PERCENTILE = 99.5
EXPOSURE_LEVEL = 0.9
_PIXEL4_LEFT = re.compile(r"(?P<scene>.+)_left\.png")


@dataclass(frozen=True)
class RealSetConfig:
    """One entry of params ``real_sets``."""

    source: Literal["dpdd_layout", "pixel4"]
    root: str  # relative: against the working folder
    label: str = ""  # one line saying what the set is; empty: DEFAULT_LABELS[source]

    @property
    def display_label(self) -> str:
        return self.label or DEFAULT_LABELS[self.source]


def load_real_sets(params: Mapping[str, Any]) -> dict[str, RealSetConfig]:
    """Every entry of ``real_sets`` (``{}`` when none), strictly; errors name ``<file>:real_sets.<name>.<key>``."""
    where = where_of(params)
    raw = subsection(params, "real_sets")
    sets = {}
    for name in raw:
        key = f"{where}:real_sets.{name}"
        if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
            raise ConfigError(f"{key}: not a safe folder name (letters, digits, '.', '_', '-'; not starting with "
                              "'.', '_' or '-')")
        cfg = from_dict(RealSetConfig, raw[name], key)
        if not cfg.root.strip():
            raise ConfigError(f"{key}.root: expected a folder, got an empty string")
        sets[name] = cfg
    return sets


def _root_error(name: str, where: str, message: str) -> DatasetError:
    return DatasetError(f"{where}:real_sets.{name}.root: {message}")


def check_root(name: str, cfg: RealSetConfig, where: str = "params.yaml") -> list[dict]:
    """The scenes of a set's root (absolute paths; nothing decoded), or one error naming ``real_sets.<name>.root``
    and the path when the folder is missing or is not of the set's source."""
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise _root_error(name, where, f"{root} is not a folder (a relative root resolves against the working "
                                       f"folder, {Path.cwd()})")
    if cfg.source == "dpdd_layout":
        try:
            return index_dpdd_layout(root, (SPLIT,))
        except DatasetError as exc:
            raise _root_error(name, where, f"{root} is not a DPDD-layout folder with a test split ({exc})") from exc
    return _index_pixel4(name, root, where)


def _index_pixel4(name: str, root: Path, where: str) -> list[dict]:
    """``<root>/DP_data_pixel_4/NNN_{left,right}.png`` + ``gt_all_in_focus_im/NNN_gt.png`` (``root`` may also be
    the ``DP_data_pixel_4`` folder itself)."""
    base = root / PIXEL4_DIR if (root / PIXEL4_DIR).is_dir() else root
    lefts = sorted((p for p in base.glob("*_left.png") if p.is_file()), key=lambda p: natural_key(p.name))
    if not lefts:
        raise _root_error(name, where, f"{root} holds no Pixel 4 scenes ({PIXEL4_DIR}/NNN_left.png)")
    rows = []
    for left in lefts:
        scene = _PIXEL4_LEFT.fullmatch(left.name)["scene"]
        files = {"left": left, "right": base / f"{scene}_right.png", "target": base / PIXEL4_GT_DIR / f"{scene}_gt.png"}
        for col, path in files.items():
            if not path.is_file():
                raise _root_error(name, where, f"{root}: scene {scene!r} has no {col} image ({path} missing)")
        rows.append({"scene": scene, "split": SPLIT, **files})
    return rows


def _stamp(name: str, cfg: RealSetConfig, categories: str, **extra: Any) -> dict:
    data = {"name": name, **dataclasses.asdict(cfg)}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    return {"source": f"real:{cfg.source}", "config_sha": digest, "set": name, "root": cfg.root,
            "label": cfg.display_label, "categories": categories, **extra}


def prepare_real_set(name: str, cfg: RealSetConfig, out_dir: str | Path, where: str = "params.yaml") -> Path:
    """Write set ``name`` as a prepared dataset (split ``test``) into ``out_dir``, built in a temp folder beside it
    and renamed when complete; ``where`` (the params file) is named in the errors.

    ``dpdd_layout`` manifests point at the root's files with paths relative to ``out_dir``: a folder built elsewhere
    must be moved to the same depth below the same parent (what the ``real_data`` stage's swap does).
    """
    rows = check_root(name, cfg, where)
    out_dir = Path(out_dir)
    if cfg.source == "dpdd_layout":
        rows = validate_rows(assign_categories(rows, Path(cfg.root).expanduser()), progress=False)
        with atomic_dir(out_dir, "build") as build:
            write_manifest(build, manifest_rows(rows, out_dir.parent.resolve() / out_dir.name))
            origins = sorted({r["category_origin"] for r in rows} - {""})
            atomic_write_json(build / SOURCE_STAMP, _stamp(name, cfg, "; ".join(origins) or "none"))
        return out_dir
    with atomic_dir(out_dir, "build") as build:
        manifest, scenes = [], {}
        for row in rows:
            views, record = convert_pixel4(row)
            paths = {k: v for k, v in layout_paths(SPLIT, row["scene"]).items() if k in views}
            for col, img in views.items():
                write_image(build / paths[col], img, bits=16)
            h, w = views["left"].shape[:2]
            manifest.append({"scene": row["scene"], "split": SPLIT, "category": "", **paths, "combined": "",
                             "height": h, "width": w, "bit_depth": 16})
            scenes[row["scene"]] = record
        write_manifest(build, manifest)
        atomic_write_json(build / CONVERSION_JSON, {"recipe": PIXEL4_RECIPE, "scenes": scenes})
        atomic_write_json(build / SOURCE_STAMP, _stamp(name, cfg, "none", conversion=PIXEL4_RECIPE,
                                                       conversion_per_scene=CONVERSION_JSON))
    return out_dir


# ---------------------------------------------------------------------------------------------- Pixel 4

# Every choice of :func:`convert_pixel4`, recorded in the stamp and conversion.json (reasons: docs/data-real.md).
PIXEL4_RECIPE = {
    "views": f"(v - {PIXEL4_BLACK}) / {PIXEL4_WHITE}, clipped to [0, 1] (14-bit raw, black level {PIXEL4_BLACK})",
    "crop": "L/R centre-cropped to the GT's size (CMU data: 1008x1344 of 1512x2016, rows 252:1260, cols 336:1680; "
            "each scene's box in conversion.json)",
    "vignetting": "not corrected (the calibration white sheets were not copied)",
    "fit": "target = gain * GT/65535 + offset, least squares against (L+R)/2 in linear values, per scene, "
           "on the pixels where neither view is clipped",
    "exposure": f"per scene, one scale for L, R and target: percentile {EXPOSURE_PERCENTILE} of (L+R)/2 -> "
                f"{EXPOSURE_LEVEL}, then clipped to [0, 1]",
    "gamma": "x ** (1 / 2.2), the synthetic simulator's display curve (ldp.data.synthetic.to_display)",
    "channels": "grey (green channel) replicated to RGB, 16-bit PNG",
    "combined": "none: the phone gives no camera-combined image; combined-input models get (L+R)/2",
    "defocus_gt": "not used",
}


def _read_raw(path: Path, bits16: bool) -> np.ndarray:
    try:
        img = read_image_raw(path)
    except ImageReadError as exc:
        raise DatasetError(str(exc)) from exc
    if img.ndim != 2:
        raise DatasetError(f"{path}: expected a grey (one-channel) Pixel 4 image, got {img.shape[2]} channels")
    if bits16 and img.dtype != np.uint16:
        raise DatasetError(f"{path}: expected a 16-bit PNG holding 14-bit raw values, got 8-bit")
    return img


def convert_pixel4(row: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One Pixel 4 scene (``left``, ``right``, ``target`` paths) as float32 HxWx3 images in [0, 1] (the recipe of
    :data:`PIXEL4_RECIPE`) and the numbers it chose (crop box, gain, offset, exposure)."""
    left_raw, right_raw = _read_raw(row["left"], True), _read_raw(row["right"], True)
    gt_raw = _read_raw(row["target"], False)
    if left_raw.shape != right_raw.shape:
        raise DatasetError(f"{row['right']}: size {right_raw.shape} differs from the left view {left_raw.shape}")
    (h, w), (gh, gw) = left_raw.shape, gt_raw.shape
    if gh > h or gw > w:
        raise DatasetError(f"{row['target']}: GT {gw}x{gh} is larger than the views {w}x{h}")
    top, lft = (h - gh) // 2, (w - gw) // 2
    box = (slice(top, top + gh), slice(lft, lft + gw))

    def linear(raw: np.ndarray) -> np.ndarray:
        return np.clip((raw[box].astype(np.float64) - PIXEL4_BLACK) / PIXEL4_WHITE, 0.0, 1.0)

    left, right = linear(left_raw), linear(right_raw)
    mean = (left + right) / 2
    gt = to_float(gt_raw).astype(np.float64)
    usable = (left > 0) & (left < 1) & (right > 0) & (right < 1)
    x, y = gt[usable], mean[usable]
    if x.size < 2 or x.var() == 0:
        raise DatasetError(f"{row['target']}: cannot fit the GT to (L+R)/2 (flat GT or every view pixel clipped)")
    gain = float(((x - x.mean()) * (y - y.mean())).mean() / x.var())
    offset = float(y.mean() - gain * x.mean())
    target = gain * gt + offset
    level = float(np.percentile(mean, EXPOSURE_PERCENTILE))
    if level <= 0:
        raise DatasetError(f"{row['left']}: the views are black (percentile {EXPOSURE_PERCENTILE} of (L+R)/2 is 0)")
    scale = EXPOSURE_LEVEL / level
    views = {}
    for col, img in (("left", left), ("right", right), ("target", target)):
        views[col] = np.repeat(to_display(np.clip(img * scale, 0.0, 1.0).astype(np.float32))[:, :, None], 3, axis=2)
    record = {"crop_rows": [top, top + gh], "crop_cols": [lft, lft + gw], "gain": gain, "offset": offset,
              "fit_pixels": int(x.size), "fit_correlation": float(np.corrcoef(x, y)[0, 1]),
              "exposure_percentile_value": level, "exposure_scale": scale,
              "target_clipped_fraction": float(((target * scale < 0) | (target * scale > 1)).mean())}
    return views, record
