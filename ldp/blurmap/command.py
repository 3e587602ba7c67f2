"""``ldp blurmap``: the blur maps of one DP pair (``--left --right --out MAP.npy``) or of every scene of a DP folder
(``--data ROOT [--out DIR]``), with the estimator of the blur-map stage (:mod:`ldp.blurmap.estimate`).

The config starts from the defaults (:class:`BlurMapConfig`), or from the entry ``blurmaps.<--map>`` of ``--params``;
each option given replaces one of its fields. Maps are written as the stage writes them: float32 at patch-grid
resolution, atomically, with their meta (``meta.json`` in the folder; ``MAP.meta.json`` beside one pair's map).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ldp.blurmap.common import BlurMapError
from ldp.blurmap.estimate import BlurMapConfig, BlurMapper, estimate_folder
from ldp.blurmap.io import META_NAME, load_npy_map, read_meta, save_blurmap
from ldp.config import DEFAULT_PARAMS, ConfigError, from_dict, load_params, section, subsection, where_of
from ldp.fsutil import atomic_write_json

# BlurMapConfig field -> the option that sets it.
OPTIONS = {"estimator": "--estimator", "clip_model": "--clip-model", "weights": "--weights",
           "prompt_format": "--prompt-format", "patch_size": "--patch-size", "device": "--device", "split": "--split"}
DEFAULT_FOLDER_OUT = Path("blurmaps")  # folder mode without --out: blurmaps/<map id or estimator> (working folder)


def blurmap_config(args: argparse.Namespace) -> BlurMapConfig:
    """The config the options ask for; a bad value is a :class:`ConfigError` naming the option (or params key)."""
    if args.map:
        params = load_params(args.params or DEFAULT_PARAMS)
        if args.map not in subsection(params, "blurmaps"):
            raise ConfigError(f"{where_of(params)}:blurmaps.{args.map}: no such blur-map entry (--map)")
        base = section(params, f"blurmaps.{args.map}", BlurMapConfig)
    elif args.params:
        raise ValueError("--params: give --map ID too (the entry blurmaps.<ID> of that file is the config)")
    else:
        base = BlurMapConfig()
    changes: dict[str, Any] = {}
    for name, option in OPTIONS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        try:
            changes[name] = getattr(from_dict(BlurMapConfig, {name: value}, "blurmap"), name)
        except ConfigError as exc:
            raise ConfigError(f"{option}: {str(exc).split(': ', 1)[1]}") from None
    if changes.get("patch_size", 1) < 1:
        raise ConfigError(f"--patch-size: expected a positive integer, got {changes['patch_size']}")
    return dataclasses.replace(base, **changes)


def pair_meta_path(out: Path) -> Path:
    """``MAP.npy`` -> ``MAP.meta.json`` (the meta of one pair's map, beside it)."""
    return out.with_suffix(".meta.json")


def blurmap_pair(cfg: BlurMapConfig, left: str | Path, right: str | Path, out: str | Path,
                 defocus: str | Path | None = None) -> dict[str, Any]:
    """Estimate the map of one pair into ``out`` (``.npy``) and its meta into ``MAP.meta.json``; returns the meta."""
    from ldp.imageio import read_image

    out = Path(out)
    if out.suffix != ".npy":
        raise ValueError(f"--out {out}: a pair's map is a .npy file (MAP.npy)")
    scene = {"left": read_image(left), "right": read_image(right)}
    if scene["left"].shape != scene["right"].shape:
        raise BlurMapError(f"{right}: {scene['right'].shape[1]}x{scene['right'].shape[0]}, but the left view {left} "
                           f"is {scene['left'].shape[1]}x{scene['left'].shape[0]}")
    h, w = scene["left"].shape[:2]
    if defocus is not None:
        dmap = load_npy_map(defocus, "defocus map").astype(np.float32)
        if dmap.shape != (h, w):
            raise BlurMapError(f"{defocus}: defocus map is {dmap.shape}, the pair is {h}x{w} (H×W expected)")
        scene["defocus"] = dmap
    elif cfg.estimator == "oracle":
        raise BlurMapError("--estimator oracle: needs the pair's ground-truth signed defocus map (--defocus D.npy, "
                           "H×W); only synthetic data has one, a camera pair has none")
    mapper = BlurMapper(cfg)
    blurmap = mapper(scene, out.stem)
    save_blurmap(out.parent, out.stem, blurmap)
    meta = {**mapper.meta(), "left": str(left), "right": str(right), "image_size_hw": [h, w],
            "grid": list(blurmap.shape), **({"defocus": str(defocus)} if defocus is not None else {})}
    atomic_write_json(pair_meta_path(out), meta, sort_keys=True)
    return meta


def run_blurmap_command(args: argparse.Namespace) -> dict[str, Any]:
    """``ldp blurmap``: pair mode (``--left --right --out``) or folder mode (``--data``); returns a summary."""
    pair = args.left is not None or args.right is not None
    if pair and args.data:
        raise ValueError("give either --left/--right (one pair) or --data (a folder), not both")
    if not pair and not args.data:
        raise ValueError("give --left L.png --right R.png --out MAP.npy (one pair) or --data ROOT (a folder)")
    cfg = blurmap_config(args)
    if pair:
        if not (args.left and args.right and args.out):
            raise ValueError("one pair needs --left, --right and --out MAP.npy")
        if args.split is not None:
            raise ValueError("--split: for --data only")
        meta = blurmap_pair(cfg, args.left, args.right, args.out, args.defocus)
        return {"mode": "pair", "out": args.out, "meta": str(pair_meta_path(Path(args.out))),
                "estimator": cfg.estimator, "weights_kind": meta.get("weights_kind"), "grid": meta["grid"]}
    if args.defocus:
        raise ValueError("--defocus: for one pair only (a folder's defocus maps come from its layout)")
    out = Path(args.out) if args.out else DEFAULT_FOLDER_OUT / (args.map or cfg.estimator)
    layout = estimate_folder(cfg, args.data, out, progress=not args.no_progress)
    meta = read_meta(out)
    return {"mode": "folder", "data": args.data, "layout": layout, "out": str(out),
            "meta": str(out / META_NAME), "estimator": cfg.estimator, "weights_kind": meta.get("weights_kind"),
            "scenes": len(meta["scenes"])}
