"""Seconds per optimiser step of the trainer's own engine on random data, for the speed benchmarks and the CPU
profile's up-front time estimate (scripts/run_cpu_profile.py). A measurement of this machine, never a result."""

from __future__ import annotations

import time

import torch

from ldp.losses import LossConfig
from ldp.train.config import TrainConfig
from ldp.train.engine import Engine, Runtime


def random_batch(n: int, patch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {k: torch.rand(n, 3, patch, patch, generator=gen) for k in ("left", "right", "target")}
    out["blurmap"] = torch.rand(n, 1, patch, patch, generator=gen)
    return out


def cpu_engine(model: str, patch: int, batch: int, precision: str = "fp32", rank: int = 0, world: int = 1) -> Engine:
    """The trainer's engine (Charbonnier loss) on the CPU; with ``world`` > 1 (process group joined) it wraps DDP."""
    cfg = TrainConfig(iters=1000, patch_size=patch, batch_size=batch, device="cpu", precision=precision,
                      loss=LossConfig(charbonnier=1.0))
    return Engine(cfg, model, Runtime(torch.device("cpu"), rank=rank, world=world, precision=precision))


def time_steps(engine: Engine, data: dict[str, torch.Tensor], steps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        engine.step(data)
    t0 = time.perf_counter()
    for _ in range(steps):
        engine.step(data)
    return (time.perf_counter() - t0) / steps


def seconds_per_step(model: str, patch: int, batch: int, threads: int, precision: str = "fp32", steps: int = 4,
                     warmup: int = 1) -> float:
    """One process with ``threads`` threads (restored afterwards), seeded, on a random batch."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        return time_steps(cpu_engine(model, patch, batch, precision), random_batch(batch, patch), steps, warmup)
    finally:
        torch.set_num_threads(before)
