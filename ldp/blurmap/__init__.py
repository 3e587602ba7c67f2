"""Blur maps for dual-pixel deblurring: CLIP (released LDP scripts, batched), classical DP and oracle estimators,
accuracy against ground-truth defocus, and the on-disk format (docs/blurmaps.md)."""

from ldp.blurmap.accuracy import score_blurmap
from ldp.blurmap.classical import classical_blurmap, dp_disparity
from ldp.blurmap.clip_estimator import ClipBlurEstimator, clip_preprocess
from ldp.blurmap.common import BlurMapError
from ldp.blurmap.estimate import BlurMapConfig, BlurMapper, estimate_blurmaps
from ldp.blurmap.io import load_blurmap, read_blurmap, read_meta, save_blurmap
from ldp.blurmap.oracle import oracle_blurmap
from ldp.blurmap.prompts import PROMPT_FORMATS, PromptFormat, get_prompt_format
from ldp.blurmap.weights import CLIP_MODELS, ClipWeightsError, LoadedClip, load_clip

__all__ = [
    "CLIP_MODELS", "PROMPT_FORMATS", "BlurMapConfig", "BlurMapError", "BlurMapper", "ClipBlurEstimator",
    "ClipWeightsError", "LoadedClip", "PromptFormat", "classical_blurmap", "clip_preprocess", "dp_disparity",
    "estimate_blurmaps", "get_prompt_format", "load_blurmap", "load_clip", "oracle_blurmap", "read_blurmap",
    "read_meta", "save_blurmap", "score_blurmap",
]
