"""A toy dual-pixel scene with known defocus, for tests and benchmarks of the estimators (not training data).

Blocks of constant signed defocus c (circle of confusion in px); each block shows the texture blurred with a
Gaussian of sigma |c|/2.5 and shifted by +c/4 px in the left view and −c/4 px in the right view, so the L/R
disparity c/2 grows with |c| as in a DP sensor.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, shift


def toy_dp_scene(height: int = 160, width: int = 240, block: int = 40, max_coc: float = 8.0,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Dict with ``left``, ``right``, ``target``, ``combined`` (H×W×3 float32 in [0, 1]) and ``defocus`` (H×W)."""
    rng = np.random.default_rng(seed)
    texture = gaussian_filter(rng.random((height, width, 3)), sigma=(1.0, 1.0, 0))
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    gh, gw = -(-height // block), -(-width // block)
    cells = rng.uniform(-max_coc, max_coc, size=(gh, gw))
    cells.flat[rng.choice(cells.size, size=max(1, cells.size // 4), replace=False)] = 0.0  # some in focus
    defocus = np.kron(cells, np.ones((block, block)))[:height, :width].astype(np.float32)
    left = np.zeros_like(texture)
    right = np.zeros_like(texture)
    for c in np.unique(cells):
        sigma = abs(c) / 2.5
        blurred = gaussian_filter(texture, sigma=(sigma, sigma, 0)) if sigma > 0 else texture
        mask = (defocus == np.float32(c))[..., None]
        left += mask * shift(blurred, (0, c / 4, 0), order=1, mode="nearest")
        right += mask * shift(blurred, (0, -c / 4, 0), order=1, mode="nearest")
    out = {"left": left, "right": right, "target": texture, "combined": (left + right) / 2}
    return {**{k: np.clip(v, 0, 1).astype(np.float32) for k, v in out.items()}, "defocus": defocus}
