"""One trainer for every registered model: CPU, one GPU (bf16, channels_last, torch.compile) or DDP (torchrun).

``train(cfg, model_name, dataset_root, out_dir)`` writes ``out_dir/{last.pt, model.pt, train_log.csv,
val_log.csv, train_summary.json, model_summary.txt, samples/}``. Resuming from ``last.pt`` restores the model,
optimiser, scheduler, grad scaler, EMA, RNG states and the sampler position, so a CPU run killed at any point and
resumed ends with the same weights as an uninterrupted run (tests/test_train.py). See docs/training.md.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import os
import random
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ldp.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    capture_rng_state,
    restore_rng_state,
    safe_load,
    unwrap_model,
)
from ldp.config import ConfigError, from_dict
from ldp.fsutil import atomic_open, atomic_write_json, atomic_write_text
from ldp.losses import LossConfig, build_loss
from ldp.registry import build_model, get_spec

CHECKPOINT_FORMAT = "ldp-train-v1"
# Settings that may change between a run and its resume without changing the numbers.
RESUME_FREE_KEYS = ("checkpoint_every", "log_every", "num_workers", "val", "compile", "device", "cpu_threads")


# ---------------------------------------------------------------------------------------------------------------
# Config


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
class TrainConfig:
    iters: int = 50
    patch_size: int = 64
    batch_size: int = 4
    # Progressive patches (Restormer): ((iters, patch_size, batch_size), ...). Empty = one phase. Iterations past
    # the listed phases continue with the last one; phases past ``iters`` are not reached.
    progressive: tuple[tuple[int, int, int], ...] = ()
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    val: ValConfig = field(default_factory=ValConfig)
    augment: bool = True
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
    model_overrides: dict[str, Any] = field(default_factory=dict)


def merge_overrides(cls: type, base: Mapping[str, Any], override: Mapping[str, Any] | None, where: str) -> dict:
    """Deep-merge ``override`` onto ``base`` for dataclass ``cls``; an unknown key raises :class:`ConfigError`.

    Nested dataclass sections merge key by key; every other value (including dicts such as
    ``model_overrides``) is replaced whole.
    """
    if override is None:
        return dict(base or {})
    if not isinstance(override, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(override).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _type_hints(cls)
    merged = dict(base or {})
    for key, value in override.items():
        if key not in fields:
            import difflib

            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(sorted(fields))})"
            raise ConfigError(f"{where}.{key}: unknown key{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            merged[key] = merge_overrides(tp, merged.get(key) or {}, value, f"{where}.{key}")
        else:
            merged[key] = value
    return merged


def _type_hints(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def train_config(
    params: Mapping[str, Any],
    override: Mapping[str, Any] | None = None,
    *,
    key: str = "train",
    where: str = "params.yaml",
    override_where: str = "override",
) -> TrainConfig:
    """``TrainConfig`` from ``params[key]`` (the defaults) with a per-experiment ``override`` merged on strictly."""
    base = params.get(key) or {}
    # Validate the defaults on their own first, so an error names the right place.
    from_dict(TrainConfig, base, f"{where}:{key}")
    merged = merge_overrides(TrainConfig, base, override, override_where)
    return from_dict(TrainConfig, merged, f"{where}:{key}+{override_where}")


def phases(cfg: TrainConfig) -> list[tuple[int, int, int, int]]:
    """``[(start_iter, end_iter, patch_size, batch_size), ...]`` covering ``0..cfg.iters``."""
    plan = cfg.progressive or ((cfg.iters, cfg.patch_size, cfg.batch_size),)
    out, start = [], 0
    for i, (n, patch, batch) in enumerate(plan):
        if n <= 0 or patch <= 0 or batch <= 0:
            raise ConfigError(f"train.progressive[{i}]: iters, patch_size and batch_size must be > 0")
        if start >= cfg.iters:
            break
        end = cfg.iters if i == len(plan) - 1 else min(start + n, cfg.iters)
        out.append((start, end, patch, batch))
        start = end
    return out


# ---------------------------------------------------------------------------------------------------------------
# Learning rate


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


def lr_at(cfg: TrainConfig, t: int) -> float:
    """The learning rate used by the optimiser step number ``t`` (0-based)."""
    return cfg.optim.lr * _lr_factor(cfg)(t)


def _lr_factor(cfg: TrainConfig) -> LRFactor:
    s = cfg.schedule
    if s.warmup_iters < 0 or s.flat_iters < 0:
        raise ConfigError("train.schedule: warmup_iters and flat_iters must be >= 0")
    return LRFactor(cfg.iters, s.warmup_iters, s.flat_iters, s.eta_min / cfg.optim.lr if cfg.optim.lr else 0.0)


# ---------------------------------------------------------------------------------------------------------------
# Devices, seeds, distributed


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    precision: str = "fp32"
    owns_process_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device and precision; join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("params.yaml:train.device: 'cuda' requested but no GPU is visible")
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    if world > 1:
        rank, world = dist.get_rank(), dist.get_world_size()
    precision = cfg.precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if use_cuda else "fp32"
    if precision == "fp16" and not use_cuda:
        raise ConfigError("params.yaml:train.precision: fp16 needs a GPU (use fp32 or bf16 on CPU)")
    return Runtime(device, rank, world, local_rank, precision, owns)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels (warn-only where PyTorch has none) and no cuDNN autotuning."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if enabled or torch.are_deterministic_algorithms_enabled():  # the call imports torch._inductor (~3 s)
        torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


# ---------------------------------------------------------------------------------------------------------------
# Sample order: a deterministic index stream, sharded across ranks


class ShardedBatchSampler(torch.utils.data.Sampler):
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


# ---------------------------------------------------------------------------------------------------------------
# EMA


class EMA:
    """Exponential moving average of the weights (float tensors averaged, integer buffers copied)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in unwrap_model(model).state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in unwrap_model(model).state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.mul_(self.decay).add_(v.detach().to(s.dtype), alpha=1.0 - self.decay)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)


