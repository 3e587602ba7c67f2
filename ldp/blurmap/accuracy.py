"""Accuracy of a blur map against ground-truth |defocus| (synthetic data): Spearman rho and MAE."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from ldp.blurmap.common import BlurMapError
from ldp.blurmap.io import squeeze_to_2d


def _as_2d(x, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    a = squeeze_to_2d(a)
    if a.ndim != 2:
        raise BlurMapError(f"{name} must be a 2-D map, got shape {np.shape(x)}")
    if not np.isfinite(a).all():
        raise BlurMapError(f"{name} holds NaN/inf values")
    return a


def _minmax(a: np.ndarray) -> np.ndarray:
    rng = a.max() - a.min()
    return (a - a.min()) / rng if rng > 1e-12 else np.zeros_like(a)


def _pool(a: np.ndarray, grid: tuple[int, int], patch_size: int | None) -> np.ndarray:
    """Average a full-resolution map over the patch grid of ``grid`` cells (remainder dropped)."""
    gh, gw = grid
    p = patch_size or min(a.shape[0] // gh, a.shape[1] // gw)
    if p < 1 or gh * p > a.shape[0] or gw * p > a.shape[1]:
        raise BlurMapError(f"cannot pool a {a.shape} map to a {gh}x{gw} grid with patch size {p}")
    t = torch.from_numpy(np.ascontiguousarray(a[: gh * p, : gw * p]))[None, None]
    return F.avg_pool2d(t, p)[0, 0].numpy()


def score_blurmap(pred, gt_abs_defocus, patch_size: int | None = None) -> dict:
    """Compare an estimated map with |defocus|.

    Either may be at patch-grid or full resolution: the finer one is averaged onto the coarser grid (with
    ``patch_size``, else inferred as the integer ratio). Both are min-max normalised per image, then
    ``spearman`` (rank correlation; 0 when either map is constant, i.e. carries no ranking) and ``mae``.
    """
    p = _as_2d(pred, "pred")
    g = np.abs(_as_2d(gt_abs_defocus, "gt_abs_defocus"))
    if p.shape != g.shape:
        if p.size < g.size:
            g = _pool(g, p.shape, patch_size)
        else:
            p = _pool(p, g.shape, patch_size)
    if p.shape != g.shape:
        raise BlurMapError(f"pred grid {p.shape} and ground truth grid {g.shape} do not match")
    pn, gn = _minmax(p), _minmax(g)
    constant = bool(np.ptp(pn) == 0 or np.ptp(gn) == 0)
    rho = 0.0 if constant else float(spearmanr(pn.ravel(), gn.ravel()).statistic)
    return {"spearman": rho, "mae": float(np.abs(pn - gn).mean()), "constant": constant, "cells": int(pn.size)}
