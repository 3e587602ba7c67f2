"""Blur-map speed per CLIP variant on a 1120×1680 DP pair (1176 40-px patches), and estimator accuracy on
toy DP scenes with known defocus.

    python benchmarks/bench_blurmap.py                      # full image, all variants, CPU (+ GPU if present)
    python benchmarks/bench_blurmap.py --patches 96         # time 96 patches, extrapolate to 1176
    python benchmarks/bench_blurmap.py --accuracy-only

Weights are random init (``--weights none``) unless given: speed does not depend on the weights, accuracy does
(random-weight CLIP rows are labelled so).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ldp.blurmap import ClipBlurEstimator, classical_blurmap, load_clip, oracle_blurmap, score_blurmap
from ldp.blurmap.common import to_nchw
from ldp.blurmap.toy import toy_dp_scene

H, W, P = 1120, 1680, 40


def time_variant(model: str, weights: str, device: str, patches: int, batch_size: int) -> dict:
    loaded = load_clip(model, weights, device)
    est = ClipBlurEstimator(loaded, "ours", batch_size=batch_size)
    g = torch.Generator().manual_seed(0)
    left, right = torch.rand(1, 3, H, W, generator=g), torch.rand(1, 3, H, W, generator=g)
    total = (H // P) * (W // P)
    if patches and patches < total:
        rows = -(-patches // (W // P))  # whole patch rows covering the requested count
        left, right = left[..., : rows * P, :], right[..., : rows * P, :]
    n = (left.shape[-2] // P) * (W // P)
    est.blur_map(left[..., :P, : 2 * P], right[..., :P, : 2 * P])  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    est.blur_map(left, right)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"model": model, "device": device, "patches_timed": n, "seconds": dt,
            "per_image_s": dt * total / n, "weights_kind": loaded.weights_kind}


def accuracy(weights: str, seeds: int, device: str) -> list[tuple[str, float, float]]:
    rows: dict[str, list[tuple[float, float]]] = {}
    loaded = {m: load_clip(m, weights, device) for m in ("ViT-B-32",)}
    clip_estimators = {f"clip {m} {fmt} ({v.weights_kind} weights)": ClipBlurEstimator(v, fmt)
                       for m, v in loaded.items() for fmt in ("ours", "diff_lr", "inconsistent", "halves")}
    for seed in range(seeds):
        s = toy_dp_scene(240, 360, seed=seed)
        left, right, gt = to_nchw(s["left"]), to_nchw(s["right"]), s["defocus"]
        maps = {"oracle (GT defocus)": oracle_blurmap(gt)[0],
                "classical (ZNCC |disparity|)": classical_blurmap(left, right)[0],
                "constant map": np.zeros((6, 9))}
        maps.update({k: e.blur_map(left, right)[0] for k, e in clip_estimators.items()})
        for k, m in maps.items():
            r = score_blurmap(m, gt)
            rows.setdefault(k, []).append((r["spearman"], r["mae"]))
    return [(k, float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v]))) for k, v in rows.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["ViT-B-32", "ViT-B-16", "RN50"])
    ap.add_argument("--weights", default="none", help="openai | none | checkpoint path")
    ap.add_argument("--patches", type=int, default=0, help="time this many patches and extrapolate (0 = all)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    ap.add_argument("--accuracy-only", action="store_true")
    ap.add_argument("--accuracy-seeds", type=int, default=5)
    args = ap.parse_args()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, CUDA {torch.cuda.is_available()}")
    if not args.accuracy_only:
        print(f"\nblur-map time per {H}x{W} DP pair ({(H // P) * (W // P)} patches, format 'ours'):")
        print(f"{'model':10s} {'device':6s} {'timed':>6s} {'seconds':>8s} {'s/image':>8s}  weights")
        for dev in devices:
            for model in args.models:
                r = time_variant(model, args.weights, dev, args.patches, args.batch_size)
                print(f"{r['model']:10s} {r['device']:6s} {r['patches_timed']:6d} {r['seconds']:8.1f} "
                      f"{r['per_image_s']:8.1f}  {r['weights_kind']}", flush=True)
    print(f"\nestimator accuracy vs |defocus| on {args.accuracy_seeds} toy DP scenes (240x360, 6x9 patches):")
    print(f"{'estimator':55s} {'spearman':>8s} {'mae':>6s}")
    for name, rho, mae in accuracy(args.weights, args.accuracy_seeds, devices[-1]):
        print(f"{name:55s} {rho:8.3f} {mae:6.3f}")


if __name__ == "__main__":
    main()
