"""DeepRFT (Mao et al., AAAI 2022), weight-compatible with INVOKERer/DeepRFT @ 4bf63db9.

A clean-room re-implementation of ``DeepRFT`` in ``DeepRFT_MIMO.py`` (blocks in ``layers.py``, DO-Conv in
``doconv_pytorch.py``), checked by tests/test_parity_deeprft.py. Two weight forms, picked by ``inference``
(unrelated to ``.eval()``):

- train form (``inference=False``): every non-transposed conv is a DO-Conv holding ``W`` (out, in, k*k) and, for
  k > 1, ``D`` and ``D_diag`` (in, k*k, k*k); ``D_diag`` is a frozen identity ``Parameter``. Forward returns
  ``[full, half, quarter]``. Released checkpoints are in this form.
- eval form (``inference=True``): each conv holds one folded ``W`` (out, in, k, k); forward returns the full image.
  :func:`to_eval_form` folds a train-form model (the rule is in :func:`fold_doconv_state_dict`).

Official checkpoints load with :func:`ldp.checkpoint.load_weights`: an eval-form model's ``convert_state_dict``
folds a train-form state dict on the way in, as upstream ``test.py`` does.

``in_channels=6`` is this project's dual-pixel variant (``deeprft-dp``); see docs/baselines.md. Inputs whose
height or width is not a multiple of 4 are reflect-padded and the outputs cropped (a no-op on multiples of 4).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ldp.checkpoint import CheckpointError
from ldp.models.tiling import reflect_pad_to_multiple
from ldp.registry import register_model

BASE_CHANNELS = 32  # fixed upstream
OFFICIAL_DPDD_WINDOW = 512  # test.py:25 --win_size for DPDD (256 for GoPro)


def has_doconv_train_keys(keys: Iterable[str]) -> bool:
    """True when the names include a train-form DO-Conv ``D_diag``."""
    return any(k.endswith(".D_diag") or k == "D_diag" for k in keys)


def fold_doconv_state_dict(sd: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """DeepRFT train form -> eval form: W_eff[o,i,m] = sum_s (D + D_diag)[i,m,s] W[o,i,s], reshaped (o,i,k,k).

    A 3-D ``W`` without ``D`` (1x1 kernels) is only reshaped; ``D`` / ``D_diag`` are dropped; every other
    tensor (transposed-conv ``.weight``) passes through. Computed in at least float32; already-folded 4-D
    ``W`` tensors pass through, so folding twice is harmless. Malformed input raises
    :class:`ldp.checkpoint.CheckpointError` naming the tensor.
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, value in sd.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("D", "D_diag"):
            continue
        if leaf != "W" or value.ndim != 3:
            out[name] = value
            continue
        prefix = name[: -len("W")]
        o, i, taps = value.shape
        k = math.isqrt(taps)
        if k * k != taps:
            raise CheckpointError(f"{name}: DO-Conv W has {taps} taps, not a square kernel")
        dtype = torch.promote_types(value.dtype, torch.float32)
        if prefix + "D" in sd:
            if prefix + "D_diag" not in sd:
                raise CheckpointError(f"{name}: has {prefix}D but no {prefix}D_diag")
            d = sd[prefix + "D"].to(dtype) + sd[prefix + "D_diag"].to(dtype)
            folded = torch.einsum("ims,ois->oim", d, value.to(dtype))
        else:
            folded = value.to(dtype)
        out[name] = folded.reshape(o, i, k, k)
    return out


