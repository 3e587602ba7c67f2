"""Patch sampler: one crop for L/R/target/blur map, the augmentations (DP-aware flips, Restormer's dihedral
transforms, DeepRFT's modes and saturation), Restormer's patch pool, determinism, cache, full images."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ldp.blurmap.io import write_meta
from ldp.data.manifest import write_manifest
from ldp.data.sampler import (
    DEEPRFT_MODES,
    RESTORMER_MODES,
    DPImageDataset,
    DPPatchDataset,
    ShardedBatchSampler,
    _to_float,
    crop_u16,
    kept_windows,
    saturate_u16,
    to_unit_float,
    window_starts,
)
from ldp.data.sources import DatasetError
from ldp.imageio import read_image, write_image

H, W = 40, 56
OFFSET = {"left": 0, "right": 10_000, "target": 20_000}  # channel 0 = offset + y*W + x


def _coded(kind: str, scene: int, h: int = H, w: int = W) -> np.ndarray:
    pos = np.arange(h * w, dtype=np.uint16).reshape(h, w)
    img = np.stack([pos + OFFSET[kind], np.full_like(pos, scene), np.full_like(pos, 7)], axis=2)
    return img.astype(np.uint16)


def make_root(root: Path, scenes: int = 3, portrait_scene: bool = False, maps: bool = True) -> Path:
    rows = []
    for i in range(scenes):
        h, w = (W, H) if portrait_scene and i == scenes - 1 else (H, W)
        paths = {"left": f"dd_dp_dataset_canon/train_l/source/s{i}_L.png",
                 "right": f"dd_dp_dataset_canon/train_r/source/s{i}_R.png",
                 "target": f"dd_dp_dataset_canon/train_c/target/s{i}.png"}
        for kind, rel in paths.items():
            write_image(root / rel, _coded(kind, i, h, w))
        rows.append({"scene": f"s{i}", "split": "train", "height": h, "width": w, "bit_depth": 16, **paths})
        if maps:  # a map at full resolution: bilinear "upsampling" is the identity, so it encodes position too
            (root / "maps").mkdir(exist_ok=True)
            np.save(root / "maps" / f"s{i}.npy", (np.arange(h * w).reshape(h, w) / 65535).astype(np.float32))
            write_meta(root / "maps", {"estimator": "test", "patch_size": None})
    write_manifest(root, rows)
    return root


@pytest.fixture()
def root(tmp_path):
    return make_root(tmp_path / "ds")


def _pos(t: torch.Tensor, offset: int) -> np.ndarray:
    return np.rint(to_unit_float(t)[0].numpy() * 65535).astype(np.int64) - offset


def _expected(y, x, p, hflip, vflip):
    pos = np.arange(H * W).reshape(H, W)[y:y + p, x:x + p]
    if vflip:
        pos = pos[::-1]
    if hflip:
        pos = pos[:, ::-1]
    return pos


def test_same_crop_for_all_views_and_map(root):
    ds = DPPatchDataset(root, "train", 16, blurmap_dir=root / "maps", augment=False, seed=3, progress=False)
    for i in range(12):
        d = ds.sample_params(i)
        s, y, x = d.scene, d.top, d.left
        assert (d.hflip, d.vflip, d.rot90, d.swap_views, d.saturation) == (False, False, 0, False, 1.0)
        item = ds[i]
        exp = _expected(y, x, 16, False, False)
        for kind in ("left", "right", "target"):
            assert item[kind].shape == (3, 16, 16) and item[kind].dtype == torch.uint16
            np.testing.assert_array_equal(_pos(item[kind], OFFSET[kind]), exp)
            assert np.allclose(to_unit_float(item[kind])[1].numpy() * 65535, s)  # right scene
        assert item["blurmap"].shape == (1, 16, 16) and item["blurmap"].dtype == torch.uint16
        np.testing.assert_array_equal(_pos(item["blurmap"], 0), exp)
        assert item["scene"] == f"s{s}"


def test_hflip_swaps_left_and_right_vflip_does_not(root):
    ds = DPPatchDataset(root, "train", 16, blurmap_dir=root / "maps", augment=True, seed=0, progress=False)
    seen = set()
    for i in range(64):
        d = ds.sample_params(i)
        y, x, hflip, vflip = d.top, d.left, d.hflip, d.vflip
        assert d.rot90 == 0 and d.swap_views == hflip and d.saturation == 1.0
        seen.add((hflip, vflip))
        item = ds[i]
        exp = _expected(y, x, 16, hflip, vflip)
        # after a horizontal flip the left output is the mirrored RIGHT view (and vice versa)
        left_src, right_src = ("right", "left") if hflip else ("left", "right")
        np.testing.assert_array_equal(_pos(item["left"], OFFSET[left_src]), exp)
        np.testing.assert_array_equal(_pos(item["right"], OFFSET[right_src]), exp)
        np.testing.assert_array_equal(_pos(item["target"], OFFSET["target"]), exp)
        np.testing.assert_array_equal(_pos(item["blurmap"], 0), exp)
    assert seen == {(False, False), (False, True), (True, False), (True, True)}  # flips only, no rotations


def test_deterministic_per_seed_and_index(root, tmp_path):
    a = DPPatchDataset(root, "train", 16, seed=11, progress=False)
    b = DPPatchDataset(root, "train", 16, seed=11, progress=False)  # e.g. a resumed run
    c = DPPatchDataset(root, "train", 16, seed=12, progress=False)
    idx = [0, 1, 2, 5, 17, 1000]  # indices beyond len() are later epochs
    for i in idx:
        x, y = a[i], b[i]
        for k in ("left", "right", "target", "blurmap"):
            assert torch.equal(x[k], y[k])
        assert x["scene"] == y["scene"]
    assert [a.sample_params(i) for i in idx] != [c.sample_params(i) for i in idx]
    # every epoch visits every scene once, in a seed-dependent order
    for epoch in range(3):
        assert sorted(a.sample_params(epoch * 3 + k).scene for k in range(3)) == [0, 1, 2]
    assert len(a) == 3 and len(DPPatchDataset(root, "train", 16, patches_per_image=5, progress=False)) == 15


def test_sharded_sampler_matches_single_process_batches():
    single = ShardedBatchSampler(4, steps=5, base=100)
    ranks = [ShardedBatchSampler(2, steps=5, base=100, rank=r, world=2) for r in range(2)]
    for step, batch in enumerate(single):
        assert sorted(ranks[0].indices_for_step(step) + ranks[1].indices_for_step(step)) == batch
    resumed = ShardedBatchSampler(4, steps=5, base=100, start_step=3)
    assert list(resumed) == list(single)[3:]
    assert len(resumed) == 2


def test_worker_pickling_and_dataloader(root):
    ds = DPPatchDataset(root, "train", 16, seed=1, progress=False)
    ds[0]  # opens memmaps in this process
    loader = torch.utils.data.DataLoader(ds, batch_sampler=ShardedBatchSampler(4, steps=3, start_step=1),
                                         num_workers=0)
    batches = list(loader)
    assert len(batches) == 2
    assert batches[0]["left"].shape == (4, 3, 16, 16)
    assert torch.equal(batches[1]["right"][2], ds[10]["right"])
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.scenes._maps == {} and torch.equal(clone[3]["left"], ds[3]["left"])


def test_cache_is_uint16_memmap_built_once(root):
    DPPatchDataset(root, "train", 16, progress=False)
    files = sorted((root / ".cache" / "train").rglob("*.npy"))
    assert len(files) == 9
    arr = np.load(files[0], mmap_mode="r")
    assert arr.dtype == np.uint16 and arr.shape == (3, H, W)
    mtimes = [f.stat().st_mtime_ns for f in files]
    DPPatchDataset(root, "train", 16, progress=False)
    assert [f.stat().st_mtime_ns for f in files] == mtimes


def test_eight_bit_scale_and_full_images(tmp_path):
    root = tmp_path / "ds8"
    rng = np.random.default_rng(0)
    rows = []
    for i, (h, w) in enumerate(((H, W), (W, H))):  # one landscape, one portrait frame
        paths = {"left": f"l{i}.png", "right": f"r{i}.png"}
        for rel in paths.values():
            write_image(root / rel, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        rows.append({"scene": f"q{i}", "split": "test", "height": h, "width": w, "bit_depth": 8, **paths})
    write_manifest(root, rows)
    ds = DPImageDataset(root, "test", progress=False)
    for i in range(2):
        item = ds[i]
        ref = read_image(root / f"l{i}.png")
        assert item["left"].shape == (3, *ref.shape[:2])
        np.testing.assert_allclose(item["left"].permute(1, 2, 0).numpy(), ref, atol=1e-6)
        assert "target" not in item and item["blurmap"].shape == (1, *ref.shape[:2])
        assert float(item["blurmap"].abs().sum()) == 0
    with pytest.raises(DatasetError, match="no target"):
        DPPatchDataset(root, "test", 16, progress=False)


def test_portrait_and_too_small(tmp_path):
    root = make_root(tmp_path / "p", portrait_scene=True, maps=False)
    ds = DPPatchDataset(root, "train", 32, seed=0, progress=False)
    for i in range(9):
        assert ds[i]["left"].shape == (3, 32, 32)
    with pytest.raises(DatasetError, match="smaller than patch_size"):
        DPPatchDataset(root, "train", 48, progress=False)
    with pytest.raises(DatasetError, match="no scenes in split 'val'"):
        DPPatchDataset(root, "val", 16, progress=False)


def test_missing_blurmap_and_upsampling(root, tmp_path):
    (root / "maps" / "s1.npy").unlink()
    with pytest.raises(DatasetError, match="s1.npy"):
        DPPatchDataset(root, "train", 16, blurmap_dir=root / "maps", progress=False)
    maps = tmp_path / "grid"  # a coarse grid is upsampled bilinearly to the image size
    maps.mkdir()
    for i in range(3):
        np.save(maps / f"s{i}.npy", np.linspace(0, 1, 7 * 4, dtype=np.float32).reshape(4, 7))
    write_meta(maps, {"estimator": "test", "patch_size": 8})
    ds = DPImageDataset(root, "train", blurmap_dir=maps, progress=False)
    m = ds[0]["blurmap"]
    assert m.shape == (1, H, W) and 0 <= float(m.min()) < float(m.max()) <= 1


def test_unit_float_matches_the_evaluation_scale():
    every_value = np.arange(65536, dtype=np.uint16).reshape(1, 256, 256)
    batch = torch.from_numpy(every_value)[None]
    as_float = to_unit_float(batch, "cpu")
    assert as_float.dtype == torch.float32 and float(as_float.min()) == 0.0 and float(as_float.max()) == 1.0
    assert torch.equal(as_float[0], _to_float(every_value))  # training and evaluation see identical values
    already_float = torch.rand(2, 3, 4, 4)
    assert torch.equal(to_unit_float(already_float), already_float)


# ---------------------------------------------------------------------------------------------------------------
# The official augmentations and Restormer's patch pool


def _restormer_official(a: np.ndarray, mode: int) -> np.ndarray:
    """Restormer's data_augmentation(image, mode) on an HxWxC array, as its transforms.py defines the 8 modes."""
    flipud, rot = np.flipud, np.rot90
    return [a, flipud(a), rot(a), flipud(rot(a)), rot(a, k=2), flipud(rot(a, k=2)), rot(a, k=3),
            flipud(rot(a, k=3))][mode]


