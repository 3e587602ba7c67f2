"""Synthetic dual-pixel defocus dataset: layered scenes rendered with thin-lens CoC and half-aperture DP PSFs.

A scene is a stack of RGBA layers (a full-frame background plane and a few textured objects), each on a
fronto-parallel or slanted plane. Layers are composited far -> near with blurred alpha, separately for the
left and the right view. Writes the DPDD folder layout plus ``manifest.csv`` (see docs/design.md) and the
signed defocus map (CoC diameter in px, > 0 behind the focal plane) as float32 ``.npy``. The DP PSFs are the
physical half-aperture model (ldp.data.psf.DPOptics: vignetting varies them across the frame, rendered on a grid
of zones) or RDPD's (``psf_model: rdpd``); sensor noise is Poisson-Gaussian in linear light before the tone curve.
See docs/data-synthetic.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ldp.data.manifest import SOURCE_STAMP, layout_paths, write_manifest
from ldp.data.psf import ButterworthParams, DPOptics, ThinLens, convolve, dp_psfs, half_aperture_psfs
from ldp.fsutil import atomic_dir
from ldp.imageio import read_image_raw, write_image

SPLITS = ("train", "val", "test")

# Real photographs bundled inside scikit-image (no download): colour ones, and grey textures (tinted).
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "ihc.png",
)
GREY_TEXTURES = (
    "brick.png",
    "grass.png",
    "gravel.png",
    "camera.png",
    "coins.png",
    "moon.png",
    "text.png",
    "cell.png",
)


class SyntheticDataError(ValueError):
    """Bad synthetic-data settings or output path; the message names the params key or the path."""


@dataclass(frozen=True)
class SyntheticConfig:
    """params.yaml section ``data.synthetic``. Ranges are ``[low, high]``, sampled per scene."""

    seed: int = 0
    height: int = 192
    width: int = 288
    train: int = 32
    val: int = 8
    test: int = 12  # 12 scenes keep the realism means steady (standard error ~0.8 dB)
    # optics: thin lens; a full-frame sensor (36 mm wide, like DPDD's Canon 5D Mark IV) imaged at `width` px
    sensor_width_mm: float = 36.0
    focal_length_mm: tuple[float, float] = (50.0, 105.0)
    f_number: tuple[float, float] = (2.8, 4.0)  # DPDD's blurred views were shot at f/4
    focus_distance_m: tuple[float, float] = (0.8, 3.0)
    far_depth_m: float = 50.0  # farthest background plane
    max_coc_px: float = 16.0  # |CoC| is clipped here
    coc_step_px: float = 1.0  # CoC quantisation of slanted planes (rendered by interpolating between levels)
    # DP PSFs: "physical" (half-aperture split of a vignetted aperture, ldp.data.psf.DPOptics) or "rdpd"
    # (RDPD's Butterworth disc with a linear ramp, the simulator before issue 13)
    psf_model: str = "physical"
    # Butterworth profile (RDPD grid: n in {3,6,9}, cf in {2.5,2}, beta in {0.1,0.2}); one choice per scene.
    # rdpd: the kernel shape; physical: the pupil's rim profile when rim_profile is true
    bw_n: tuple[float, ...] = (3.0, 6.0, 9.0)
    bw_cf: tuple[float, ...] = (2.5, 2.0)
    bw_beta: tuple[float, ...] = (0.1, 0.2)
    rim_profile: bool = False  # physical: weight the pupil by the Butterworth rim (else uniform)
    dp_ramp_floor: float = 0.2  # rdpd: L/R ramp floor (0 = RDPD)
    # physical split: logistic width (pupil radii) and crosstalk of the two sub-pixels (measured, see docs)
    dp_split_softness: float = 0.05
    dp_crosstalk: float = 0.20
    # vignetting / cat's eye: the aperture intersected with a disc of radius pupil_ratio (aperture radii)
    # shifted by vignetting x the frame position (1 at a corner); PSFs on a psf_grid of zones (rows, cols)
    vignetting: float = 0.3
    pupil_ratio: float = 1.0
    psf_grid: tuple[int, int] = (3, 5)
    lr_gain: bool = False  # keep each view's vignetted share of light (the real Canon views are balanced)
    # in-focus residual: every PSF convolved with (1 - w) delta + w half-aperture(residual_px) (not flipped)
    infocus_residual_px: float = 1.0
    infocus_residual_weight: float = 0.5
    # longitudinal chromatic aberration: per-channel (R, G, B) focus shift in units of the CoC scale s
    chromatic_focus_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # scene content
    objects: tuple[int, int] = (1, 4)  # foreground objects besides the background plane
    subject_in_focus_prob: float = 0.8  # else the focus lies on the background plane
    subject_area: tuple[float, float] = (0.08, 0.3)  # in-focus subject, fraction of the frame
    object_area: tuple[float, float] = (0.02, 0.15)
    slanted_prob: float = 0.5  # chance a plane (background or object) is slanted
    photo_prob: float = 0.6  # chance a layer is textured by a bundled photo (else procedural)
    linear_light: bool = True  # blur in linear light (sRGB gamma 2.2 undone and redone)
    # sensor noise, sigma^2 = read^2 + shot * value, per DP view: "linear" adds it to linear values before the
    # tone curve (Poisson-Gaussian; shot = 1 / electrons at white), "display" to the display values (legacy)
    noise_model: str = "linear"
    noise_read: float = 0.001
    noise_shot: float = 0.0001
    noise_target_scale: float = 1.0  # the target (a separate f/22 capture) gets this x the views' noise sigma

    def __post_init__(self) -> None:
        where = "params.yaml:data.synthetic"
        if self.height < 16 or self.width < 16:
            raise SyntheticDataError(f"{where}.height/width: must be >= 16, got {self.height}x{self.width}")
        for name in ("train", "val", "test"):
            if getattr(self, name) < 0:
                raise SyntheticDataError(f"{where}.{name}: scene count must be >= 0")
        for name in (
            "focal_length_mm",
            "f_number",
            "focus_distance_m",
            "subject_area",
            "object_area",
        ):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise SyntheticDataError(f"{where}.{name}: need 0 < low <= high, got {[lo, hi]}")
        if not 0 <= self.objects[0] <= self.objects[1]:
            raise SyntheticDataError(f"{where}.objects: need 0 <= low <= high, got {list(self.objects)}")
        if self.focus_distance_m[0] * 1000 <= self.focal_length_mm[1]:
            raise SyntheticDataError(f"{where}.focus_distance_m: must exceed the focal length")
        if self.far_depth_m <= self.focus_distance_m[1]:
            raise SyntheticDataError(f"{where}.far_depth_m: must exceed focus_distance_m")
        if self.max_coc_px <= 0 or self.coc_step_px <= 0:
            raise SyntheticDataError(f"{where}.max_coc_px/coc_step_px: must be positive")
        for name in ("bw_n", "bw_cf", "bw_beta"):
            if not getattr(self, name):
                raise SyntheticDataError(f"{where}.{name}: needs at least one value")
        for name in ("subject_in_focus_prob", "slanted_prob", "photo_prob", "dp_ramp_floor",
                     "infocus_residual_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SyntheticDataError(f"{where}.{name}: must lie in [0, 1]")
        if min(self.noise_read, self.noise_shot, self.noise_target_scale) < 0:
            raise SyntheticDataError(f"{where}.noise_read/noise_shot/noise_target_scale: must be >= 0")
        for name, allowed in (("psf_model", ("physical", "rdpd")), ("noise_model", ("linear", "display"))):
            if getattr(self, name) not in allowed:
                raise SyntheticDataError(f"{where}.{name}: must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if not 0.0 <= self.dp_crosstalk < 0.5 or self.dp_split_softness < 0:
            raise SyntheticDataError(f"{where}.dp_crosstalk/dp_split_softness: need crosstalk in [0, 0.5), "
                                     "softness >= 0")
        if self.vignetting < 0 or self.pupil_ratio <= 0 or self.infocus_residual_px < 0:
            raise SyntheticDataError(f"{where}.vignetting/pupil_ratio/infocus_residual_px: need vignetting >= 0, "
                                     "pupil_ratio > 0, infocus_residual_px >= 0")
        if len(self.psf_grid) != 2 or min(self.psf_grid) < 1:
            raise SyntheticDataError(f"{where}.psf_grid: need [rows, cols] >= 1, got {list(self.psf_grid)}")
        if len(self.chromatic_focus_shift) != 3 or max(abs(x) for x in self.chromatic_focus_shift) > 0.5:
            raise SyntheticDataError(f"{where}.chromatic_focus_shift: need 3 values (R, G, B) in [-0.5, 0.5]")

    def counts(self) -> dict[str, int]:
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass
class Layer:
    """One scene layer on the (padded) canvas: colour, coverage and signed CoC (scalar or per-pixel map)."""

    rgb: np.ndarray  # H x W x 3 float32, linear or display space (as the renderer is told)
    alpha: np.ndarray  # H x W float32 in [0, 1]
    coc: float | np.ndarray  # signed CoC diameter px; a map for slanted planes
    name: str = ""


@dataclass
class RenderedScene:
    left: np.ndarray
    right: np.ndarray
    combined: np.ndarray
    target: np.ndarray
    defocus: np.ndarray  # signed CoC of the front-most surface, float32 H x W
    meta: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- rendering


@functools.lru_cache(maxsize=8192)
def _cached_psfs(coc: float, params, position: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Left / right PSFs: RDPD's (``ButterworthParams``, the same everywhere) or the physical half-aperture
    model (``DPOptics``, at frame ``position``)."""
    if isinstance(params, DPOptics):
        k_left, k_right = half_aperture_psfs(coc, position, params)
    else:
        k_left, k_right = dp_psfs(coc, params)
    k_left.setflags(write=False)
    k_right.setflags(write=False)
    return k_left, k_right


