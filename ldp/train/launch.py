"""Scale-out of a training stage: re-run the same command under ``torch.distributed.run`` (torchrun).

A stage whose ``train.processes`` asks for more than one process, started outside torchrun, re-launches itself as
``python -m torch.distributed.run --standalone --nproc_per_node N -m <module> <args>`` and exits with its status.
Under torchrun already (``WORLD_SIZE`` set, e.g. a multi-node run with rendezvous options) nothing is re-launched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from ldp.config import ConfigError
from ldp.train.config import KeyPath, TrainConfig, default_key_path


def under_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ


def wanted_processes(cfg: TrainConfig, key_path: KeyPath = default_key_path) -> int:
    """``processes`` resolved: ``auto`` = the visible GPUs (1 without one); more GPUs than visible is an error."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cfg.processes == "auto":
        return max(1, gpus)
    if gpus and cfg.processes > gpus:
        raise ConfigError(f"{key_path('processes')}: {cfg.processes} processes, but {gpus} GPU(s) are visible")
    return int(cfg.processes)


def torchrun_command(processes: int, module: str, args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", module, *args]


def relaunch_if_wanted(cfg: TrainConfig, module: str, args: Sequence[str],
                       key_path: KeyPath = default_key_path) -> int | None:
    """Run ``module args`` under torchrun when ``cfg`` asks for several processes and this is not under torchrun
    yet; returns torchrun's exit status, or None when this process should train itself."""
    if under_torchrun():
        return None
    processes = wanted_processes(cfg, key_path)
    if processes <= 1:
        return None
    child = subprocess.Popen(torchrun_command(processes, module, args))
    # SIGTERM (dvc queue kill, a scheduler) goes on to torchrun, which stops its ranks after their checkpoint.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
    try:
        return child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
