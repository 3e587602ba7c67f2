"""Restormer (Zamir et al., CVPR 2022), weight-compatible with swz30/Restormer @ df766d55.

A clean-room re-implementation of ``Restormer`` in ``basicsr/models/archs/restormer_arch.py``: same constructor
options, same state_dict keys and shapes, same numbers (checked by tests/test_parity_restormer.py). The one
addition: inputs whose height or width is not a multiple of 8 are reflect-padded and the output cropped, as the
official ``demo.py`` does outside the network; on multiples of 8 (DPDD's 1120x1680) nothing changes.

Registered: ``restormer-dp``, the dual-pixel defocus configuration
(``Defocus_Deblurring/Options/DefocusDeblur_DualPixel_16bit_Restormer.yml``), 26,132,548 parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ldp.models.tiling import reflect_pad_to_multiple
from ldp.registry import register_model

LN_EPS = 1e-5  # Restormer's LayerNorm eps (NAFNet uses 1e-6)


class _LayerNormBody(nn.Module):
    """LayerNorm over the channels of an N×C×H×W tensor, biased variance, eps 1e-5.

    ``with_bias=False`` is Restormer's ``BiasFree``: ``x / sqrt(var + eps) * w``; the numerator is not
    mean-centred but the variance is still taken around the mean.
    """

    def __init__(self, channels: int, with_bias: bool):
        super().__init__()
        self.with_bias = with_bias
        self.weight = nn.Parameter(torch.ones(channels))
        if with_bias:
            self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_bias:
            y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, LN_EPS)
            return y.permute(0, 3, 1, 2)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return x * torch.rsqrt(var + LN_EPS) * self.weight.view(1, -1, 1, 1)


class ChannelLayerNorm(nn.Module):
    """Holds the norm as ``body`` so keys read ``...norm1.body.weight`` like the official wrapper."""

    def __init__(self, channels: int, layernorm_type: str):
        super().__init__()
        self.body = _LayerNormBody(channels, with_bias=layernorm_type != "BiasFree")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class GatedDconvFFN(nn.Module):
    """GDFN: 1x1 to 2*hidden, 3x3 depthwise, gelu(x1) * x2, 1x1 back; hidden = int(dim * factor)."""

    def __init__(self, dim: int, expansion: float, bias: bool):
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransposedAttention(nn.Module):
    """MDTA: per-head C/heads × C/heads attention over L2-normalised (along pixels) q and k."""

    def __init__(self, dim: int, num_heads: int, bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))  # first in the state_dict, as upstream
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (t.reshape(n, self.num_heads, c // self.num_heads, h * w) for t in (q, k, v))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(n, c, h, w))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, expansion: float, bias: bool, layernorm_type: str):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, layernorm_type)
        self.attn = TransposedAttention(dim, num_heads, bias)
        self.norm2 = ChannelLayerNorm(dim, layernorm_type)
        self.ffn = GatedDconvFFN(dim, expansion, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class PatchEmbed(nn.Module):
    """3x3 conv; the ``bias`` flag never reaches it upstream, so it never has a bias."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels // 2, kernel_size=3, padding=1, bias=False), nn.PixelUnshuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels * 2, kernel_size=3, padding=1, bias=False), nn.PixelShuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _stage(n: int, dim: int, heads: int, expansion: float, bias: bool, ln: str) -> nn.Sequential:
    return nn.Sequential(*[TransformerBlock(dim, heads, expansion, bias, ln) for _ in range(n)])


