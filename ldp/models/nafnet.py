"""NAFNet (Chen et al., ECCV 2022), weight-compatible with megvii-research/NAFNet @ 2b4af71e.

A clean-room re-implementation of ``NAFNet`` in ``basicsr/models/archs/NAFNet_arch.py``: the same state_dict keys,
shapes and order, and the same numbers (tests/test_parity_nafnet_ldp.py). One difference from upstream:
``LayerNorm2d`` is written with plain tensor ops instead of a custom autograd Function, so tracers (fvcore, torch.fx,
torch.jit) see it; the arithmetic and the gradients are the same.

Two generalisations, both off in the official configuration:

- ``out_channel`` may differ from ``img_channel`` (the ``nafnet-dp`` baseline maps a 6-channel DP pair to 3 channels);
- ``global_residual`` chooses what is added to the output: ``"input"`` (official: the padded input), ``"dp-mean"``
  (the mean of the two DP views, for a 6-channel input) or ``"none"`` (LDP's inner copy, see :mod:`ldp.models.ldp_net`).

Registered: ``nafnet-gopro-w32`` (official GoPro width-32 config, 3-channel input) and ``nafnet-dp``
(LDP-core-sized DP baseline). See docs/models.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ldp.registry import register_model

LN_EPS = 1e-6  # NAFNet's LayerNorm2d eps (Restormer uses 1e-5)

GlobalResidual = Literal["input", "dp-mean", "none"]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an N×C×H×W tensor at each pixel: biased variance, eps inside the sqrt."""

    def __init__(self, channels: int, eps: float = LN_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        centred = x - mean
        var = centred.pow(2).mean(1, keepdim=True)
        y = centred / (var + self.eps).sqrt()
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """Split the channels into two halves and multiply them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)
        return first * second


class NAFBlock(nn.Module):
    """y = x + beta * conv3(SCA(SG(conv2(conv1(norm1(x)))))); out = y + gamma * conv5(SG(conv4(norm2(y))))."""

    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2, drop_out_rate: float = 0.0):
        super().__init__()
        dw = c * dw_expand
        ffn = c * ffn_expand
        # Registration order fixes the state_dict order: beta, gamma (own params) first, then these children.
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        # Simplified channel attention: no sigmoid; index 0 is the pool, so the conv's keys read ``sca.1``.
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.sg = SimpleGate()
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.dropout1 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.dropout2 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.sg(self.conv2(self.conv1(self.norm1(x))))
        t = self.conv3(t * self.sca(t))
        y = x + self.dropout1(t) * self.beta
        t = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + self.dropout2(t) * self.gamma


LevelHook = Callable[[int, torch.Tensor], torch.Tensor]


class NAFNet(nn.Module):
    """The NAFNet UNet: intro conv, encoder levels (blocks, then a stride-2 conv), middle blocks, decoder levels
    (1x1 conv + PixelShuffle, add the skip, blocks), ending conv, global residual, crop.

    The input is zero-padded at the bottom and right to a multiple of ``2 ** len(enc_blk_nums)``.
    """

    UNUSED_PARAMETERS: tuple[str, ...] = ()

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 16,
        middle_blk_num: int = 1,
        enc_blk_nums: tuple[int, ...] = (),
        dec_blk_nums: tuple[int, ...] = (),
        out_channel: int | None = None,
        global_residual: GlobalResidual = "input",
    ):
        super().__init__()
        out_channel = img_channel if out_channel is None else out_channel
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError(f"NAFNet: enc_blk_nums {enc_blk_nums} and dec_blk_nums {dec_blk_nums} differ in length")
        if global_residual == "input" and out_channel != img_channel:
            raise ValueError(
                f"NAFNet: global_residual='input' needs out_channel == img_channel (got {out_channel} vs {img_channel})"
            )
        if global_residual == "dp-mean" and (img_channel != 6 or out_channel != 3):
            raise ValueError("NAFNet: global_residual='dp-mean' needs img_channel=6 and out_channel=3")
        self.img_channel = img_channel
        self.out_channel = out_channel
        self.global_residual = global_residual

        # Attribute order = official state_dict order: intro, ending, encoders, decoders, middle_blks, ups, downs.
        self.intro = nn.Conv2d(img_channel, width, 3, padding=1)
        self.ending = nn.Conv2d(width, out_channel, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.middle_blks = nn.Sequential()
        self.ups = nn.ModuleList()
        self.downs = nn.ModuleList()

        chan = width
        for num in enc_blk_nums:
            self.encoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(num)]))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, stride=2))
            chan *= 2
        self.middle_blks = nn.Sequential(*[NAFBlock(chan) for _ in range(middle_blk_num)])
        for num in dec_blk_nums:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(num)]))
        self.padder_size = 2 ** len(self.encoders)
        # Any H, W works (zero padding inside); tiles that are multiples of this need no padding.
        self.size_multiple = self.padder_size

    def forward(self, inp: torch.Tensor, level_hook: LevelHook | None = None) -> torch.Tensor:
        """``level_hook(level, features)`` (if given) may rewrite each encoder level's output before it is kept as
        the skip and downsampled (used by LDP's multi-level BPA option)."""
        if inp.shape[1] != self.img_channel:
            raise ValueError(f"NAFNet expects {self.img_channel} input channels, got {inp.shape[1]}")
        h, w = inp.shape[-2:]
        padded = _pad_bottom_right(inp, self.padder_size)
        x = self.intro(padded)
        skips = []
        for level, (encoder, down) in enumerate(zip(self.encoders, self.downs, strict=True)):
            x = encoder(x)
            if level_hook is not None:
                x = level_hook(level, x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips), strict=True):
            x = decoder(up(x) + skip)
        x = self.ending(x)
        if self.global_residual == "input":
            x = x + padded
        elif self.global_residual == "dp-mean":
            x = x + 0.5 * (padded[:, :3] + padded[:, 3:6])
        return x[:, :, :h, :w]


def _pad_bottom_right(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    pad_h = (multiple - h % multiple) % multiple
    pad_w = (multiple - w % multiple) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))


