"""Thin-lens circle of confusion and Butterworth-shaped dual-pixel PSFs (after Abuolaim et al., ICCV 2021).

Sign convention (used everywhere in the suite): the signed CoC is positive behind the focal plane (depth
greater than the focus distance) and negative in front of it. Its magnitude is the blur-disc *diameter* in px.

The DP kernels follow the RDPD recipe: a disc modulated by a Butterworth high-pass profile rescaled to
[beta, 1] (a brighter rim, as measured on real DP sensors), smoothed by a small Gaussian (size ~ k/7), then
weighted by a linear ramp along x for the left view; the right view is the mirror image. Each kernel sums
to 1. Across the focal plane the two kernels swap, which flips the sign of the L/R disparity.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# sub-pixel samples per axis when rasterising the disc edge (anti-aliasing; keeps the blur continuous in c)
_DISC_SUPERSAMPLE = 8


@dataclass(frozen=True)
class ThinLens:
    """A thin lens imaging onto a sensor of ``pixel_pitch_mm`` pixels (all lengths in mm)."""

    focal_length_mm: float
    f_number: float
    focus_distance_mm: float
    pixel_pitch_mm: float

    def __post_init__(self) -> None:
        if self.focal_length_mm <= 0 or self.f_number <= 0 or self.pixel_pitch_mm <= 0:
            raise ValueError(f"ThinLens: focal length, f-number and pixel pitch must be positive, got {self}")
        if self.focus_distance_mm <= self.focal_length_mm:
            raise ValueError(f"ThinLens: focus distance must exceed the focal length, got {self}")

    @property
    def aperture_mm(self) -> float:
        return self.focal_length_mm / self.f_number

    @property
    def coc_scale_px(self) -> float:
        """``s`` in c(d) = s (d - d_f) / d: the CoC diameter (px) of a point at infinity."""
        f, df = self.focal_length_mm, self.focus_distance_mm
        return f * self.aperture_mm / (df - f) / self.pixel_pitch_mm

    def coc_px(self, depth_mm: np.ndarray | float) -> np.ndarray:
        """Signed CoC diameter in pixels; > 0 behind the focal plane, < 0 in front of it."""
        depth = np.asarray(depth_mm, dtype=np.float64)
        if np.any(depth <= self.focal_length_mm):
            raise ValueError("ThinLens.coc_px: every depth must exceed the focal length")
        return self.coc_scale_px * (depth - self.focus_distance_mm) / depth

    def depth_for_coc(self, coc_px: np.ndarray | float) -> np.ndarray:
        """Inverse of :meth:`coc_px` (for c < s); returns depth in mm."""
        c = np.asarray(coc_px, dtype=np.float64)
        s = self.coc_scale_px
        if np.any(c >= s):
            raise ValueError(
                f"ThinLens.depth_for_coc: |c| must stay below s = {s:.3f} px behind the focal plane"
            )
        return self.focus_distance_mm * s / (s - c)


def coc_px(
    depth_mm: np.ndarray | float,
    *,
    focal_length_mm: float,
    f_number: float,
    focus_distance_mm: float,
    pixel_pitch_mm: float,
) -> np.ndarray:
    """Functional form of :meth:`ThinLens.coc_px`."""
    return ThinLens(focal_length_mm, f_number, focus_distance_mm, pixel_pitch_mm).coc_px(depth_mm)


@dataclass(frozen=True)
class ButterworthParams:
    """Shape of the DP PSF: Butterworth order ``n``, cut-off factor ``cf`` (D0 = (k-1)/cf), floor ``beta``."""

    n: float = 6.0
    cf: float = 2.5
    beta: float = 0.2
    smooth_ratio: float = (
        1.0 / 7.0
    )  # Gaussian size = round(k * smooth_ratio) + 1, made odd (kappa in the paper)
    ramp_floor: float = (
        0.0  # our addition: the L/R ramp runs floor -> 1 (0 = RDPD); models half-pixel cross-talk
    )

    def __post_init__(self) -> None:
        if self.n <= 0 or self.cf <= 0 or not 0 <= self.beta <= 1 or not 0 <= self.ramp_floor <= 1:
            raise ValueError(
                f"ButterworthParams: need n > 0, cf > 0, beta and ramp_floor in [0, 1], got {self}"
            )


def kernel_size(coc: float) -> int:
    """Odd support of the disc of diameter ``|coc|`` (before the Gaussian padding)."""
    return 2 * int(np.ceil(abs(coc) / 2.0 - 0.5)) + 1 if abs(coc) > 1.0 else 1


def _disc_coverage(size: int, radius: float) -> np.ndarray:
    """Fraction of each pixel of a ``size``x``size`` grid covered by a centred disc of ``radius``."""
    ss = _DISC_SUPERSAMPLE
    offsets = (np.arange(ss) + 0.5) / ss - 0.5
    half = size // 2
    coords = (np.arange(size) - half)[:, None] + offsets[None, :]  # size x ss sub-pixel centres
    x = coords.reshape(-1)
    inside = (x[None, :] ** 2 + x[:, None] ** 2) <= radius**2
    return inside.reshape(size, ss, size, ss).mean(axis=(1, 3))


def _gaussian_smooth(kernel: np.ndarray, disc_size: int, smooth_ratio: float) -> np.ndarray:
    gsize = int(round(disc_size * smooth_ratio)) + 1
    if gsize % 2 == 0:
        gsize += 1
    if gsize < 3:
        return kernel
    sigma = 0.3 * ((gsize - 1) / 2 - 1) + 0.8  # OpenCV's sigma for a given size, as in RDPD
    pad = gsize // 2
    padded = np.pad(kernel, pad)
    g = cv2.getGaussianKernel(gsize, sigma).astype(np.float64)
    return cv2.sepFilter2D(padded, cv2.CV_64F, g, g, borderType=cv2.BORDER_CONSTANT)


def combined_psf(coc: float, params: ButterworthParams = ButterworthParams()) -> np.ndarray:
    """K_C: the (unnormalised-shape, sum-1) full-aperture PSF for a CoC diameter ``|coc|`` px."""
    c = abs(float(coc))
    size = kernel_size(c)
    if size == 1:
        return np.ones((1, 1), dtype=np.float64)
    radius = c / 2.0
    half = size // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    r = np.hypot(xx, yy)
    d0 = max(c / params.cf, 1e-6)  # RDPD: D0 = (k - 1) / cf with k - 1 = the disc diameter
    ratio = (r / d0) ** (2 * params.n)
    h = ratio / (1.0 + ratio)
    h = params.beta + (1.0 - params.beta) * (h - h.min()) / max(h.max() - h.min(), 1e-12)
    kc = _disc_coverage(size, radius) * h
    kc = _gaussian_smooth(kc, size, params.smooth_ratio)
    return kc / kc.sum()


def dp_psfs(coc: float, params: ButterworthParams = ButterworthParams()) -> tuple[np.ndarray, np.ndarray]:
    """Left and right PSFs (float64, each summing to 1) for a signed CoC diameter ``coc`` px.

    These are true PSFs (the image of a point; apply them by convolution, see :func:`convolve`). For coc > 0
    (behind the focal plane) the left PSF carries its weight on the -x side (a linear ramp 1 -> 0 along x
    across the disc), so far content moves left in the left view and right in the right view, as measured on
    the real Canon DPDD scenes; the right PSF is the mirror image. For coc < 0 the two swap. (RDPD writes the
    ramp 0 -> 1 and applies the kernel by correlation, which is the same image.)
    """
    kc = combined_psf(coc, params)
    if kc.shape == (1, 1):
        return kc.copy(), kc.copy()
    half = kc.shape[1] // 2
    radius = abs(float(coc)) / 2.0
    x = np.arange(-half, half + 1, dtype=np.float64)
    ramp = np.clip((radius - x) / (2.0 * radius), 0.0, 1.0)
    ramp = params.ramp_floor + (1.0 - params.ramp_floor) * ramp
    k_left = kc * ramp[None, :]
    k_left /= k_left.sum()
    k_right = k_left[:, ::-1].copy()
    if coc < 0:
        k_left, k_right = k_right, k_left
    return k_left, k_right


def convolve(image: np.ndarray, psf: np.ndarray, border: int = cv2.BORDER_REFLECT_101) -> np.ndarray:
    """Convolve (not correlate) each channel of ``image`` with ``psf``; same size; FFT for large kernels."""
    if psf.shape == (1, 1):
        return image * np.float32(psf[0, 0]) if psf[0, 0] != 1.0 else image.copy()
    kernel = np.ascontiguousarray(psf[::-1, ::-1], dtype=np.float32)
    return cv2.filter2D(image, cv2.CV_32F, kernel, borderType=border)
