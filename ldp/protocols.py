"""Named, versioned evaluation protocols: how restorations and targets become numbers (docs/protocols.md).

Each :class:`Protocol` is a frozen definition: how stored images are read (16-bit /65535, or reduced to 8-bit first),
the resolution (full, or half by a 2x2 area mean of restoration and target), the SSIM implementation, the colour
space, what is done to the output (clamp, rounding) and the subsets; ``cites`` names the files (and lines) it follows.
The default, ``dpdd16-restormer-v1``, is the protocol every table uses; the others measure how far the numbers move
under the conventions other papers and toolboxes used (the drift table, :mod:`ldp.protocol_drift`).

:func:`score` applies a protocol to one restoration and its target and returns the per-image metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ldp.metrics import LPIPSAlex, MetricInputError, mae, psnr, rmse, ssim, ssim_gaussian

SUBSETS = ("all", "indoor", "outdoor")
DEFAULT_PROTOCOL = "dpdd16-restormer-v1"
ALL = "all"  # evaluate.protocols / --protocols: every registered protocol

RESTORMER_TEST = "swz30/Restormer Defocus_Deblurring/test_dual_pixel_defocus_deblur.py"
RESTORMER_UTILS = "swz30/Restormer Defocus_Deblurring/utils.py"
IFAN = "codeslake/IFAN"
MMAGIC = "open-mmlab/mmagic"
DDDNET = "panpanfei/Dual-Pixel-Exploration-Simultaneous-Depth-Estimation-and-Image-Restoration"


class ProtocolError(ValueError):
    """An unknown protocol name (the message lists the known ones)."""


@dataclass(frozen=True)
class Protocol:
    """A fixed, versioned way to turn restorations into numbers; its id goes into every result.

    The first block of fields is what :func:`score` does; the strings after it state the same rules in words for
    ``metrics.json`` (``protocol_spec``) and the docs.
    """

    id: str
    version: int = 1
    summary: str = ""
    # --- what score() does
    reading: Literal["16bit", "8bit"] = "16bit"  # 8bit: a 16-bit image is reduced to v >> 8 before /255
    resolution: Literal["full", "half"] = "full"  # half: 2x2 area mean of restoration and target after clamping
    ssim_kind: Literal["skimage-uniform7", "gaussian11-255"] = "skimage-uniform7"
    colour: Literal["rgb"] = "rgb"
    output_rounding: Literal["none"] = "none"  # the float restoration is scored as it is (after the clamp)
    lpips: bool = True  # LPIPS-Alex when its weights are local (only the default protocol: it is the costly metric)
    # --- the rules in words
    input_scaling: str = "uint16/65535, uint8/255"
    resize: str = "none"
    clamp: tuple[float, float] = (0.0, 1.0)
    psnr_peak: float = 1.0
    psnr_identical_db: float = 100.0
    ssim: str = "skimage structural_similarity(data_range=1, channel_axis=-1) defaults"
    ssim_window: str = "uniform 7x7"
    ssim_k1: float = 0.01
    ssim_k2: float = 0.03
    ssim_sample_covariance: bool = True
    ssim_border_crop: int = 3
    ssim_data_range: float = 1.0
    lpips_rule: str = "LPIPS v0.1 AlexNet, normalize=True; unavailable (null) without local weights"
    rmse_printed_as: str = "MSE_rel (RMSE)"
    reduction: str = "mean of per-image values"
    subsets: tuple[str, ...] = SUBSETS
    ci: str = "bootstrap over images, percentile 95 %"
    scope: str = "the restoration as computed (a network's float output, or a restorations folder's PNGs)"
    cites: tuple[str, ...] = ()

    def spec(self) -> dict[str, Any]:
        """The JSON form written into ``metrics.json`` and ``protocols.json``."""
        return dataclasses.asdict(self)


_EIGHT_BIT = ("uint16 -> v >> 8 (floor(v/256), what cv2.imread(IMREAD_COLOR) and PIL .convert('RGB') return for a "
              "16-bit PNG), then /255; uint8 /255")
_SCORING_ONLY_8 = ("scoring under 8-bit reading: the target (and the PNGs of a restorations folder) are reduced to 8 "
                   "bits; a network evaluated here still saw the 16-bit input, while the 8-bit pipelines also fed "
                   "it 8-bit inputs")

PROTOCOLS: dict[str, Protocol] = {
    p.id: p for p in (
        Protocol(
            id="dpdd16-restormer-v1",
            summary="16-bit PNG / 65535, full resolution, skimage SSIM (7x7 uniform window) on [0, 1]",
            cites=(f"{RESTORMER_TEST}:69-71 (load_img16, /65535), :79-80 (whole image, clamp 0..1), :85-87 "
                   "(PSNR, MAE, SSIM per image), :95-96 (indoor/outdoor means)",
                   f"{RESTORMER_UTILS}:22-26 (PSNR peak 1, 100 dB when MSE = 0), :39-40 (SSIM data_range=1, "
                   "multichannel=True)"),
        ),
        Protocol(
            id="dpdd8-restormer-v1",
            summary="8-bit PNG / 255, full resolution, skimage SSIM (7x7 uniform window) on [0, 1]",
            reading="8bit", lpips=False, input_scaling=_EIGHT_BIT, scope=_SCORING_ONLY_8,
            lpips_rule="not computed (default protocol only)",
            cites=(f"{IFAN} configs/config.py (in_bit = 8, norm_val = 2**in_bit - 1 = 255)",
                   f"{IFAN} data_loader/utils.py:7-21 (read_frame: cv2.imread(IMREAD_COLOR) / 255 unless "
                   "norm_val = 65535)",
                   f"{IFAN} eval.py:34-39 (skimage structural_similarity(data_range=1, multichannel=True); PSNR "
                   "10*log10(1/MSE))",
                   f"{RESTORMER_UTILS}:39-40 (the same SSIM call)"),
        ),
        Protocol(
            id="dpdd8-mmagic-v1",
            summary="8-bit loading (cv2 colour), full resolution, mmagic's SSIM (11x11 Gaussian window) on 0-255",
            reading="8bit", ssim_kind="gaussian11-255", lpips=False, input_scaling=_EIGHT_BIT, scope=_SCORING_ONLY_8,
            lpips_rule="not computed (default protocol only)",
            ssim="mmagic ssim(): per channel on 0-255 values, mean over channels",
            ssim_window="Gaussian 11x11, sigma 1.5 (cv2.getGaussianKernel(11, 1.5) outer product), valid windows "
                        "only (filter2D then [5:-5, 5:-5])",
            ssim_sample_covariance=False, ssim_border_crop=5, ssim_data_range=255.0,
            cites=(f"{MMAGIC} configs/_base_/datasets/deblurring-defocus_test_config.py (LoadImageFromFile "
                   "color_type='color', imdecode_backend='cv2': 8-bit)",
                   f"{MMAGIC} configs/restormer/restormer_official_dpdd-single.py (DataPreprocessor std 255)",
                   f"{MMAGIC} mmagic/models/data_preprocessors/data_preprocessor.py destruct() "
                   "(output clamp_(0, 255), not rounded)",
                   f"{MMAGIC} mmagic/evaluation/metrics/ssim.py:91-122 (_ssim: C1=(0.01*255)**2, C2=(0.03*255)**2, "
                   "Gaussian 11/1.5, population moments, crop 5) and ssim() (mean over channels)",
                   f"{MMAGIC} mmagic/evaluation/metrics/psnr.py psnr() (20*log10(255/sqrt(MSE)), inf when MSE = 0)",
                   f"{MMAGIC} configs/restormer/README.md (restormer_official_dpdd-dual: 26.6160 / 0.8346 / "
                   "0.0354)"),
        ),
        Protocol(
            id="dpdd16-half-v1",
            summary="16-bit PNG, half resolution (2x2 area mean of restoration and target), skimage SSIM",
            resolution="half", lpips=False,
            resize=("restoration (after the clamp) and target each reduced to (H//2)x(W//2) by the mean of each 2x2 "
                    "block (= cv2.resize(INTER_AREA) at exactly 1/2; an odd last row/column is dropped)"),
            lpips_rule="not computed (default protocol only)",
            scope=("scoring-time downscale of full-resolution restorations; DDDNet ran its network on "
                   "half-resolution inputs, which this does not reproduce (the network here saw full resolution)"),
            cites=(f"{DDDNET} issue #7 (the maintainer: the paper's numbers are at half resolution; 25.4136 / "
                   "0.8394 at the original resolution; no resizing code is published)",
                   f"{RESTORMER_UTILS}:28-36 (resize(): cv2.resize(..., INTER_AREA), the resampling of Restormer's "
                   "own --resize option, test_dual_pixel_defocus_deblur.py:60-66)"),
        ),
    )
}


def get_protocol(protocol_id: str) -> Protocol:
    if protocol_id not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {protocol_id!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol_id]


def expand_protocols(names: Iterable[str], primary: str = DEFAULT_PROTOCOL) -> tuple[str, ...]:
    """The protocols one evaluation computes: ``primary`` first, then ``names`` (``all`` = every registered one;
    duplicates dropped), with the default protocol added whenever any other is asked for (the drift is measured
    from it). Unknown names raise :class:`ProtocolError`."""
    out = [get_protocol(primary).id]
    for name in names:
        for pid in (PROTOCOLS if name == ALL else [get_protocol(name).id]):
            if pid not in out:
                out.append(pid)
    if len(out) > 1 and DEFAULT_PROTOCOL not in out:
        out.insert(1, DEFAULT_PROTOCOL)
    return tuple(out)


def parse_protocol_list(text: str) -> tuple[str, ...]:
    """``all`` or a comma list (the CLI's ``--protocols``)."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    if not names:
        raise ProtocolError("--protocols: give 'all' or a comma list of protocol names")
    for name in names:
        if name != ALL:
            get_protocol(name)
    return names


# ------------------------------------------------------------------------------------------------ applying


def reduce_to_8bit(img: torch.Tensor, bits: int) -> torch.Tensor:
    """A [0, 1] image read from a ``bits``-deep file, as 8-bit reading would give it: a 16-bit value v becomes
    ``v >> 8`` (then /255); an 8-bit image is unchanged; ``bits = 0`` (a float restoration) is unchanged too."""
    if bits != 16:
        return img
    v = torch.round(img.double() * 65535.0)
    return (torch.div(v, 256, rounding_mode="floor") / 255.0).to(img.dtype)


def half_resolution(img: torch.Tensor) -> torch.Tensor:
    """N×C×H×W → N×C×(H//2)×(W//2), each pixel the mean of a 2x2 block (float64)."""
    h, w = img.shape[-2:]
    if min(h, w) < 2:
        raise MetricInputError(f"half resolution needs at least 2x2 pixels, got {h}x{w}")
    return F.avg_pool2d(img.double()[..., : h - h % 2, : w - w % 2], kernel_size=2, stride=2)


def prepare(protocol: Protocol, pred: torch.Tensor, target: torch.Tensor, pred_bits: int = 0,
            target_bits: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The restoration and the target as ``protocol`` scores them (reading, clamp, resolution)."""
    lo, hi = protocol.clamp
    pred = pred.clamp(lo, hi)
    if protocol.reading == "8bit":
        pred, target = reduce_to_8bit(pred, pred_bits), reduce_to_8bit(target, target_bits)
    if protocol.resolution == "half":
        pred, target = half_resolution(pred), half_resolution(target)
    return pred, target


def score(protocol: Protocol, pred: torch.Tensor, target: torch.Tensor, *, pred_bits: int = 0,
          target_bits: int = 16, lpips: LPIPSAlex | None = None) -> dict[str, torch.Tensor]:
    """Per-image ``psnr``, ``ssim``, ``mae``, ``rmse`` (and ``lpips`` where the protocol computes it and a model is
    given) of N×3×H×W restorations in [0, 1] against their targets, under ``protocol``.

    ``pred_bits``/``target_bits``: the bit depth of the file each was read from (0 = a float network output), for
    the 8-bit protocols' reading rule.
    """
    pred, target = prepare(protocol, pred.detach(), target.detach(), pred_bits, target_bits)
    if protocol.ssim_kind == "gaussian11-255":
        s = ssim_gaussian(pred, target, data_range=protocol.ssim_data_range)
    else:
        s = ssim(pred, target)
    out = {"psnr": psnr(pred, target, peak=protocol.psnr_peak), "ssim": s, "mae": mae(pred, target),
           "rmse": rmse(pred, target)}
    if protocol.lpips and lpips is not None:
        out["lpips"] = lpips(pred, target)
    return out

