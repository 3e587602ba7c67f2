"""Prompt formats for CLIP blur-map estimation (supplementary Tab. 1, released ``dp_image.py``/``single_image.py``).

A format says how a patch image is built from the views, which text prompt is scored and what a high score means.
The truncation thresholds (A, B) are per format AND CLIP backbone (:func:`thresholds_for`): each released script
pairs one prompt with one backbone, and scores of other backbones are on another scale (docs/blurmaps.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Join = Literal["dp_flip", "dp_direct", "single"]
Polarity = Literal["sharp", "blur"]


@dataclass(frozen=True)
class PromptFormat:
    name: str
    prompt: str
    join: Join  # dp_flip: [L | fliplr(R)]; dp_direct: [L | R]; single: one view only
    high_score_means: Polarity
    label: str

    @property
    def needs_pair(self) -> bool:
        return self.join != "single"


PROMPT_FORMATS: dict[str, PromptFormat] = {
    "ours": PromptFormat(
        "ours", "A symmetric image at pixel level", "dp_flip", "sharp",
        "DP-aware (L | flipped R), symmetric prompt",
    ),
    "diff_lr": PromptFormat(
        "diff_lr", "The left and right of the image are different.", "dp_direct", "blur",
        "baseline 1: L | R, 'left and right are different'",
    ),
    "inconsistent": PromptFormat(
        "inconsistent", "The image is inconsistent from left to right.", "dp_direct", "blur",
        "baseline 2: L | R, 'inconsistent from left to right'",
    ),
    "halves": PromptFormat(
        "halves", "The left half and the right half are different.", "dp_direct", "blur",
        "baseline 3: L | R, 'left half and right half are different'",
    ),
    # Single-image estimator of single_image.py; used by L_bal on the restored image.
    "single": PromptFormat(
        "single", "A blurry image", "single", "blur",
        "single image, 'A blurry image'",
    ),
}

DP_FORMATS = ("ours", "diff_lr", "inconsistent", "halves")

# Format → (the backbone its released script uses, (A, B), where the script sets them).
RELEASED_THRESHOLDS: dict[str, tuple[str, tuple[float, float], str]] = {
    "ours": ("ViT-B-16", (29.0, 26.05), "noxsine/LDP dp_image.py:39 (truncate_map A=29, B=26.05; ViT-B/16 at :12)"),
    "single": ("ViT-B-32", (26.0, 23.3), "noxsine/LDP single_image.py:33 (truncate_map A=26, B=23.3; ViT-B/32 at :7)"),
}
NO_THRESHOLDS = "none published for this prompt: min-max of the polarity-signed score (docs/blurmaps.md)"


def thresholds_for(prompt_format: str, clip_model: str) -> tuple[tuple[float, float] | None, str]:
    """``((A, B) or None, source)`` of a prompt format on a CLIP backbone: the released pair on the released
    backbone; on another backbone the same pair as our (uncalibrated) choice; None for the baseline prompts."""
    get_prompt_format(prompt_format)
    if prompt_format not in RELEASED_THRESHOLDS:
        return None, NO_THRESHOLDS
    backbone, pair, where = RELEASED_THRESHOLDS[prompt_format]
    if clip_model == backbone:
        return pair, where
    return pair, (f"our choice: the {backbone} pair of {where} carried over to {clip_model}, which no released file "
                  "pairs with this prompt (not calibrated for it)")


def get_prompt_format(name: str) -> PromptFormat:
    if name not in PROMPT_FORMATS:
        raise KeyError(f"unknown prompt format {name!r}; known: {', '.join(PROMPT_FORMATS)}")
    return PROMPT_FORMATS[name]