def _deeprft_official(t: torch.Tensor, aug: int) -> torch.Tensor:
    """DeepRFT's dataset_RGB.py branches for aug = randint(0, 8) on a CxHxW tensor (8 falls through)."""
    r = torch.rot90
    return [t, t.flip(1), t.flip(2), r(t, dims=(1, 2)), r(t, dims=(1, 2), k=2), r(t, dims=(1, 2), k=3),
            r(t.flip(1), dims=(1, 2)), r(t.flip(2), dims=(1, 2)), t][aug]


def test_restormer_modes_are_its_eight_dihedral_transforms():
    arr = np.random.default_rng(0).integers(0, 65535, (3, 20, 20), dtype=np.uint16)
    for mode, (vflip, hflip, rot) in enumerate(RESTORMER_MODES):
        ours = crop_u16(arr, 2, 3, 16, hflip, vflip, rot)
        official = _restormer_official(arr[:, 2:18, 3:19].transpose(1, 2, 0), mode).transpose(2, 0, 1)
        np.testing.assert_array_equal(ours, official, err_msg=f"mode {mode}")
    assert len({crop_u16(arr, 0, 0, 16, h, v, r).tobytes() for v, h, r in RESTORMER_MODES}) == 8


def test_deeprft_modes_are_its_nine_draws():
    arr = np.random.default_rng(1).integers(0, 65535, (3, 16, 16), dtype=np.uint16)
    for aug, (vflip, hflip, rot) in enumerate(DEEPRFT_MODES):
        ours = crop_u16(arr, 0, 0, 16, hflip, vflip, rot)
        official = _deeprft_official(torch.from_numpy(arr.astype(np.int32)), aug).numpy()
        np.testing.assert_array_equal(ours, official, err_msg=f"aug {aug}")


