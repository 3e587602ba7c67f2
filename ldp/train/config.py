"""The training config (``TrainConfig`` and its sections), the phase plan, the lr schedule and the value checks."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ldp.config import ConfigError, to_flat_dict
from ldp.losses import LossConfig

# Maps a TrainConfig field path (``optim.lr``, ``progressive[1]``) to the params location the user wrote.
KeyPath = Callable[[str], str]
# Settings that may change between a run and its resume without changing the numbers.
RESUME_FREE_KEYS = ("checkpoint_every", "log_every", "num_workers", "val", "compile", "device", "cpu_threads",
                    "processes")
# Patch augmentations of the sampler (ldp/data/sampler.py; docs/training.md "Augmentation").
Augment = Literal["dp_flips", "restormer_dihedral", "deeprft_modes", "none"]


def default_key_path(key: str) -> str:
    return f"params.yaml:train.{key}"


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adamw", "adam"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 0.0  # max global grad norm; 0 = off (Restormer: 0.01)


@dataclass(frozen=True)
class ScheduleConfig:
    """Linear warm-up, an optional constant stretch, then cosine down to ``eta_min``; counted in iterations."""

    warmup_iters: int = 0
    flat_iters: int = 0  # Restormer: 92k iterations at 3e-4 before its cosine
    eta_min: float = 1e-7


@dataclass(frozen=True)
class EMAConfig:
    enabled: bool = False
    decay: float = 0.999


@dataclass(frozen=True)
class ValConfig:
    every: int = 25  # iterations; 0 = only after the last one
    mode: Literal["crop", "full"] = "crop"  # crop = centre crop of each val image ("crop-val")
    crop: int = 256
    max_images: int = 0  # 0 = all val images
    samples: int = 2  # restorations saved to samples/ at the end


@dataclass(frozen=True)
class PatchPoolConfig:
    """Restormer's DPDD patch pool: ``size``² windows at ``stride``, the ``drop_fraction`` of each image's windows
    with the least target sharpness dropped; training patches are cropped from the windows kept."""

    size: int = 512
    stride: int = 204
    drop_fraction: float = 0.3


@dataclass(frozen=True)
class TrainConfig:
    iters: int = 50
    patch_size: int = 64
    batch_size: int = 4  # GLOBAL: each of the WORLD_SIZE processes takes batch_size / WORLD_SIZE
    # Progressive patches (Restormer): ((iters, patch_size, global batch), ...). Empty = one phase. Iterations past
    # the listed phases continue with the last one; phases past ``iters`` are not reached.
    progressive: tuple[tuple[int, int, int], ...] = ()
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    val: ValConfig = field(default_factory=ValConfig)
    augment: Augment = "dp_flips"
    patch_pool: PatchPoolConfig | None = None  # None: patches from anywhere in the full images
    checkpoint_every: int = 25  # iterations; last.pt is also written after the last one
    log_every: int = 1
    seed: int = 0
    deterministic: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    channels_last: bool = True  # GPU only
    compile: bool = False  # torch.compile, GPU only
    num_workers: int = 0
    cpu_threads: int = 0  # torch intra-op threads on CPU; 0 = PyTorch's default (one per core)
    find_unused_parameters: bool = False  # DDP
    # Processes of the training stage: "auto" = one per visible GPU (1 on CPU); > 1 re-launches it under torchrun.
    processes: int | Literal["auto"] = 1
    model_overrides: dict[str, Any] = field(default_factory=dict)


def config_json(cfg: TrainConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str)


def changed_keys(saved_json: str, current: TrainConfig) -> list[str]:
    """Flat TrainConfig keys whose value differs from ``saved_json`` (the resume-free settings left out)."""
    old = to_flat_dict(json.loads(saved_json))
    new = to_flat_dict(json.loads(config_json(current)))
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k) and k.split(".")[0] not in RESUME_FREE_KEYS]


def check_values(cfg: TrainConfig, key_path: KeyPath = default_key_path, world: int = 1) -> None:
    """Every range check on the config's own values, and that each global batch divides over ``world`` processes;
    the first failure is a ConfigError naming its params key."""
    positive = {"iters": cfg.iters, "optim.lr": cfg.optim.lr, "patch_size": cfg.patch_size,
                "batch_size": cfg.batch_size}
    if cfg.val.mode == "crop":
        positive["val.crop"] = cfg.val.crop
    non_negative = {"checkpoint_every": cfg.checkpoint_every, "log_every": cfg.log_every,
                    "num_workers": cfg.num_workers, "cpu_threads": cfg.cpu_threads, "val.every": cfg.val.every,
                    "val.max_images": cfg.val.max_images, "val.samples": cfg.val.samples,
                    "schedule.warmup_iters": cfg.schedule.warmup_iters,
                    "schedule.flat_iters": cfg.schedule.flat_iters, "optim.grad_clip": cfg.optim.grad_clip}
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{key_path(key)}: must be > 0, got {value}")
    for key, value in non_negative.items():
        if not value >= 0:
            raise ConfigError(f"{key_path(key)}: must be >= 0, got {value}")
    for i, (n, patch, batch) in enumerate(cfg.progressive):
        if n <= 0 or patch <= 0 or batch <= 0:
            raise ConfigError(f"{key_path(f'progressive[{i}]')}: iters, patch_size and batch_size must be > 0, "
                              f"got {[n, patch, batch]}")
    if cfg.ema.enabled and not 0.0 <= cfg.ema.decay < 1.0:
        raise ConfigError(f"{key_path('ema.decay')}: must be in [0, 1), got {cfg.ema.decay}")
    if isinstance(cfg.processes, int) and cfg.processes < 1:
        raise ConfigError(f"{key_path('processes')}: must be >= 1 or 'auto', got {cfg.processes}")
    _check_pool(cfg, key_path)
    batches = [("batch_size", cfg.batch_size)] if not cfg.progressive else [
        (f"progressive[{i}]", batch) for i, (_, _, batch) in enumerate(cfg.progressive)]
    for key, batch in batches:
        if batch % world:
            raise ConfigError(f"{key_path(key)}: the global batch {batch} does not divide over {world} processes "
                              "(WORLD_SIZE); each process takes batch / WORLD_SIZE")


def _check_pool(cfg: TrainConfig, key_path: KeyPath) -> None:
    pool = cfg.patch_pool
    if pool is None:
        return
    if pool.size <= 0 or pool.stride <= 0:
        raise ConfigError(f"{key_path('patch_pool')}: size and stride must be > 0, got {pool.size}, {pool.stride}")
    if not 0.0 <= pool.drop_fraction < 1.0:
        raise ConfigError(f"{key_path('patch_pool')}.drop_fraction: must be in [0, 1), got {pool.drop_fraction}")
    patch, key = largest_patch(cfg)
    if patch > pool.size:
        raise ConfigError(f"{key_path(key)}: patch size {patch} is larger than the pool's windows "
                          f"({key_path('patch_pool.size')} = {pool.size})")


def largest_patch(cfg: TrainConfig) -> tuple[int, str]:
    """The largest training patch side of any phase and the key that sets it."""
    patches = [(cfg.patch_size, "patch_size")] if not cfg.progressive else [
        (patch, f"progressive[{i}]") for i, (_, patch, _) in enumerate(cfg.progressive)]
    return max(patches)


def phases(cfg: TrainConfig) -> list[tuple[int, int, int, int]]:
    """``[(start_iter, end_iter, patch_size, batch_size), ...]`` covering ``0..cfg.iters`` (values checked first)."""
    plan = cfg.progressive or ((cfg.iters, cfg.patch_size, cfg.batch_size),)
    out, start = [], 0
    for i, (n, patch, batch) in enumerate(plan):
        if start >= cfg.iters:
            break
        end = cfg.iters if i == len(plan) - 1 else min(start + n, cfg.iters)
        out.append((start, end, patch, batch))
        start = end
    return out


class LRFactor:
    """Multiplier of the base lr after ``t`` optimiser steps (a picklable object, so LambdaLR saves it)."""

    def __init__(self, total: int, warmup: int, flat: int, min_factor: float):
        self.total, self.warmup, self.flat, self.min_factor = total, warmup, flat, min_factor

    def __call__(self, t: int) -> float:
        if t < self.warmup:
            return (t + 1) / self.warmup
        if t < self.warmup + self.flat:
            return 1.0
        span = max(1, self.total - self.warmup - self.flat)
        progress = min(1.0, (t - self.warmup - self.flat) / span)
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_factor(cfg: TrainConfig) -> LRFactor:
    s = cfg.schedule
    return LRFactor(cfg.iters, s.warmup_iters, s.flat_iters, s.eta_min / cfg.optim.lr if cfg.optim.lr else 0.0)


def lr_at(cfg: TrainConfig, t: int) -> float:
    """The learning rate used by the optimiser step number ``t`` (0-based)."""
    return cfg.optim.lr * lr_factor(cfg)(t)