@dataclass(frozen=True)
class _Zones:
    """Frame zones of a spatially varying PSF: centres (canvas px), frame positions and tent weights."""

    ys: tuple[float, ...]
    xs: tuple[float, ...]
    vs: tuple[float, ...]
    us: tuple[float, ...]
    shape: tuple[int, int]

    @staticmethod
    def make(shape: tuple[int, int], crop: int, grid: tuple[int, int]) -> _Zones:
        height, width = shape
        fh, fw = height - 2 * crop, width - 2 * crop
        half_diag = 0.5 * float(np.hypot(fh, fw))
        ys = tuple(crop + (i + 0.5) * fh / grid[0] for i in range(grid[0]))
        xs = tuple(crop + (j + 0.5) * fw / grid[1] for j in range(grid[1]))
        return _Zones(ys, xs, tuple((y - height / 2) / half_diag for y in ys),
                      tuple((x - width / 2) / half_diag for x in xs), shape)

    @staticmethod
    def _tent(centres: tuple[float, ...], size: int, i: int) -> tuple[np.ndarray, int, int]:
        coord = np.arange(size, dtype=np.float64) + 0.5
        if len(centres) == 1:
            return np.ones(size), 0, size
        step = centres[1] - centres[0]
        w = np.clip(1.0 - np.abs(coord - centres[i]) / step, 0.0, 1.0)
        if i == 0:
            w[coord <= centres[0]] = 1.0
        if i == len(centres) - 1:
            w[coord >= centres[-1]] = 1.0
        nz = np.nonzero(w)[0]
        return w, int(nz[0]), int(nz[-1]) + 1

    def items(self):
        """(position (u, v), y-slice, x-slice, weight on that box) per zone; the weights sum to 1."""
        for i, v in enumerate(self.vs):
            wy, y0, y1 = self._tent(self.ys, self.shape[0], i)
            for j, u in enumerate(self.us):
                wx, x0, x1 = self._tent(self.xs, self.shape[1], j)
                yield (u, v), slice(y0, y1), slice(x0, x1), (wy[y0:y1, None] * wx[None, x0:x1]).astype(np.float32)


