"""Config and entry points: estimate the blur map of every scene of a dataset manifest, or of any DP folder."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from tqdm import tqdm

from ldp.blurmap.classical import classical_blurmap
from ldp.blurmap.clip_estimator import ClipBlurEstimator
from ldp.blurmap.common import BlurMapError, grid_shape, to_nchw
from ldp.blurmap.io import save_blurmap, write_meta
from ldp.blurmap.oracle import oracle_blurmap
from ldp.blurmap.weights import load_clip
from ldp.data.manifest import load_manifest, load_scene
from ldp.device import resolve_device
from ldp.fsutil import atomic_dir


@dataclass(frozen=True)
class BlurMapConfig:
    """params.yaml section ``blurmap`` (or one entry per map id)."""

    estimator: Literal["clip", "classical", "oracle", "none"] = "clip"
    clip_model: Literal["ViT-B-32", "ViT-B-16", "RN50"] = "ViT-B-32"
    weights: str = "none"  # openai | none (random init, smoke only) | path to a checkpoint
    prompt_format: Literal["ours", "diff_lr", "inconsistent", "halves", "single"] = "ours"
    patch_size: int = 40
    thresholds: tuple[float, float] | None = None  # None: the (A, B) of this format on this backbone (prompts.py)
    truncate: Literal["auto", "on", "off"] = "auto"  # auto: on unless weights are random
    batch_size: int = 64
    device: str = "auto"  # auto: cuda when available
    seed: int = 0  # random-init weights
    max_disparity: int = 8  # classical estimator search range (px)
    single_view: Literal["combined", "left"] = "combined"  # input of the "single" prompt format
    split: str | None = None  # None: every scene of the manifest


class BlurMapper:
    """Maps one scene (dict of H×W×3 arrays from ``load_scene``) to a gh×gw float32 map."""

    def __init__(self, cfg: BlurMapConfig):
        self.cfg = cfg
        self.clip: ClipBlurEstimator | None = None
        if cfg.estimator == "clip":
            loaded = load_clip(cfg.clip_model, cfg.weights, resolve_device(cfg.device, "blur-map device"), cfg.seed)
            self.clip = ClipBlurEstimator(loaded, cfg.prompt_format, cfg.patch_size, cfg.thresholds,
                                          cfg.truncate, cfg.batch_size)

    def meta(self) -> dict:
        cfg = self.cfg
        base = {"estimator": cfg.estimator, "patch_size": cfg.patch_size, "config": asdict(cfg)}
        if self.clip is not None:
            return {**base, **self.clip.meta()}
        extra = {
            "classical": {"method": "ZNCC block matching, |disparity| per patch", "max_disparity": cfg.max_disparity},
            "oracle": {"method": "mean |ground-truth defocus| per patch"},
            "none": {"method": "all-zero map (no blur prior)"},
        }[cfg.estimator]
        return {**base, **extra, "clip_model": None, "prompt_format": None, "weights_kind": "n/a",
                "thresholds": None, "thresholds_source": None, "normalisation": "per-image min-max"}

    def __call__(self, scene: dict, name: str = "") -> np.ndarray:
        cfg = self.cfg
        if "left" not in scene or "right" not in scene:
            if cfg.estimator in ("classical",) or (cfg.estimator == "clip" and cfg.prompt_format != "single"):
                raise BlurMapError(f"scene {name!r}: the {cfg.estimator} estimator needs left and right views")
        if cfg.estimator == "oracle":
            if "defocus" not in scene:
                raise BlurMapError(f"scene {name!r}: the oracle estimator needs a ground-truth defocus map "
                                   "(synthetic data only)")
            return oracle_blurmap(scene["defocus"], cfg.patch_size)[0].numpy()
        ref = next(scene[k] for k in ("left", "combined", "target") if k in scene)
        if cfg.estimator == "none":
            return np.zeros(grid_shape(ref.shape[0], ref.shape[1], cfg.patch_size), np.float32)
        if cfg.estimator == "classical":
            return classical_blurmap(to_nchw(scene["left"]), to_nchw(scene["right"]), cfg.patch_size,
                                     cfg.max_disparity)[0].numpy()
        if cfg.prompt_format == "single":
            view = scene.get("combined") if cfg.single_view == "combined" else None
            if view is None:
                view = (scene["left"] + scene["right"]) / 2 if "right" in scene else scene["left"]
            return self.clip.blur_map(to_nchw(view))[0].numpy()
        return self.clip.blur_map(to_nchw(scene["left"]), to_nchw(scene["right"]))[0].numpy()


def estimate_blurmaps(cfg: BlurMapConfig, dataset_root: str | Path, out_dir: str | Path,
                      progress: bool = True) -> Path:
    """Map every scene of ``dataset_root``'s manifest into ``out_dir`` (written to a temp dir, then renamed)."""
    dataset_root = Path(dataset_root)
    return estimate_table(cfg, dataset_root, load_manifest(dataset_root, cfg.split), out_dir, progress)


