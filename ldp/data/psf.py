"""Thin-lens circle of confusion and dual-pixel PSFs: physical half-aperture PSFs and RDPD's Butterworth ones.

Sign convention (used everywhere in the suite): the signed CoC is positive behind the focal plane (depth
greater than the focus distance) and negative in front of it. Its magnitude is the blur-disc *diameter* in px.

:func:`half_aperture_psfs` (the default of the simulator): the image of the (vignetted, cat's-eye clipped)
aperture scaled to the CoC, split between the two sub-pixels by a soft angular response with crosstalk
(:class:`DPOptics`), plus an optional in-focus residual; an ideal split gives a centroid separation of
4 c / (3 pi) = 0.424 c. Across the focal plane the aperture image inverts, which swaps the halves.

:func:`dp_psfs` (after Abuolaim et al., ICCV 2021, "RDPD"): a disc modulated by a Butterworth high-pass profile
rescaled to [beta, 1] (a brighter rim), smoothed by a small Gaussian (size ~ k/7), then weighted by a linear ramp
along x for the left view; the right view is the mirror image. Each kernel sums to 1. Across the focal plane the
two kernels swap, which flips the sign of the L/R disparity. See docs/data-synthetic.md.
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


# ------------------------------------------------------------------------------------ physical half-aperture PSFs

# pupil samples per axis for the view gains (the pupil integral of each half; independent of the CoC)
_PUPIL_SAMPLES = 129


@dataclass(frozen=True)
class DPOptics:
    """A physical dual-pixel aperture model (docs/data-synthetic.md, "Half-aperture PSFs").

    The defocus PSF of a point is the image of the lens aperture scaled to the CoC: pupil coordinates (a, b), in
    units of the aperture radius, land at image offset (x, y) = (c / 2) (a, b), inverted (x, y) = (c / 2)(-a, -b)
    in front of the focal plane (c < 0). The aperture is the unit disc, intersected with a second disc of radius
    ``pupil_ratio`` shifted by ``vignetting`` x (u, v) (the frame position, 1 at a corner): the exit pupil / barrel
    clipping that gives the cat's-eye shape off axis. A rim profile (``profile``: Butterworth, as in RDPD; ``None``:
    uniform) weights the pupil radially. The left sub-pixel collects w_L(a) = t + (1 - 2t) / (1 + exp(a / s)) of the
    light through pupil column a (s = ``split_softness`` in pupil radii, 0 = a hard half-disc split;
    t = ``crosstalk``), the right one w_R(a) = w_L(-a): the two halves add to the full pupil.

    ``residual_px`` / ``residual_weight``: an in-focus residual. Every PSF is convolved with
    (1 - w) delta + w K_half(residual_px) (the same far-side half-aperture kernel for all depths, left; its
    mirror, right), so that L != R even at c = 0 (microlens / aberration residue; not flipped across focus).
    ``lr_gain``: keep each view's share of the light (vignetting makes one half brighter off axis); else each PSF
    sums to 1.
    """

    split_softness: float = 0.05
    crosstalk: float = 0.0
    vignetting: float = 0.0
    pupil_ratio: float = 1.0
    lr_gain: bool = False
    residual_px: float = 0.0
    residual_weight: float = 0.0
    smooth_ratio: float = 1.0 / 7.0  # RDPD's Gaussian (size round(k / 7) + 1), applied as in dp_psfs
    profile: ButterworthParams | None = None

    def __post_init__(self) -> None:
        if (
            self.split_softness < 0
            or not 0 <= self.crosstalk < 0.5
            or self.vignetting < 0
            or self.pupil_ratio <= 0
            or self.residual_px < 0
            or not 0 <= self.residual_weight <= 1
            or self.smooth_ratio < 0
        ):
            raise ValueError(
                "DPOptics: need split_softness >= 0, crosstalk in [0, 0.5), vignetting >= 0, pupil_ratio > 0, "
                f"residual_px >= 0, residual_weight in [0, 1], smooth_ratio >= 0; got {self}"
            )

    @property
    def varies_across_frame(self) -> bool:
        """Whether the PSF depends on the image position (vignetting clips the aperture)."""
        return self.vignetting > 0 and self.pupil_ratio < 1.0 + self.vignetting * np.sqrt(2.0)


def _split_weights(a: np.ndarray, optics: DPOptics) -> tuple[np.ndarray, np.ndarray]:
    """Left / right sub-pixel response to pupil column ``a`` (pupil radii)."""
    if optics.split_softness == 0:
        left = np.where(a < 0, 1.0, np.where(a > 0, 0.0, 0.5))
    else:
        left = 0.5 * (1.0 - np.tanh(a / (2.0 * optics.split_softness)))  # = 1 / (1 + exp(a / s))
    left = optics.crosstalk + (1.0 - 2.0 * optics.crosstalk) * left
    return left, 1.0 - left


def _pupil(a: np.ndarray, b: np.ndarray, position: tuple[float, float], optics: DPOptics) -> np.ndarray:
    """Transmission of the (vignetted) aperture times its rim profile at pupil coordinates (a, b)."""
    r2 = a**2 + b**2
    inside = r2 <= 1.0
    u, v = position
    if optics.vignetting > 0 and (u or v):
        inside &= (a - optics.vignetting * u) ** 2 + (b - optics.vignetting * v) ** 2 <= optics.pupil_ratio**2
    elif optics.pupil_ratio < 1.0:
        inside &= r2 <= optics.pupil_ratio**2
    weight = inside.astype(np.float64)
    prof = optics.profile
    if prof is not None:
        # RDPD's Butterworth high-pass, D0 = diameter / cf (= 2 / cf pupil radii), rescaled to [beta, 1] on the
        # unit disc (centre beta, rim 1): a brighter rim
        d0 = 2.0 / prof.cf
        ratio = (np.sqrt(r2) / d0) ** (2 * prof.n)
        rim = (1.0 / d0) ** (2 * prof.n)
        h = (ratio / (1.0 + ratio)) / (rim / (1.0 + rim))
        weight *= prof.beta + (1.0 - prof.beta) * np.clip(h, 0.0, 1.0)
    return weight


def view_gains(position: tuple[float, float], optics: DPOptics) -> tuple[float, float]:
    """Each view's share of the light at ``position``, scaled so that the two add to 2 (1 each on axis)."""
    grid = (np.arange(_PUPIL_SAMPLES) + 0.5) / _PUPIL_SAMPLES * 2.0 - 1.0
    a, b = np.meshgrid(grid, grid)
    pupil = _pupil(a, b, position, optics)
    w_left, w_right = _split_weights(a, optics)
    left, right = float((pupil * w_left).sum()), float((pupil * w_right).sum())
    total = left + right
    if total <= 0:
        raise ValueError(f"view_gains: the vignetted aperture at {position} passes no light ({optics})")
    return 2.0 * left / total, 2.0 * right / total