class DOConv2d(nn.Module):
    """Train-form DO-Conv (D_mul = k*k, groups 1, no bias): weight[o, i, m] = sum_s (D + D_diag)[i, m, s] W[o, i, s]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, kernel_size // 2
        taps = kernel_size * kernel_size
        self.W = nn.Parameter(torch.empty(out_channels, in_channels, taps))
        nn.init.kaiming_uniform_(self.W, a=math.sqrt(5))
        if taps > 1:
            self.D = nn.Parameter(torch.zeros(in_channels, taps, taps))
            identity = torch.eye(taps).unsqueeze(0).repeat(in_channels, 1, 1)
            # Frozen, but a Parameter, so it is in the state_dict and parameters() as upstream; the forward
            # uses the loaded value (checkpoints may hold a non-identity D_diag).
            self.D_diag = nn.Parameter(identity, requires_grad=False)

    def folded_weight(self) -> torch.Tensor:
        k = self.kernel_size
        if k * k == 1:
            return self.W.reshape(self.out_channels, self.in_channels, 1, 1)
        weight = torch.einsum("ims,ois->oim", self.D + self.D_diag, self.W)
        return weight.reshape(self.out_channels, self.in_channels, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.folded_weight(), None, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"


class FoldedConv2d(nn.Module):
    """Eval-form DO-Conv: one weight ``W`` of shape (out, in, k, k), no bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.stride, self.padding = stride, kernel_size // 2
        self.W = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.W, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.W, None, self.stride, self.padding)


_CONV_BY_FORM = {"train": DOConv2d, "eval": FoldedConv2d}