def _convolve_cut(stack: np.ndarray, k_left: np.ndarray, k_right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if k_left.shape == (1, 1) and k_left[0, 0] == 1.0 and k_right[0, 0] == 1.0:
        return stack.copy(), stack.copy()
    blur_left, blur_right = convolve(stack, k_left), convolve(stack, k_right)
    # FFT convolution leaks ~1e-17 everywhere: keep the blurred layer strictly inside its true support
    support = cv2.dilate((stack[..., -1] > 0).astype(np.uint8), np.ones(k_left.shape, np.uint8)) > 0
    blur_left[~support] = 0.0
    blur_right[~support] = 0.0
    return np.maximum(blur_left, 0.0), np.maximum(blur_right, 0.0)


def _blur_stack(stack: np.ndarray, coc: float, params, zones: _Zones | None) -> tuple[np.ndarray, np.ndarray]:
    """L and R images of a premultiplied stack (last channel alpha) blurred at CoC ``coc``; with ``zones`` the
    PSF varies across the frame (per-zone kernels, blended with the zones' tent weights)."""
    if zones is None or coc == 0.0 and not getattr(params, "lr_gain", False) and not getattr(
        params, "residual_weight", 0.0
    ):
        return _convolve_cut(stack, *_cached_psfs(float(coc), params))
    out_left, out_right = np.zeros_like(stack), np.zeros_like(stack)
    height, width = stack.shape[:2]
    for position, ys, xs, weight in zones.items():
        k_left, k_right = _cached_psfs(float(coc), params, (round(position[0], 6), round(position[1], 6)))
        m = k_left.shape[0] // 2 + 1
        y0, y1 = max(ys.start - m, 0), min(ys.stop + m, height)
        x0, x1 = max(xs.start - m, 0), min(xs.stop + m, width)
        part = stack[y0:y1, x0:x1]
        if not (part[..., -1] > 0).any():
            continue
        blur_left, blur_right = _convolve_cut(part, k_left, k_right)
        inner = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        out_left[ys, xs] += blur_left[inner] * weight[..., None]
        out_right[ys, xs] += blur_right[inner] * weight[..., None]
    return out_left, out_right


def _blur_layer_stack(stack: np.ndarray, coc: float | np.ndarray, alpha: np.ndarray, params, coc_step: float,
                      zones: _Zones | None) -> tuple[np.ndarray, np.ndarray]:
    if np.isscalar(coc) or np.ndim(coc) == 0:
        return _blur_stack(stack, float(coc), params, zones)
    # slanted plane: blur at the CoC levels it spans, then interpolate linearly per pixel between levels
    coc_map = np.asarray(coc, dtype=np.float32)
    covered = alpha > 0
    if not covered.any():
        return np.zeros_like(stack), np.zeros_like(stack)
    pos = coc_map / coc_step
    lo_level, hi_level = int(np.floor(pos[covered].min())), int(np.ceil(pos[covered].max()))
    pos = np.clip(pos, lo_level, hi_level)
    out_left, out_right = np.zeros_like(stack), np.zeros_like(stack)
    for level in range(lo_level, hi_level + 1):
        weight = np.clip(1.0 - np.abs(pos - level), 0.0, 1.0)
        if not weight.any():
            continue
        blur_left, blur_right = _blur_stack(stack, level * coc_step, params, zones)
        out_left += blur_left * weight[..., None]
        out_right += blur_right * weight[..., None]
    return out_left, out_right


def _render_layer(layer: Layer, params, coc_step: float, zones: _Zones | None = None,
                  chromatic_px: tuple[float, float, float] = (0.0, 0.0, 0.0), max_coc: float = np.inf):
    """Premultiplied colour and per-channel alpha (each H x W x 3) of one layer, as seen by L and by R.

    ``chromatic_px`` shifts each channel's signed CoC (longitudinal chromatic aberration); then each channel is
    blurred with its own PSF and composites with its own blurred alpha; a channel's CoC is clipped to
    ``max_coc``."""
    alpha = layer.alpha[..., None]
    if not any(chromatic_px):
        rgba = np.concatenate([layer.rgb * alpha, alpha], axis=2).astype(np.float32)
        left, right = _blur_layer_stack(rgba, layer.coc, layer.alpha, params, coc_step, zones)
        rgb = (left[..., :3], np.repeat(left[..., 3:], 3, axis=2))
        return rgb, (right[..., :3], np.repeat(right[..., 3:], 3, axis=2))
    views = {"left": ([], []), "right": ([], [])}
    for ch, shift in enumerate(chromatic_px):
        stack = np.concatenate([layer.rgb[..., ch : ch + 1] * alpha, alpha], axis=2).astype(np.float32)
        coc = layer.coc + np.float32(shift) if np.ndim(layer.coc) else float(layer.coc) + shift
        coc = np.clip(coc, -max_coc, max_coc) if np.ndim(coc) else float(np.clip(coc, -max_coc, max_coc))
        left, right = _blur_layer_stack(stack, coc, layer.alpha, params, coc_step, zones)
        for name, img in (("left", left), ("right", right)):
            views[name][0].append(img[..., 0])
            views[name][1].append(img[..., 1])
    return tuple((np.stack(views[n][0], axis=2), np.stack(views[n][1], axis=2)) for n in ("left", "right"))


def _over(dst: np.ndarray, premult: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """Porter-Duff 'over' of a premultiplied layer onto an RGB canvas (alpha: last channel of ``premult``,
    or a separate per-channel H x W x 3 array)."""
    if alpha is None:
        premult, alpha = premult[..., :3], premult[..., 3:4]
    return dst * (1.0 - np.clip(alpha, 0.0, 1.0)) + premult


def _to_linear(img: np.ndarray) -> np.ndarray:
    return np.power(np.clip(img, 0.0, 1.0), 2.2, dtype=np.float32)


def to_display(img: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] to the display curve x ** (1/2.2) the synthetic set (and the Pixel 4 conversion) use."""
    return np.power(np.clip(img, 0.0, 1.0), 1.0 / 2.2, dtype=np.float32)


def render_layers(
    layers: list[Layer],
    params: ButterworthParams | DPOptics | None = None,
    *,
    coc_step: float = 1.0,
    crop: int = 0,
    linear_light: bool = False,
    psf_grid: tuple[int, int] = (1, 1),
    chromatic_px: tuple[float, float, float] = (0.0, 0.0, 0.0),
    max_coc: float = np.inf,
    keep_linear: bool = False,
) -> RenderedScene:
    """Composite ``layers`` (ordered far -> near) into L, R, combined, sharp target and the defocus map.

    ``params``: RDPD's Butterworth kernels (``ButterworthParams``) or the physical half-aperture model
    (``DPOptics``, default), evaluated on a ``psf_grid`` of frame zones when it varies across the frame. With
    ``linear_light`` the layer colours are display-space and blurred in linear light; ``keep_linear`` then returns
    linear images (for noise before the tone curve). ``crop`` pixels are cut from each border afterwards. The
    defocus map is the signed CoC of the front-most layer (alpha >= 0.5), the value the PSFs were drawn for
    (``chromatic_px`` shifts each channel relative to it). No noise is added here.
    """
    if not layers:
        raise ValueError("render_layers: no layers")
    params = params if params is not None else DPOptics()
    height, width = layers[0].alpha.shape
    zones = None
    if isinstance(params, DPOptics) and params.varies_across_frame and psf_grid != (1, 1):
        zones = _Zones.make((height, width), crop, tuple(psf_grid))
    elif isinstance(params, DPOptics) and params.lr_gain and params.vignetting > 0 and psf_grid != (1, 1):
        zones = _Zones.make((height, width), crop, tuple(psf_grid))
    target = np.zeros((height, width, 3), np.float32)
    left = np.zeros_like(target)
    right = np.zeros_like(target)
    defocus = np.zeros((height, width), np.float32)
    for layer in layers:
        if linear_light:
            layer = dataclasses.replace(layer, rgb=_to_linear(layer.rgb))
        sharp = np.concatenate([layer.rgb * layer.alpha[..., None], layer.alpha[..., None]], axis=2)
        target = _over(target, sharp.astype(np.float32))
        (pl, al), (pr, ar) = _render_layer(layer, params, coc_step, zones, tuple(chromatic_px), max_coc)
        left = _over(left, pl, al)
        right = _over(right, pr, ar)
        defocus = np.where(layer.alpha >= 0.5, np.broadcast_to(np.float32(layer.coc), defocus.shape), defocus)
    if linear_light and not keep_linear:
        target, left, right = to_display(target), to_display(left), to_display(right)
    else:
        target, left, right = (np.clip(x, 0.0, 1.0).astype(np.float32) for x in (target, left, right))
    if crop:
        target, left, right, defocus = (x[crop:-crop, crop:-crop] for x in (target, left, right, defocus))
    combined = 0.5 * (left + right)
    return RenderedScene(left, right, combined, target, defocus.astype(np.float32))


def add_noise(img: np.ndarray, rng: np.random.Generator, read: float, shot: float) -> np.ndarray:
    """Heteroscedastic Gaussian noise, variance read^2 + shot * value, clipped to [0, 1].

    Applied to linear values it is the Poisson-Gaussian sensor model (Foi et al. 2008, the Gaussian
    approximation of the Poisson term): ``shot`` = 1 / (photo-electrons at white), ``read`` the read-noise sigma
    in the same units. The legacy ``noise_model: display`` applies it to the display values instead."""
    if read == 0 and shot == 0:
        return img
    sigma = np.sqrt(read**2 + shot * np.clip(img, 0.0, 1.0))
    return np.clip(img + sigma * rng.standard_normal(img.shape, dtype=np.float32), 0.0, 1.0).astype(
        np.float32
    )


# ----------------------------------------------------------------------------------------------- textures


@functools.cache
def _bundled_image(name: str) -> np.ndarray:
    """A sample image shipped inside scikit-image, as float32 display-space [0, 1] (read-only)."""
    import skimage.data

    path = Path(skimage.data.__file__).parent / name
    img = read_image_raw(path)
    img = img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)
    img.setflags(write=False)
    return img


def _crop_resized(
    img: np.ndarray, height: int, width: int, rng: np.random.Generator, zoom: float
) -> np.ndarray:
    """Random crop of ``img`` resized to cover height x width, at ``zoom`` x the minimal cover scale."""
    scale = max(height / img.shape[0], width / img.shape[1]) * zoom
    crop_h, crop_w = (
        min(img.shape[0], int(np.ceil(height / scale))),
        min(img.shape[1], int(np.ceil(width / scale))),
    )
    y0 = int(rng.integers(0, img.shape[0] - crop_h + 1))
    x0 = int(rng.integers(0, img.shape[1] - crop_w + 1))
    patch = img[y0 : y0 + crop_h, x0 : x0 + crop_w]
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    out = cv2.resize(np.ascontiguousarray(patch), (width, height), interpolation=interp)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.clip(out, 0.0, 1.0)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array(
        [[[rng.uniform(0, 180), rng.uniform(0.1, 0.9) * 255, rng.uniform(0.2, 1.0) * 255]]], np.uint8
    )
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


def _fractal_noise(height: int, width: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """1/f^exponent noise (natural-image-like spectrum), normalised to [0, 1]."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.hypot(fy, fx)
    radius[0, 0] = 1.0
    spectrum = rng.standard_normal((height, fx.shape[1])) + 1j * rng.standard_normal((height, fx.shape[1]))
    spectrum /= radius**exponent
    spectrum[0, 0] = 0.0
    noise = np.fft.irfft2(spectrum, s=(height, width))
    noise -= noise.min()
    return (noise / max(noise.max(), 1e-12)).astype(np.float32)


def _palette(values: np.ndarray, rng: np.random.Generator, colours: int = 3) -> np.ndarray:
    """Map [0, 1] values through a random piecewise-linear colour ramp."""
    stops = np.stack([_random_colour(rng) for _ in range(colours)])
    pos = values * (colours - 1)
    idx = np.clip(np.floor(pos).astype(int), 0, colours - 2)
    frac = (pos - idx)[..., None]
    return (stops[idx] * (1 - frac) + stops[idx + 1] * frac).astype(np.float32)


def procedural_texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """One of: coloured fractal noise, a grating, tiles/bricks, or a tinted bundled grey texture."""
    kind = rng.choice(["fractal", "grating", "tiles", "grey"])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    detail = _fractal_noise(height, width, rng, rng.uniform(0.8, 1.2))
    if kind == "fractal":
        base = _palette(_fractal_noise(height, width, rng, rng.uniform(0.9, 1.5)), rng)
    elif kind == "grating":
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(4, 30)
        phase = (xx * np.cos(theta) + yy * np.sin(theta)) / period * 2 * np.pi
        wave = 0.5 + 0.5 * np.tanh(rng.uniform(0.5, 6.0) * np.sin(phase))
        base = _palette(wave, rng, colours=2)
    elif kind == "tiles":
        tile_h, tile_w = rng.uniform(6, 24), rng.uniform(10, 48)
        row = np.floor(yy / tile_h)
        shifted = xx + (row % 2) * tile_w * 0.5
        col = np.floor(shifted / tile_w)
        mortar = ((yy % tile_h) < 1.5) | ((shifted % tile_w) < 1.5)
        tile_rng = np.random.default_rng(int(rng.integers(1 << 31)))
        shade = tile_rng.uniform(0.7, 1.0, size=(int(row.max()) + 2, int(col.max()) + 2))[
            row.astype(int), col.astype(int)
        ]
        colour, mortar_colour = _random_colour(rng), _random_colour(rng)
        base = np.where(mortar[..., None], mortar_colour, colour * shade[..., None]).astype(np.float32)
    else:
        grey = _bundled_image(str(rng.choice(GREY_TEXTURES)))
        grey = grey if grey.ndim == 2 else grey[..., 0]
        grey = _crop_resized(grey, height, width, rng, zoom=rng.uniform(1.0, 2.5))
        base = grey[..., None] * _random_colour(rng)[None, None, :] * 1.2
    # fine multiplicative detail so that no surface is perfectly flat
    base = base * (0.6 + 0.8 * detail[..., None])
    return np.clip(base, 0.0, 1.0).astype(np.float32)


def layer_texture(height: int, width: int, rng: np.random.Generator, photo_prob: float) -> np.ndarray:
    if rng.random() < photo_prob:
        photo = _bundled_image(str(rng.choice(PHOTOS)))
        return _crop_resized(photo, height, width, rng, zoom=rng.uniform(1.0, 1.3)).astype(np.float32)
    return procedural_texture(height, width, rng)


# ----------------------------------------------------------------------------------------------- shapes


def _shape_mask(height: int, width: int, rng: np.random.Generator, area_fraction: float) -> np.ndarray:
    """Anti-aliased mask of a random ellipse, polygon, rotated rectangle or bar of about the given area."""
    area = area_fraction * height * width
    cy, cx = rng.uniform(0.15, 0.85) * height, rng.uniform(0.1, 0.9) * width
    kind = rng.choice(["ellipse", "polygon", "rectangle", "bar"])
    if kind == "ellipse":
        aspect = rng.uniform(0.4, 2.5)
        ry = np.sqrt(area / np.pi * aspect)
        rx = area / (np.pi * ry)
        pts = (
            cv2.ellipse2Poly((0, 0), (1000, 1000), int(rng.uniform(0, 180)), 0, 360, 3).astype(np.float64)
            / 1000
        )
        pts = np.stack([pts[:, 0] * rx, pts[:, 1] * ry], axis=1)
    elif kind == "polygon":
        n = int(rng.integers(5, 10))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(0.6, 1.0, n)
        r = np.sqrt(area / (0.5 * n * np.sin(2 * np.pi / n) * np.mean(radii**2)))
        pts = np.stack([np.cos(angles) * radii * r, np.sin(angles) * radii * r], axis=1)
    else:
        if kind == "bar":  # a pole or a beam crossing much of the frame
            long_side = rng.uniform(0.8, 1.4) * (height if rng.random() < 0.7 else width)
            short_side = area / long_side
            theta = rng.normal(0, 0.15) + (0 if long_side > width else np.pi / 2)
            half = np.array([short_side / 2, long_side / 2])
        else:
            aspect = rng.uniform(0.5, 2.0)
            half = np.array([np.sqrt(area * aspect), np.sqrt(area / aspect)]) / 2
            theta = rng.uniform(-0.5, 0.5)
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        pts = corners @ rot.T
    pts = pts + np.array([cx, cy])
    mask = np.zeros((height, width), np.uint8)
    shift = 4  # sub-pixel vertex precision
    cv2.fillPoly(
        mask, [np.round(pts * (1 << shift)).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=shift
    )
    return mask.astype(np.float32) / 255.0


# ----------------------------------------------------------------------------------------------- scenes


def _texture_for_mask(mask: np.ndarray, rng: np.random.Generator, photo_prob: float) -> np.ndarray:
    """A texture sized to the mask's bounding box (so photos keep their detail), placed on the canvas."""
    texture = np.zeros(mask.shape + (3,), np.float32)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return texture
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    texture[y0:y1, x0:x1] = layer_texture(max(y1 - y0, 8), max(x1 - x0, 8), rng, photo_prob)[
        : y1 - y0, : x1 - x0
    ]
    return texture


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _plane_inverse_depth(
    height: int,
    width: int,
    rng: np.random.Generator,
    inv_near: float,
    inv_far: float,
    slanted: bool,
    vertical_bias: float = 0.7,
) -> np.ndarray | float:
    """Inverse depth (1/mm) of a plane: constant, or affine in image coordinates (a slanted plane in 3-D)."""
    if not slanted:
        return float(rng.uniform(inv_far, inv_near))
    if rng.random() < vertical_bias:  # ground/ceiling: depth changes with y; usually far at the top
        coord = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None] * np.ones((1, width), np.float32)
        if rng.random() < 0.2:
            coord = 1.0 - coord
    else:  # a wall receding to one side
        coord = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :] * np.ones((height, 1), np.float32)
        if rng.random() < 0.5:
            coord = 1.0 - coord
    return (inv_far + (inv_near - inv_far) * coord).astype(np.float32)


def sample_scene(
    cfg: SyntheticConfig, rng: np.random.Generator
) -> tuple[list[Layer], ButterworthParams | DPOptics, int, dict]:
    """Draw lens, PSF shape and layers (far -> near) of one scene on a padded canvas; also the padding."""
    focal = _log_uniform(rng, *cfg.focal_length_mm)
    f_number = _log_uniform(rng, *cfg.f_number)
    focus_mm = _log_uniform(rng, *cfg.focus_distance_m) * 1000.0
    lens = ThinLens(focal, f_number, focus_mm, cfg.sensor_width_mm / cfg.width)
    psf = ButterworthParams(
        n=float(rng.choice(cfg.bw_n)),
        cf=float(rng.choice(cfg.bw_cf)),
        beta=float(rng.choice(cfg.bw_beta)),
        ramp_floor=cfg.dp_ramp_floor,
    )
    if cfg.psf_model == "physical":
        psf = DPOptics(
            split_softness=cfg.dp_split_softness,
            crosstalk=cfg.dp_crosstalk,
            vignetting=cfg.vignetting,
            pupil_ratio=cfg.pupil_ratio,
            lr_gain=cfg.lr_gain,
            residual_px=cfg.infocus_residual_px,
            residual_weight=cfg.infocus_residual_weight,
            profile=dataclasses.replace(psf, ramp_floor=0.0) if cfg.rim_profile else None,
        )
    # the largest kernel radius: the CoC (channels' CoCs are clipped to it too), its Gaussian, the hat and the
    # residual kernel. It does not depend on the psf model or on switching effects on or off, so that the same
    # seed draws the same scenes for every variant of the optics
    pad = int(np.ceil(cfg.max_coc_px * (0.5 + 1 / 7) + cfg.infocus_residual_px / 2 + 1)) + 2
    height, width = cfg.height + 2 * pad, cfg.width + 2 * pad
    frame = cfg.height * cfg.width

    # usable inverse-depth range: |CoC| <= max_coc_px and not beyond the far plane
    s = lens.coc_scale_px
    inv_focus = 1.0 / focus_mm
    inv_nearest = inv_focus * (1 + cfg.max_coc_px / s)
    inv_farthest = max(1.0 / (cfg.far_depth_m * 1000.0), inv_focus * (1 - cfg.max_coc_px / s))

    def coc_of(inv_depth):
        coc = np.clip(s * (1.0 - focus_mm * np.asarray(inv_depth)), -cfg.max_coc_px, cfg.max_coc_px)
        return np.where(np.abs(coc) < 1e-9, 0.0, coc)  # on the focal plane exactly, despite rounding

    layers: list[Layer] = []
    subject_in_focus = rng.random() < cfg.subject_in_focus_prob and cfg.objects[1] > 0
    # background: behind the focus when a subject is sharp; else it holds the focal plane somewhere
    slanted = rng.random() < cfg.slanted_prob
    if subject_in_focus:  # background behind the focal plane
        bg_far = inv_farthest
        bg_near = inv_focus - rng.uniform(0.1, 0.6) * (inv_focus - inv_farthest)
    else:
        bg_far = inv_focus - rng.uniform(0.0, 0.7) * (inv_focus - inv_farthest)
        bg_near = inv_focus + rng.uniform(0.0, 0.3) * (inv_nearest - inv_focus) if slanted else inv_focus
        if not slanted:
            bg_far = bg_near = inv_focus
    inv_bg = _plane_inverse_depth(height, width, rng, bg_near, bg_far, slanted)
    bg_texture = layer_texture(height, width, rng, cfg.photo_prob)
    layers.append(
        Layer(bg_texture, np.ones((height, width), np.float32), _as_coc(coc_of(inv_bg)), "background")
    )
    bg_nearest_inv = float(np.max(inv_bg))

    n_objects = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    if subject_in_focus:
        n_objects = max(n_objects, 1)
    objects = []
    for i in range(n_objects):
        is_subject = subject_in_focus and i == 0
        area = rng.uniform(*(cfg.subject_area if is_subject else cfg.object_area))
        mask = _shape_mask(height, width, rng, area * frame / (height * width))
        texture = _texture_for_mask(mask, rng, cfg.photo_prob)
        if is_subject:
            inv = inv_focus
            coc: float | np.ndarray = 0.0  # exactly on the focal plane
        else:  # anywhere in front of the background
            lo = min(bg_nearest_inv * 1.02, inv_nearest)
            inv = float(rng.uniform(lo, inv_nearest))
            if rng.random() < cfg.slanted_prob:
                spread = rng.uniform(0.0, 0.15) * inv
                inv_map = _plane_inverse_depth(
                    height, width, rng, inv + spread / 2, inv - spread / 2, True, 0.5
                )
                coc = _as_coc(coc_of(inv_map))
            else:
                coc = float(coc_of(inv))
        objects.append((inv, Layer(texture, mask, coc, "subject" if is_subject else f"object{i}")))
    objects.sort(key=lambda item: item[0])  # far (small inverse depth) first
    layers.extend(layer for _, layer in objects)
    meta = {
        "focal_length_mm": focal,
        "f_number": f_number,
        "focus_distance_m": focus_mm / 1000.0,
        "pixel_pitch_mm": lens.pixel_pitch_mm,
        "coc_scale_px": s,
        "psf": dataclasses.asdict(psf),
        "subject_in_focus": bool(subject_in_focus),
        "layers": [layer.name for layer in layers],
    }
    return layers, psf, pad, meta


def _as_coc(value) -> float | np.ndarray:
    arr = np.asarray(value, dtype=np.float32)
    return float(arr) if arr.ndim == 0 else arr


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Independent stream per (seed, split, scene): a scene does not depend on the split sizes."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), index]))


def render_scene(cfg: SyntheticConfig, split: str, index: int) -> RenderedScene:
    rng = scene_rng(cfg.seed, split, index)
    layers, psf, pad, meta = sample_scene(cfg, rng)
    chromatic = tuple(float(x * meta["coc_scale_px"]) for x in cfg.chromatic_focus_shift)
    linear_noise = cfg.noise_model == "linear" and cfg.linear_light
    scene = render_layers(layers, psf, coc_step=cfg.coc_step_px, crop=pad, linear_light=cfg.linear_light,
                          psf_grid=tuple(cfg.psf_grid), chromatic_px=chromatic, max_coc=cfg.max_coc_px,
                          keep_linear=linear_noise)
    read, shot, k = cfg.noise_read, cfg.noise_shot, cfg.noise_target_scale
    scene.left = add_noise(scene.left, rng, read, shot)
    scene.right = add_noise(scene.right, rng, read, shot)
    scene.target = add_noise(scene.target, rng, k * read, k * k * shot)
    if linear_noise:  # the full pixel is the sum of the two halves, in linear light; then the tone curve
        scene.combined = to_display(0.5 * (scene.left + scene.right))
        scene.left, scene.right, scene.target = (to_display(x) for x in (scene.left, scene.right, scene.target))
    else:
        scene.combined = 0.5 * (scene.left + scene.right)
    scene.meta = meta
    return scene


# ----------------------------------------------------------------------------------------------- writing


def generate_synthetic(cfg: SyntheticConfig, out_root: str | Path, progress: bool = True,
                       stamp: dict | None = None) -> Path:
    """Render the train/val/test splits into ``out_root`` (built in a temp folder, then renamed); ``stamp`` (the
    data config's, from the data stage) is written as ``source.json`` beside the manifest."""
    out_root = Path(out_root)
    if out_root.exists() and not out_root.is_dir():
        raise SyntheticDataError(f"{out_root}: exists and is not a folder")
    with atomic_dir(out_root) as tmp:
        rows = []
        jobs = [(split, i) for split in SPLITS for i in range(cfg.counts()[split])]
        for split, i in tqdm(jobs, desc="synthetic DP scenes", unit="scene", disable=not progress):
            name = f"{split}_{i:04d}"
            scene = render_scene(cfg, split, i)
            paths = layout_paths(split, name)
            for key in ("left", "right", "combined", "target"):
                write_image(tmp / paths[key], getattr(scene, key), bits=16)
            defocus_path = tmp / paths["defocus"]
            defocus_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(defocus_path, scene.defocus.astype(np.float32))
            rows.append(
                {
                    "scene": name,
                    "split": split,
                    "category": "",
                    **paths,
                    "height": cfg.height,
                    "width": cfg.width,
                    "bit_depth": 16,
                }
            )
        write_manifest(tmp, rows)
        (tmp / "synthetic_config.json").write_text(
            json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True)
        )
        if stamp is not None:
            (tmp / SOURCE_STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    return out_root
