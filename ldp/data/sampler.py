"""Training patches and full evaluation images from a dataset root (``manifest.csv``).

Every image is decoded once into a uint16 CHW ``.npy`` cache under ``<root>/.cache/`` (8-bit images are scaled
by 257, so v/65535 equals the original v/255) and memory-mapped afterwards; patches are cropped from the maps.
Training patches stay uint16 (half the bytes of float32, no per-patch cast on the loader's core); the trainer
turns a batch into float32 [0, 1] on its device with :func:`to_unit_float`. Full evaluation images are float32.

Determinism: the patch for dataset index ``i`` depends only on ``(seed, i)``: the scene is
``perm(seed, epoch)[i % n]`` with ``epoch = i // n`` and the crop/flips come from a SplitMix64 hash of ``(seed, i)``.
Indices may go beyond ``len(dataset)`` (later epochs). A training loop that feeds global sample counters
(:class:`ShardedBatchSampler`) therefore sees exactly the same patches after a resume.

Combined-input models (``combined_input=True``) are fed DPDD's camera combined image C (``*_c/source``) where the
scene has one, as ``left = right = C`` so that the input adapter's (L+R)/2 is C itself; (L+R)/2 of the views only for
a scene without C. Evaluation follows the same rule (``ldp.models.input_baselines.combined_views``).

Augmentation (``augment``; docs/training.md "Augmentation" has the official sources):

- ``dp_flips`` (ours, LDP): a horizontal flip mirrors the image, which swaps the roles of the two half-apertures,
  so the flipped left view becomes the right view and vice versa. Vertical flips keep L/R. No 90° rotations
  (they would turn the horizontal disparity axis vertical).
- ``restormer_dihedral``: one of Restormer's 8 dihedral transforms, the same for L, R and target, never swapping
  L/R (so rotations make the disparity vertical and horizontal mirrors reverse its sign).
- ``deeprft_modes``: DeepRFT's 9 draws of 8 flip/rotation modes (two draws are the identity) and its colour
  jitter (a saturation factor in [0.8, 1.2) on a third of the patches), the same for L, R and target.
- ``none``.

Patch pool (``patch_pool``, Restormer's DPDD preparation): each train image is cut into ``size``² windows at
``stride`` (plus windows flush with the right and bottom edges), the ``drop_fraction`` of each image's windows with
the least target sharpness is dropped, and patch ``i`` is cropped from pool window ``perm(seed, epoch)[i % n]``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from tqdm import tqdm

from ldp.data.manifest import load_manifest
from ldp.data.sources import DatasetError
from ldp.fsutil import atomic_write
from ldp.imageio import read_image_raw

CACHE_DIRNAME = ".cache"
VIEWS = ("left", "right", "target")
_SCALE = np.float32(1.0 / 65535.0)


def _stat_key(path: Path) -> str:
    st = path.stat()
    text = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, arr))


def image_to_u16_chw(img: np.ndarray) -> np.ndarray:
    """Decoded RGB/grey uint8 or uint16 (HxW[xC]) → uint16 3xHxW on the 16-bit scale."""
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    chw = np.ascontiguousarray(img.transpose(2, 0, 1))
    if chw.dtype == np.uint8:
        chw = chw.astype(np.uint16) * np.uint16(257)
    return chw


def cached_image(src: Path, cache_dir: Path) -> Path:
    """Path of the uint16 CHW cache of ``src``, decoding it now if the cache is missing or stale."""
    dst = cache_dir / f"{src.stem}.{_stat_key(src)}.npy"
    if not dst.is_file():
        _atomic_save(dst, image_to_u16_chw(read_image_raw(src)))
    return dst


def cached_blurmap(map_dir: Path, scene: str, size: tuple[int, int], cache_root: Path) -> Path:
    """uint16 1xHxW cache of the blur map of ``scene`` upsampled by :func:`ldp.blurmap.io.load_blurmap`."""
    from ldp.blurmap.common import BlurMapError
    from ldp.blurmap.io import META_NAME, load_blurmap

    src = Path(map_dir) / f"{scene}.npy"
    if not src.is_file():
        raise DatasetError(f"{src}: blur map not found for scene '{scene}'")
    meta = Path(map_dir) / META_NAME
    key = _stat_key(src) + (_stat_key(meta) if meta.is_file() else "")
    tag = hashlib.sha1(str(Path(map_dir).resolve()).encode()).hexdigest()[:10]
    dst = cache_root / "blurmaps" / tag / f"{scene}.{key}.{size[0]}x{size[1]}.npy"
    if not dst.is_file():
        try:
            full = np.asarray(load_blurmap(map_dir, scene, size), dtype=np.float32).reshape(size)
        except BlurMapError as exc:
            raise DatasetError(str(exc)) from exc
        _atomic_save(dst, np.rint(np.clip(full, 0.0, 1.0) * 65535.0).astype(np.uint16)[None])
    return dst


class _CachedScenes:
    """Manifest rows of one split plus their memory-mapped uint16 caches (opened lazily per process)."""

    def __init__(self, root, split: str, blurmap_dir=None, views=VIEWS, require=("left", "right"),
                 cache_dir=None, progress: bool = True):
        self.root = Path(root)
        self.split = split
        table = load_manifest(self.root, split)
        if table.empty:
            raise DatasetError(f"{self.root / 'manifest.csv'}: no scenes in split '{split}'")
        self.cache_root = Path(cache_dir) if cache_dir else self.root / CACHE_DIRNAME
        self.blurmap_dir = Path(blurmap_dir) if blurmap_dir else None
        self.rows: list[dict] = []
        for _, row in tqdm(table.iterrows(), total=len(table), desc=f"cache {split}", disable=not progress,
                           leave=False):
            for col in require:
                if not row[col]:
                    raise DatasetError(f"{self.root / 'manifest.csv'}: scene '{row['scene']}' has no {col} "
                                       f"image (split '{split}')")
            entry = {"scene": row["scene"], "category": row["category"], "files": {}}
            for col in views:
                if row[col]:
                    entry["files"][col] = cached_image(self.root / row[col], self.cache_root / split / col)
            first = np.load(entry["files"]["left"], mmap_mode="r")
            entry["height"], entry["width"] = int(first.shape[1]), int(first.shape[2])
            if self.blurmap_dir is not None:
                entry["files"]["blurmap"] = cached_blurmap(self.blurmap_dir, row["scene"],
                                                           (entry["height"], entry["width"]), self.cache_root)
            self.rows.append(entry)
        self._maps: dict = {}

    def __len__(self) -> int:
        return len(self.rows)

    def array(self, i: int, kind: str) -> np.ndarray:
        key = (i, kind)
        arr = self._maps.get(key)
        if arr is None:
            # a plain ndarray over the mapped buffer: slicing skips np.memmap's per-slice bookkeeping
            arr = np.asarray(np.load(self.rows[i]["files"][kind], mmap_mode="r"))
            self._maps[key] = arr
        return arr

    def __getstate__(self):  # never pickle open memmaps into DataLoader workers
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state


def _to_float(arr: np.ndarray) -> torch.Tensor:
    """uint16 → float32 / 65535 in one pass (the input is made contiguous first: much faster casts)."""
    return torch.from_numpy(np.multiply(np.ascontiguousarray(arr), _SCALE, dtype=np.float32))


def to_unit_float(t: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """A uint16 patch batch → float32 in [0, 1] on ``device`` (the same values as ``_to_float``).

    The batch travels as its int16 bit pattern (every backend copies int16) and is widened on the device.
    Float tensors are only moved.
    """
    if t.dtype != torch.uint16:
        return t.to(device, non_blocking=True).float()
    wide = t.view(torch.int16).to(device, non_blocking=True).to(torch.int32).bitwise_and_(0xFFFF)
    return wide.to(torch.float32).mul_(float(_SCALE))


@dataclass(frozen=True)
class PatchDraw:
    """Where patch ``i`` comes from and how it is transformed: flips first, then ``rot90`` counter-clockwise
    quarter turns (``np.rot90`` in the image plane), then the saturation factor on the RGB views."""

    scene: int
    top: int
    left: int
    vflip: bool = False
    hflip: bool = False
    rot90: int = 0
    swap_views: bool = False  # dp_flips: the mirrored left view is the right view
    saturation: float = 1.0


# (vflip, hflip, rot90) of each mode, written as "flips, then rotation".
# Restormer's data_augmentation(mode) for mode 0..7: id, flipud, rot90, flipud∘rot90, rot180, flipud∘rot180,
# rot270, flipud∘rot270 (flipud∘rot90 = rot90∘fliplr, flipud∘rot180 = fliplr, flipud∘rot270 = rot90∘flipud).
RESTORMER_MODES = ((False, False, 0), (True, False, 0), (False, False, 1), (False, True, 1), (False, False, 2),
                   (False, True, 0), (False, False, 3), (True, False, 1))
# DeepRFT's aug = randint(0, 8): 0 id, 1 flip(H), 2 flip(W), 3-5 rot90 k=1..3, 6 rot90∘flip(H), 7 rot90∘flip(W),
# 8 id (no branch).
DEEPRFT_MODES = ((False, False, 0), (True, False, 0), (False, True, 0), (False, False, 1), (False, False, 2),
                 (False, False, 3), (True, False, 1), (False, True, 1), (False, False, 0))
AUGMENTS = ("dp_flips", "restormer_dihedral", "deeprft_modes", "none")


def crop_u16(arr: np.ndarray, y: int, x: int, p: int, hflip: bool, vflip: bool, rot90: int = 0) -> np.ndarray:
    """A contiguous CxPxP uint16 copy of ``arr[:, y:y+p, x:x+p]``, optionally flipped, then rotated."""
    view = arr[:, y:y + p, x:x + p]
    if vflip:
        view = view[:, ::-1, :]
    crop = np.ascontiguousarray(view)
    if hflip:  # OpenCV's SIMD flip is much faster than a negative-stride numpy copy
        c = crop.shape[0]
        crop = cv2.flip(crop.reshape(c * p, p), 1).reshape(c, p, p)
    if rot90 % 4:  # np.rot90's direction (counter-clockwise), with OpenCV's much faster per-plane rotation
        code = _CV_ROTATE[rot90 % 4]
        crop = np.stack([cv2.rotate(plane, code) for plane in crop])
    return crop


_CV_ROTATE = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}


def saturate_u16(rgb: np.ndarray, factor: float) -> np.ndarray:
    """PIL's ``ImageEnhance.Color`` on a uint16 3xHxW patch: blend with its grey (ITU-R 601 luma), clipped."""
    f = rgb.astype(np.float32)
    grey = 0.299 * f[0] + 0.587 * f[1] + 0.114 * f[2]
    out = factor * f + (1.0 - factor) * grey[None]
    return np.rint(np.clip(out, 0.0, 65535.0)).astype(np.uint16)


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Window starts along one axis: ``0, stride, ...`` while the window fits, then one flush with the end."""
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def sharpness_energy(grey: np.ndarray) -> np.ndarray:
    """Sum of the Sobel gradient magnitude of ``grey`` for kernel sizes 3, 7, 11, 15 (Restormer's DPDD measure)."""
    out = []
    for k in (3, 7, 11, 15):
        gx = cv2.Sobel(grey, cv2.CV_64F, 1, 0, ksize=k)
        gy = cv2.Sobel(grey, cv2.CV_64F, 0, 1, ksize=k)
        out.append(float(np.sqrt(gx * gx + gy * gy).sum()))
    return np.asarray(out)


def kept_windows(target: np.ndarray, size: int, stride: int, drop_fraction: float) -> list[tuple[int, int]]:
    """``(top, left)`` of one image's pool windows after dropping the ``drop_fraction`` least sharp (target).

    Each kernel's energies are min-max normalised over the image's windows, their product is the score, and the
    ``int(drop_fraction * n)`` lowest scores go (ties: the earlier windows, in row-major order).
    """
    grey = cv2.cvtColor(np.ascontiguousarray(target.transpose(1, 2, 0)), cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    windows = [(y, x) for y in window_starts(h, size, stride) for x in window_starts(w, size, stride)]
    energy = np.stack([sharpness_energy(grey[y:y + size, x:x + size]) for y, x in windows])
    span = energy.max(axis=0) - energy.min(axis=0)
    normalised = (energy - energy.min(axis=0)) / np.where(span > 0, span, 1.0)
    score = normalised.prod(axis=1)
    dropped = set(np.argsort(score, kind="stable")[: int(drop_fraction * len(windows))].tolist())
    return [win for i, win in enumerate(windows) if i not in dropped]


_MASK64 = (1 << 64) - 1


def _splitmix64(state: int) -> tuple[int, int]:
    """One step of SplitMix64: returns (new state, 64-bit output). Cheap and fully determined by the state."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


class DPPatchDataset(Dataset):
    """Random DP training patches: ``left, right, target`` (3xPxP) and ``blurmap`` (1xPxP) uint16 on the 16-bit
    scale (see :func:`to_unit_float`), and ``scene``. With ``combined_input`` a scene with a camera combined image
    gives ``left = right = C`` (module doc).

    ``augment`` is one of :data:`AUGMENTS` (``True``/``False`` mean ``dp_flips``/``none``); ``patch_pool`` is any
    object with ``size``, ``stride`` and ``drop_fraction`` (``ldp.train.config.PatchPoolConfig``) or None.
    ``len`` is ``scenes (or pool windows) * patches_per_image`` (one epoch); any non-negative index is valid.
    """

    def __init__(self, root, split: str, patch_size: int, blurmap_dir=None, augment: str | bool = "dp_flips",
                 seed: int = 0, patches_per_image: int = 1, cache_dir=None, progress: bool = True,
                 combined_input: bool = False, patch_pool: Any = None):
        if patch_size <= 0:
            raise ValueError(f"patch_size must be positive, got {patch_size}")
        if isinstance(augment, bool):
            augment = "dp_flips" if augment else "none"
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
        self.scenes = _CachedScenes(root, split, blurmap_dir, _views(combined_input), ("left", "right", "target"),
                                    cache_dir, progress)
        self.combined_input = combined_input
        window = patch_pool.size if patch_pool is not None else patch_size
        for r in self.scenes.rows:
            if r["height"] < window or r["width"] < window:
                what = f"the patch pool's {window}-px windows" if patch_pool is not None else f"patch_size {window}"
                raise DatasetError(f"{r['files']['left']}: scene '{r['scene']}' is {r['width']}x{r['height']}, "
                                   f"smaller than {what}")
        if patch_pool is not None and patch_size > patch_pool.size:
            raise ValueError(f"patch_size {patch_size} is larger than the pool's windows ({patch_pool.size})")
        self.patch_size = patch_size
        self.augment = augment
        self.seed = int(seed)
        self.patches_per_image = int(patches_per_image)
        self.pool = self._pool(patch_pool) if patch_pool is not None else None
        self.window = window

    def _pool(self, cfg: Any) -> np.ndarray:
        """``(scene, top, left)`` rows of the kept pool windows, cached beside the image caches."""
        targets = [str(r["files"]["target"]) for r in self.scenes.rows]
        text = "|".join([*targets, str(cfg.size), str(cfg.stride), repr(float(cfg.drop_fraction))])
        path = self.scenes.cache_root / "patch_pool" / f"{hashlib.sha1(text.encode()).hexdigest()[:16]}.npy"
        if not path.is_file():
            rows = [(s, y, x) for s in range(len(self.scenes))
                    for y, x in kept_windows(self.scenes.array(s, "target"), cfg.size, cfg.stride,
                                             cfg.drop_fraction)]
            _atomic_save(path, np.asarray(rows, dtype=np.int64).reshape(-1, 3))
        return np.load(path)

    def _units(self) -> int:
        return len(self.pool) if self.pool is not None else len(self.scenes)

    def __len__(self) -> int:
        return self._units() * self.patches_per_image

    @functools.lru_cache(maxsize=4)  # noqa: B019 - tiny cache of the latest epochs' scene orders
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, 7919]).permutation(self._units())

    def sample_params(self, index: int) -> PatchDraw:
        """The scene, crop and transform of dataset item ``index``; pure in ``(seed, index)``."""
        if index < 0:
            raise IndexError(index)
        epoch, pos = divmod(int(index), self._units())
        unit = int(self._order(epoch)[pos])
        if self.pool is not None:
            s, top, left = (int(v) for v in self.pool[unit])
        else:
            s, top, left = unit, 0, 0
        row, p = self.scenes.rows[s], self.patch_size
        height, width = (self.window, self.window) if self.pool is not None else (row["height"], row["width"])
        state = ((self.seed & 0xFFFFFFFF) << 32 | (int(index) & 0xFFFFFFFF)) ^ (int(index) >> 32) * 0x632BE5AB
        state, ry = _splitmix64(state)
        state, rx = _splitmix64(state)
        state, rf = _splitmix64(state)
        y = top + ry % (height - p + 1)  # modulo bias < 1e-14 for image-sized ranges
        x = left + rx % (width - p + 1)
        if self.augment == "dp_flips":
            hflip = bool(rf & 1)
            return PatchDraw(s, int(y), int(x), vflip=bool(rf & 2), hflip=hflip, swap_views=hflip)
        if self.augment == "restormer_dihedral":
            vflip, hflip, rot = RESTORMER_MODES[rf % 8]
            return PatchDraw(s, int(y), int(x), vflip, hflip, rot)
        if self.augment == "deeprft_modes":
            vflip, hflip, rot = DEEPRFT_MODES[rf % 9]
            state, rs = _splitmix64(state)
            _, ru = _splitmix64(state)
            # DeepRFT: randint(0, 2) == 1 (a third of the draws), factor 1 + (0.2 - 0.4 * U[0, 1))
            factor = 1.0 + (0.2 - 0.4 * (ru >> 11) / float(1 << 53)) if rs % 3 == 1 else 1.0
            return PatchDraw(s, int(y), int(x), vflip, hflip, rot, saturation=factor)
        return PatchDraw(s, int(y), int(x))

    def __getitem__(self, index: int) -> dict:
        d = self.sample_params(index)
        s, p = d.scene, self.patch_size
        views = {}
        camera_c = feeds_camera_combined(self.combined_input, self.scenes.rows[s]["files"])
        kinds = ("combined", "target") if camera_c else VIEWS
        if self.scenes.blurmap_dir:
            kinds += ("blurmap",)
        for kind in kinds:
            crop = crop_u16(self.scenes.array(s, kind), d.top, d.left, p, d.hflip, d.vflip, d.rot90)
            if d.saturation != 1.0 and kind != "blurmap":
                crop = saturate_u16(crop, d.saturation)
            views[kind] = torch.from_numpy(crop)
        if camera_c:
            views["left"] = views["right"] = views.pop("combined")
        elif d.swap_views:  # mirrored left half-aperture image is the right view of the mirrored scene
            views["left"], views["right"] = views["right"], views["left"]
        if "blurmap" not in views:
            views["blurmap"] = torch.zeros(1, p, p, dtype=torch.uint16)
        views["scene"] = self.scenes.rows[s]["scene"]
        return views


class DPImageDataset(Dataset):
    """Full images for evaluation: ``left, right`` (+ ``target``, ``combined`` when present) 3xHxW float32,
    ``blurmap`` 1xHxW (zeros without ``blurmap_dir``), ``scene``, ``category``. Portrait frames keep their shape.
    """

    def __init__(self, root, split: str, blurmap_dir=None, cache_dir=None, progress: bool = True,
                 combined_input: bool = False):
        self.scenes = _CachedScenes(root, split, blurmap_dir, _views(True), ("left", "right"), cache_dir, progress)
        self.combined_input = combined_input

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict:
        row = self.scenes.rows[index]
        out = {k: _to_float(self.scenes.array(index, k)) for k in row["files"] if k != "blurmap"}
        if feeds_camera_combined(self.combined_input, row["files"]):
            out["left"] = out["right"] = out["combined"]
        if "blurmap" in row["files"]:
            out["blurmap"] = _to_float(self.scenes.array(index, "blurmap"))
        else:
            out["blurmap"] = torch.zeros(1, row["height"], row["width"])
        out["scene"] = row["scene"]
        out["category"] = row["category"]
        return out


def _views(combined_input: bool) -> tuple[str, ...]:
    return (*VIEWS, "combined") if combined_input else VIEWS


def feeds_camera_combined(combined_input: bool, files: dict) -> bool:
    """Whether a combined-input model gets the scene's camera combined image C (it has one) rather than (L+R)/2."""
    return combined_input and "combined" in files


class ShardedBatchSampler(Sampler[list[int]]):
    """Batches of global sample counters for one rank, fully determined by the step number.

    ``DPPatchDataset`` item ``i`` depends only on ``(seed, i)`` (scene order per epoch, crop and flips), so the
    sample stream is the counter ``0, 1, 2, ...``. Optimiser step ``k`` of a phase uses counters
    ``base + [k*G, (k+1)*G)`` with ``G = world*batch`` and ``base`` the samples drawn by earlier phases; rank
    ``r`` takes the ``r``-th block of ``batch``. Two ranks with batch ``b`` therefore see exactly the samples one
    process with batch ``2b`` sees, and resuming is starting at a later step.
    """

    def __init__(self, batch: int, steps: int, *, base: int = 0, rank: int = 0, world: int = 1,
                 start_step: int = 0):
        self.batch, self.steps, self.base = batch, steps, base
        self.rank, self.world, self.start_step = rank, world, start_step

    def indices_for_step(self, step: int) -> list[int]:
        start = self.base + (step * self.world + self.rank) * self.batch
        return list(range(start, start + self.batch))

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.steps):
            yield self.indices_for_step(step)

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)
