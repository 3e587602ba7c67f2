"""16-bit / 8-bit PNG I/O through OpenCV, RGB order, float32 in [0, 1].

Writes are atomic: the image goes to a temporary file beside the target, then is renamed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ldp.fsutil import atomic_write_bytes


class ImageReadError(ValueError):
    """An image file is missing, truncated, corrupt or of an unsupported depth; names the file."""


def read_image_raw(path: str | Path) -> np.ndarray:
    """Decode an image as stored (uint8 or uint16), RGB (or 2-D for grey), no scaling."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    buf = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
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


def to_float(img: np.ndarray) -> np.ndarray:
    """uint16 → /65535, uint8 → /255, as float32."""
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return img.astype(np.float32) / np.float32(scale)


def read_image(path: str | Path, channels: int = 3) -> np.ndarray:
    """Read as float32 HxWxC in [0, 1]; grey images are replicated to ``channels``."""
    img = to_float(read_image_raw(path))
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
