"""Oracle blur map from ground-truth defocus (synthetic data only): |defocus| pooled to the patch grid."""

from __future__ import annotations

import numpy as np
import torch

from ldp.blurmap.common import BlurMapError, minmax_per_image, pool_to_grid


def oracle_blurmap(defocus, patch_size: int = 40) -> torch.Tensor:
    """``defocus``: signed circle of confusion in px, H×W (numpy or tensor) or N×H×W → N×gh×gw in [0, 1]."""
    d = torch.as_tensor(np.asarray(defocus) if not isinstance(defocus, torch.Tensor) else defocus).float()
    if d.ndim == 2:
        d = d[None]
    if d.ndim != 3:
        raise BlurMapError(f"defocus map must be H×W or N×H×W, got shape {tuple(d.shape)}")
    if not torch.isfinite(d).all():
        raise BlurMapError("defocus map holds NaN/inf values")
    return minmax_per_image(pool_to_grid(d.abs(), patch_size))
