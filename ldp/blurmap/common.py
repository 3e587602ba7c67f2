"""Shared helpers: patch grid, min-max normalisation, truncation, image conversion."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class BlurMapError(ValueError):
    """Bad input to a blur-map estimator or a missing/malformed map on disk; the message names it."""


def grid_shape(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """Non-overlapping patch grid, remainder rows/columns dropped (as the released script's output size)."""
    gh, gw = height // patch_size, width // patch_size
    if gh == 0 or gw == 0:
        raise BlurMapError(f"image {height}x{width} is smaller than one {patch_size}-px patch")
    return gh, gw


def extract_patches(img: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """N×C×H×W → (N·gh·gw)×C×p×p in row-major grid order; differentiable (pure reshapes)."""
    n, c, h, w = img.shape
    p = patch_size
    gh, gw = grid_shape(h, w, p)
    x = img[:, :, : gh * p, : gw * p].reshape(n, c, gh, p, gw, p)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(n * gh * gw, c, p, p), (gh, gw)


def pool_to_grid(values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Mean over each patch: N×1×H×W (or N×H×W) → N×gh×gw."""
    if values.ndim == 3:
        values = values[:, None]
    gh, gw = grid_shape(values.shape[-2], values.shape[-1], patch_size)
    cropped = values[..., : gh * patch_size, : gw * patch_size]
    return F.avg_pool2d(cropped, patch_size)[:, 0]


def minmax_per_image(m: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-image (first dim) min-max to [0, 1]; a constant map becomes all zeros (the script would divide 0/0)."""
    flat = m.reshape(m.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    rng = flat.max(dim=1, keepdim=True).values - lo
    out = torch.where(rng > eps, (flat - lo) / rng.clamp_min(eps), torch.zeros_like(flat))
    return out.reshape(m.shape)


def truncation_input(scores: torch.Tensor, thresholds: tuple[float, float], high_score_means: str) -> torch.Tensor:
    """Affine map of scores so that 0 = sharp end and 1 = blurred end of the released thresholds (A > B)."""
    a, b = thresholds
    if not a > b:
        raise BlurMapError(f"thresholds must satisfy A > B, got A={a}, B={b}")
    if high_score_means == "sharp":  # released truncate_map: s > A → 0, s < B → 255
        return (a - scores) / (a - b)
    return (scores - b) / (a - b)  # high score = blur: s > A → 1, s < B → 0


def hard_truncate(scores, thresholds, high_score_means) -> torch.Tensor:
    return truncation_input(scores, thresholds, high_score_means).clamp(0.0, 1.0)


def smooth_clamp01(x: torch.Tensor, sharpness: float) -> torch.Tensor:
    """(softplus(kx) − softplus(k(x−1)))/k: → clamp(x, 0, 1) as k → ∞, gradient sigmoid(kx) − sigmoid(k(x−1)) > 0."""
    k = float(sharpness)
    return (F.softplus(k * x) - F.softplus(k * (x - 1.0))) / k


def soft_truncate(scores, thresholds, high_score_means, sharpness: float = 4.0) -> torch.Tensor:
    return smooth_clamp01(truncation_input(scores, thresholds, high_score_means), sharpness)


def to_nchw(img) -> torch.Tensor:
    """H×W×3 numpy / tensor, or N×3×H×W tensor → float32 N×3×H×W tensor."""
    t = torch.as_tensor(np.ascontiguousarray(img)) if isinstance(img, np.ndarray) else img
    if t.ndim == 3:
        t = t.permute(2, 0, 1)[None]
    if t.ndim != 4 or t.shape[1] != 3:
        raise BlurMapError(f"expected an H×W×3 image or N×3×H×W batch, got shape {tuple(t.shape)}")
    return t.float()
