"""Network input adapter: one place that turns DP views (and a blur map) into each model's input tensor.

Input kinds (docs/design.md):

- ``dp``: ``cat(L, R)``, 6 channels;
- ``dp+blurmap``: ``cat(L, R, M, M, M)``, 9 channels (the released LDP layout; the net reads the last channel);
- ``combined``: ``(L + R) / 2``, 3 channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

INPUT_KINDS = ("dp", "dp+blurmap", "combined")
INPUT_CHANNELS = {"dp": 6, "dp+blurmap": 9, "combined": 3}


def make_input(kind: str, left: torch.Tensor, right: torch.Tensor, blurmap: torch.Tensor | None = None) -> torch.Tensor:
    """Assemble the network input of ``kind`` from N×3×H×W views.

    ``blurmap`` (needed only for ``dp+blurmap``) is N×1×H×W or N×H×W at image resolution, 1 = most blurred; it is
    repeated to three channels. It is ignored by the other kinds.
    """
    if kind not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {kind!r}; expected one of {', '.join(INPUT_KINDS)}")
    _check_view("left", left)
    _check_view("right", right)
    if left.shape != right.shape:
        raise ValueError(f"left and right views differ in shape: {tuple(left.shape)} vs {tuple(right.shape)}")
    if kind == "dp":
        return torch.cat((left, right), dim=1)
    if kind == "combined":
        return 0.5 * (left + right)
    if blurmap is None:
        raise ValueError("input kind 'dp+blurmap' needs a blur map (got blurmap=None)")
    if blurmap.ndim == 3:
        blurmap = blurmap.unsqueeze(1)
    n, _, h, w = left.shape
    if blurmap.ndim != 4 or blurmap.shape[1] != 1 or blurmap.shape[0] != n or blurmap.shape[-2:] != (h, w):
        raise ValueError(
            f"blur map must be {n}x1x{h}x{w} or {n}x{h}x{w} (upsampled to the image size), got {tuple(blurmap.shape)}"
        )
    blurmap = blurmap.to(dtype=left.dtype, device=left.device)
    return torch.cat((left, right, blurmap, blurmap, blurmap), dim=1)


def primary_output(out: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The full-resolution N×3×H×W prediction: the tensor itself, or the first item of a multi-scale list."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (list, tuple)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"model output must be a tensor or a non-empty list of tensors, got {type(out).__name__}")


def _check_view(name: str, view: torch.Tensor) -> None:
    if not isinstance(view, torch.Tensor) or view.ndim != 4 or view.shape[1] != 3:
        shape = tuple(view.shape) if isinstance(view, torch.Tensor) else type(view).__name__
        raise ValueError(f"{name} view must be an N x 3 x H x W tensor, got {shape}")
