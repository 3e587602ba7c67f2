"""Classical (non-learned) DP blur map: per-patch L/R disparity magnitude by ZNCC block matching.

In a dual-pixel pair the two views are shifted against each other by a disparity that grows with the
defocus blur (zero on the focal plane), so |disparity| per patch is a physically grounded blur estimate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ldp.blurmap.common import BlurMapError, grid_shape, minmax_per_image

_LUMA = (0.299, 0.587, 0.114)


def _luma(img: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_LUMA, dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
    return (img * w).sum(dim=1, keepdim=True)


def zncc_cost_volume(left: torch.Tensor, right: torch.Tensor, patch_size: int, max_disparity: int):
    """ZNCC of each left patch with the right view shifted by d ∈ [−D, D]: (N×(2D+1)×gh×gw, L patch std)."""
    if left.shape != right.shape:
        raise BlurMapError(f"left {tuple(left.shape)} and right {tuple(right.shape)} views differ in shape")
    p, d_max = patch_size, int(max_disparity)
    gh, gw = grid_shape(left.shape[-2], left.shape[-1], p)
    gl = _luma(left)[..., : gh * p, : gw * p].double()
    gr = _luma(right)[..., : gh * p, :].double()
    width = gw * p
    gr = F.pad(gr, (d_max, d_max, 0, 0), mode="replicate")
    mean_l = F.avg_pool2d(gl, p)
    var_l = (F.avg_pool2d(gl * gl, p) - mean_l**2).clamp_min(0)
    costs = []
    for d in range(-d_max, d_max + 1):
        shifted = gr[..., d_max + d : d_max + d + width]  # shifted(x) = R(x + d)
        mean_r = F.avg_pool2d(shifted, p)
        var_r = (F.avg_pool2d(shifted * shifted, p) - mean_r**2).clamp_min(0)
        cov = F.avg_pool2d(gl * shifted, p) - mean_l * mean_r
        costs.append(cov / torch.sqrt(var_l * var_r + 1e-12))
    return torch.cat(costs, dim=1), var_l.sqrt()[:, 0]


def dp_disparity(left: torch.Tensor, right: torch.Tensor, patch_size: int = 40, max_disparity: int = 8):
    """Signed sub-pixel disparity per patch (N×gh×gw) and a validity mask (textured patches)."""
    vol, std_l = zncc_cost_volume(left, right, patch_size, max_disparity)
    best = vol.argmax(dim=1, keepdim=True)
    lo = (best - 1).clamp(0, vol.shape[1] - 1)
    hi = (best + 1).clamp(0, vol.shape[1] - 1)
    c0, cm, cp = vol.gather(1, best), vol.gather(1, lo), vol.gather(1, hi)
    denom = cm - 2 * c0 + cp
    interior = (best > 0) & (best < vol.shape[1] - 1) & (denom < -1e-9)
    offset = torch.where(interior, 0.5 * (cm - cp) / torch.where(interior, denom, -torch.ones_like(denom)),
                         torch.zeros_like(denom))
    disparity = (best.double() + offset.clamp(-0.5, 0.5) - max_disparity)[:, 0]
    return disparity.float(), (std_l > 2e-3)


def classical_blurmap(left: torch.Tensor, right: torch.Tensor, patch_size: int = 40,
                      max_disparity: int = 8) -> torch.Tensor:
    """N×gh×gw map in [0, 1] (1 = most blurred): min-max of |disparity|; textureless patches (no match
    signal) take the median of the textured ones of their image."""
    disp, valid = dp_disparity(left, right, patch_size, max_disparity)
    mag = disp.abs()
    for i in range(mag.shape[0]):
        ok = valid[i]
        fill = mag[i][ok].median() if ok.any() else mag.new_zeros(())
        mag[i] = torch.where(ok, mag[i], fill)
    return minmax_per_image(mag)