def _half_aperture_raw(coc: float, position: tuple[float, float], optics: DPOptics) -> tuple[np.ndarray, ...]:
    """Unnormalised left / right kernels of the defocus blur alone (no residual, no normalisation)."""
    c = abs(float(coc))
    if c == 0.0:
        one = np.ones((1, 1), np.float64)
        return one, one.copy()
    inner = kernel_size(c)  # the disc's support; the kernel adds one pixel each side for the hat below
    radius = c / 2.0
    ss = _DISC_SUPERSAMPLE
    offsets = (np.arange(ss) + 0.5) / ss - 0.5
    half_in = inner // 2
    coords = ((np.arange(inner) - half_in)[:, None] + offsets[None, :]).reshape(-1)
    xx, yy = np.meshgrid(coords, coords)
    sign = 1.0 if coc > 0 else -1.0  # in front of the focal plane the aperture image is inverted
    a, b = sign * xx / radius, sign * yy / radius
    pupil = _pupil(a, b, position, optics)
    w_left, w_right = _split_weights(a, optics)
    # pixel response: each sub-sample spreads onto its neighbouring pixels with linear (hat) weights, so that a
    # sub-pixel blur (and its sub-pixel L/R shift) is continuous in c instead of collapsing into one pixel
    half = half_in + 1
    size = 2 * half + 1
    hat = np.clip(1.0 - np.abs(coords[None, :] - np.arange(-half, half + 1)[:, None]), 0.0, None) / ss
    k_left = hat @ (pupil * w_left) @ hat.T
    k_right = hat @ (pupil * w_right) @ hat.T
    if k_left.sum() + k_right.sum() <= 0:  # the whole disc clipped away: fall back to the centre pixel
        k_left, k_right = np.zeros((size, size)), np.zeros((size, size))
        k_left[half, half] = k_right[half, half] = 1.0
    return (
        _gaussian_smooth(k_left, kernel_size(c), optics.smooth_ratio),
        _gaussian_smooth(k_right, kernel_size(c), optics.smooth_ratio),
    )


