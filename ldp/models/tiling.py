"""Whole-image, tiled and windowed inference (the modes a model registers; ``ldp.registry.InferenceMode``).

``tiled_forward`` runs a model on overlapping tiles and blends them with a smooth window: across an overlap of
``overlap`` pixels the outer quarter on each side gets weight 0 (those pixels saw the tile's artificial border) and the
middle half a raised-cosine ramp; facing ramps sum to one. A model whose receptive-field radius is at most
``overlap // 4`` therefore gives the whole-image result up to float rounding. Image borders get no ramp.

Models with image-global operations do not have that property: NAFNet's simplified channel attention (global
average pool), LDP's channel attention (affinities summed over all pixels) and LDP's 32x32-pooled blur prior
(whose bins follow the tile, not the image) all see only the tile. Tiling then changes the function the network
computes; large tiles keep the change small (docs/models.md, tests/test_tiling.py).

``window_forward`` is the other scheme: non-overlapping windows and no blending, as DeepRFT's official ``test.py``
(``window_partitionx`` / ``window_reversex``, 512-px windows on DPDD) scores its rows (docs/baselines.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ldp.models.inputs import primary_output
from ldp.registry import InferenceMode


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile start offsets along one axis: a stride of ``tile - overlap``, the last tile flush with the end."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _axis_window(start: int, size: int, length: int, overlap: int, dtype, device) -> torch.Tensor:
    """Per-axis blending weights of one tile: 1 inside; at an edge that lies inside the image, 0 over the outer
    quarter of the overlap, then a raised-cosine ramp over its middle half. Facing ramps sum to one."""
    weights = torch.ones(size, dtype=torch.float64)
    ramp_len = min(overlap, size)
    if ramp_len > 0:
        margin = ramp_len // 4
        i = torch.arange(ramp_len, dtype=torch.float64)
        u = ((i + 0.5 - margin) / (ramp_len - 2 * margin)).clamp(0.0, 1.0)
        ramp = 0.5 - 0.5 * torch.cos(math.pi * u)
        if start > 0:  # leading edge is inside the image
            weights[:ramp_len] = torch.minimum(weights[:ramp_len], ramp)
        if start + size < length:  # trailing edge is inside the image
            weights[-ramp_len:] = torch.minimum(weights[-ramp_len:], ramp.flip(0))
    return weights.to(dtype=dtype, device=device)


def tiled_forward(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    overlap: int,
    multiple: int = 16,
    progress: bool = False,
) -> torch.Tensor:
    """Run ``model`` on overlapping ``tile`` x ``tile`` crops of ``x`` (N×C×H×W) and blend the outputs.

    ``tile`` must be a multiple of ``multiple`` (the model's size multiple). A side shorter than ``tile`` is one tile
    of the image's extent, zero-padded at the bottom/right to ``multiple`` and cropped after (as NAFNet pads).
    Returns the primary (full-resolution) output, N×C_out×H×W.
    """
    if x.ndim != 4:
        raise ValueError(f"tiled_forward expects N x C x H x W, got {tuple(x.shape)}")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    if tile < 1 or tile % multiple:
        raise ValueError(f"tile ({tile}) must be a positive multiple of the model's size multiple ({multiple})")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap ({overlap}) must be in [0, tile) = [0, {tile})")
    n, _, h, w = x.shape
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    out = None
    weight_sum = None
    for y0, x0 in tqdm([(y, x_) for y in ys for x_ in xs], desc="tiles", disable=not progress, leave=False):
        th, tw = min(tile, h), min(tile, w)
        crop = x[:, :, y0 : y0 + th, x0 : x0 + tw]
        pad_h, pad_w = (-th) % multiple, (-tw) % multiple
        if pad_h or pad_w:
            crop = F.pad(crop, (0, pad_w, 0, pad_h))
        pred = primary_output(model(crop))[:, :, :th, :tw]
        if out is None:
            out = x.new_zeros((n, pred.shape[1], h, w), dtype=pred.dtype)
            weight_sum = x.new_zeros((1, 1, h, w), dtype=pred.dtype)
        win = (
            _axis_window(y0, th, h, overlap, pred.dtype, pred.device)[:, None]
            * _axis_window(x0, tw, w, overlap, pred.dtype, pred.device)[None, :]
        )
        out[:, :, y0 : y0 + th, x0 : x0 + tw] += pred * win
        weight_sum[:, :, y0 : y0 + th, x0 : x0 + tw] += win
    return out / weight_sum


def window_starts(length: int, window: int) -> list[tuple[int, int]]:
    """``(window start, first kept offset)`` along one axis for :func:`window_forward`: windows at multiples of
    ``window`` cover the largest multiple of it; a remainder gets one more window flush with the end, of which only
    the pixels no earlier window covered are kept. ``window`` is at most ``length``."""
    covered = length - length % window
    starts = [(s, 0) for s in range(0, covered, window)]
    if covered != length:
        starts.append((length - window, covered - (length - window)))
    return starts


def window_forward(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, window: int, batch_size: int = 4
) -> torch.Tensor:
    """Run ``model`` on non-overlapping ``window`` x ``window`` crops of ``x`` (N×C×H×W) and paste them, no blending.

    The scheme of DeepRFT's ``test.py`` generalised to any size: 1120×1680 with 512 takes 12 windows. An axis shorter
    than ``window`` is one window of its length. Windows go through the model ``batch_size`` at a time.
    """
    if x.ndim != 4:
        raise ValueError(f"window_forward expects N x C x H x W, got {tuple(x.shape)}")
    if window < 1 or batch_size < 1:
        raise ValueError(f"window ({window}) and batch_size ({batch_size}) must be >= 1")
    n, _, height, width = x.shape
    th, tw = min(window, height), min(window, width)
    tiles = [(r, kr, c, kc) for r, kr in window_starts(height, th) for c, kc in window_starts(width, tw)]
    out = None
    for i in range(0, len(tiles), batch_size):
        chunk = tiles[i : i + batch_size]
        pred = primary_output(model(torch.cat([x[:, :, r : r + th, c : c + tw] for r, _, c, _ in chunk])))
        if out is None:
            out = x.new_zeros((n, pred.shape[1], height, width), dtype=pred.dtype)
        for j, (r, kr, c, kc) in enumerate(chunk):
            out[:, :, r + kr : r + th, c + kc : c + tw] = pred[j * n : (j + 1) * n, :, kr:, kc:]
    return out


def infer(
    model: nn.Module,
    x: torch.Tensor,
    mode: InferenceMode = "whole",
    tile: int = 512,
    overlap: int = 64,
    progress: bool = False,
) -> torch.Tensor:
    """Inference without gradients: ``whole`` runs the model once (each model handles any H×W itself), ``tiled``
    uses :func:`tiled_forward` with the model's ``size_multiple`` attribute (1 if absent), ``windows`` uses
    :func:`window_forward` with the model's ``inference_window`` attribute (``tile`` if absent).

    A model may define ``tiling_split() -> (stem, body, multiple)``: the stem (image-global, cheap layers) then runs
    on the whole image and only ``body`` is tiled (LDP uses this for its BPA block).
    """
    with torch.no_grad():
        if mode == "whole":
            return primary_output(model(x))
        if mode == "windows":
            return window_forward(model, x, inference_window(model, tile))
        if mode == "tiled":
            split = getattr(model, "tiling_split", None)
            if split is not None:
                stem, body, multiple = split()
                return tiled_forward(body, stem(x), tile, overlap, multiple=multiple, progress=progress)
            multiple = int(getattr(model, "size_multiple", 1))
            return tiled_forward(model, x, tile, overlap, multiple=multiple, progress=progress)
    raise ValueError(f"unknown inference mode {mode!r}; expected 'whole', 'tiled' or 'windows'")


def inference_window(model: nn.Module, tile: int) -> int:
    """The window size of ``windows`` inference: the model's ``inference_window`` (its official one), else ``tile``."""
    return int(getattr(model, "inference_window", tile))


def reflect_pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad bottom/right to a multiple (replicate where the image is too small to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)
