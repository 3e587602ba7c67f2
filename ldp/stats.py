"""Bootstrap statistics over images: the 95 % CI of a mean, and the paired CI of a difference between two runs.

Used by the evaluation runner (CIs in ``metrics.json``), the tables and the report notebooks (paired differences).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PER_IMAGE_CSV = "per_image.csv"
HIGHER_IS_BETTER = ("psnr", "ssim")


class StatsError(ValueError):
    """Bad input to a statistic (no resamples, per-image tables that do not match); the message says which."""


def _resample_means(values: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n, len(values)))
    return values[idx].mean(axis=1)


def bootstrap_ci(values: Sequence[float], n: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over images; ``(nan, nan)`` for empty or NaN input."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        return math.nan, math.nan
    if n <= 0:
        raise StatsError(f"bootstrap resamples must be positive, got {n}")
    means = _resample_means(arr, n, seed)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def read_per_image(path: str | Path) -> pd.DataFrame:
    """An evaluation's per-image table, from its CSV or from the run folder holding ``per_image.csv``."""
    path = Path(path)
    if path.is_dir():
        path = path / PER_IMAGE_CSV
    if not path.is_file():
        raise StatsError(f"{path}: per-image CSV not found")
    return pd.read_csv(path, dtype={"scene": str, "category": str}, keep_default_na=True)


def paired_bootstrap_diff(
    per_image_a: pd.DataFrame | str | Path,
    per_image_b: pd.DataFrame | str | Path,
    metric: str = "psnr",
    n: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """CI of mean(a - b) for ``metric`` over the images both runs share, resampling images jointly.

    Inputs are per-image tables (or their CSV paths / run folders) with a ``scene`` column. The two runs must
    cover the same scenes. Identical runs give ``mean_diff = ci_low = ci_high = 0``.
    """
    a, b = (t if isinstance(t, pd.DataFrame) else read_per_image(t) for t in (per_image_a, per_image_b))
    for name, table in (("a", a), ("b", b)):
        if "scene" not in table.columns or metric not in table.columns:
            raise StatsError(f"run {name}: per-image table needs columns 'scene' and {metric!r}")
    if set(a["scene"]) != set(b["scene"]) or len(a) != len(b):
        only_a = sorted(set(a["scene"]) - set(b["scene"]))[:5]
        only_b = sorted(set(b["scene"]) - set(a["scene"]))[:5]
        raise StatsError(f"runs cover different images (only in a: {only_a}, only in b: {only_b})")
    merged = a[["scene", metric]].merge(b[["scene", metric]], on="scene", suffixes=("_a", "_b"))
    diff = (merged[f"{metric}_a"] - merged[f"{metric}_b"]).to_numpy(dtype=np.float64)
    finite = diff.size > 0 and bool(np.all(np.isfinite(diff)))
    result: dict[str, Any] = {"metric": metric, "n_images": int(diff.size), "mean_diff": None, "ci_low": None,
                              "ci_high": None, "level": level, "resamples": n, "seed": seed,
                              "frac_resamples_a_better": None}
    if finite:
        lo, hi = bootstrap_ci(diff, n=n, seed=seed, level=level)
        means = _resample_means(diff, n, seed)
        better = means > 0 if metric in HIGHER_IS_BETTER else means < 0
        result.update(mean_diff=float(diff.mean()), ci_low=lo, ci_high=hi,
                      frac_resamples_a_better=float(np.mean(better)))
    return result