# ---------------------------------------------------------------------------------------------------------------
# The training step (shared with benchmarks/bench_train.py)


class Engine:
    """Model, loss, optimiser, scheduler, scaler and EMA for one registered model, with ``step(batch)``."""

    def __init__(self, cfg: TrainConfig, model_name: str, runtime: Runtime):
        self.cfg, self.runtime = cfg, runtime
        self.spec = get_spec(model_name)
        self.model_name = model_name
        seed_everything(cfg.seed)  # identical initial weights on every rank
        model = build_model(model_name, **cfg.model_overrides).to(runtime.device)
        self.on_gpu = runtime.device.type == "cuda"
        self.channels_last = self.on_gpu and cfg.channels_last
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.module = model  # the bare module: checkpoints, EMA, validation
        self.loss_fn = build_loss(cfg.loss).to(runtime.device)
        params = [p for p in model.parameters() if p.requires_grad]
        o = cfg.optim
        if o.name == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        else:
            self.optimizer = torch.optim.Adam(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_factor(cfg))
        self.scaler = torch.amp.GradScaler("cuda", enabled=runtime.precision == "fp16" and self.on_gpu)
        self.ema = EMA(model, cfg.ema.decay) if cfg.ema.enabled else None
        wrapped: nn.Module = model
        if runtime.distributed:
            wrapped = nn.parallel.DistributedDataParallel(
                model, device_ids=[runtime.device.index] if self.on_gpu else None,
                find_unused_parameters=cfg.find_unused_parameters,
            )
        if cfg.compile and self.on_gpu:
            wrapped = torch.compile(wrapped)
        self.net = wrapped

    def autocast(self):
        if self.runtime.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.runtime.precision == "bf16" else torch.float16
            return torch.autocast(self.runtime.device.type, dtype=dtype)
        return nullcontext()

    def prepare(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
        """Float32 [0, 1] tensors on the device, from uint16 training patches or float validation images."""
        from ldp.data.sampler import to_unit_float

        dev = self.runtime.device
        out: dict[str, torch.Tensor | None] = {}
        for key in ("left", "right", "target", "blurmap"):
            value = batch.get(key)
            if value is not None:
                value = to_unit_float(value, dev)
                if self.channels_last and value.dim() == 4:
                    value = value.contiguous(memory_format=torch.channels_last)
            out[key] = value
        return out

    def forward(self, net: nn.Module, b: Mapping[str, torch.Tensor | None]):
        from ldp.models.inputs import make_input

        x = make_input(self.spec.input_kind, b["left"], b["right"], b["blurmap"])
        with self.autocast():
            return net(x)

    def loss(self, out, b: Mapping[str, torch.Tensor | None]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The configured loss in fp32; a multi-scale list output (DeepRFT) is passed whole to ldp.losses."""
        pred = [o.float() for o in out] if isinstance(out, (list, tuple)) else out.float()
        total, terms = self.loss_fn(pred, b["target"], b["blurmap"], b["left"], b["right"])
        return total, {k: v for k, v in terms.items() if k != "total"}

    def step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """One optimiser step; returns the loss terms (``total`` included) and the lr that was used."""
        b = self.prepare(batch)
        self.net.train()
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        total, terms = self.loss(self.forward(self.net, b), b)
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite training loss {total.item()} (terms {_floats(terms)})")
        self.scaler.scale(total).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.module)
        values = _floats(terms)
        values["total"] = float(total.detach())
        values["lr"] = lr
        return values

    def eval_module(self) -> nn.Module:
        """The weights to evaluate: the EMA weights when EMA is on, else the live ones."""
        if self.ema is None:
            return self.module
        shadow = copy.deepcopy(self.module)
        shadow.load_state_dict(self.ema.state_dict())
        return shadow


def _floats(terms: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in terms.items()}


# ---------------------------------------------------------------------------------------------------------------
# Validation


@dataclass
class ValImage:
    scene: str
    left: torch.Tensor  # 1x3xHxW
    right: torch.Tensor
    target: torch.Tensor
    blurmap: torch.Tensor | None


def val_view(cfg: ValConfig) -> str:
    return f"crop{cfg.crop}" if cfg.mode == "crop" else "full"


def load_val_images(root: Path, cfg: ValConfig, blurmap_dir: Path | None) -> list[ValImage]:
    """The val split as centre crops (crop-val) or full images; empty if the manifest has no val scenes."""
    from ldp.data.manifest import load_manifest
    from ldp.data.sampler import DPImageDataset

    if load_manifest(root, split="val").empty:
        return []
    dataset = DPImageDataset(root, "val", blurmap_dir=blurmap_dir, progress=False)
    count = len(dataset) if cfg.max_images <= 0 else min(cfg.max_images, len(dataset))
    images = []
    for i in range(count):
        item = dataset[i]
        if "target" not in item:
            raise ConfigError(f"{root}/manifest.csv: val scene {item['scene']} has no target image")
        h, w = item["left"].shape[-2:]
        if cfg.mode == "crop":
            ch, cw = min(cfg.crop, h), min(cfg.crop, w)
            top, left = (h - ch) // 2, (w - cw) // 2
            window = (slice(None), slice(top, top + ch), slice(left, left + cw))
        else:
            window = (slice(None), slice(None), slice(None))

        def view(t: torch.Tensor, win=window) -> torch.Tensor:
            return t[win].contiguous()[None]

        blur = view(item["blurmap"])  # zeros without blurmap_dir, as in training patches
        images.append(ValImage(item["scene"], view(item["left"]), view(item["right"]), view(item["target"]), blur))
    return images


@torch.no_grad()
def validate(engine: Engine, images: Sequence[ValImage]) -> tuple[dict[str, float], list[torch.Tensor]]:
    """Mean val loss (the training objective) and PSNR (peak 1, output clamped) over ``images``."""
    from ldp.models.inputs import primary_output

    model = engine.eval_module()
    model.eval()
    sums: dict[str, float] = {}
    outputs = []
    for img in images:
        b = engine.prepare({"left": img.left, "right": img.right, "target": img.target, "blurmap": img.blurmap})
        out = engine.forward(model, b)
        total, terms = engine.loss(out, b)
        pred = primary_output(out).float().clamp(0, 1)
        mse = torch.mean((pred - b["target"]) ** 2).item()
        values = {"loss": float(total), "psnr": 10 * math.log10(1.0 / max(mse, 1e-12))}
        values.update({f"loss_{k}": v for k, v in _floats(terms).items()})
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        outputs.append(pred.cpu())
    n = max(1, len(images))
    return {k: v / n for k, v in sums.items()}, outputs


# ---------------------------------------------------------------------------------------------------------------
# Logs


class CsvLog:
    """Append-only CSV that, on resume, first drops the rows written after the checkpoint."""

    def __init__(self, path: Path, keep_until: int | None):
        self.path = path
        self.fields: list[str] | None = None
        rows: list[dict[str, str]] = []
        if keep_until is not None and path.is_file():
            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                self.fields = list(reader.fieldnames or []) or None
                rows = [r for r in reader if r.get("iter", "").isdigit() and int(r["iter"]) <= keep_until]
        with atomic_open(path, "w", newline="") as fh:
            if self.fields:
                writer = csv.DictWriter(fh, self.fields)
                writer.writeheader()
                writer.writerows(rows)

    def append(self, row: Mapping[str, Any]) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(v: Any) -> Any:
    return f"{v:.8g}" if isinstance(v, float) else v


def model_summary(model: nn.Module, model_name: str) -> str:
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"model: {model_name}\nparameters: {n_params} ({n_params / 1e6:.3f} M), trainable {n_train}\n\n{model}\n"


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints


def config_json(cfg: TrainConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str)


def _config_diff(saved: str, current: TrainConfig) -> list[str]:
    from ldp.config import to_flat_dict

    old = to_flat_dict(json.loads(saved))
    new = to_flat_dict(json.loads(config_json(current)))
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k) and k.split(".")[0] not in RESUME_FREE_KEYS]


def interrupted_run(out_dir: str | Path, cfg: TrainConfig, model_name: str) -> bool:
    """True when ``out_dir/last.pt`` is an unfinished run of this model and config, i.e. worth resuming.

    A finished run, or one of another config, is not: a pipeline re-runs a stage because its inputs changed.
    """
    path = Path(out_dir) / "last.pt"
    if not path.is_file():
        return False
    try:
        state = safe_load(path, map_location="cpu")
    except CheckpointError:
        return False
    return (isinstance(state, Mapping) and state.get("format") == CHECKPOINT_FORMAT
            and state.get("model_name") == model_name and int(state.get("iteration", 0)) < cfg.iters
            and not _config_diff(state["config"], cfg))


def _gather_rng(runtime: Runtime) -> list[dict[str, Any]]:
    state = capture_rng_state()
    if not runtime.distributed:
        return [state]
    gathered: list[Any] = [None] * runtime.world
    dist.all_gather_object(gathered, state)
    return gathered


def save_training_state(path: Path, engine: Engine, iteration: int, phase: int, phase_step: int,
                        rng: list[dict[str, Any]]) -> Path:
    runtime = engine.runtime
    state = {
        "format": CHECKPOINT_FORMAT,
        "model_name": engine.model_name,
        "iteration": iteration,
        "model": engine.module.state_dict(),
        "ema": engine.ema.state_dict() if engine.ema is not None else None,
        "optimizer": engine.optimizer.state_dict(),
        "scheduler": engine.scheduler.state_dict(),
        "scaler": engine.scaler.state_dict(),
        "rng": rng,
        "sampler": {"phase": phase, "step": phase_step, "world": runtime.world, "seed": engine.cfg.seed},
        "world": runtime.world,
        "config": config_json(engine.cfg),
    }
    return atomic_torch_save(state, path)


def load_training_state(path: Path, engine: Engine) -> dict[str, Any]:
    """Restore ``engine`` from ``last.pt``; returns the checkpoint's iteration and sampler position."""
    state = safe_load(path, map_location="cpu")
    if not isinstance(state, Mapping) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an ldp training checkpoint (format {CHECKPOINT_FORMAT})")
    if state["model_name"] != engine.model_name:
        raise CheckpointError(
            f"{path}: checkpoint is for model {state['model_name']!r}, not {engine.model_name!r}; "
            "use another out_dir or resume=False"
        )
    diff = _config_diff(state["config"], engine.cfg)
    if diff:
        raise CheckpointError(
            f"{path}: the training config changed since this checkpoint ({', '.join('train.' + k for k in diff)}); "
            "resuming would not reproduce the run. Use another out_dir or resume=False"
        )
    if state["world"] != engine.runtime.world:
        raise CheckpointError(
            f"{path}: checkpoint written by {state['world']} process(es), resumed with {engine.runtime.world}; "
            "the sample order would differ"
        )
    engine.module.load_state_dict(state["model"])
    if engine.ema is not None and state["ema"] is not None:
        engine.ema.load_state_dict(state["ema"])
    engine.optimizer.load_state_dict(state["optimizer"])
    engine.scheduler.load_state_dict(state["scheduler"])
    engine.scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["rng"][engine.runtime.rank])
    return {"iteration": int(state["iteration"]), **state["sampler"]}


# ---------------------------------------------------------------------------------------------------------------
# Training loop


def _batches(engine: Engine, root: Path, blurmap_dir: Path | None, plan: list[tuple[int, int, int, int]],
             phase_idx: int, start_step: int) -> Iterator[dict[str, torch.Tensor]]:
    from ldp.data.sampler import DPPatchDataset

    cfg, rt = engine.cfg, engine.runtime
    p_start, p_end, patch, batch = plan[phase_idx]
    base = sum((e - s) * b * rt.world for s, e, _, b in plan[:phase_idx])
    dataset = DPPatchDataset(root, "train", patch, blurmap_dir=blurmap_dir, augment=cfg.augment, seed=cfg.seed,
                             progress=rt.is_main)
    sampler = ShardedBatchSampler(batch, p_end - p_start, base=base, rank=rt.rank, world=rt.world,
                                  start_step=start_step)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=cfg.num_workers, pin_memory=rt.device.type == "cuda",
        # An explicit generator: worker seeds do not draw from (and so do not disturb) the global torch RNG.
        generator=torch.Generator().manual_seed(cfg.seed + 7919 * phase_idx + start_step),
        persistent_workers=False,
    )
    yield from loader


