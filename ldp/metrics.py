"""Image-quality metrics of the evaluation protocol (see docs/metrics.md).

All functions take N×3×H×W float tensors in [0, 1] and return one value per image (a float64 tensor of
length N). SSIM reproduces ``skimage.metrics.structural_similarity(a, b, data_range=1, channel_axis=-1)``
exactly: 7×7 uniform window, sample covariance (N/(N-1)), K1=0.01, K2=0.03, the 3-pixel border dropped,
mean per channel, then mean over channels. The statistics are computed in float64 (the variance terms
``E[x²] - E[x]²`` lose digits in float32).

:func:`ssim_gaussian` is the other SSIM a protocol may name (ldp.protocols): mmagic's / the MATLAB reference's 11×11
Gaussian window (sigma 1.5) with population moments on 0-255 values, equal to ``structural_similarity(a, b,
data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1)`` on images scaled
by 255.

LPIPS-Alex (v0.1) is computed by :class:`LPIPSAlex` only when both weight files are present locally; it
never downloads. Without them the metric is reported as unavailable (NaN plus a reason), never as 0.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SSIM_WIN = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03
PSNR_IDENTICAL = 100.0  # Restormer's utils.PSNR returns 100 dB when the MSE is exactly 0


class MetricInputError(ValueError):
    """Prediction and target do not form a valid N×3×H×W pair."""


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise MetricInputError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.ndim != 4 or pred.shape[1] != 3:
        raise MetricInputError(f"expected N×3×H×W tensors, got shape {tuple(pred.shape)}")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise MetricInputError("expected float tensors in [0, 1]")


def psnr(pred: torch.Tensor, target: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """PSNR in dB with the given peak, from the float MSE over all pixels and channels of each image."""
    mse = _mse(pred, target)
    out = 10.0 * torch.log10(peak**2 / mse)
    return torch.where(mse == 0, torch.full_like(out, PSNR_IDENTICAL), out)


def _mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    diff = pred.double() - target.double()
    return diff.square().flatten(1).mean(1)


def mae(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image (equals the per-channel MAE averaged over channels)."""
    return (pred.double() - target.double()).abs().flatten(1).mean(1)


def rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Root-mean-square error per image, printed as the paper's "MSE_rel (RMSE)"."""
    return _mse(pred, target).sqrt()


def _box_mean_valid(x: torch.Tensor, win: int) -> torch.Tensor:
    """Mean over every win×win window that lies fully inside the image (separable, no padding)."""
    x = F.avg_pool2d(x, kernel_size=(1, win), stride=1)
    return F.avg_pool2d(x, kernel_size=(win, 1), stride=1)


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = SSIM_WIN,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
    sample_covariance: bool = True,
) -> torch.Tensor:
    """skimage-identical mean SSIM per image (uniform window, channel-averaged), float64.

    skimage filters with ``uniform_filter`` (reflect mode) and then crops ``(win-1)//2`` pixels on every
    side; the kept pixels only see windows fully inside the image, so a padding-free box mean gives the
    same numbers without the border work.
    """
    _check_pair(pred, target)
    n, c, h, w = pred.shape
    if min(h, w) < win_size:
        raise MetricInputError(f"SSIM needs images of at least {win_size}x{win_size}, got {h}x{w}")
    np_ = win_size * win_size
    cov_norm = np_ / (np_ - 1) if sample_covariance else 1.0
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    out = torch.empty(n, dtype=torch.float64, device=pred.device)
    for i in range(n):  # one image at a time bounds float64 memory at full resolution
        x = pred[i].double()
        y = target[i].double()
        stats = _box_mean_valid(torch.cat([x, y, x * x, y * y, x * y])[None], win_size)[0]
        ux, uy, uxx, uyy, uxy = stats.split(c)
        vx = cov_norm * (uxx - ux * ux)
        vy = cov_norm * (uyy - uy * uy)
        vxy = cov_norm * (uxy - ux * uy)
        num = (2 * ux * uy + c1) * (2 * vxy + c2)
        den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
        out[i] = (num / den).flatten(1).mean(1).mean()
    return out


SSIM_GAUSS_WIN = 11
SSIM_GAUSS_SIGMA = 1.5


