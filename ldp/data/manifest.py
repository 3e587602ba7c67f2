"""The canonical dataset manifest (``manifest.csv`` at a dataset root).

Every source (synthetic, dpdd, dpd_disp, folder) is normalised into one table; paths are relative to the
root and an empty cell means absent. See docs/design.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ldp.fsutil import atomic_write
from ldp.imageio import read_image

MANIFEST_NAME = "manifest.csv"
COLUMNS = [
    "scene", "split", "category", "left", "right", "target", "combined", "defocus",
    "height", "width", "bit_depth",
]
IMAGE_COLUMNS = ("left", "right", "target", "combined")
# Which data config built a dataset root ({"source", "config_sha"}), written beside the manifest.
SOURCE_STAMP = "source.json"
# Where DPDD's indoor/outdoor categories come from when the data ships no official label npys.
UNVERIFIED_LISTS = "ldp/data/splits lists (UNVERIFIED)"
# The DPDD folder layout every dataset root is written in (docs/data.md).
LAYOUT_DIR = "dd_dp_dataset_canon"


def layout_paths(split: str, scene: str, ext: str = ".png") -> dict[str, str]:
    """Relative DPDD-layout paths of one scene's images (and its synthetic defocus map)."""
    return {"left": f"{LAYOUT_DIR}/{split}_l/source/{scene}_L{ext}",
            "right": f"{LAYOUT_DIR}/{split}_r/source/{scene}_R{ext}",
            "combined": f"{LAYOUT_DIR}/{split}_c/source/{scene}{ext}",
            "target": f"{LAYOUT_DIR}/{split}_c/target/{scene}{ext}",
            "defocus": f"{LAYOUT_DIR}/{split}_c/defocus/{scene}.npy"}


class ManifestError(ValueError):
    """The manifest is missing or malformed; the message names the file."""


def write_manifest(root: str | Path, rows: list[dict]) -> Path:
    """Write ``manifest.csv`` atomically; rows are dicts with (a subset of) :data:`COLUMNS`."""
    root = Path(root)
    table = pd.DataFrame(rows, columns=COLUMNS).astype(object).fillna("")
    return atomic_write(root / MANIFEST_NAME, lambda fh: table.to_csv(fh, index=False), "w", newline="")


def load_manifest(root: str | Path, split: str | None = None) -> pd.DataFrame:
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{path}: no manifest; build the dataset first (dvc repro data)")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ManifestError(f"{path}: missing columns {missing}")
    for col in ("height", "width", "bit_depth"):
        table[col] = pd.to_numeric(table[col], errors="coerce").fillna(0).astype(int)
    if split is not None:
        table = table[table["split"] == split].reset_index(drop=True)
    return table


def load_scene(root: str | Path, row) -> dict[str, np.ndarray]:
    """Load the images of one manifest row as float32 HxWx3 in [0, 1] (plus ``defocus`` HxW if present)."""
    root = Path(root)
    out: dict[str, np.ndarray] = {}
    for col in IMAGE_COLUMNS:
        rel = row[col]
        if rel:
            out[col] = read_image(root / rel)
    if row["defocus"]:
        out["defocus"] = np.load(root / row["defocus"]).astype(np.float32)
    return out


def categories_origin(root: str | Path) -> str:
    """Where a dataset root's indoor/outdoor categories came from, as its stamp records it ("" if unrecorded)."""
    import json

    stamp = Path(root) / SOURCE_STAMP
    if not stamp.is_file():
        return ""
    try:
        return str(json.loads(stamp.read_text()).get("categories", ""))
    except (json.JSONDecodeError, AttributeError):
        return ""
