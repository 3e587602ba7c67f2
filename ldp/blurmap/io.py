"""Blur maps on disk (docs/design.md): ``<map_dir>/<scene>.npy`` float32 [0, 1] at patch-grid resolution,
1 = most blurred, plus ``<map_dir>/meta.json`` describing the estimator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ldp.blurmap.common import BlurMapError
from ldp.fsutil import atomic_write, atomic_write_json
from ldp.fsutil import replace_dir as replace_dir  # re-exported (public API of this module)

META_NAME = "meta.json"


def squeeze_to_2d(arr: np.ndarray) -> np.ndarray:
    """Drop leading unit axes (N, C) but keep a 1-row or 1-column map 2-D, unlike ``np.squeeze``."""
    arr = np.asarray(arr)
    if arr.ndim > 2 and all(d == 1 for d in arr.shape[:-2]):
        arr = arr.reshape(arr.shape[-2:])
    return arr


def save_blurmap(map_dir: str | Path, scene: str, blurmap) -> Path:
    """Write one map atomically (temp file, then rename)."""
    arr = np.asarray(blurmap.detach().cpu() if isinstance(blurmap, torch.Tensor) else blurmap, dtype=np.float32)
    arr = squeeze_to_2d(arr)
    if arr.ndim != 2 or not np.isfinite(arr).all() or arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
        raise BlurMapError(f"blur map for scene {scene!r} must be a finite 2-D array in [0, 1]")
    return atomic_write(Path(map_dir) / f"{scene}.npy", lambda fh: np.save(fh, np.clip(arr, 0.0, 1.0)))


def write_meta(map_dir: str | Path, meta: dict) -> Path:
    return atomic_write_json(Path(map_dir) / META_NAME, meta, sort_keys=True)


def read_meta(map_dir: str | Path) -> dict:
    path = Path(map_dir) / META_NAME
    if not path.is_file():
        raise BlurMapError(f"{path}: no blur-map meta.json (estimate the maps first: dvc repro blurmaps)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BlurMapError(f"{path}: not valid JSON: {exc}") from exc


def load_npy_map(path: str | Path, what: str = "blur map") -> np.ndarray:
    """A map saved with ``np.save`` (no pickles); :class:`BlurMapError` names the file if missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise BlurMapError(f"{path}: {what} not found")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BlurMapError(f"{path}: cannot read {what} (.npy expected): {exc}") from exc


def read_blurmap(map_dir: str | Path, scene: str) -> np.ndarray:
    """The stored patch-grid map (gh×gw float32)."""
    path = Path(map_dir) / f"{scene}.npy"
    arr = load_npy_map(path, f"blur map for scene {scene!r}")
    if arr.ndim != 2 or not np.isfinite(arr).all():
        raise BlurMapError(f"{path}: expected a finite 2-D float map, got shape {arr.shape}")
    return arr.astype(np.float32)


def upsample_blurmap(grid_map, size: tuple[int, int], patch_size: int | None = None) -> np.ndarray:
    """Bilinear upsampling of a patch-grid map to ``size`` = (H, W).

    When the grid is the one of an H×W image with ``patch_size`` (remainder rows/columns dropped), the
    covered area gh·p × gw·p is upsampled and the remainder takes the edge values; otherwise the map is
    stretched to (H, W).
    """
    arr = np.asarray(grid_map, dtype=np.float32)
    height, width = int(size[0]), int(size[1])
    gh, gw = arr.shape
    t = torch.from_numpy(np.ascontiguousarray(arr))[None, None]
    p = patch_size
    if p and gh == height // p and gw == width // p:
        up = F.interpolate(t, size=(gh * p, gw * p), mode="bilinear", align_corners=False)
        up = F.pad(up, (0, width - gw * p, 0, height - gh * p), mode="replicate")
    else:
        up = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
    return up[0, 0].clamp(0.0, 1.0).numpy()


def load_blurmap(map_dir: str | Path, scene: str, size: tuple[int, int]) -> np.ndarray:
    """The map of ``scene`` upsampled bilinearly to ``size`` = (H, W): float32 H×W in [0, 1]."""
    meta = read_meta(map_dir)
    return upsample_blurmap(read_blurmap(map_dir, scene), size, meta.get("patch_size"))