def train(
    cfg: TrainConfig,
    model_name: str,
    dataset_root: str | Path,
    out_dir: str | Path,
    blurmap_dir: str | Path | None = None,
    tracker=None,
    resume: bool = True,
) -> dict[str, Any]:
    """Train ``model_name`` on ``dataset_root``'s train split; see the module docstring for the outputs.

    ``tracker`` is an entered :class:`ldp.tracking.Tracker` (or None); it never stops the run. With
    ``resume=True`` an existing ``out_dir/last.pt`` is continued, after checking that the config matches.
    Returns the summary that is also written to ``train_summary.json``.
    """
    root = Path(dataset_root)
    out = Path(out_dir)
    blur_dir = Path(blurmap_dir) if blurmap_dir is not None else None
    if cfg.iters <= 0:
        raise ConfigError("params.yaml:train.iters: must be > 0")
    if cfg.optim.lr <= 0:
        raise ConfigError("params.yaml:train.optim.lr: must be > 0")
    plan = phases(cfg)
    spec = get_spec(model_name)
    if blur_dir is None and spec.input_kind == "dp+blurmap":
        raise ConfigError(f"model {model_name!r} takes a blur map as input: pass blurmap_dir (data/blurmaps/<id>)")
    if blur_dir is None and cfg.loss.bwl > 0:
        raise ConfigError("params.yaml:train.loss.bwl > 0 needs blur maps: pass blurmap_dir (data/blurmaps/<id>)")
    runtime = setup_runtime(cfg)
    try:
        return _train(cfg, model_name, root, out, blur_dir, tracker, resume, plan, runtime)
    finally:
        if runtime.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg, model_name, root, out, blur_dir, tracker, resume, plan, runtime: Runtime) -> dict[str, Any]:
    set_deterministic(cfg.deterministic)
    if runtime.device.type == "cpu" and cfg.cpu_threads > 0:
        torch.set_num_threads(cfg.cpu_threads)  # process-wide, as for any training process
    main = runtime.is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
    if tracker is not None and getattr(tracker, "out_dir", "unset") is None:
        tracker.out_dir = out
    if tracker is not None and main:
        tracker.set_tags({"device": str(runtime.device), "precision": runtime.precision,
                          "world_size": runtime.world})
    engine = Engine(cfg, model_name, runtime)
    seed_everything(cfg.seed + 1_000_003 * (runtime.rank + 1))  # training randomness differs per rank

    ckpt_path = out / "last.pt"
    start_iter, resumed_from = 0, None
    if resume and ckpt_path.is_file():
        pos = load_training_state(ckpt_path, engine)
        start_iter, resumed_from = pos["iteration"], pos["iteration"]
    elif not resume and main:
        for stale in ("last.pt", "model.pt", "train_log.csv", "val_log.csv", "train_summary.json"):
            (out / stale).unlink(missing_ok=True)
    if runtime.distributed:
        dist.barrier()

    val_images = load_val_images(root, cfg.val, blur_dir) if main else []
    if main and not val_images:
        warnings.warn(f"{root}: no val split in manifest.csv; validation skipped", RuntimeWarning, stacklevel=2)
    view = val_view(cfg.val)
    train_log = CsvLog(out / "train_log.csv", start_iter) if main else None
    val_log = CsvLog(out / "val_log.csv", start_iter) if main else None
    if main:
        atomic_write_text(out / "model_summary.txt", model_summary(engine.module, model_name))

    bar = tqdm(total=cfg.iters, initial=start_iter, desc=f"train {model_name}", disable=not main,
               dynamic_ncols=True, mininterval=0.5)
    it = start_iter
    last_values: dict[str, float] = {}
    val_history: list[dict[str, float]] = []
    t0 = time.perf_counter()

    def run_validation(iteration: int) -> None:
        if not main or not val_images:
            return
        metrics, _ = validate(engine, val_images)
        row = {"iter": iteration, "view": view, **{f"val_{k}": v for k, v in metrics.items()}}
        val_log.append(row)
        val_history.append({"iter": iteration, **metrics})
        if tracker is not None:
            tracker.log_metrics({f"val_{view}_{k}": v for k, v in metrics.items()}, step=iteration)
        bar.set_postfix(loss=f"{last_values.get('total', float('nan')):.4f}",
                        val_psnr=f"{metrics['psnr']:.2f}", refresh=False)

    for phase_idx, (p_start, p_end, patch, batch) in enumerate(plan):
        if it >= p_end:
            continue
        batches = _batches(engine, root, blur_dir, plan, phase_idx, it - p_start)
        for data in batches:
            last_values = engine.step(data)
            it += 1
            bar.update(1)
            if main and (it % max(1, cfg.log_every) == 0 or it == cfg.iters):
                bar.set_postfix(loss=f"{last_values['total']:.4f}", lr=f"{last_values['lr']:.2e}", refresh=False)
                train_log.append({"iter": it, "patch": patch, "batch": batch, **last_values})
                if tracker is not None:
                    tracker.log_metrics({("train_loss" if k == "total" else ("lr" if k == "lr" else f"train_{k}")): v
                                         for k, v in last_values.items()}, step=it)
            if cfg.val.every > 0 and it % cfg.val.every == 0 and it < cfg.iters:
                run_validation(it)
            if (cfg.checkpoint_every > 0 and it % cfg.checkpoint_every == 0) or it == cfg.iters:
                rng = _gather_rng(runtime)
                if main:
                    save_training_state(ckpt_path, engine, it, phase_idx, it - p_start, rng)
                if runtime.distributed:
                    dist.barrier()
    bar.close()
    elapsed = time.perf_counter() - t0
    if it > start_iter and (not val_history or val_history[-1]["iter"] != it):
        run_validation(it)  # the final validation (not repeated when a finished run is resumed)

    summary = {}
    if main:
        summary = _finish(engine, cfg, model_name, root, out, blur_dir, tracker, val_images, view, val_history,
                          start_iter, resumed_from, elapsed, last_values)
    if runtime.distributed:
        dist.barrier()
    return summary


