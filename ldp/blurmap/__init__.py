"""Blur maps for dual-pixel deblurring: CLIP (released LDP scripts, batched), classical DP and oracle estimators,
accuracy against ground-truth defocus, and the on-disk format (docs/blurmaps.md).

The names below are imported on first use, so ``import ldp.blurmap.io`` (every train and evaluate stage) does not
pay for scipy or the CLIP code.
"""

import importlib

_EXPORTS = {
    "score_blurmap": "accuracy",
    "classical_blurmap": "classical", "dp_disparity": "classical",
    "ClipBlurEstimator": "clip_estimator", "clip_preprocess": "clip_estimator",
    "BlurMapError": "common",
    "BlurMapConfig": "estimate", "BlurMapper": "estimate", "estimate_blurmaps": "estimate",
    "load_blurmap": "io", "read_blurmap": "io", "read_meta": "io", "save_blurmap": "io",
    "oracle_blurmap": "oracle",
    "PROMPT_FORMATS": "prompts", "PromptFormat": "prompts", "get_prompt_format": "prompts",
    "CLIP_MODELS": "weights", "ClipWeightsError": "weights", "LoadedClip": "weights", "load_clip": "weights",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ldp.blurmap' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ldp.blurmap.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
