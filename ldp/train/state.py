"""The training state on disk: where a run writes, the lock, the checkpoint, and what an interrupted run allows.

A run writes into ``<parent>/.<name>.partial/`` beside its output folder ``<parent>/<name>/`` and swaps it in
only when it has finished, so a failed or killed run never touches the previous finished outputs. The partial
folder is the interrupted run: the next run resumes it if the model and config are the same, refuses (naming
the changed keys) if not, and discards it only when asked (``restart=True``). ``.<name>.lock`` beside the two
holds the lock of one training at a time.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldp.checkpoint import CheckpointError, atomic_torch_save, restore_rng_state, safe_load
from ldp.config import ConfigError
from ldp.filelock import exclusive_lock
from ldp.fsutil import DIR_MODE, atomic_write_json
from ldp.train.config import KeyPath, TrainConfig, changed_keys, config_json
from ldp.train.engine import Engine

CHECKPOINT_FORMAT = "ldp-train-v1"
CHECKPOINT = "last.pt"
RUN_STATE = "run.json"  # model, config and MLflow run id of the run in progress, written before its first step
# The temp files of ldp.fsutil.atomic_open: ".<name>.<8 random chars>.tmp".
ATOMIC_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
RESTART_HINT = "; rerun with --restart to discard it and train from the start"


def partial_dir(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.partial"


def run_lock(out_dir: Path):
    """The lock of one training per output folder (raises ``LockHeld`` naming the holder's pid)."""
    return exclusive_lock(out_dir.parent / f".{out_dir.name}.lock", wait=False, what=f"{out_dir}: training")


def remove_stale_temps(folder: Path) -> list[str]:
    """Delete the leftovers of killed atomic writes in ``folder`` (call only while holding its lock)."""
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.is_file() and ATOMIC_TEMP.match(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return sorted(p.name for p in stale)


@dataclass(frozen=True)
class Interrupted:
    """A resumable run found in the partial folder: its checkpoint (None before the first one) and MLflow run."""

    checkpoint: Mapping[str, Any] | None
    mlflow_run_id: str | None


def find_interrupted(work: Path, cfg: TrainConfig, model_name: str, world: int,
                     key_path: KeyPath) -> Interrupted | None:
    """The interrupted run in ``work`` if it may be resumed, None if there is none; anything else is refused."""
    state_path, ckpt_path = work / RUN_STATE, work / CHECKPOINT
    if not state_path.is_file() and not ckpt_path.is_file():
        return None  # killed before it wrote anything worth keeping
    run: dict[str, Any] = {}
    if state_path.is_file():
        try:
            run = json.loads(state_path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{state_path}: unreadable run state ({exc}){RESTART_HINT}") from exc
    checkpoint = None
    if ckpt_path.is_file():
        try:
            checkpoint = safe_load(ckpt_path, map_location="cpu")
        except CheckpointError as exc:
            raise CheckpointError(f"{exc}{RESTART_HINT}") from exc
        if not isinstance(checkpoint, Mapping) or checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{ckpt_path}: not an ldp training checkpoint ({CHECKPOINT_FORMAT}){RESTART_HINT}")
    saved = checkpoint if checkpoint is not None else run
    if saved.get("model_name") != model_name:
        raise CheckpointError(f"{work}: the interrupted run trains model {saved.get('model_name')!r}, not "
                              f"{model_name!r}{RESTART_HINT}")
    diff = changed_keys(saved.get("config", "{}"), cfg)
    if diff:
        raise ConfigError(f"{work}: the interrupted run was started with other values of "
                          f"{', '.join(key_path(k) for k in diff)}; resuming it would not reproduce it{RESTART_HINT}")
    if checkpoint is not None and checkpoint["world"] != world:
        raise CheckpointError(f"{ckpt_path}: checkpoint written by {checkpoint['world']} process(es), resumed with "
                              f"{world}; the sample order would differ{RESTART_HINT}")
    return Interrupted(checkpoint, run.get("mlflow_run_id"))


def start_work_dir(work: Path, resumed: bool) -> list[str]:
    """Create (fresh) or clean (resumed) the partial folder; returns the stale temp files removed."""
    if not resumed and work.exists():
        shutil.rmtree(work)
    work.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    return remove_stale_temps(work)


def write_run_state(work: Path, cfg: TrainConfig, model_name: str, mlflow_run_id: str | None) -> None:
    atomic_write_json(work / RUN_STATE, {"format": CHECKPOINT_FORMAT, "model_name": model_name,
                                         "config": config_json(cfg), "mlflow_run_id": mlflow_run_id})


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


def restore_training_state(state: Mapping[str, Any], engine: Engine) -> int:
    """Load a checkpoint (already checked by :func:`find_interrupted`) into ``engine``; returns its iteration."""
    engine.module.load_state_dict(state["model"])
    if engine.ema is not None and state["ema"] is not None:
        engine.ema.load_state_dict(state["ema"])
    engine.optimizer.load_state_dict(state["optimizer"])
    engine.scheduler.load_state_dict(state["scheduler"])
    engine.scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["rng"][engine.runtime.rank])
    return int(state["iteration"])
