"""CLIP blur-map estimation as in the released ``dp_image.py`` / ``single_image.py``, batched with tensor ops.

Per 40-px patch: build the patch image of the prompt format (e.g. ``[L | fliplr(R)]``, 40×80), apply CLIP's stock
preprocessing (bicubic resize of the shorter side to 224, centre crop 224, normalise) as differentiable tensor
ops, score ``s = exp(logit_scale)·cos(f_img, f_txt)``, truncate with the thresholds (A, B) and min-max per image.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ldp.blurmap.common import (
    BlurMapError,
    extract_patches,
    hard_truncate,
    minmax_per_image,
    soft_truncate,
)
from ldp.blurmap.prompts import PromptFormat, get_prompt_format, thresholds_for
from ldp.blurmap.weights import LoadedClip

Truncate = Literal["auto", "on", "off"]


def clip_preprocess(x: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """Stock CLIP preprocessing on an N×3×h×w batch in [0, 1], differentiable.

    Resize the shorter side to ``size`` with bicubic (torch's antialiased bicubic uses PIL's kernel, a = −0.5),
    done like PIL: horizontal pass, clip to [0, 1] (PIL keeps uint8 between passes), vertical pass, clip; then
    centre-crop ``size``×``size`` and normalise. Matches open_clip's PIL pipeline up to uint8 rounding.
    """
    h, w = x.shape[-2:]
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    x = F.interpolate(x, size=(h, new_w), mode="bicubic", align_corners=False, antialias=True).clamp(0.0, 1.0)
    x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True).clamp(0.0, 1.0)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    x = x[..., top : top + size, left : left + size]
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def join_patches(left: torch.Tensor, right: torch.Tensor | None, fmt: PromptFormat) -> torch.Tensor:
    if fmt.join == "single":
        return left
    if right is None:
        raise BlurMapError(f"prompt format {fmt.name!r} needs both DP views (left and right)")
    if fmt.join == "dp_flip":
        return torch.cat([left, right.flip(-1)], dim=-1)
    return torch.cat([left, right], dim=-1)


class ClipBlurEstimator(nn.Module):
    """Blur map from a frozen CLIP; ``blur_map`` is the released (hard) map, ``soft_blur_map`` the L_bal path."""

    def __init__(self, clip: LoadedClip, prompt_format: str = "ours", patch_size: int = 40,
                 thresholds: tuple[float, float] | None = None, truncate: Truncate = "auto",
                 batch_size: int = 64):
        super().__init__()
        self.clip = clip.model
        self.model_name = clip.model_name
        self.weights_kind = clip.weights_kind
        self.weights_source = clip.weights_source
        self.fmt = get_prompt_format(prompt_format)
        self.patch_size = int(patch_size)
        self.batch_size = int(batch_size)
        if self.patch_size < 2 or self.batch_size < 1:
            raise BlurMapError(f"patch_size ({patch_size}) must be >= 2 and batch_size ({batch_size}) >= 1")
        if thresholds is None:
            self.thresholds, self.thresholds_source = thresholds_for(self.fmt.name, self.model_name)
        else:
            self.thresholds = tuple(float(v) for v in thresholds)
            self.thresholds_source = "our choice: set in the blur-map config (thresholds)"
        if truncate == "on" and self.thresholds is None:
            raise BlurMapError(f"truncate=on but prompt format {self.fmt.name!r} has no released thresholds; "
                               "give thresholds [A, B]")
        # Thresholds were calibrated on OpenAI weights; random weights would saturate every patch.
        self.truncation_on = self.thresholds is not None and (
            truncate == "on" or (truncate == "auto" and self.weights_kind != "random"))
        cfg = getattr(self.clip.visual, "preprocess_cfg", {}) or {}
        size = cfg.get("size", getattr(self.clip.visual, "image_size", 224))
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.mean = tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        self.std = tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
        self.score_scale = float(self.clip.logit_scale.exp())
        device = next(self.clip.parameters()).device
        with torch.no_grad():
            text = self.clip.encode_text(clip.tokenizer([self.fmt.prompt]).to(device))
        self.register_buffer("text_features", F.normalize(text.float(), dim=-1)[0], persistent=False)

    @property
    def device(self) -> torch.device:
        return self.text_features.device

    def meta(self) -> dict:
        return {
            "estimator": "clip",
            "clip_model": self.model_name,
            "weights_kind": self.weights_kind,
            "weights_source": self.weights_source,
            "prompt_format": self.fmt.name,
            "prompt": self.fmt.prompt,
            "label": self.fmt.label,
            "patch_join": self.fmt.join,
            "high_score_means": self.fmt.high_score_means,
            "thresholds": list(self.thresholds) if self.thresholds is not None else None,
            "thresholds_source": self.thresholds_source,
            "truncation": "hard" if self.truncation_on else "none (min-max of polarity-signed scores)",
            "score_scale": self.score_scale,
            "patch_size": self.patch_size,
            "normalisation": "per-image min-max",
        }

    def patch_images(self, left: torch.Tensor, right: torch.Tensor | None = None):
        """(patch images n×3×p×(p or 2p), grid (gh, gw)) in row-major order per image."""
        lp, grid = extract_patches(left, self.patch_size)
        rp = extract_patches(right, self.patch_size)[0] if (right is not None and self.fmt.needs_pair) else None
        return join_patches(lp, rp, self.fmt), grid

    def score_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """CLIP scores of patch images, in chunks of ``batch_size``; keeps autograd if enabled."""
        out = []
        dtype = next(self.clip.parameters()).dtype
        for chunk in patches.split(self.batch_size):
            x = clip_preprocess(chunk.to(self.device, torch.float32), self.input_size, self.mean, self.std)
            feats = F.normalize(self.clip.encode_image(x.to(dtype)).float(), dim=-1)
            out.append(self.score_scale * feats @ self.text_features)
        return torch.cat(out)

    def scores(self, left: torch.Tensor, right: torch.Tensor | None = None) -> torch.Tensor:
        """N×gh×gw raw CLIP scores."""
        patches, (gh, gw) = self.patch_images(left, right)
        return self.score_patches(patches).reshape(left.shape[0], gh, gw)

    def map_from_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """Released mapping: hard truncation (if on) then per-image min-max; 1 = most blurred."""
        if self.truncation_on:
            m = hard_truncate(scores, self.thresholds, self.fmt.high_score_means)
        else:
            m = scores if self.fmt.high_score_means == "blur" else -scores
        return minmax_per_image(m)

    @torch.no_grad()
    def blur_map(self, left: torch.Tensor, right: torch.Tensor | None = None) -> torch.Tensor:
        """N×gh×gw float32 map in [0, 1] at patch-grid resolution."""
        return self.map_from_scores(self.scores(left, right)).cpu()

    def soft_blur_map(self, image: torch.Tensor, right: torch.Tensor | None = None, sharpness: float = 4.0,
                      polarity: str | None = None, max_patches: int = 0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Differentiable map of a (restored) image for L_bal: soft truncation, NO min-max.

        Min-max would force every map to span [0, 1], so its mean could not be driven to zero. Returns the
        flat vector of per-patch values (a random subset of ``max_patches`` if > 0).
        """
        if self.thresholds is None:
            raise BlurMapError(f"prompt format {self.fmt.name!r} has no thresholds for the soft map")
        patches, _ = self.patch_images(image, right)
        if 0 < max_patches < patches.shape[0]:
            idx = torch.randperm(patches.shape[0], generator=generator)[:max_patches].to(patches.device)
            patches = patches[idx]
        scores = self.score_patches(patches)
        return soft_truncate(scores, self.thresholds, polarity or self.fmt.high_score_means, sharpness)
