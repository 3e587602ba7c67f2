"""Training losses: Charbonnier, L1, NAFNet's PSNR loss, DeepRFT's FFT and edge terms, and LDP's
blur-weighted (L_bwl) and blur-aware (L_bal) losses. Formulas and reasoning: docs/losses.md.

``build_loss(cfg)(pred, target, blurmap=None, left=None, right=None) -> (total, {term: value})``; ``pred`` may
be a list of outputs, full resolution first (DeepRFT's multi-scale training form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

TERMS = ("charbonnier", "l1", "psnr", "fft", "edge", "bwl", "bal")


class LossError(ValueError):
    """Bad loss input or configuration; the message names the term or params key."""


@dataclass(frozen=True)
class LossConfig:
    """``loss`` section of a training recipe. Term weights; a weight of 0 switches the term off."""

    charbonnier: float = 1.0
    l1: float = 0.0
    psnr: float = 0.0
    fft: float = 0.0  # DeepRFT: 0.01
    edge: float = 0.0  # DeepRFT: 0.05
    bwl: float = 0.0
    bal: float = 0.0
    charbonnier_eps: float = 1e-3
    bwl_lambda: float = 1.0  # L_bwl weight map is 1 + lambda * M
    bal_clip_model: Literal["ViT-B-32", "ViT-B-16", "RN50"] = "ViT-B-32"
    bal_weights: str = "none"  # openai | none (random init, smoke only) | checkpoint path
    bal_thresholds: tuple[float, float] | None = None  # None: the single-image (A, B) of bal_clip_model (prompts.py)
    bal_sharpness: float = 4.0  # k of the smooth clamp, in units of (A - B)
    bal_polarity: Literal["blur_high", "released"] = "blur_high"
    bal_patch_size: int = 40
    bal_max_patches: int = 0  # random subset of patches per batch for L_bal; 0 = all
    bal_batch_size: int = 64
    bal_seed: int = 0  # random-init CLIP weights
    multiscale: Literal["all", "first"] = "all"  # list outputs: pixel terms on every scale, or the first only


# ---------------------------------------------------------------------------------------------- pixel terms
def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3, weight=None) -> torch.Tensor:
    """mean(w · sqrt((pred − target)² + eps²)); w = 1 when ``weight`` is None."""
    rho = torch.sqrt((pred - target) ** 2 + eps * eps)
    return rho.mean() if weight is None else (weight * rho).mean()


def psnr_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """NAFNet PSNRLoss: 10/ln10 · mean_b log(MSE_b + 1e-8) (= −PSNR for peak 1, up to the 1e-8)."""
    mse = ((pred - target) ** 2).flatten(1).mean(dim=1)
    return (10.0 / math.log(10.0)) * torch.log(mse + 1e-8).mean()


def fft_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DeepRFT fftLoss: mean |FFT2(pred) − FFT2(target)| (complex modulus)."""
    return (torch.fft.fft2(pred.float()) - torch.fft.fft2(target.float())).abs().mean()


def _gauss5(img: torch.Tensor) -> torch.Tensor:
    k1 = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05], dtype=img.dtype, device=img.device)
    kernel = torch.outer(k1, k1).expand(img.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(img, (2, 2, 2, 2), mode="replicate"), kernel, groups=img.shape[1])


def laplacian_band(img: torch.Tensor) -> torch.Tensor:
    """DeepRFT EdgeLoss band: img − G(upsample-by-zeros(4·G(img)[::2, ::2]))."""
    filtered = _gauss5(img)
    up = torch.zeros_like(filtered)
    up[:, :, ::2, ::2] = filtered[:, :, ::2, ::2] * 4
    return img - _gauss5(up)


def edge_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return charbonnier(laplacian_band(pred), laplacian_band(target), eps)


def blur_weighted_loss(pred, target, blurmap, lam: float = 1.0, eps: float = 1e-3) -> torch.Tensor:
    """L_bwl = mean((1 + λ·M) · sqrt((pred − target)² + eps²)); equals Charbonnier when M = 0."""
    return charbonnier(pred, target, eps, weight=1.0 + lam * blurmap)


