"""One trainer for every registered model: CPU, one GPU (bf16, channels_last, torch.compile) or DDP (torchrun).

``run_training(cfg, model_name, dataset_root, out_dir, ...)`` is the entry point (ldp/train/loop.py); it writes
``out_dir/{last.pt, model.pt, config.json, train_log.csv, val_log.csv, train_summary.json, model_summary.txt,
samples/}``. Resuming restores the model, optimiser, scheduler, grad scaler, EMA, RNG states and the sampler
position, so a CPU run killed at any point and resumed ends with the same weights as an uninterrupted run.
Modules: ``config`` (TrainConfig, phases, lr schedule), ``engine`` (Runtime, Engine, EMA), ``state`` (checkpoint,
lock, partial folder), ``loop``. See docs/training.md.
"""

from ldp.train.config import (
    EMAConfig,
    LRFactor,
    OptimConfig,
    PatchPoolConfig,
    ScheduleConfig,
    TrainConfig,
    ValConfig,
    check_values,
    lr_at,
    phases,
)
from ldp.train.engine import EMA, Engine, Runtime, setup_runtime
from ldp.train.loop import TrainingTerminated, check_run, run_training
from ldp.train.state import CHECKPOINT_FORMAT, partial_dir

__all__ = [
    "CHECKPOINT_FORMAT", "EMA", "EMAConfig", "Engine", "LRFactor", "OptimConfig", "PatchPoolConfig", "Runtime",
    "ScheduleConfig",
    "TrainConfig", "TrainingTerminated", "ValConfig", "check_run", "check_values", "lr_at", "partial_dir", "phases",
    "run_training", "setup_runtime",
]
