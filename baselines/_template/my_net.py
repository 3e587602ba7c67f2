"""Copy-me skeleton for a new baseline (docs/adding-a-baseline.md). This folder has no ``__init__.py``: it is not
imported by ``baselines`` and registers nothing until you copy the file and import it.

Steps: copy to ``baselines/<your_net>.py``, rename ``my-net``/``MyNet``, write the real network, add ``<your_net>``
to the one import line in ``baselines/__init__.py``, add a parity test if official code exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ldp.registry import register_model


@dataclass(frozen=True)
class MyNetConfig:
    """Build options (``build_model("my-net", width=16)``; an unknown key is an error). Make the defaults the
    paper's configuration where it gives one, and say so in the docs where it is your own choice."""

    in_channels: int = 6
    width: int = 32
    depth: int = 4


class MyNet(nn.Module):
    """Toy residual CNN: ``out = mean(L, R) + convs(x)``."""

    # Parameters kept only so official checkpoints load strictly but never used in forward (fnmatch patterns).
    UNUSED_PARAMETERS: tuple[str, ...] = ()

    def __init__(self, config: MyNetConfig):
        super().__init__()
        width = config.width
        layers: list[nn.Module] = [nn.Conv2d(config.in_channels, width, 3, padding=1)]
        for _ in range(config.depth - 1):
            layers += [nn.GELU(), nn.Conv2d(width, width, 3, padding=1)]
        layers += [nn.GELU(), nn.Conv2d(width, 3, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.in_channels = config.in_channels
        self.size_multiple = 1  # tile sizes must be multiples of this; any H, W works for whole-image forward

    # Optional hook for ldp.checkpoint.load_weights (the project's only loader): convert an official state dict
    # whose names or layout differ (DeepRFT folds its DO-Conv weights here) and return anything else as is.
    # def convert_state_dict(self, state): return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"MyNet expects {self.in_channels} input channels, got {x.shape[1]}")
        base = 0.5 * (x[:, :3] + x[:, 3:6]) if self.in_channels >= 6 else x[:, :3]
        return base + self.body(x)


@register_model(
    "my-net",
    config=MyNetConfig,  # build_model("my-net", **overrides) merges overrides onto it strictly
    tiny=dict(width=8, depth=2),  # tiny=True: runs forward+backward on 2x?x32x48 well under a second on one core
    input_kind="dp",  # "dp" (6 ch), "dp+blurmap" (9 ch) or "combined" (3 ch); see ldp.models.inputs.make_input
    inference="whole",  # or "tiled" when the official test procedure tiles
    description="Toy DP baseline from the template (replace me)",
)
def my_net(config: MyNetConfig) -> MyNet:
    return MyNet(config)
