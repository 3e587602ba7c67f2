"""How to spend 2 CPU cores on one training run: one process with 2 threads, or 2 data-parallel processes (gloo)
with 1 thread each, at the same global batch; and fp32 against bf16 autocast. Prints seconds per optimiser step
and the ratios, all measured in this one run (absolute times vary between machines).

    python benchmarks/bench_cpu_parallel.py --models nafnet-dp ldp-small-gr --patch 128 --batch 8
"""

from __future__ import annotations

import argparse
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ldp.speed import cpu_engine, random_batch, seconds_per_step, time_steps


def _rank(rank: int, world: int, port: int, name: str, patch: int, batch: int, steps: int, warmup: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    engine = cpu_engine(name, patch, batch, "fp32", rank, world)
    seconds = time_steps(engine, random_batch(batch // world, patch, rank), steps, warmup)
    out.put((rank, seconds))
    dist.destroy_process_group()


def data_parallel(name: str, patch: int, batch: int, steps: int, warmup: int, world: int = 2) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, world, port, name, patch, batch, steps, warmup, queue))
             for r in range(world)]
    for p in procs:
        p.start()
    times = [queue.get()[1] for _ in procs]
    for p in procs:
        p.join()
    return max(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["nafnet-dp", "ldp-small-gr"])
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    print(f"patch {args.patch}, global batch {args.batch}, {args.steps} timed steps after {args.warmup} warm-up")
    print("| model | 1 proc x 2 threads fp32 (s/step) | 2 procs x 1 thread fp32 | ratio | 1 proc x 2 threads bf16 | "
          "ratio |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        base = seconds_per_step(name, args.patch, args.batch, 2, "fp32", args.steps, args.warmup)
        ddp = data_parallel(name, args.patch, args.batch, args.steps, args.warmup)
        bf16 = seconds_per_step(name, args.patch, args.batch, 2, "bf16", args.steps, args.warmup)
        print(f"| {name} | {base:.2f} | {ddp:.2f} | {base / ddp:.2f}x | {bf16:.2f} | {base / bf16:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
