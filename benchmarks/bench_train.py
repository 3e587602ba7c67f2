"""Training throughput (optimiser steps per second) of every registered model at 256x256 patches.

Times the trainer's own step (``ldp.train.Engine.step``: forward, loss, backward, clipping, AdamW, scheduler) on
random tensors, so the data pipeline is not part of the figure. CPU always; the GPU too when one is visible
(bf16 autocast, channels_last; ``--compile`` adds torch.compile).

    python benchmarks/bench_train.py                      # all models, CPU (+ GPU if present)
    python benchmarks/bench_train.py --models 'ldp-*' --steps 5 --batch 2
"""

from __future__ import annotations

import argparse
import fnmatch
import time

import torch

from ldp.losses import LossConfig
from ldp.registry import get_spec, list_models
from ldp.train import Engine, OptimConfig, Runtime, TrainConfig


def _register_baselines() -> None:
    try:
        import baselines  # noqa: F401  (the entry point does the same when the package is installed)
    except ImportError:
        pass


def bench(name: str, device: torch.device, patch: int, batch: int, steps: int, warmup: int, compile_: bool,
          tiny: bool) -> dict:
    precision = "bf16" if device.type == "cuda" else "fp32"
    cfg = TrainConfig(iters=steps + warmup, patch_size=patch, batch_size=batch, device=device.type,
                      precision=precision, compile=compile_, optim=OptimConfig(grad_clip=0.01),
                      loss=LossConfig(charbonnier=1.0), model_overrides={"tiny": True} if tiny else {})
    engine = Engine(cfg, name, Runtime(device, precision=precision))
    gen = torch.Generator().manual_seed(0)
    batch_data = {k: torch.rand(batch, 3, patch, patch, generator=gen) for k in ("left", "right", "target")}
    batch_data["blurmap"] = torch.rand(batch, 1, patch, patch, generator=gen)
    for _ in range(warmup):
        engine.step(batch_data)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        engine.step(batch_data)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    params = sum(p.numel() for p in engine.module.parameters()) / 1e6
    return {"model": name, "device": str(device), "precision": precision, "batch": batch, "patch": patch,
            "params_m": params, "it_s": steps / seconds, "s_it": seconds / steps, "peak_gib": mem}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="*", help="glob over registered model names (default: all)")
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1, help="CPU batch size (default 1)")
    parser.add_argument("--gpu-batch", type=int, default=8, help="GPU batch size (default 8)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps on CPU (GPU: 10x)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = PyTorch default)")
    parser.add_argument("--compile", action="store_true", help="torch.compile on the GPU")
    parser.add_argument("--tiny", action="store_true", help="the models' tiny test configs")
    parser.add_argument("--cpu-only", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    _register_baselines()
    names = [n for n in list_models() if fnmatch.fnmatch(n, args.models)]
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda", 0))
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, "
          f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    header = f"{'model':18s} {'input':11s} {'device':7s} {'prec':5s} {'batch':>5s} {'patch':>5s} " \
             f"{'params M':>8s} {'it/s':>8s} {'s/it':>8s} {'peak GiB':>8s}"
    print(header)
    print("-" * len(header))
    for device in devices:
        for name in names:
            on_gpu = device.type == "cuda"
            try:
                r = bench(name, device, args.patch, args.gpu_batch if on_gpu else args.batch,
                          args.steps * (10 if on_gpu else 1), args.warmup * (3 if on_gpu else 1),
                          args.compile and on_gpu, args.tiny)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                print(f"{name:18s} {device.type:7s} failed: {type(exc).__name__}: {str(exc)[:120]}")
                continue
            print(f"{name:18s} {get_spec(name).input_kind:11s} {device.type:7s} {r['precision']:5s} "
                  f"{r['batch']:5d} {r['patch']:5d} {r['params_m']:8.2f} {r['it_s']:8.3f} {r['s_it']:8.3f} "
                  + (f"{r['peak_gib']:8.2f}" if on_gpu else f"{'-':>8s}"), flush=True)


if __name__ == "__main__":
    main()