def gaussian_kernel1d(win: int = SSIM_GAUSS_WIN, sigma: float = SSIM_GAUSS_SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``win`` taps (what ``cv2.getGaussianKernel(win, sigma)`` returns), float64."""
    x = torch.arange(win, dtype=torch.float64) - (win - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def ssim_gaussian(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 255.0,
    win_size: int = SSIM_GAUSS_WIN,
    sigma: float = SSIM_GAUSS_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> torch.Tensor:
    """Mean SSIM per image with a Gaussian window, population moments, on values scaled to ``[0, data_range]``.

    mmagic's ``_ssim`` (and the MATLAB reference) filter with the 11×11 Gaussian and keep the pixels whose window lies
    inside the image (``[5:-5, 5:-5]``); a padding-free separable convolution gives those pixels. Per channel, then
    the mean over channels. Inputs are [0, 1] tensors; they are multiplied by ``data_range`` (255: the 0-255 values
    mmagic scores) and the constants are ``(k * data_range)**2``. float64.
    """
    _check_pair(pred, target)
    n, c, h, w = pred.shape
    if min(h, w) < win_size:
        raise MetricInputError(f"Gaussian SSIM needs images of at least {win_size}x{win_size}, got {h}x{w}")
    g = gaussian_kernel1d(win_size, sigma).to(pred.device)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    out = torch.empty(n, dtype=torch.float64, device=pred.device)
    for i in range(n):
        x = pred[i].double() * data_range
        y = target[i].double() * data_range
        stack = torch.cat([x, y, x * x, y * y, x * y])[:, None]  # 5C×1×H×W
        stack = F.conv2d(stack, g.view(1, 1, 1, -1))
        stack = F.conv2d(stack, g.view(1, 1, -1, 1))[:, 0]
        ux, uy, uxx, uyy, uxy = stack.split(c)
        vx = uxx - ux * ux
        vy = uyy - uy * uy
        vxy = uxy - ux * uy
        num = (2 * ux * uy + c1) * (2 * vxy + c2)
        den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
        out[i] = (num / den).flatten(1).mean(1).mean()
    return out


# ---------------------------------------------------------------------------------------------- LPIPS

ALEX_CHANNELS = (64, 192, 384, 256, 256)
ALEX_SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))  # features[a:b] end at relu1..relu5
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


class LPIPSUnavailable(RuntimeError):
    """LPIPS weights are not on this machine; the message says which file is missing."""


def find_lpips_weights(lin_path: str | Path | None = None, alex_path: str | Path | None = None) -> tuple[Path, Path]:
    """Locate the LPIPS v0.1 linear weights and torchvision's AlexNet weights without downloading.

    Defaults: the ``lpips`` package's ``weights/v0.1/alex.pth``; ``$TORCH_HOME/hub/checkpoints/alexnet-*.pth``.
    """
    if lin_path is None:
        spec = importlib.util.find_spec("lpips")
        if spec is None or spec.origin is None:
            raise LPIPSUnavailable("LPIPS linear weights not found: the `lpips` package is not installed")
        lin_path = Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth"
    lin_path = Path(lin_path)
    if not lin_path.is_file():
        raise LPIPSUnavailable(f"LPIPS linear weights not found at {lin_path}")
    if alex_path is None:
        hub = os.path.join(torch.hub.get_dir(), "checkpoints")
        found = sorted(glob.glob(os.path.join(hub, "alexnet-*.pth")))
        if not found:
            raise LPIPSUnavailable(f"AlexNet ImageNet weights not found in {hub} (alexnet-*.pth); no download")
        alex_path = found[0]
    alex_path = Path(alex_path)
    if not alex_path.is_file():
        raise LPIPSUnavailable(f"AlexNet weights not found at {alex_path}")
    return lin_path, alex_path


class LPIPSAlex(nn.Module):
    """LPIPS v0.1 with the AlexNet trunk, on [0, 1] inputs (``lpips.LPIPS(net='alex')(a, b, normalize=True)``)."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import alexnet

        features = alexnet(weights=None).features
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in ALEX_SLICES)
        self.lins = nn.ModuleList(nn.Conv2d(ch, 1, 1, bias=False) for ch in ALEX_CHANNELS)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_files(cls, lin_path: str | Path | None = None, alex_path: str | Path | None = None) -> LPIPSAlex:
        lin_path, alex_path = find_lpips_weights(lin_path, alex_path)
        model = cls()
        model.load_trunk_state(torch.load(alex_path, map_location="cpu", weights_only=True))
        model.load_lin_state(torch.load(lin_path, map_location="cpu", weights_only=True))
        return model

    def load_trunk_state(self, alexnet_state: dict[str, torch.Tensor]) -> None:
        """Load torchvision AlexNet weights (keys ``features.<i>.weight``); the classifier is ignored."""
        for s, (a, b) in zip(self.slices, ALEX_SLICES, strict=True):
            for i in range(a, b):
                for kind in ("weight", "bias"):
                    key = f"features.{i}.{kind}"
                    if key in alexnet_state:
                        getattr(s[i - a], kind).copy_(alexnet_state[key])
                    elif hasattr(s[i - a], kind):
                        raise KeyError(f"AlexNet weights lack {key}")

    def load_lin_state(self, lin_state: dict[str, torch.Tensor]) -> None:
        """Load the lpips package's linear weights (keys ``lin<k>.model.1.weight``)."""
        for k, lin in enumerate(self.lins):
            lin.weight.copy_(lin_state[f"lin{k}.model.1.weight"])

    @torch.no_grad()
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = ((2 * pred.float() - 1) - self.shift) / self.scale
        y = ((2 * target.float() - 1) - self.shift) / self.scale
        total = torch.zeros(pred.shape[0], dtype=torch.float64, device=pred.device)
        for s, lin in zip(self.slices, self.lins, strict=True):
            x, y = s(x), s(y)
            fx = x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10)
            fy = y / (y.square().sum(1, keepdim=True).sqrt() + 1e-10)
            total += lin((fx - fy).square()).mean((1, 2, 3)).double()
        return total


def load_lpips(device: str | torch.device = "cpu") -> tuple[LPIPSAlex | None, str]:
    """Return ``(model, "")`` when the weights are local, else ``(None, reason)``."""
    try:
        return LPIPSAlex.from_files().to(device), ""
    except LPIPSUnavailable as exc:
        return None, str(exc)


# -------------------------------------------------------------------------------------------- public

METRIC_NAMES = ("psnr", "ssim", "mae", "rmse", "lpips")


def compute_metrics(
    pred: torch.Tensor, target: torch.Tensor, lpips: LPIPSAlex | None = None
) -> dict[str, torch.Tensor]:
    """Per-image protocol metrics for N×3×H×W float batches in [0, 1].

    Returns ``psnr``, ``ssim``, ``mae``, ``rmse`` (float64 tensors of length N) and ``lpips`` when an
    :class:`LPIPSAlex` is given. The caller clamps the prediction (the runner does, per the protocol).
    """
    _check_pair(pred, target)
    pred = pred.detach()
    target = target.detach()
    out = {
        "psnr": psnr(pred, target),
        "ssim": ssim(pred, target),
        "mae": mae(pred, target),
        "rmse": rmse(pred, target),
    }
    if lpips is not None:
        out["lpips"] = lpips(pred, target)
    return out
