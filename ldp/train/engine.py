"""Devices, seeds and process groups, the weight EMA, and ``Engine``: one optimiser step for any registered model."""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ldp.checkpoint import unwrap_model
from ldp.config import ConfigError
from ldp.losses import build_loss
from ldp.registry import build_model, get_spec
from ldp.train.config import KeyPath, TrainConfig, default_key_path, lr_factor


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


def device_and_precision(cfg: TrainConfig, key_path: KeyPath = default_key_path) -> tuple[bool, str]:
    """``(use_cuda, precision)`` for this machine; a setting it cannot honour is a ConfigError naming the key."""
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError(f"{key_path('device')}: 'cuda' requested but no GPU is visible")
    precision = cfg.precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if use_cuda else "fp32"
    if precision == "fp16" and not use_cuda:
        raise ConfigError(f"{key_path('precision')}: fp16 needs a GPU (use fp32 or bf16 on CPU)")
    return use_cuda, precision


def launch_rank() -> int:
    """This process's rank as torchrun sets it (0 outside torchrun), known before the process group exists."""
    return int(os.environ.get("RANK", "0") or 0)


def launch_world() -> int:
    """The number of processes torchrun started (WORLD_SIZE; 1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def setup_runtime(cfg: TrainConfig, key_path: KeyPath = default_key_path) -> Runtime:
    """Pick the device and precision; join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = launch_world()
    rank = launch_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda, precision = device_and_precision(cfg, key_path)
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    if world > 1:
        rank, world = dist.get_rank(), dist.get_world_size()
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


class Engine:
    """Model, loss, optimiser, scheduler, scaler and EMA for one registered model, with ``step(batch)``.

    Shared by the training loop and benchmarks/bench_train.py.
    """

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
        optimizer = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        self.optimizer = optimizer(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(cfg))
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
            raise FloatingPointError(f"non-finite training loss {total.item()} (terms {floats(terms)})")
        self.scaler.scale(total).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.module)
        values = floats(terms)
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


def floats(terms: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in terms.items()}
