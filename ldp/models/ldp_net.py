"""LDP restoration network (CVPR 2024), weight-compatible with the released ``LDP`` class.

Source of the facts: noxsine/LDP @ 4a133ea5, ``IR/LDP-main.zip`` -> ``basicsr/models/archs/backbone.py``. This is a
clean-room re-implementation checked against the parity fixtures (tests/test_parity_nafnet_ldp.py).

Data flow (no global residual anywhere)::

    image = x[:, :6]; blur = x[:, -1:]             # 9-channel input (L, R, M, M, M); only the last channel is read
    f = patch_embed.proj(image)                     # 3x3 conv 6->32, no bias
    f = ca(f, blur)                                 # the BPA block: channel attention + pooled blur map on the logits
    y = naf(f) + skip_conv(f)                       # LDP's own NAFNet copy (32->32, no residual); 1x1 skip
    out = output(y)                                 # 3x3 conv 32->3, no bias

Released quirks kept for weight compatibility (docs/models.md): ``ca.qkv_dwconv`` is built but never used; the skip
starts from the attention output; the 32x32 pooled blur map is added to the 32x32 *channel* affinity; the inner
NAFNet's ``img_channel`` argument is ignored (its intro/ending convs are width->width).

Registered: ``ldp-small`` (the released config, 7,624,961 params), ``ldp-large`` (encoder [4,4,8,8],
decoder [8,8,4,4], middle 5: our choice, see docs/models.md) and ``ldp-small-gr`` (OURS: ldp-small plus a global
residual on (L+R)/2, same weights layout; for the CPU profile, where the released design cannot reach its input).
``bpa_levels`` adds BPA blocks inside the UNet (the multi-block design of the paper's Fig. 2); it is off by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ldp.models.nafnet import LayerNorm2d, NAFNet
from ldp.registry import register_model

BLUR_PRIOR_SIZE = 32  # the released code pools the blur map to 32x32 = the per-head channel count


class PatchEmbed(nn.Module):
    """Restormer's OverlapPatchEmbed: a 3x3 conv held as ``proj`` (key ``patch_embed.proj.weight``)."""

    def __init__(self, in_channels: int, dim: int, bias: bool = False):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class BlurPriorAttention(nn.Module):
    """BPA block as released: Restormer-style transposed (channel) attention whose softmax logits get the blur map,
    adaptive-average-pooled to ``head_dim x head_dim``, added as a bias (row i = height bin i biases query channel i).

    q, k, v come from the 1x1 ``qkv`` conv only; ``qkv_dwconv`` is constructed (and stored) but never applied.
    """

    def __init__(self, dim: int, num_heads: int = 1, bias: bool = False, build_unused_dwconv: bool = True):
        super().__init__()
        if dim % num_heads or dim // num_heads != BLUR_PRIOR_SIZE:
            raise ValueError(
                f"BPA: dim / num_heads must be {BLUR_PRIOR_SIZE} so the pooled {BLUR_PRIOR_SIZE}x{BLUR_PRIOR_SIZE} "
                f"blur map lines up with the channel affinity (got dim={dim}, num_heads={num_heads})"
            )
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        if build_unused_dwconv:  # released: built (so it is in the state_dict) but never applied
            self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor, blur: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=1)
        heads = self.num_heads
        q = F.normalize(q.reshape(b, heads, c // heads, h * w), dim=-1)
        k = F.normalize(k.reshape(b, heads, c // heads, h * w), dim=-1)
        v = v.reshape(b, heads, c // heads, h * w)
        logits = (q @ k.transpose(-2, -1)) * self.temperature
        prior = F.adaptive_avg_pool2d(blur, (BLUR_PRIOR_SIZE, BLUR_PRIOR_SIZE))  # N x 1 x 32 x 32, over heads
        attn = (logits + prior).softmax(dim=-1)
        out = (attn @ v).reshape(b, c, h, w)
        return self.project_out(out)


class LevelBPA(nn.Module):
    """Our multi-level BPA block (Fig. 2 variant, not in the released code): pre-norm residual
    ``x + BPA(LN(x), M)`` with ``C / 32`` heads, so each head keeps the 32-channel affinity of the released block."""

    def __init__(self, channels: int, bias: bool = False):
        super().__init__()
        self.norm = LayerNorm2d(channels)
        heads = channels // BLUR_PRIOR_SIZE
        self.attn = BlurPriorAttention(channels, num_heads=heads, bias=bias, build_unused_dwconv=False)

    def forward(self, x: torch.Tensor, blur: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x), blur)


@dataclass(frozen=True)
class LDPInnerConfig:
    """LDP's inner NAFNet. ``img_channel`` is accepted and ignored, as in the released code (intro is width->width)."""

    img_channel: int = 6
    width: int = 32
    middle_blk_num: int = 2
    enc_blk_nums: tuple[int, ...] = (2, 2, 2, 2)
    dec_blk_nums: tuple[int, ...] = (2, 2, 2, 2)


@dataclass(frozen=True)
class LDPConfig:
    """``LDP()`` constructor options (``inp_channels``, ``out_channels``, ``bias`` as released) plus the inner
    NAFNet config (``inner``, fixed in the released code) and ``bpa_levels`` (our Fig. 2 option, off by default).

    ``bias`` applies to ``skip_conv``, ``output`` and the BPA convs; only the released ``False`` is verified.
    """

    inp_channels: int = 6
    out_channels: int = 3
    bias: bool = False
    dim: int = 32
    inner: LDPInnerConfig = field(default_factory=LDPInnerConfig)
    bpa_levels: tuple[int, ...] = ()
    # OURS, not in the released code: "dp-mean" adds (L+R)/2 to the output, so an untrained network starts at the
    # view average instead of near 13 dB (registered as ldp-small-gr; ldp-small stays as released)
    global_residual: Literal["none", "dp-mean"] = "none"


class LDP(nn.Module):
    """The released LDP network; see the module docstring for the data flow."""

    UNUSED_PARAMETERS: tuple[str, ...] = ("ca.qkv_dwconv.*",)  # built by the released code, never used in forward

    def __init__(self, config: LDPConfig | None = None):
        super().__init__()
        config = config or LDPConfig()
        inner = config.inner
        if inner.width != config.dim:
            raise ValueError(f"LDP: inner.width ({inner.width}) must equal dim ({config.dim}): intro is width->width")
        levels = len(inner.enc_blk_nums)
        bad = [lv for lv in config.bpa_levels if not 0 <= lv < levels]
        if bad:
            raise ValueError(f"LDP: bpa_levels {bad} out of range for {levels} encoder levels (0..{levels - 1})")
        self.config = config
        self.inp_channels = config.inp_channels
        # Attribute order = released state_dict order: patch_embed, skip_conv, output, ca, naf.
        self.patch_embed = PatchEmbed(config.inp_channels, config.dim)
        self.skip_conv = nn.Conv2d(config.dim, config.dim, 1, bias=config.bias)
        self.output = nn.Conv2d(config.dim, config.out_channels, 3, padding=1, bias=config.bias)
        self.ca = BlurPriorAttention(config.dim, num_heads=1, bias=config.bias)
        self.naf = NAFNet(
            img_channel=inner.width,
            width=inner.width,
            middle_blk_num=inner.middle_blk_num,
            enc_blk_nums=tuple(inner.enc_blk_nums),
            dec_blk_nums=tuple(inner.dec_blk_nums),
            out_channel=inner.width,
            global_residual="none",
        )
        if config.bpa_levels:
            self.level_bpa = nn.ModuleDict(
                {str(lv): LevelBPA(inner.width * 2**lv, bias=config.bias) for lv in sorted(set(config.bpa_levels))}
            )
        # Any H, W works (the inner NAFNet pads itself). 1, not 16: zero-padding the input outside would shift
        # the blur map's 32x32 pooling bins.
        self.size_multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        image = x[:, : self.inp_channels]
        blur = x[:, -1:]
        f = self.ca(self.patch_embed(image), blur)
        hook = partial(self._level_bpa, blur) if self.config.bpa_levels else None
        y = self.naf(f, level_hook=hook) + self.skip_conv(f)
        return self._add_residual(self.output(y), image)

    def _add_residual(self, out: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if self.config.global_residual == "dp-mean":
            return out + 0.5 * (image[:, :3] + image[:, 3:6])
        return out

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] <= self.inp_channels:
            raise ValueError(f"LDP expects N x {self.inp_channels + 3} x H x W (L, R, M, M, M), got {tuple(x.shape)}")

    def tiling_split(self) -> tuple[Callable, Callable, int]:
        """``(stem, body, multiple)`` for :func:`ldp.models.tiling.infer`: the stem (patch_embed + the image-global
        BPA block, cheap) runs on the whole image; only the body (inner NAFNet, skip, output conv) is tiled."""
        return self._stem, self._body, self.naf.padder_size

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        image, blur = x[:, : self.inp_channels], x[:, -1:]
        return torch.cat((self.ca(self.patch_embed(image), blur), image, blur), dim=1)

    def _body(self, stem_out: torch.Tensor) -> torch.Tensor:
        dim = self.config.dim
        f, image, blur = stem_out[:, :dim], stem_out[:, dim:-1], stem_out[:, -1:]
        hook = partial(self._level_bpa, blur) if self.config.bpa_levels else None
        return self._add_residual(self.output(self.naf(f, level_hook=hook) + self.skip_conv(f)), image)

    def _level_bpa(self, blur: torch.Tensor, level: int, feats: torch.Tensor) -> torch.Tensor:
        block = self.level_bpa[str(level)] if str(level) in self.level_bpa else None
        return feats if block is None else block(feats, blur)


SMALL = dict(inner=dict(width=32, middle_blk_num=2, enc_blk_nums=(2, 2, 2, 2), dec_blk_nums=(2, 2, 2, 2)))
# Paper: 19.6 M params, encoder [4,4,8,8], decoder [8,8,4,4], middle count not given. Middle 5 gives 20,370,049
# (+0.77 M), middle 4 gives 18,518,145 (-1.08 M): 5 is the closest integer, our choice (docs/models.md).
LARGE = dict(inner=dict(width=32, middle_blk_num=5, enc_blk_nums=(4, 4, 8, 8), dec_blk_nums=(8, 8, 4, 4)))
# ``tiny=True``: fast CPU config with the real attention (dim must stay 32) and a one-level inner NAFNet.
TINY = dict(inner=dict(width=32, middle_blk_num=1, enc_blk_nums=(1,), dec_blk_nums=(1,)))


@register_model(
    "ldp-small",
    config=LDPConfig,
    defaults=SMALL,
    tiny=TINY,
    input_kind="dp+blurmap",
    inference="whole",
    description="LDP-Small as released (7.62 M): one BPA block, NAFNet core enc/dec [2,2,2,2], middle 2",
)
def ldp_small(config: LDPConfig) -> LDP:
    return LDP(config)


@register_model(
    "ldp-large",
    config=LDPConfig,
    defaults=LARGE,
    tiny=TINY,
    input_kind="dp+blurmap",
    inference="whole",
    description="LDP-Large (20.37 M; paper 19.6 M): enc [4,4,8,8], middle 5 (our choice), dec [8,8,4,4]",
)
def ldp_large(config: LDPConfig) -> LDP:
    return LDP(config)


@register_model(
    "ldp-small-gr",
    config=LDPConfig,
    defaults={**SMALL, "global_residual": "dp-mean"},
    tiny=TINY,
    input_kind="dp+blurmap",
    inference="whole",
    description="OURS, not the paper's: LDP-Small plus a global residual on the view average (L+R)/2",
)
def ldp_small_gr(config: LDPConfig) -> LDP:
    return LDP(config)