def _full_convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Full 2-D convolution of two small kernels."""
    from scipy.signal import convolve2d

    return convolve2d(a, b, mode="full")


def half_aperture_psfs(
    coc: float, position: tuple[float, float] = (0.0, 0.0), optics: DPOptics = DPOptics()
) -> tuple[np.ndarray, np.ndarray]:
    """Left and right PSFs (float64, odd square, same shape) for signed CoC ``coc`` px at frame ``position``.

    ``position`` is (u, v): the image position relative to the frame centre divided by the half-diagonal (a
    corner is at |(u, v)| = 1). Each PSF sums to 1, or to its view gain (:func:`view_gains`) with
    ``optics.lr_gain``. For c > 0 the left PSF leans to -x (as :func:`dp_psfs`), for c < 0 to +x. On axis and
    without a residual, the right PSF is the mirror image of the left and c -> -c swaps the two.
    """
    k_left, k_right = _half_aperture_raw(coc, position, optics)
    if optics.residual_weight > 0 and optics.residual_px > 0:
        r_left, r_right = residual_psfs(optics)
        k_left, k_right = _full_convolve(k_left, r_left), _full_convolve(k_right, r_right)
    if optics.lr_gain:
        g_left, g_right = view_gains(position, optics)
    else:
        g_left = g_right = 1.0
    return k_left * (g_left / k_left.sum()), k_right * (g_right / k_right.sum())


def residual_psfs(optics: DPOptics) -> tuple[np.ndarray, np.ndarray]:
    """The in-focus residual pair, each summing to 1: (1 - w) delta + w (2/3 K(+rho/2) + 1/3 K(-rho)), K the
    half-aperture kernel of an unclipped uniform pupil, rho = ``residual_px``, w = ``residual_weight``.

    A zonal (spherical-aberration-like) focus: the inner zone focuses slightly behind, the rim slightly in front
    of the plane of best focus. The two parts' centroids cancel (2/3 x rho/2 = 1/3 x rho), so the residual adds
    no L/R shift at c = 0, only a difference in shape (one view sees a compact core, the other a wider halo)."""
    plain = DPOptics(split_softness=optics.split_softness, crosstalk=optics.crosstalk,
                     smooth_ratio=optics.smooth_ratio)
    rho, w = optics.residual_px, optics.residual_weight
    core = [k / k.sum() for k in _half_aperture_raw(rho / 2.0, (0.0, 0.0), plain)]
    halo = [k / k.sum() for k in _half_aperture_raw(-rho, (0.0, 0.0), plain)]
    size = max(core[0].shape[0], halo[0].shape[0])
    out = []
    for c_k, h_k in zip(core, halo, strict=True):
        k = np.zeros((size, size))
        for part, weight in ((c_k, 2.0 * w / 3.0), (h_k, w / 3.0)):
            o = (size - part.shape[0]) // 2
            k[o : o + part.shape[0], o : o + part.shape[0]] += weight * part
        k[size // 2, size // 2] += 1.0 - w
        out.append(k)
    return out[0], out[1]


def psf_centroid_separation(k_left: np.ndarray, k_right: np.ndarray) -> float:
    """x-centroid of the right PSF minus that of the left one, in px."""
    x = np.arange(k_left.shape[1]) - k_left.shape[1] // 2
    cl = float((k_left.sum(axis=0) * x).sum() / k_left.sum())
    cr = float((k_right.sum(axis=0) * x).sum() / k_right.sum())
    return cr - cl


# 4 / (3 pi): centroid separation / CoC diameter of a uniform disc split into hard halves (each half-disc's
# centroid lies 4 R / (3 pi) from the centre)
IDEAL_SPLIT_SEPARATION = 4.0 / (3.0 * np.pi)
