"""Evaluation cost split into model time and metric time at full DPDD resolution (1120×1680).

    python benchmarks/bench_eval.py --model ldp-small            # random init, whole-image forward
    python benchmarks/bench_eval.py --metrics-only               # metrics alone (no model)
    python benchmarks/bench_eval.py --model nafnet-dp --device cuda --repeats 5

The protocol target: metrics cost at most 10 % of model time. Prints one line per stage and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ldp.device import resolve_device
from ldp.evaluate import restore
from ldp.metrics import compute_metrics, load_lpips, mae, psnr, rmse, ssim
from ldp.registry import build_model, get_spec


def _timed(fn, device: torch.device, repeats: int) -> tuple[float, float, object]:
    """Median wall time and median process CPU time (steadier than wall time on a shared machine)."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ldp-small")
    ap.add_argument("--height", type=int, default=1120)
    ap.add_argument("--width", type=int, default=1680)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--metrics-only", action="store_true", help="time the metrics alone")
    ap.add_argument("--reference-model-s", type=float, default=35.0,
                    help="model time to compare against with --metrics-only (a 26M-param net on CPU)")
    args = ap.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    shape = (1, 3, args.height, args.width)
    target = torch.rand(shape, device=device)
    left = (target + 0.05 * torch.randn_like(target)).clamp(0, 1)
    right = (target + 0.05 * torch.randn_like(target)).clamp(0, 1)
    print(f"device {device}, threads {torch.get_num_threads()}, image {args.height}x{args.width}, "
          f"median of {args.repeats}")

    model_s = model_cpu = args.reference_model_s
    pred = left
    if not args.metrics_only:
        spec = get_spec(args.model)
        model = build_model(args.model).to(device).eval()
        n_params = sum(p.numel() for p in model.parameters())
        bmap = torch.rand(1, 1, args.height, args.width, device=device) if spec.input_kind == "dp+blurmap" else None
        model_s, model_cpu, pred = _timed(
            lambda: restore(model, spec.input_kind, left, right, bmap, spec.inference, 512, 64), device, args.repeats
        )
        print(f"model {args.model} ({n_params / 1e6:.2f} M params, {spec.inference}): "
              f"wall {model_s:.3f} s, cpu {model_cpu:.3f} s")
    else:
        print(f"model time taken as {model_s:.1f} s (--reference-model-s)")

    for name, fn in (("psnr", psnr), ("ssim", ssim), ("mae", mae), ("rmse", rmse)):
        t, c, _ = _timed(lambda fn=fn: fn(pred, target), device, args.repeats)
        print(f"  {name:<6} wall {t:.3f} s, cpu {c:.3f} s")
    metric_s, metric_cpu, _ = _timed(lambda: compute_metrics(pred, target), device, args.repeats)
    print(f"metrics (psnr+ssim+mae+rmse): wall {metric_s:.3f} s = {100 * metric_s / model_s:.1f} % of model wall; "
          f"cpu {metric_cpu:.3f} s = {100 * metric_cpu / model_cpu:.1f} % of model cpu")
    lpips_model, reason = load_lpips(device)
    if lpips_model is not None:
        lp_s, lp_cpu, _ = _timed(lambda: compute_metrics(pred, target, lpips=lpips_model), device, args.repeats)
        print(f"metrics + LPIPS-Alex: wall {lp_s:.3f} s = {100 * lp_s / model_s:.1f} % of model wall; "
              f"cpu {lp_cpu:.3f} s = {100 * lp_cpu / model_cpu:.1f} % of model cpu")
    else:
        print(f"LPIPS unavailable: {reason}")


if __name__ == "__main__":
    main()