# The folder layouts :func:`estimate_folder` reads, in the order it tries them.
FOLDER_LAYOUTS = ("manifest", "dpdd", "pairs")


def index_dp_folder(root: str | Path) -> tuple[pd.DataFrame, str]:
    """The scenes of a DP folder as a manifest-like table (paths absolute, or relative to ``root``) and its layout:

    ``manifest``: a prepared dataset root (``manifest.csv``, what the data stage writes);
    ``dpdd``: the DPDD layout (``dd_dp_dataset_canon/{split}_{l,r,c}/{source,target}``, a folder holding
    ``{split}_l``, or Restormer's ``inputL/inputR/inputC/target``), read by ``ldp.data.sources.index_dpdd_layout``;
    ``pairs``: a flat folder of ``<scene>_L.png`` / ``<scene>_R.png`` pairs (``ldp.data.sources.index_folder``).
    """
    from ldp.data.manifest import COLUMNS, MANIFEST_NAME
    from ldp.data.sources import FolderConfig, find_layout_root, index_dpdd_layout, index_folder

    root = Path(root)
    if not root.is_dir():
        raise BlurMapError(f"{root}: folder not found")
    if (root / MANIFEST_NAME).is_file():
        return load_manifest(root), "manifest"
    if find_layout_root(root) is not None:
        rows, layout = index_dpdd_layout(root), "dpdd"
    elif any(root.glob("*_L.png")):
        rows, layout = index_folder(FolderConfig(), root), "pairs"
    else:
        raise BlurMapError(f"{root}: not a DP folder: no {MANIFEST_NAME} (a prepared dataset), no DPDD layout "
                           "({split}_l/source, {split}_r/source or inputL/inputR) and no *_L.png/*_R.png pairs")
    table = pd.DataFrame(rows, columns=COLUMNS).astype(object).fillna("")
    for col in ("left", "right", "target", "combined", "defocus"):
        table[col] = table[col].map(str)
    return table, layout


def estimate_folder(cfg: BlurMapConfig, root: str | Path, out_dir: str | Path, progress: bool = True) -> str:
    """Map every scene of a DP folder (any of :data:`FOLDER_LAYOUTS`, ``cfg.split`` only when set) into
    ``out_dir``, as the stage does; returns the layout read."""
    table, layout = index_dp_folder(root)
    if cfg.split is not None:
        table = table[table["split"] == cfg.split].reset_index(drop=True)
    estimate_table(cfg, Path(root), table, out_dir, progress, extra={"layout": layout})
    return layout


def estimate_table(cfg: BlurMapConfig, dataset_root: Path, table: pd.DataFrame, out_dir: str | Path,
                   progress: bool = True, extra: dict | None = None) -> Path:
    """Map every row of ``table`` (manifest columns; paths relative to ``dataset_root`` or absolute) into
    ``out_dir`` (written to a temp dir, then renamed), with ``meta.json``."""
    out_dir = Path(out_dir)
    if len(table) == 0:
        where = f" in split {cfg.split!r}" if cfg.split else ""
        raise BlurMapError(f"{dataset_root}: no scenes{where}")
    duplicate = table["scene"][table["scene"].duplicated()]
    if len(duplicate):
        raise BlurMapError(f"{dataset_root}: scene {duplicate.iloc[0]!r} appears twice (in two splits?); "
                           "choose one split")
    mapper = BlurMapper(cfg)
    with atomic_dir(out_dir) as tmp:
        lacking = table["scene"][table["defocus"] == ""] if cfg.estimator == "oracle" else []
        if len(lacking):  # before any map is estimated
            raise BlurMapError(f"{dataset_root}: the oracle estimator needs a ground-truth defocus map for every "
                               f"scene, and {len(lacking)} of {len(table)} have none (first: {lacking.iloc[0]!r}); "
                               "only the synthetic data has them ({split}_c/defocus/<scene>.npy)")
        grids = {}
        for _, row in tqdm(table.iterrows(), total=len(table), desc=f"blur maps ({cfg.estimator})",
                           disable=not progress):
            blurmap = mapper(load_scene(dataset_root, row), row["scene"])
            save_blurmap(tmp, row["scene"], blurmap)
            grids[row["scene"]] = list(blurmap.shape)
        write_meta(tmp, {**mapper.meta(), "dataset": str(dataset_root), **(extra or {}), "scenes": grids})
    return out_dir