def pyr_down(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Kornia-style pyramid step (5×5 binomial blur, reflect padding, bilinear resize) to ``size``."""
    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=img.dtype, device=img.device) / 16
    kernel = torch.outer(k1, k1).expand(img.shape[1], 1, 5, 5)
    pad_mode = "reflect" if min(img.shape[-2:]) > 2 else "replicate"
    blurred = F.conv2d(F.pad(img, (2, 2, 2, 2), mode=pad_mode), kernel, groups=img.shape[1])
    return F.interpolate(blurred, size=size, mode="bilinear", align_corners=False)


def _blurmap_like(blurmap: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """N×1×H×W map at ``ref``'s size from N×H×W, N×1×H×W, N×3×H×W (M, M, M) or a patch-grid map."""
    m = blurmap.to(ref.device, ref.dtype)
    if m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[0] != ref.shape[0]:
        raise LossError(f"blur map of shape {tuple(blurmap.shape)} does not fit a batch of {tuple(ref.shape)}")
    if m.shape[1] != 1:
        m = m.mean(dim=1, keepdim=True)
    if m.shape[-2:] != ref.shape[-2:]:
        m = F.interpolate(m, size=ref.shape[-2:], mode="bilinear", align_corners=False)
    return m


# -------------------------------------------------------------------------------------------------- L_bal
class BlurAwareLoss(nn.Module):
    """L_bal = mean over patches of the soft-truncated single-image CLIP blur map of the restoration, scored by
    ``bal_clip_model`` with ``bal_thresholds`` (None: that backbone's, :func:`ldp.blurmap.prompts.thresholds_for`).

    The frozen CLIP is kept out of ``parameters()``/``state_dict()`` and follows ``pred``'s device.
    """

    def __init__(self, cfg: LossConfig):
        super().__init__()
        from ldp.blurmap.clip_estimator import ClipBlurEstimator
        from ldp.blurmap.weights import load_clip

        loaded = load_clip(cfg.bal_clip_model, cfg.bal_weights, "cpu", cfg.bal_seed)
        est = ClipBlurEstimator(loaded, "single", cfg.bal_patch_size, cfg.bal_thresholds, "on", cfg.bal_batch_size)
        object.__setattr__(self, "estimator", est)
        self.cfg = cfg
        self.weights_kind = loaded.weights_kind
        self.polarity = "blur" if cfg.bal_polarity == "blur_high" else "sharp"

    def forward(self, pred: torch.Tensor) -> torch.Tensor:
        est = self.estimator
        if est.device != pred.device:
            est.to(pred.device)
        values = est.soft_blur_map(pred, sharpness=self.cfg.bal_sharpness, polarity=self.polarity,
                                   max_patches=self.cfg.bal_max_patches)
        return values.mean().to(pred.dtype)


# ------------------------------------------------------------------------------------------------ combined
class CombinedLoss(nn.Module):
    def __init__(self, cfg: LossConfig):
        super().__init__()
        for term in TERMS:
            w = getattr(cfg, term)
            if not math.isfinite(w) or w < 0:
                raise LossError(f"params loss.{term}: weight must be a finite number >= 0, got {w}")
        if not any(getattr(cfg, t) for t in TERMS):
            raise LossError("params loss: every term weight is 0; nothing to train on")
        if cfg.charbonnier_eps <= 0:
            raise LossError(f"params loss.charbonnier_eps must be > 0, got {cfg.charbonnier_eps}")
        self.cfg = cfg
        self.weights = {t: float(getattr(cfg, t)) for t in TERMS if getattr(cfg, t) > 0}
        self.bal = BlurAwareLoss(cfg) if cfg.bal > 0 else None

    def _pixel_terms(self, pred, target, blurmap) -> dict[str, torch.Tensor]:
        cfg, out = self.cfg, {}
        if "charbonnier" in self.weights:
            out["charbonnier"] = charbonnier(pred, target, cfg.charbonnier_eps)
        if "l1" in self.weights:
            out["l1"] = (pred - target).abs().mean()
        if "psnr" in self.weights:
            out["psnr"] = psnr_loss(pred, target)
        if "fft" in self.weights:
            out["fft"] = fft_l1(pred, target)
        if "edge" in self.weights:
            out["edge"] = edge_loss(pred, target, cfg.charbonnier_eps)
        if "bwl" in self.weights:
            out["bwl"] = blur_weighted_loss(pred, target, _blurmap_like(blurmap, pred), cfg.bwl_lambda,
                                            cfg.charbonnier_eps)
        return out

    def forward(self, pred, target, blurmap=None, left=None, right=None):
        """``left``/``right`` are accepted for the common signature; M already summarises the pair."""
        outputs = list(pred) if isinstance(pred, (list, tuple)) else [pred]
        if not outputs:
            raise LossError("loss got an empty list of outputs")
        full = outputs[0]
        if full.shape != target.shape:
            raise LossError(f"prediction {tuple(full.shape)} and target {tuple(target.shape)} differ in shape")
        if "bwl" in self.weights and blurmap is None:
            raise LossError("params loss.bwl > 0 needs the blur map: pass blurmap= (dataset with a blur map)")
        if self.cfg.multiscale == "first":
            outputs = outputs[:1]
        terms: dict[str, torch.Tensor] = {}
        tgt = target
        for i, out in enumerate(outputs):
            if i > 0:  # target pyramid: each level from the previous one, like kornia.build_pyramid
                tgt = pyr_down(tgt, out.shape[-2:])
            for name, value in self._pixel_terms(out, tgt, blurmap).items():
                terms[name] = terms[name] + value if name in terms else value
        if self.bal is not None:
            terms["bal"] = self.bal(full)
        total = sum(self.weights[name] * value for name, value in terms.items())
        return total, {**{k: v.detach() for k, v in terms.items()}, "total": total.detach()}


def build_loss(cfg: LossConfig | None = None) -> CombinedLoss:
    return CombinedLoss(cfg or LossConfig())