def test_saturation_matches_pil_color_enhance():
    from PIL import Image, ImageEnhance

    rgb8 = np.random.default_rng(2).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    for factor in (0.8, 1.13):
        pil = np.asarray(ImageEnhance.Color(Image.fromarray(rgb8)).enhance(factor)).astype(np.float64)
        ours = saturate_u16(rgb8.transpose(2, 0, 1).astype(np.uint16) * 257, factor).transpose(1, 2, 0) / 257
        assert np.abs(ours - pil).max() <= 1.5  # PIL rounds its grey and its result to 8 bits


def _expected_views(ds, i):
    d = ds.sample_params(i)
    return d, {k: crop_u16(ds.scenes.array(d.scene, k), d.top, d.left, ds.patch_size, d.hflip, d.vflip, d.rot90)
               for k in ("left", "right", "target", "blurmap")}


def test_restormer_dihedral_transforms_every_view_alike_and_never_swaps(root):
    ds = DPPatchDataset(root, "train", 16, blurmap_dir=root / "maps", augment="restormer_dihedral", seed=5,
                        progress=False)
    seen = set()
    for i in range(160):
        d, expected = _expected_views(ds, i)
        item = ds[i]
        seen.add((d.vflip, d.hflip, d.rot90))
        assert not d.swap_views and d.saturation == 1.0
        for kind, want in expected.items():  # left stays the (transformed) left view: no L/R swap
            np.testing.assert_array_equal(item[kind].numpy(), want)
    assert seen == set(RESTORMER_MODES)  # all 8 transforms, rotations included