def _finish(engine, cfg, model_name, root, out, blur_dir, tracker, val_images, view, val_history, start_iter,
            resumed_from, elapsed, last_values) -> dict[str, Any]:
    final = engine.eval_module()
    atomic_torch_save({k: v.detach().cpu() for k, v in final.state_dict().items()}, out / "model.pt")
    samples_dir = out / "samples"
    if val_images and cfg.val.samples > 0:
        _write_samples(engine, val_images[: cfg.val.samples], samples_dir, with_blurmap=blur_dir is not None)
    done = cfg.iters - start_iter
    rt = engine.runtime
    summary = {
        "model": model_name,
        "iterations": cfg.iters,
        "resumed_from": resumed_from,
        "iterations_this_run": done,
        "seconds_this_run": round(elapsed, 3),
        "it_per_s": round(done / elapsed, 4) if elapsed > 0 and done > 0 else None,
        "final_train": last_values,
        "val_view": (f"centre {cfg.val.crop}x{cfg.val.crop} crop of each val image (crop-val)"
                     if cfg.val.mode == "crop" else "full val images"),
        "val_first": val_history[0] if val_history else None,
        "val_last": val_history[-1] if val_history else None,
        "parameters": sum(p.numel() for p in engine.module.parameters()),
        "device": str(rt.device),
        "precision": rt.precision,
        "world_size": rt.world,
        "ema": cfg.ema.enabled,
        "weights": "ema" if cfg.ema.enabled else "final",
        "dataset_root": str(root),
        "blurmap_dir": str(blur_dir) if blur_dir else None,
    }
    atomic_write_json(out / "train_summary.json", summary, default=str)
    if tracker is not None:
        for name in ("train_log.csv", "val_log.csv", "train_summary.json", "model_summary.txt"):
            if (out / name).is_file():
                tracker.log_artifact(out / name)
        if samples_dir.is_dir():
            tracker.log_artifact(samples_dir, "samples")
        tracker.log_model(copy.deepcopy(final).cpu().eval(), name="model")
    return summary


def _write_samples(engine: Engine, images: Sequence[ValImage], folder: Path, with_blurmap: bool) -> None:
    from ldp.imageio import write_image

    folder.mkdir(parents=True, exist_ok=True)
    _, outputs = validate(engine, images)
    for img, pred in zip(images, outputs, strict=True):
        def hwc(t: torch.Tensor) -> np.ndarray:
            return t[0].permute(1, 2, 0).clamp(0, 1).numpy()

        combined = (img.left + img.right) / 2
        write_image(folder / f"{img.scene}_input.png", hwc(combined))
        write_image(folder / f"{img.scene}_output.png", hwc(pred))
        write_image(folder / f"{img.scene}_target.png", hwc(img.target))
        if with_blurmap and img.blurmap is not None:
            write_image(folder / f"{img.scene}_blurmap.png", img.blurmap[0, 0].clamp(0, 1).numpy())