class BasicConv(nn.Module):
    """``main`` = [conv, ReLU?]. Transposed convs (kernel 4, stride 2, padding 1) are plain in every form.

    ``form="plain"`` is upstream's plain ``BasicConv`` (``nn.Conv2d``, keys ``.weight``), used only by
    ``ResBlock_fft_bench`` / ``DeepRFT_flops``.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int = 1,
        relu: bool = True,
        transpose: bool = False,
        form: str = "train",
    ):
        super().__init__()
        if transpose:
            conv: nn.Module = nn.ConvTranspose2d(
                in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2 - 1, bias=False
            )
        elif form == "plain":
            conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        else:
            conv = _CONV_BY_FORM[form](in_ch, out_ch, kernel_size, stride)
        layers = [conv, nn.ReLU(inplace=True)] if relu else [conv]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class FFTResBlock(nn.Module):
    """``ResBlock_do_fft_bench``: main(x) + x + irfft2(conv1x1-ReLU-conv1x1 on [Re, Im] of rfft2(x))."""

    def __init__(self, channels: int, form: str = "train"):
        super().__init__()
        self.main = nn.Sequential(
            BasicConv(channels, channels, 3, relu=True, form=form),
            BasicConv(channels, channels, 3, relu=False, form=form),
        )
        self.main_fft = nn.Sequential(
            BasicConv(channels * 2, channels * 2, 1, relu=True, form=form),
            BasicConv(channels * 2, channels * 2, 1, relu=False, form=form),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        spec = torch.fft.rfft2(x, norm="backward")
        y = self.main_fft(torch.cat([spec.real, spec.imag], dim=1))
        y_real, y_imag = y.chunk(2, dim=1)
        y = torch.fft.irfft2(torch.complex(y_real, y_imag), s=(h, w), norm="backward")
        return self.main(x) + x + y


class ResStage(nn.Module):
    """Upstream ``EBlock`` / ``DBlock``: ``num_res`` FFT residual blocks under ``layers``."""

    def __init__(self, channels: int, num_res: int, form: str):
        super().__init__()
        self.layers = nn.Sequential(*[FFTResBlock(channels, form) for _ in range(num_res)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class AFF(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, form: str):
        super().__init__()
        self.conv = nn.Sequential(
            BasicConv(in_ch, out_ch, 1, relu=True, form=form), BasicConv(out_ch, out_ch, 3, relu=False, form=form)
        )

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, x4: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x1, x2, x4], dim=1))


class SCM(nn.Module):
    """Shallow conv module: cat([image, body(image)]) then a 1x1 conv; ``in_ch`` image channels."""

    def __init__(self, out_plane: int, form: str, in_ch: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            BasicConv(in_ch, out_plane // 4, 3, relu=True, form=form),
            BasicConv(out_plane // 4, out_plane // 2, 1, relu=True, form=form),
            BasicConv(out_plane // 2, out_plane // 2, 3, relu=True, form=form),
            BasicConv(out_plane // 2, out_plane - in_ch, 1, relu=True, form=form),
        )
        self.conv = BasicConv(out_plane, out_plane, 1, relu=False, form=form)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x, self.main(x)], dim=1))


class FAM(nn.Module):
    def __init__(self, channels: int, form: str):
        super().__init__()
        self.merge = BasicConv(channels, channels, 3, relu=False, form=form)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return x1 + self.merge(x1 * x2)


def _half(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.5)  # nearest: the even-indexed pixels


def _double(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0)  # nearest


class DeepRFT(nn.Module):
    """DeepRFT (MIMO-UNet style, FFT residual blocks); ``num_res`` 4 / 8 / 20 = Small / DeepRFT / Plus."""

    MULTIPLE = 4
    size_multiple = MULTIPLE  # read by ldp.models.tiling.infer; other sizes are padded internally anyway
    inference_window = OFFICIAL_DPDD_WINDOW  # the window of the registered ``windows`` mode (test.py --win_size)

    def __init__(self, num_res: int = 8, inference: bool = False, in_channels: int = 3):
        super().__init__()
        if num_res < 0:
            raise ValueError(f"DeepRFT: num_res must be >= 0, got {num_res}")
        if in_channels not in (3, 6):
            raise ValueError(f"DeepRFT: in_channels must be 3 (official) or 6 (dual-pixel), got {in_channels}")
        self.inference = inference
        self.in_channels = in_channels
        # Kept only for strict loading (docs/adding-a-baseline.md): upstream's eval form computes ConvsOut and
        # throws the results away, so they get no gradient. D_diag (train form) is frozen, not unused.
        self.UNUSED_PARAMETERS: tuple[str, ...] = ("ConvsOut.*",) if inference else ()
        form = "eval" if inference else "train"
        c = BASE_CHANNELS

        self.Encoder = nn.ModuleList(
            [ResStage(c, num_res, form), ResStage(c * 2, num_res, form), ResStage(c * 4, num_res, form)]
        )
        self.feat_extract = nn.ModuleList(
            [
                BasicConv(in_channels, c, 3, relu=True, form=form),
                BasicConv(c, c * 2, 3, stride=2, relu=True, form=form),
                BasicConv(c * 2, c * 4, 3, stride=2, relu=True, form=form),
                BasicConv(c * 4, c * 2, 4, stride=2, relu=True, transpose=True, form=form),
                BasicConv(c * 2, c, 4, stride=2, relu=True, transpose=True, form=form),
                BasicConv(c, 3, 3, relu=False, form=form),
            ]
        )
        self.Decoder = nn.ModuleList(
            [ResStage(c * 4, num_res, form), ResStage(c * 2, num_res, form), ResStage(c, num_res, form)]
        )
        self.Convs = nn.ModuleList(
            [BasicConv(c * 4, c * 2, 1, relu=True, form=form), BasicConv(c * 2, c, 1, relu=True, form=form)]
        )
        # In the eval form these stay for strict loading but their results are discarded upstream; we skip them.
        self.ConvsOut = nn.ModuleList(
            [BasicConv(c * 4, 3, 3, relu=False, form=form), BasicConv(c * 2, 3, 3, relu=False, form=form)]
        )
        self.AFFs = nn.ModuleList([AFF(c * 7, c, form), AFF(c * 7, c * 2, form)])
        self.FAM1 = FAM(c * 4, form)
        self.SCM1 = SCM(c * 4, form, in_channels)
        self.FAM2 = FAM(c * 2, form)
        self.SCM2 = SCM(c * 2, form, in_channels)

    def convert_state_dict(self, state: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        """Hook for :func:`ldp.checkpoint.load_weights`: an eval-form model folds a train-form (DO-Conv
        ``W``/``D``/``D_diag``) state dict; anything else is returned as is."""
        if self.inference and has_doconv_train_keys(state):
            return fold_doconv_state_dict(state)
        return state

    def _residual_image(self, x: torch.Tensor) -> torch.Tensor:
        # Dual-pixel variant: every scale's residual is the mean of L and R (the combined image).
        return x if self.in_channels == 3 else 0.5 * (x[:, :3] + x[:, 3:])

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DeepRFT: expected N×{self.in_channels}×H×W input, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = reflect_pad_to_multiple(x, self.MULTIPLE)
        x_2 = _half(x)
        x_4 = _half(x_2)
        z2 = self.SCM2(x_2)
        z4 = self.SCM1(x_4)

        res1 = self.Encoder[0](self.feat_extract[0](x))
        z = self.FAM2(self.feat_extract[1](res1), z2)
        res2 = self.Encoder[1](z)
        z = self.FAM1(self.feat_extract[2](res2), z4)
        z = self.Encoder[2](z)

        # Both AFFs read the encoder outputs, before either replaces them.
        z42 = _double(z)
        aff2 = self.AFFs[1](_half(res1), res2, z42)
        aff1 = self.AFFs[0](res1, _double(res2), _double(z42))

        z = self.Decoder[0](z)
        quarter = None if self.inference else self.ConvsOut[0](z) + self._residual_image(x_4)
        z = self.feat_extract[3](z)
        z = self.Decoder[1](self.Convs[0](torch.cat([z, aff2], dim=1)))
        half = None if self.inference else self.ConvsOut[1](z) + self._residual_image(x_2)
        z = self.feat_extract[4](z)
        z = self.Decoder[2](self.Convs[1](torch.cat([z, aff1], dim=1)))
        full = (self.feat_extract[5](z) + self._residual_image(x))[..., :h, :w]
        if self.inference:
            return full
        return [full, half[..., : h // 2, : w // 2], quarter[..., : h // 4, : w // 4]]



def to_eval_form(model: DeepRFT) -> DeepRFT:
    """A new eval-form DeepRFT with the DO-Conv weights of ``model`` folded (upstream test.py's conversion)."""
    if model.inference:
        raise ValueError("to_eval_form: the model is already in eval form (inference=True)")
    num_res = len(model.Encoder[0].layers)
    ref = next(model.parameters())
    folded = DeepRFT(num_res=num_res, inference=True, in_channels=model.in_channels).to(ref.device, ref.dtype)
    folded.load_state_dict(fold_doconv_state_dict(model.state_dict()), strict=True)
    return folded


@dataclass(frozen=True)
class DeepRFTConfig:
    """Constructor options of ``deeprft`` / ``deeprft-dp``: ``num_res`` 4/8/20 = Small/DeepRFT/Plus;
    ``inference`` picks the eval (folded) weight form. The defaults are the official DeepRFT train form."""

    num_res: int = 8
    inference: bool = False


# ``tiny=True``: one FFT block per stage (the width, 32, is fixed upstream), for the registry-wide tests.
TINY = dict(num_res=1)


@register_model(
    "deeprft",
    config=DeepRFTConfig,
    tiny=TINY,
    input_kind="combined",
    inference="windows",  # test.py: non-overlapping 512-px windows on DPDD, no blending (docs/baselines.md)
    description="DeepRFT (AAAI 2022), official 3-channel model, num_res 8, train form (10.83 M params)",
)
def deeprft(config: DeepRFTConfig) -> DeepRFT:
    return DeepRFT(num_res=config.num_res, inference=config.inference, in_channels=3)


@register_model(
    "deeprft-dp",
    config=DeepRFTConfig,
    tiny=TINY,
    input_kind="dp",
    inference="windows",  # the official DeepRFT scheme (our adaptation has no test of its own)
    description="DeepRFT with a 6-channel dual-pixel input (our adaptation, no paper config; docs/baselines.md)",
)
def deeprft_dp(config: DeepRFTConfig) -> DeepRFT:
    return DeepRFT(num_res=config.num_res, inference=config.inference, in_channels=6)