@dataclass(frozen=True)
class NAFNetConfig:
    """Constructor options of :class:`NAFNet` (the official names, plus ``out_channel`` and ``global_residual``)."""

    img_channel: int = 3
    width: int = 32
    middle_blk_num: int = 1
    enc_blk_nums: tuple[int, ...] = (1, 1, 1, 28)
    dec_blk_nums: tuple[int, ...] = (1, 1, 1, 1)
    out_channel: int | None = None
    global_residual: GlobalResidual = "input"


def build_nafnet(config: NAFNetConfig) -> NAFNet:
    return NAFNet(
        img_channel=config.img_channel,
        width=config.width,
        middle_blk_num=config.middle_blk_num,
        enc_blk_nums=tuple(config.enc_blk_nums),
        dec_blk_nums=tuple(config.dec_blk_nums),
        out_channel=config.out_channel,
        global_residual=config.global_residual,
    )


# Official GoPro width-32 config (options/*/GoPro/NAFNet-width32.yml): 17,111,907 params.
GOPRO_W32 = dict(img_channel=3, width=32, middle_blk_num=1, enc_blk_nums=(1, 1, 1, 28), dec_blk_nums=(1, 1, 1, 1))
# Our choice (no paper config): the size of LDP's inner NAFNet, fed the 6-channel DP pair, 3 channels out, residual
# on the DP mean: 7,600,515 params.
NAFNET_DP = dict(
    img_channel=6,
    out_channel=3,
    width=32,
    middle_blk_num=2,
    enc_blk_nums=(2, 2, 2, 2),
    dec_blk_nums=(2, 2, 2, 2),
    global_residual="dp-mean",
)
# ``tiny=True``: a fast CPU config with the same wiring (used by tests/test_registry_models.py).
TINY = dict(width=8, middle_blk_num=1, enc_blk_nums=(1, 1), dec_blk_nums=(1, 1))


@register_model(
    "nafnet-gopro-w32",
    config=NAFNetConfig,
    defaults=GOPRO_W32,
    tiny=TINY,
    input_kind="combined",
    inference="whole",
    description="NAFNet, official GoPro width-32 config (17.1 M), fed the combined (L+R)/2 image",
)
def nafnet_gopro_w32(config: NAFNetConfig) -> NAFNet:
    return build_nafnet(config)


@register_model(
    "nafnet-dp",
    config=NAFNetConfig,
    defaults=NAFNET_DP,
    tiny=TINY,
    input_kind="dp",
    inference="whole",
    description="NAFNet the size of LDP's core (7.6 M, our choice): DP pair in (6 ch), 3 out, residual on the DP mean",
)
def nafnet_dp(config: NAFNetConfig) -> NAFNet:
    return build_nafnet(config)
