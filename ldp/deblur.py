"""Deblur one user DP pair: ``ldp deblur --left L.png --right R.png --out O.png --model ldp-small --weights CKPT``.

The pair is read like the dataset (16-bit /65535, 8-bit /255; both views of one size and one bit depth, the data
stage's rule), restored at full resolution (whole or tiled,
per the model's registered mode unless overridden), clamped to [0, 1] and written as a 16-bit PNG atomically.
Weights written by ``ldp train`` have the run's resolved experiment beside them (``config.json``): the network is
rebuilt from it (model and build overrides) and its blur map is estimated with the config it was trained with.
Models that take a blur map get one from ``blurmap`` (a ``.npy`` map at patch-grid or image size, or an array),
or, when ``blurmap`` is None, from the blur-map module (``blurmap_cfg``, else the training run's config, else the
defaults with a warning: offline they use random CLIP weights, which the returned record says).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ldp.device import resolve_device
from ldp.evaluate import RANDOM_INIT, EvaluationError, prepare_model, restore, to_batch, to_image, weights_record
from ldp.imageio import bit_depth, depth_mismatch, read_image_raw, size_mismatch, to_rgb_float, write_image
from ldp.registry import get_spec


class DeblurError(EvaluationError):
    """Bad deblur input; the message names the file or option."""


def _blurmap_at(blurmap, size: tuple[int, int], patch_size: int, device: torch.device) -> torch.Tensor:
    """A blur map (patch grid or image size, H×W) as 1×1×H×W at image size, upsampled like the blur-map stage."""
    from ldp.blurmap.io import squeeze_to_2d, upsample_blurmap

    arr = blurmap.detach().cpu().numpy() if torch.is_tensor(blurmap) else np.asarray(blurmap)
    arr = squeeze_to_2d(arr).astype(np.float32)
    if arr.ndim != 2 or not np.isfinite(arr).all():
        raise DeblurError(f"blur map must be a finite 2-D (H×W) array, got shape {arr.shape}")
    if arr.shape != size:
        arr = upsample_blurmap(arr, size, patch_size)
    return torch.from_numpy(np.ascontiguousarray(arr))[None, None].to(device)


def estimate_blurmap(left: np.ndarray, right: np.ndarray, cfg=None) -> tuple[np.ndarray, dict]:
    """The blur map of one pair (patch grid) and its meta, from the blur-map module (defaults when cfg is None)."""
    from ldp.blurmap import BlurMapConfig, BlurMapper

    mapper = BlurMapper(cfg or BlurMapConfig())
    return mapper({"left": left, "right": right}, name="user pair"), mapper.meta()


def trained_experiment(weights: str | Path | None):
    """The resolved experiment a training run wrote beside ``weights`` (``config.json``), or None."""
    from ldp.experiments import CONFIG_JSON, read_resolved

    if weights is None or not (Path(weights).parent / CONFIG_JSON).is_file():
        return None
    return read_resolved(Path(weights).parent)


def deblur_pair(
    left_path: str | Path,
    right_path: str | Path,
    out_path: str | Path,
    model_name: str | None,
    weights: str | Path | None,
    blurmap: str | Path | np.ndarray | torch.Tensor | None = None,
    *,
    blurmap_cfg: Any = None,  # ldp.blurmap.BlurMapConfig
    device: str = "auto",
    tiling: str = "auto",
    tile: int = 512,
    overlap: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Restore one DP pair and write ``out_path`` (16-bit PNG). Returns a small record of what was done.

    ``model_name`` None: the model of the training run that wrote ``weights`` (its ``config.json``)."""
    trained = trained_experiment(weights)
    if trained is not None and model_name not in (None, trained.model):
        raise DeblurError(f"{weights}: trained as {trained.model!r} (its config.json), not {model_name!r}")
    if trained is None and model_name is None:
        raise DeblurError("give --model, or --weights written by ldp train (with its config.json beside them)")
    model_name = trained.model if trained is not None else model_name
    spec = get_spec(model_name)
    if tiling not in ("auto", "whole", "tiled", "windows"):
        raise DeblurError(f"tiling must be auto, whole, tiled or windows, got {tiling!r}")
    left_raw, right_raw = read_image_raw(left_path), read_image_raw(right_path)
    problem = (size_mismatch(right_path, right_raw.shape[:2], left_path, left_raw.shape[:2])
               or depth_mismatch(right_path, bit_depth(right_raw), left_path, bit_depth(left_raw)))
    if problem:
        raise DeblurError(problem)
    left_np, right_np = to_rgb_float(left_raw), to_rgb_float(right_raw)
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".png":
        raise DeblurError(f"{out_path}: output must be a .png (written as 16-bit)")
    dev = resolve_device(device)
    h, w = left_np.shape[:2]

    bmap = None
    blurmap_info: dict[str, Any] | None = None
    if spec.input_kind == "dp+blurmap":
        from ldp.blurmap import BlurMapConfig

        bcfg = blurmap_cfg or (trained.blurmap_config if trained is not None else None)
        if bcfg is None:
            if blurmap is None and weights is not None:
                warnings.warn(f"{weights}: no config.json beside the weights, so the blur map is estimated with the "
                              "default blur-map config (random CLIP weights offline), not the one the network was "
                              "trained with; pass --blurmap to give one", RuntimeWarning, stacklevel=2)
            bcfg = BlurMapConfig()
        if blurmap is None:
            blurmap, meta = estimate_blurmap(left_np, right_np, bcfg)
            blurmap_info = {"source": "estimated", "estimator": meta.get("estimator"),
                            "clip_model": meta.get("clip_model"), "weights_kind": meta.get("weights_kind")}
        elif isinstance(blurmap, (str, Path)):
            from ldp.blurmap.common import BlurMapError
            from ldp.blurmap.io import load_npy_map

            blurmap_info = {"source": str(blurmap)}
            try:
                blurmap = load_npy_map(blurmap)
            except BlurMapError as exc:
                raise DeblurError(str(exc)) from exc
        else:
            blurmap_info = {"source": "given"}
        bmap = _blurmap_at(blurmap, (h, w), bcfg.patch_size, dev)

    model = prepare_model(model_name, weights, dev, seed=seed,
                          overrides=trained.model_overrides if trained is not None else None)
    mode = spec.inference if tiling == "auto" else tiling
    t0 = time.perf_counter()
    pred = restore(model, spec.input_kind, to_batch(left_np, dev), to_batch(right_np, dev), bmap, mode, tile,
                   overlap, label=f"{left_path} + {right_path}, weights {weights or RANDOM_INIT}")
    elapsed = time.perf_counter() - t0
    write_image(out_path, to_image(pred), bits=16)
    return {
        "out": str(out_path),
        "model": model_name,
        "weights": weights_record(weights, model_name),
        "experiment": trained.name if trained is not None else None,
        "inference": mode,
        "blurmap": blurmap_info,
        "seconds": elapsed,
        "size": [h, w],
    }