class Restormer(nn.Module):
    """Restormer with the official constructor (argument names kept, so fixture configs load as-is)."""

    MULTIPLE = 8  # three 2x down-samplings
    size_multiple = MULTIPLE  # read by ldp.models.tiling.infer; other sizes are padded internally anyway
    UNUSED_PARAMETERS: tuple[str, ...] = ()  # every parameter is used (docs/adding-a-baseline.md)

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: tuple[int, int, int, int] | list[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: tuple[int, int, int, int] | list[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803 (upstream name)
        dual_pixel_task: bool = False,
    ):
        super().__init__()
        if LayerNorm_type not in ("WithBias", "BiasFree"):
            raise ValueError(f"Restormer: LayerNorm_type must be 'WithBias' or 'BiasFree', got {LayerNorm_type!r}")
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError(f"Restormer: num_blocks and heads need 4 entries, got {num_blocks}, {heads}")
        for level, h in enumerate(heads):
            if (dim * 2**level) % h:
                raise ValueError(f"Restormer: heads[{level}]={h} does not divide the channels at level {level + 1}")
        if not dual_pixel_task and inp_channels != out_channels:
            raise ValueError(
                "Restormer: the global residual (dual_pixel_task=False) needs inp_channels == out_channels"
            )
        self.inp_channels = inp_channels
        self.dual_pixel_task = dual_pixel_task
        e, b, ln = ffn_expansion_factor, bias, LayerNorm_type
        d1, d2, d3, d4 = dim, dim * 2, dim * 4, dim * 8

        self.patch_embed = PatchEmbed(inp_channels, dim)
        self.encoder_level1 = _stage(num_blocks[0], d1, heads[0], e, b, ln)
        self.down1_2 = Downsample(d1)
        self.encoder_level2 = _stage(num_blocks[1], d2, heads[1], e, b, ln)
        self.down2_3 = Downsample(d2)
        self.encoder_level3 = _stage(num_blocks[2], d3, heads[2], e, b, ln)
        self.down3_4 = Downsample(d3)
        self.latent = _stage(num_blocks[3], d4, heads[3], e, b, ln)
        self.up4_3 = Upsample(d4)
        self.reduce_chan_level3 = nn.Conv2d(d4, d3, kernel_size=1, bias=bias)
        self.decoder_level3 = _stage(num_blocks[2], d3, heads[2], e, b, ln)
        self.up3_2 = Upsample(d3)
        self.reduce_chan_level2 = nn.Conv2d(d3, d2, kernel_size=1, bias=bias)
        self.decoder_level2 = _stage(num_blocks[1], d2, heads[1], e, b, ln)
        self.up2_1 = Upsample(d2)  # no channel reduction at level 1: decoder and refinement run at 2*dim
        self.decoder_level1 = _stage(num_blocks[0], d2, heads[0], e, b, ln)
        self.refinement = _stage(num_refinement_blocks, d2, heads[0], e, b, ln)
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(d1, d2, kernel_size=1, bias=bias)
        self.output = nn.Conv2d(d2, out_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.inp_channels:
            raise ValueError(f"Restormer: expected N×{self.inp_channels}×H×W input, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = reflect_pad_to_multiple(x, self.MULTIPLE)

        emb = self.patch_embed(x)
        enc1 = self.encoder_level1(emb)
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))

        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        dec1 = self.refinement(dec1)

        if self.dual_pixel_task:
            out = self.output(dec1 + self.skip_conv(emb))  # no global residual in dual-pixel mode
        else:
            out = self.output(dec1) + x
        return out[..., :h, :w]



@dataclass(frozen=True)
class RestormerConfig:
    """Constructor options of ``restormer-dp``; the defaults are the official dual-pixel configuration."""

    inp_channels: int = 6
    out_channels: int = 3
    dim: int = 48
    num_blocks: tuple[int, ...] = (4, 6, 6, 8)
    num_refinement_blocks: int = 4
    heads: tuple[int, ...] = (1, 2, 4, 8)
    ffn_expansion_factor: float = 2.66
    bias: bool = False
    LayerNorm_type: Literal["WithBias", "BiasFree"] = "WithBias"  # noqa: N815 (upstream name)
    dual_pixel_task: bool = True


# ``tiny=True``: a fast CPU config with the same wiring, for the registry-wide tests.
TINY = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)


@register_model(
    "restormer-dp",
    config=RestormerConfig,
    tiny=TINY,
    input_kind="dp",
    inference="whole",  # test_dual_pixel_defocus_deblur.py:79 runs the whole image (tiled: a labelled CPU fallback)
    description="Restormer dual-pixel (CVPR 2022), official DPDD config, 26.13 M params",
)
def restormer_dp(config: RestormerConfig) -> Restormer:
    return Restormer(**asdict(config))
