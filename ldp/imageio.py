"""16-bit / 8-bit PNG I/O through OpenCV, RGB order, float32 in [0, 1], and the rules images must meet.

Writes are atomic: the image goes to a temporary file beside the target, then is renamed. Any decoding failure
(including OpenCV's own errors, e.g. a header that claims more pixels than OpenCV allows) is one
:class:`ImageReadError` naming the file. The rules shared by the data stage and ``ldp deblur``: images that go
together have one size and one bit depth (:func:`size_mismatch`, :func:`depth_mismatch`), and no side is shorter
than :data:`MIN_SIDE` (:func:`too_small`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ldp.fsutil import atomic_write_bytes

MIN_SIDE = 7  # the SSIM window of the evaluation protocol (ldp.metrics.SSIM_WIN): the smallest image it can score


class ImageReadError(ValueError):
    """An image file is missing, truncated, corrupt or of an unsupported depth; names the file."""


def read_image_raw(path: str | Path) -> np.ndarray:
    """Decode an image as stored (uint8 or uint16), RGB (or 2-D for grey), no scaling."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    buf = np.fromfile(path, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    except cv2.error as exc:  # e.g. a header that claims more pixels than OpenCV will allocate
        reason = getattr(exc, "err", "") or str(exc).strip().splitlines()[-1]
        raise ImageReadError(f"{path}: cannot decode image (OpenCV refused it: {reason})") from exc
    if img is None:
        raise ImageReadError(f"{path}: cannot decode image (truncated or corrupt file?)")
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{path}: unsupported pixel type {img.dtype} (expected 8- or 16-bit)")
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, :3]
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def bit_depth(img: np.ndarray) -> int:
    return 16 if img.dtype == np.uint16 else 8


def size_mismatch(path: str | Path, size: tuple[int, int], ref_path: str | Path,
                  ref_size: tuple[int, int]) -> str | None:
    """Why the image at ``path`` (``size`` = height, width) cannot go with ``ref_path``; None when sizes agree."""
    if tuple(size) == tuple(ref_size):
        return None
    return f"{path}: size {size[1]}x{size[0]} differs from {ref_path} ({ref_size[1]}x{ref_size[0]})"


def depth_mismatch(path: str | Path, depth: int, ref_path: str | Path, ref_depth: int) -> str | None:
    """Why an image of ``depth`` bits cannot go with one of ``ref_depth`` bits; None when they agree."""
    if depth == ref_depth:
        return None
    return (f"{path}: {depth}-bit, but {ref_path} is {ref_depth}-bit (mixed bit depths: images that go together "
            "must share one scale, /65535 or /255)")


def too_small(path: str | Path, size: tuple[int, int]) -> str | None:
    """Why an image of ``size`` (height, width) is too small for the evaluation protocol; None when it is not."""
    if min(size) >= MIN_SIDE:
        return None
    return (f"{path}: {size[1]}x{size[0]} pixels is smaller than the {MIN_SIDE}x{MIN_SIDE} the evaluation "
            "protocol needs (its SSIM window)")


def to_float(img: np.ndarray) -> np.ndarray:
    """uint16 → /65535, uint8 → /255, as float32."""
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return img.astype(np.float32) / np.float32(scale)


def read_image(path: str | Path, channels: int = 3) -> np.ndarray:
    """Read as float32 HxWxC in [0, 1]; grey images are replicated to ``channels``."""
    return to_rgb_float(read_image_raw(path), channels)


def to_rgb_float(raw: np.ndarray, channels: int = 3) -> np.ndarray:
    """A decoded image (:func:`read_image_raw`) as float32 HxWxC in [0, 1]; grey is replicated to ``channels``."""
    img = to_float(raw)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], channels, axis=2) if channels > 1 else img[:, :, None]
    return img


def quantize(img: np.ndarray, bits: int = 16) -> np.ndarray:
    """Float [0, 1] → uint16 (or uint8) with rounding and clipping."""
    peak = 65535.0 if bits == 16 else 255.0
    dtype = np.uint16 if bits == 16 else np.uint8
    return np.clip(np.rint(np.asarray(img, dtype=np.float64) * peak), 0, peak).astype(dtype)


def write_image(path: str | Path, img: np.ndarray, bits: int = 16) -> Path:
    """Write an RGB (HxWx3) or grey (HxW) image atomically. Float input is taken as [0, 1]."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = img if img.dtype in (np.uint8, np.uint16) else quantize(img, bits)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, enc = cv2.imencode(path.suffix or ".png", arr)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the image")
    return atomic_write_bytes(path, enc.tobytes())
