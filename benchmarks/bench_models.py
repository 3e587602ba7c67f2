"""Forward time and peak memory of every registered model, whole-image, 1-sample batch.

CPU: each (model, size) runs in a fresh spawned process, so its peak RSS (``ru_maxrss``) is its own; the table
gives the peak and the part above the process's RSS after building the model and the input ("activations").
A 1120x1680 case is skipped, with the reason printed, when the estimate from the model's 256x256 run says it
would not fit in the available memory or would take longer than ``--max-seconds``.
GPU (when ``torch.cuda.is_available()``): the same cases in this process; ``torch.cuda.max_memory_allocated``.

    python benchmarks/bench_models.py                       # all models, 256x256 and 1120x1680, CPU (+ GPU)
    python benchmarks/bench_models.py --models ldp-small --sizes 256x256 --device cpu --threads 2
    python benchmarks/bench_models.py --device cuda --bf16 --json results/bench_models.json

Figures from a shared machine are noisy: report them with the machine's load (printed in the header).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

DEFAULT_SIZES = ("256x256", "1120x1680")


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--sizes: {text!r} is not HxW (e.g. 256x256)") from None
    if h <= 0 or w <= 0:
        raise SystemExit(f"--sizes: {text!r} must be positive")
    return h, w


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _available_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        with open("/proc/meminfo") as fh:
            info = dict(line.split(":", 1) for line in fh)
        return int(info["MemAvailable"].split()[0]) * 1024


def _build(name: str, hw: tuple[int, int], device: str):
    import ldp
    from ldp.complexity import ComplexityConfig
    from ldp.models.inputs import make_input

    # same build as the complexity counts: DeepRFT in its eval (inference) weight form
    model = ldp.build_model(name, **ComplexityConfig().model_overrides.get(name, {})).eval().to(device)
    kind = ldp.get_spec(name).input_kind
    gen = torch.Generator().manual_seed(0)
    left, right = (torch.rand(1, 3, *hw, generator=gen) for _ in range(2))
    blurmap = torch.rand(1, 1, *hw, generator=gen) if "blurmap" in kind else None
    return model, make_input(kind, left, right, blurmap).to(device)  # fp32; the GPU path may autocast


def _cpu_case(name: str, hw: tuple[int, int], threads: int, warmup: int, repeats: int, queue) -> None:
    """Child process: one model at one size on CPU."""
    try:
        torch.set_num_threads(threads)
        model, x = _build(name, hw, "cpu")
        base_rss = _rss_bytes()
        times = []
        with torch.inference_mode():
            for i in range(warmup + repeats):
                start = time.perf_counter()
                model(x)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        queue.put({"status": "ok", "times_s": times, "peak_rss": peak, "base_rss": base_rss})
    except Exception as exc:  # reported in the table, not raised
        queue.put({"status": f"error: {type(exc).__name__}: {exc}"})


def run_cpu(name: str, hw: tuple[int, int], threads: int, warmup: int, repeats: int, timeout: float) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_cpu_case, args=(name, hw, threads, warmup, repeats, queue))
    proc.start()
    try:
        result = queue.get(timeout=timeout)
    except Exception:
        result = None
    proc.join(timeout=30)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if result is None:
        code = proc.exitcode
        why = "killed (out of memory?)" if code is not None and code < 0 else f"no result within {timeout:.0f} s"
        return {"status": why}
    return result


def run_gpu(name: str, hw: tuple[int, int], warmup: int, repeats: int, bf16: bool) -> dict:
    try:
        torch.cuda.empty_cache()
        model, x = _build(name, hw, "cuda")
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        times = []
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            for i in range(warmup + repeats):
                torch.cuda.synchronize()
                start = time.perf_counter()
                model(x)
                torch.cuda.synchronize()
                if i >= warmup:
                    times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated()
        del model, x
        return {"status": "ok", "times_s": times, "peak_rss": peak, "base_rss": base}
    except torch.cuda.OutOfMemoryError:
        return {"status": "out of GPU memory"}
    except Exception as exc:
        return {"status": f"error: {type(exc).__name__}: {exc}"}
    finally:
        torch.cuda.empty_cache()


def _gib(n: float | None) -> str:
    return "–" if n is None else f"{n / 2**30:.2f}"


def print_table(rows: list[dict[str, Any]], mem_label: str) -> None:
    head = f"{'model':<18} {'size':>10} {'median s':>9} {'min s':>8} {'n':>2} {mem_label + ' GiB':>14} " \
           f"{'above base GiB':>14}  status"
    print(head)
    print("-" * len(head))
    for r in rows:
        t = r.get("times_s") or []
        med = f"{statistics.median(t):.3f}" if t else "–"
        mn = f"{min(t):.3f}" if t else "–"
        above = r["peak_rss"] - r["base_rss"] if "peak_rss" in r else None
        print(f"{r['model']:<18} {r['size']:>10} {med:>9} {mn:>8} {len(t):>2} {_gib(r.get('peak_rss')):>14} "
              f"{_gib(above):>14}  {r['status']}")


def estimate_skip(small: dict | None, hw: tuple[int, int], small_hw: tuple[int, int], runs: int,
                  max_seconds: float, mem_fraction: float) -> str | None:
    """Reason to skip the large case, from the small run scaled by the pixel ratio; None to run it."""
    if small is None or small.get("status") != "ok":
        return None
    ratio = hw[0] * hw[1] / (small_hw[0] * small_hw[1])
    need = small["base_rss"] + (small["peak_rss"] - small["base_rss"]) * ratio
    avail = _available_bytes()
    if need > mem_fraction * (avail + small["base_rss"]):
        return f"skipped: needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available"
    seconds = min(small["times_s"]) * ratio * runs
    if seconds > max_seconds:
        return f"skipped: would take ~{seconds:.0f} s > --max-seconds {max_seconds:.0f}"
    return None


def main(argv: list[str] | None = None) -> int:
    import ldp

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["all"], help="registry names or 'all'")
    ap.add_argument("--sizes", nargs="*", default=list(DEFAULT_SIZES), help="HxW, e.g. 256x256 1120x1680")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="auto = CPU, and GPU too when CUDA is available")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads per case")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--large-repeats", type=int, default=1, help="repeats (no warm-up) for sizes > 512x512 on CPU")
    ap.add_argument("--max-seconds", type=float, default=900.0, help="skip a CPU case estimated to take longer")
    ap.add_argument("--mem-fraction", type=float, default=0.8, help="skip a CPU case needing more of free RAM")
    ap.add_argument("--bf16", action="store_true", help="GPU: autocast to bfloat16")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args(argv)

    names = ldp.list_models() if args.models in ([], ["all"]) else args.models
    for n in names:
        ldp.get_spec(n)  # unknown names fail here, with the closest names
    sizes = sorted((parse_size(s) for s in args.sizes), key=lambda s: s[0] * s[1])
    devices = ["cpu"] if args.device == "cpu" else ["cuda"] if args.device == "cuda" else ["cpu"]
    if args.device == "auto" and torch.cuda.is_available():
        devices.append("cuda")
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")

    load = os.getloadavg()
    print(f"# bench_models: torch {torch.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, "
          f"threads {args.threads}, {_available_bytes() / 2**30:.1f} GiB RAM available")
    if load[0] > (os.cpu_count() or 1):
        print("# WARNING: the CPU is busy (load above core count): CPU timings are inflated and noisy")
    all_rows: list[dict[str, Any]] = []
    for device in devices:
        if device == "cuda":
            print(f"\n## GPU: {torch.cuda.get_device_name()} ({'bf16 autocast' if args.bf16 else 'fp32'})")
        else:
            print("\n## CPU (fp32)")
        rows = []
        for name in names:
            small: tuple[tuple[int, int], dict] | None = None
            for hw in sizes:
                large = hw[0] * hw[1] > 512 * 512
                warmup, repeats = (0, args.large_repeats) if large and device == "cpu" else (args.warmup, args.repeats)
                row: dict[str, Any] = {"model": name, "size": f"{hw[0]}x{hw[1]}", "device": device,
                                       "inference": ldp.get_spec(name).inference}
                reason = None
                if device == "cpu" and small is not None and large:
                    reason = estimate_skip(small[1], hw, small[0], warmup + repeats, args.max_seconds,
                                           args.mem_fraction)
                if reason:
                    row["status"] = reason
                elif device == "cpu":
                    row.update(run_cpu(name, hw, args.threads, warmup, repeats, timeout=args.max_seconds * 2 + 300))
                else:
                    row.update(run_gpu(name, hw, warmup, repeats, args.bf16))
                if small is None:
                    small = (hw, row)
                rows.append(row)
                done = row.get("times_s") or []
                detail = f" {min(done):.3f} s, peak {_gib(row.get('peak_rss'))} GiB" if done else ""
                print(f"  {name} {row['size']} {device}: {row['status']}{detail}", file=sys.stderr, flush=True)
        print_table(rows, "peak RSS" if device == "cpu" else "peak alloc")
        all_rows += rows
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps({"load_average": load, "threads": args.threads, "rows": all_rows}, indent=2))
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
