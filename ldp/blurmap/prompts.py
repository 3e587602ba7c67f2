"""Prompt formats for CLIP blur-map estimation (supplementary Tab. 1, released ``dp_image.py``/``single_image.py``).

A format says how a patch image is built from the views, which text prompt is scored, what a high score means,
and the released truncation thresholds (A, B) where the authors published them.
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
    thresholds: tuple[float, float] | None  # released (A, B) with A > B, or None when unpublished
    label: str

    @property
    def needs_pair(self) -> bool:
        return self.join != "single"


PROMPT_FORMATS: dict[str, PromptFormat] = {
    "ours": PromptFormat(
        "ours", "A symmetric image at pixel level", "dp_flip", "sharp", (29.0, 26.05),
        "DP-aware (L | flipped R), symmetric prompt",
    ),
    "diff_lr": PromptFormat(
        "diff_lr", "The left and right of the image are different.", "dp_direct", "blur", None,
        "baseline 1: L | R, 'left and right are different'",
    ),
    "inconsistent": PromptFormat(
        "inconsistent", "The image is inconsistent from left to right.", "dp_direct", "blur", None,
        "baseline 2: L | R, 'inconsistent from left to right'",
    ),
    "halves": PromptFormat(
        "halves", "The left half and the right half are different.", "dp_direct", "blur", None,
        "baseline 3: L | R, 'left half and right half are different'",
    ),
    # Single-image estimator of single_image.py; used by L_bal on the restored image.
    "single": PromptFormat(
        "single", "A blurry image", "single", "blur", (26.0, 23.3),
        "single image, 'A blurry image'",
    ),
}

DP_FORMATS = ("ours", "diff_lr", "inconsistent", "halves")


def get_prompt_format(name: str) -> PromptFormat:
    if name not in PROMPT_FORMATS:
        raise KeyError(f"unknown prompt format {name!r}; known: {', '.join(PROMPT_FORMATS)}")
    return PROMPT_FORMATS[name]