def test_deeprft_modes_and_saturation(root):
    ds = DPPatchDataset(root, "train", 16, blurmap_dir=root / "maps", augment="deeprft_modes", seed=2,
                        progress=False)
    draws = [ds.sample_params(i) for i in range(900)]
    saturated = [d.saturation for d in draws if d.saturation != 1.0]
    assert 0.28 < len(saturated) / len(draws) < 0.39  # randint(0, 2) == 1
    assert min(saturated) >= 0.8 and max(saturated) <= 1.2
    identity = sum((d.vflip, d.hflip, d.rot90) == (False, False, 0) for d in draws) / len(draws)
    assert 0.17 < identity < 0.28  # modes 0 and 8 of 9
    i = next(i for i, d in enumerate(draws) if d.saturation != 1.0 and d.rot90)
    d, expected = _expected_views(ds, i)
    item = ds[i]
    for kind in ("left", "right", "target"):
        np.testing.assert_array_equal(item[kind].numpy(), saturate_u16(expected[kind], d.saturation))
    np.testing.assert_array_equal(item["blurmap"].numpy(), expected["blurmap"])  # the map is not colour-jittered
    again = DPPatchDataset(root, "train", 16, blurmap_dir=root / "maps", augment="deeprft_modes", seed=2,
                           progress=False)
    assert all(torch.equal(again[i][k], item[k]) for k in ("left", "right", "target", "blurmap"))


def test_window_starts_follow_restormer_slicing():
    assert window_starts(1120, 512, 204) == [0, 204, 408, 608]  # the last window flush with the bottom edge
    assert window_starts(1680, 512, 204) == [0, 204, 408, 612, 816, 1020, 1168]
    assert window_starts(512, 512, 204) == [0]
    assert window_starts(96, 80, 32) == [0, 16] and window_starts(160, 80, 32) == [0, 32, 64, 80]


def test_pool_drops_the_least_sharp_windows():
    rng = np.random.default_rng(3)
    ramp = np.linspace(0.05, 1.0, 160)[None, :]  # texture strength grows to the right
    grey = (rng.random((96, 160)) * ramp * 60000).astype(np.uint16)
    target = np.stack([grey] * 3)
    kept = kept_windows(target, 80, 32, 0.3)
    assert len(kept) == 8 - int(0.3 * 8)
    assert set(kept) == {(y, x) for y in (0, 16) for x in (32, 64, 80)}  # both x=0 windows dropped
    assert len(kept_windows(target, 80, 32, 0.0)) == 8


def test_patches_come_from_the_kept_pool_windows(root):
    from types import SimpleNamespace

    pool = SimpleNamespace(size=24, stride=16, drop_fraction=0.3)
    ds = DPPatchDataset(root, "train", 16, augment="none", seed=1, progress=False, patch_pool=pool)
    windows = {s: kept_windows(ds.scenes.array(s, "target"), 24, 16, 0.3) for s in range(3)}
    assert len(ds) == sum(map(len, windows.values())) == 3 * (6 - 1)
    for i in range(2 * len(ds)):
        d = ds.sample_params(i)
        assert any(y <= d.top <= y + 8 and x <= d.left <= x + 8 for y, x in windows[d.scene])
    cached = list((root / ".cache" / "patch_pool").glob("*.npy"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    DPPatchDataset(root, "train", 16, progress=False, patch_pool=pool)
    assert cached[0].stat().st_mtime_ns == mtime  # computed once per (images, pool settings)
    with pytest.raises(DatasetError, match="smaller than the patch pool's 48-px windows"):
        DPPatchDataset(root, "train", 16, progress=False, patch_pool=SimpleNamespace(size=48, stride=16,
                                                                                     drop_fraction=0.3))
