"""Loader throughput: 256x256 DP training patches per second on one core, from the uint16 cache.

A patch is what DPPatchDataset returns for training: left, right, target (3x256x256 uint16 each), a 1x256x256
blur map and the scene name, with the --augment mode (default dp_flips; the trainer casts the batch to float on
its device), optionally cropped from Restormer's patch pool (--pool: 512-px windows, stride 204, 30 % dropped). The
dataset is a temporary set of random 16-bit 1680x1120 scenes (DPDD size) unless --root points at a prepared
dataset. Target: >= 2000 patches/s.

Two figures: "first pass" includes mapping each cache page into the process the first time a crop touches it
(paid once per process and page); "steady state" is every later epoch, with the pages mapped.

    python benchmarks/bench_loader.py [--root data/synthetic --split train] [--patches 4000] [--blurmaps]
                                      [--augment restormer_dihedral] [--pool]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ldp.blurmap.io import write_meta
from ldp.data.manifest import write_manifest
from ldp.data.sampler import AUGMENTS, DPPatchDataset
from ldp.imageio import write_image
from ldp.train.config import PatchPoolConfig


def make_random_dataset(root: Path, scenes: int = 4, height: int = 1120, width: int = 1680,
                        blurmaps: bool = False) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(scenes):
        name = f"scene{i:03d}"
        paths = {"left": f"dd_dp_dataset_canon/train_l/source/{name}_L.png",
                 "right": f"dd_dp_dataset_canon/train_r/source/{name}_R.png",
                 "target": f"dd_dp_dataset_canon/train_c/target/{name}.png"}
        for rel in paths.values():
            write_image(root / rel, rng.integers(0, 65536, (height, width, 3), dtype=np.uint16))
        rows.append({"scene": name, "split": "train", "height": height, "width": width, "bit_depth": 16,
                     **paths})
        if blurmaps:
            (root / "maps").mkdir(exist_ok=True)
            np.save(root / "maps" / f"{name}.npy", rng.random((height // 40, width // 40), dtype=np.float32))
            write_meta(root / "maps", {"estimator": "random (benchmark)", "patch_size": 40})
    write_manifest(root, rows)
    return root


def time_patches(ds: DPPatchDataset, count: int) -> tuple[float, float]:
    """(wall, process CPU) seconds to fetch ``count`` patches."""
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(count):
        ds[i]
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="prepared dataset root (default: a temporary random one)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--patches", type=int, default=4000)
    parser.add_argument("--blurmaps", action="store_true", help="also crop a cached blur map")
    parser.add_argument("--augment", choices=AUGMENTS, default="dp_flips")
    parser.add_argument("--pool", action="store_true", help="crop from Restormer's patch pool (512, 204, 0.3)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or make_random_dataset(Path(tmp), blurmaps=args.blurmaps)
        blurmap_dir = root / "maps" if args.blurmaps and args.root is None else None
        t0 = time.perf_counter()
        ds = DPPatchDataset(root, args.split, args.patch, blurmap_dir=blurmap_dir, augment=args.augment, seed=0,
                            progress=False, patch_pool=PatchPoolConfig() if args.pool else None)
        build = time.perf_counter() - t0
        first_wall, first_cpu = time_patches(ds, args.patches)
        for s in range(len(ds.scenes)):  # map every cache page, as after the first epoch of a long run
            for kind in ds.scenes.rows[s]["files"]:
                ds.scenes.array(s, kind).max()
        elapsed, cpu = time_patches(ds, args.patches)
    rate, cpu_rate = args.patches / elapsed, args.patches / cpu
    print(f"scenes={len(ds.scenes)} augment={args.augment} pool={len(ds.pool) if ds.pool is not None else 'none'} "
          f"cache build/open {build:.2f} s")
    print(f"first pass (pages mapped on first touch): {args.patches / first_cpu:.0f} patches/s of CPU time, "
          f"{args.patches / first_wall:.0f} wall clock")
    print(f"steady state: {cpu_rate:.0f} patches/s of CPU time, {rate:.0f} wall clock "
          "(the two differ when other processes share the core)")
    print(f"{args.patch}x{args.patch} DP patches/s on one core: {cpu_rate:.0f} ({1e6 / cpu_rate:.0f} us/patch "
          f"of CPU; target >= 2000: {'PASS' if cpu_rate >= 2000 else 'BELOW TARGET'})")


if __name__ == "__main__":
    main()
