"""The input baselines: two weight-free "models" whose restoration is the input itself (docs/metrics.md).

- ``input-combined``: the camera's combined image C (DPDD's ``*_c/source``); (L+R)/2 only for a scene without C;
- ``input-average``: the view average (L+R)/2 (the scene needs both views).

Both are the identity on the ``combined`` input kind; what differs is the image the evaluation feeds them
(:func:`combined_views`). They have no parameters and no weights, need no training, and every table shows them as its
first rows, with each row's gain over the stronger of the two.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ldp.registry import register_model

INPUT_COMBINED = "input-combined"
INPUT_AVERAGE = "input-average"
INPUT_BASELINES = (INPUT_COMBINED, INPUT_AVERAGE)
INPUT_BASELINE_LABELS = {INPUT_COMBINED: "Input: combined image C", INPUT_AVERAGE: "Input: view average (L+R)/2"}
NO_WEIGHTS = "none needed (input baseline)"
FED_CAMERA_C = "camera combined image C (*_c/source)"
FED_VIEW_AVERAGE = "(L+R)/2 of the views"


class InputPassThrough(nn.Module):
    """Returns its 3-channel input: the combined-kind input is the restoration."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_model(INPUT_COMBINED, input_kind="combined",
                description="input baseline: the camera's combined image C ((L+R)/2 only where C is absent)")
def input_combined() -> nn.Module:
    return InputPassThrough()


@register_model(INPUT_AVERAGE, input_kind="combined", description="input baseline: the view average (L+R)/2")
def input_average() -> nn.Module:
    return InputPassThrough()


def is_input_baseline(model_name: str) -> bool:
    return model_name in INPUT_BASELINES


def combined_views(model_name: str, scene: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, str]:
    """The (left, right) pair whose average a ``combined``-kind model is fed for one scene, and what that average is.

    Every model but ``input-average`` gets C twice ((C + C) / 2 = C) when the scene has C, as the official
    single-image tests read ``*_c/source`` (docs/baselines.md); ``input-average``, and any model on a scene without
    C, gets the two views. Training patches follow the same rule (``DPPatchDataset(combined_input=True)``)."""
    has_views = "left" in scene and "right" in scene
    if "combined" in scene and (model_name != INPUT_AVERAGE or not has_views):
        return scene["combined"], scene["combined"], FED_CAMERA_C
    return scene["left"], scene["right"], FED_VIEW_AVERAGE
