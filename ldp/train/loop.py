"""One training run from start to finish: the checks, the lock, the loop, validation, samples and the swap-in.

``run_training`` is the single entry point. Everything that can fail on bad input is checked before any file is
touched; the run then writes into the partial folder (ldp/train/state.py) and replaces ``out_dir`` only when it
has finished. See docs/training.md ("Run lifecycle").
"""

from __future__ import annotations

import copy
import csv
import math
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ldp.checkpoint import atomic_torch_save, capture_rng_state, safe_load
from ldp.config import ConfigError
from ldp.data.manifest import MANIFEST_NAME, load_manifest
from ldp.data.sources import DatasetError
from ldp.fsutil import atomic_open, atomic_write_json, atomic_write_text, replace_dir
from ldp.registry import get_spec
from ldp.train.config import (
    KeyPath,
    TrainConfig,
    ValConfig,
    check_values,
    default_key_path,
    largest_patch,
    phases,
)
from ldp.train.engine import (
    Engine,
    Runtime,
    device_and_precision,
    floats,
    launch_world,
    seed_everything,
    set_deterministic,
    setup_runtime,
)
from ldp.train.state import (
    CHECKPOINT,
    Interrupted,
    find_interrupted,
    partial_dir,
    remove_stale_temps,
    restore_training_state,
    run_lock,
    save_training_state,
    start_work_dir,
    write_run_state,
)

OpenTracker = Callable[[str | None], AbstractContextManager[Any]]


class TrainingTerminated(KeyboardInterrupt):
    """SIGTERM stopped the run after it wrote its checkpoint; rerunning resumes it (MLflow status KILLED)."""


# ---------------------------------------------------------------------------------------------------------------
# Checks: everything that can fail on bad input, before anything is touched


def check_run(cfg: TrainConfig, model_name: str, root: Path, blur_dir: Path | None,
              key_path: KeyPath = default_key_path) -> None:
    """Raise the one error a run of ``cfg`` would meet on bad input (config values, model, data, blur maps, device)."""
    check_values(cfg, key_path, world=launch_world())
    try:
        spec = get_spec(model_name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    device_and_precision(cfg, key_path)
    train_rows = load_manifest(root, "train")
    if train_rows.empty:
        raise DatasetError(f"{root / MANIFEST_NAME}: no scenes in split 'train'")
    _check_patches_fit(cfg, root, train_rows, key_path)
    if blur_dir is None and spec.input_kind == "dp+blurmap":
        raise ConfigError(f"model {model_name!r} takes a blur map as input: pass blurmap_dir (data/blurmaps/<id>)")
    if blur_dir is None and cfg.loss.bwl > 0:
        raise ConfigError(f"{key_path('loss.bwl')} > 0 needs blur maps: pass blurmap_dir (data/blurmaps/<id>)")
    if blur_dir is not None:
        scenes = list(train_rows["scene"]) + list(load_manifest(root, "val")["scene"])
        _check_blurmaps(blur_dir, scenes)


def _check_patches_fit(cfg: TrainConfig, root: Path, rows, key_path: KeyPath) -> None:
    from ldp.imageio import read_image_raw

    sizes = []
    for _, row in rows.iterrows():
        h, w = int(row["height"]), int(row["width"])
        if h <= 0 or w <= 0:  # a manifest without sizes: read the image
            h, w = read_image_raw(root / row["left"]).shape[:2]
        sizes.append((min(h, w), h, w, row["left"]))
    side, h, w, name = min(sizes)
    patch, key = largest_patch(cfg)
    if cfg.patch_pool is not None:
        patch, key = cfg.patch_pool.size, "patch_pool"
    if patch > side:
        raise ConfigError(f"{key_path(key)}: {'pool window' if cfg.patch_pool else 'patch size'} {patch} does not "
                          f"fit the smallest train image {root / name} ({w}x{h})")


def _check_blurmaps(blur_dir: Path, scenes: Sequence[str]) -> None:
    if not blur_dir.is_dir():
        raise DatasetError(f"{blur_dir}: blur-map folder not found; build it first (dvc repro blurmaps)")
    missing = [s for s in scenes if not (blur_dir / f"{s}.npy").is_file()]
    if missing:
        raise DatasetError(f"{blur_dir}: no blur map for scene '{missing[0]}' ({len(missing)} of {len(scenes)} "
                           "train/val scenes missing); build it first (dvc repro blurmaps)")


# ---------------------------------------------------------------------------------------------------------------
# The entry point


def run_training(cfg: TrainConfig, model_name: str, dataset_root: str | Path, out_dir: str | Path, *,
                 blurmap_dir: str | Path | None = None, open_tracker: OpenTracker | None = None,
                 restart: bool = False, key_path: KeyPath = default_key_path,
                 record: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train ``model_name`` on ``dataset_root``'s train split into ``out_dir``; returns the training summary.

    ``open_tracker(run_id)`` opens the MLflow run (``run_id`` is the interrupted run's, to continue it, or None);
    ``key_path`` names a TrainConfig field as the params file the user gave spells it; ``record`` (the resolved
    experiment) is written as ``config.json`` beside ``model.pt``. ``restart=True`` discards an interrupted run.
    """
    root, out = Path(dataset_root), Path(out_dir)
    blur_dir = Path(blurmap_dir) if blurmap_dir is not None else None
    check_run(cfg, model_name, root, blur_dir, key_path)
    runtime = setup_runtime(cfg, key_path)
    try:
        set_deterministic(cfg.deterministic)
        if runtime.device.type == "cpu" and cfg.cpu_threads > 0:
            torch.set_num_threads(cfg.cpu_threads)  # process-wide, as for any training process
        engine = Engine(cfg, model_name, runtime)
        seed_everything(cfg.seed + 1_000_003 * (runtime.rank + 1))  # training randomness differs per rank
        with run_lock(out) if runtime.is_main else nullcontext():
            return _run_locked(engine, root, out, blur_dir, open_tracker, restart, key_path, record)
    finally:
        if runtime.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()


def _run_locked(engine: Engine, root: Path, out: Path, blur_dir: Path | None, open_tracker: OpenTracker | None,
                restart: bool, key_path: KeyPath, record: Mapping[str, Any] | None) -> dict[str, Any]:
    cfg, rt = engine.cfg, engine.runtime
    work = partial_dir(out)
    interrupted: Interrupted | None = None
    if rt.is_main:
        if restart and work.exists():
            shutil.rmtree(work)
        interrupted = find_interrupted(work, cfg, engine.model_name, rt.world, key_path)
    run_id = interrupted.mlflow_run_id if interrupted else None
    tracking = open_tracker(run_id) if (open_tracker is not None and rt.is_main) else nullcontext(None)
    with tracking as tracker:
        if rt.is_main:
            start_work_dir(work, resumed=interrupted is not None)
            remove_stale_temps(out)
            write_run_state(work, cfg, engine.model_name, getattr(tracker, "run_id", None))
            if tracker is not None:
                tracker.out_dir = work
        if rt.distributed:
            dist.barrier()
            if not rt.is_main and (work / CHECKPOINT).is_file():
                interrupted = Interrupted(safe_load(work / CHECKPOINT), None)
        start = 0
        if interrupted is not None and interrupted.checkpoint is not None:
            start = restore_training_state(interrupted.checkpoint, engine)
        run = TrainingRun(engine, root, work, blur_dir, tracker, start_iter=start,
                          resumed_from=start if interrupted is not None else None)
        with sigterm_flag() as stop:
            run.loop(stop)
        summary = run.finish(record) if rt.is_main else {}
        if rt.distributed:
            dist.barrier()
        if rt.is_main:
            replace_dir(work, out)
            if tracker is not None:
                tracker.out_dir = out
        return summary


@contextmanager
def sigterm_flag() -> Iterator[threading.Event]:
    """An event set by SIGTERM while the block runs (the previous handler is restored after it)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainingRun:
    """The state of one run of the loop, from its first step to ``finish``."""

    engine: Engine
    root: Path
    work: Path
    blur_dir: Path | None
    tracker: Any
    start_iter: int = 0
    resumed_from: int | None = None
    iteration: int = 0
    last_values: dict[str, float] = field(default_factory=dict)
    val_history: list[dict[str, float]] = field(default_factory=list)
    val_images: list[ValImage] = field(default_factory=list)
    elapsed: float = 0.0

    def __post_init__(self) -> None:
        cfg, main = self.engine.cfg, self.engine.runtime.is_main
        self.iteration = self.start_iter
        self.view = val_view(cfg.val)
        if main:
            self.val_images = load_val_images(self.root, cfg.val, self.blur_dir,
                                              combined_input=self.engine.spec.input_kind == "combined")
            if not self.val_images:
                warnings.warn(f"{self.root}: no val split in manifest.csv; validation skipped", RuntimeWarning,
                              stacklevel=3)
            self.train_log = CsvLog(self.work / "train_log.csv", self.start_iter)
            self.val_log = CsvLog(self.work / "val_log.csv", self.start_iter)
            atomic_write_text(self.work / "model_summary.txt",
                              model_summary(self.engine.module, self.engine.model_name))
            rt = self.engine.runtime
            self.log_tags({"device": str(rt.device), "precision": rt.precision, "world_size": rt.world,
                           "val_view": self.view})

    def log_tags(self, tags: Mapping[str, Any]) -> None:
        if self.tracker is not None:
            self.tracker.set_tags(tags)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if self.tracker is not None:
            self.tracker.log_metrics(metrics, step=step)

    def validate(self, bar) -> None:
        if not self.engine.runtime.is_main or not self.val_images:
            return
        metrics, _ = validate(self.engine, self.val_images)
        it = self.iteration
        self.val_log.append({"iter": it, "view": self.view, **{f"val_{k}": v for k, v in metrics.items()}})
        self.val_history.append({"iter": it, **metrics})
        self.log_metrics({f"val.{k}": v for k, v in metrics.items()}, it)
        bar.set_postfix(loss=f"{self.last_values.get('total', float('nan')):.4f}",
                        val_psnr=f"{metrics['psnr']:.2f}", refresh=False)

    def loop(self, stop: threading.Event) -> None:
        """Train to ``cfg.iters``; on ``stop`` (SIGTERM) write a checkpoint and raise :class:`TrainingTerminated`."""
        engine = self.engine
        cfg, rt = engine.cfg, engine.runtime
        main = rt.is_main
        plan = phases(cfg)
        bar = tqdm(total=cfg.iters, initial=self.start_iter, desc=f"train {engine.model_name}", disable=not main,
                   dynamic_ncols=True, mininterval=0.5)
        t0 = time.perf_counter()
        for phase_idx, (p_start, p_end, patch, batch) in enumerate(plan):
            if self.iteration >= p_end:
                continue
            for data in _batches(engine, self.root, self.blur_dir, plan, phase_idx, self.iteration - p_start):
                self.last_values = engine.step(data)
                self.iteration += 1
                it = self.iteration
                bar.update(1)
                if main and (it % max(1, cfg.log_every) == 0 or it == cfg.iters):
                    bar.set_postfix(loss=f"{self.last_values['total']:.4f}", lr=f"{self.last_values['lr']:.2e}",
                                    refresh=False)
                    self.train_log.append({"iter": it, "patch": patch, "batch": batch, **self.last_values})
                    self.log_metrics({f"train.{'loss' if k == 'total' else k}": v
                                      for k, v in self.last_values.items()}, it)
                if cfg.val.every > 0 and it % cfg.val.every == 0 and it < cfg.iters:
                    self.validate(bar)
                stopping = _any_rank(stop.is_set(), rt)
                if stopping or (cfg.checkpoint_every > 0 and it % cfg.checkpoint_every == 0) or it == cfg.iters:
                    rng = _gather_rng(rt)
                    if main:
                        save_training_state(self.work / CHECKPOINT, engine, it, phase_idx, it - p_start, rng)
                    if rt.distributed:
                        dist.barrier()
                if stopping and it < cfg.iters:
                    bar.close()
                    raise TrainingTerminated(f"SIGTERM: stopped at iteration {it} of {cfg.iters} after writing "
                                             f"{self.work / CHECKPOINT}; rerun to resume")
        bar.close()
        self.elapsed = time.perf_counter() - t0
        validated_last = bool(self.val_history) and self.val_history[-1]["iter"] == self.iteration
        if self.iteration > self.start_iter and not validated_last:
            self.validate(bar)  # the final validation

    def clip_weights_used(self) -> tuple[str, ...]:
        """The CLIP weight kinds behind this run: its blur maps' (meta.json) and L_bal's, as loaded."""
        from ldp.blurmap.io import read_meta

        kinds = set()
        if self.blur_dir is not None and (self.blur_dir / "meta.json").is_file():
            kinds.add(read_meta(self.blur_dir).get("weights_kind"))
        bal = getattr(self.engine.loss_fn, "bal", None)
        if bal is not None:
            kinds.add(bal.weights_kind)
        return tuple(sorted(k for k in kinds if k and k != "n/a"))

    def finish(self, record: Mapping[str, Any] | None) -> dict[str, Any]:
        """Write model.pt, samples, train_summary.json and config.json into the work folder; log artifacts."""
        engine, cfg, work, tracker = self.engine, self.engine.cfg, self.work, self.tracker
        final = engine.eval_module()
        atomic_torch_save({k: v.detach().cpu() for k, v in final.state_dict().items()}, work / "model.pt")
        samples_dir = work / "samples"
        if self.val_images and cfg.val.samples > 0:
            _write_samples(engine, self.val_images[: cfg.val.samples], samples_dir,
                           with_blurmap=self.blur_dir is not None)
        done = cfg.iters - self.start_iter
        rt = engine.runtime
        summary = {
            "model": engine.model_name,
            "iterations": cfg.iters,
            "resumed_from": self.resumed_from,
            "iterations_this_run": done,
            "seconds_this_run": round(self.elapsed, 3),
            "it_per_s": round(done / self.elapsed, 4) if self.elapsed > 0 and done > 0 else None,
            "final_train": self.last_values,
            "val_view": (f"centre {cfg.val.crop}x{cfg.val.crop} crop of each val image (crop-val)"
                         if cfg.val.mode == "crop" else "full val images"),
            "val_first": self.val_history[0] if self.val_history else None,
            "val_last": self.val_history[-1] if self.val_history else None,
            "parameters": sum(p.numel() for p in engine.module.parameters()),
            "device": str(rt.device),
            "precision": rt.precision,
            "world_size": rt.world,
            "ema": cfg.ema.enabled,
            "weights": "ema" if cfg.ema.enabled else "final",
            "dataset_root": str(self.root),
            "blurmap_dir": str(self.blur_dir) if self.blur_dir else None,
            "combined_input": ("camera combined image C where the scene has one, else (L+R)/2"
                               if engine.spec.input_kind == "combined" else None),
        }
        atomic_write_json(work / "train_summary.json", summary, default=str)
        if record is not None:
            atomic_write_json(work / "config.json", as_run(record, rt.precision, self.clip_weights_used()),
                              default=str)
        if tracker is not None:
            for name in ("train_log.csv", "val_log.csv", "train_summary.json", "model_summary.txt", "config.json"):
                if (work / name).is_file():
                    tracker.log_artifact(work / name)
            if samples_dir.is_dir():
                tracker.log_artifact(samples_dir, "samples")
            tracker.log_model(copy.deepcopy(final).cpu().eval(), name="model")
        return summary


def as_run(record: Mapping[str, Any], precision: str, clip_kinds: tuple[str, ...]) -> dict[str, Any]:
    """The resolved experiment as the run used it: ``train.precision`` resolved (``auto``: bf16, fp32...) and the
    CLIP weight kinds as loaded (a file in the ``openai`` slot that is not OpenAI's release loads as
    ``checkpoint``); ``clip_kinds`` empty keeps the record's."""
    out = dict(record)
    if isinstance(out.get("train"), Mapping):
        out["train"] = {**out["train"], "precision": precision}
    if clip_kinds:
        out["clip_weights_kinds"] = list(clip_kinds)
    return out


def _any_rank(flag: bool, rt: Runtime) -> bool:
    """``flag`` on any rank (every rank must stop at the same step)."""
    if not rt.distributed:
        return flag
    t = torch.tensor([int(flag)], device=rt.device if rt.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _gather_rng(runtime: Runtime) -> list[dict[str, Any]]:
    state = capture_rng_state()
    if not runtime.distributed:
        return [state]
    gathered: list[Any] = [None] * runtime.world
    dist.all_gather_object(gathered, state)
    return gathered


def _batches(engine: Engine, root: Path, blurmap_dir: Path | None, plan: list[tuple[int, int, int, int]],
             phase_idx: int, start_step: int) -> Iterator[dict[str, torch.Tensor]]:
    from ldp.data.sampler import DPPatchDataset, ShardedBatchSampler

    cfg, rt = engine.cfg, engine.runtime
    p_start, p_end, patch, batch = plan[phase_idx]  # batch: global, checked to divide over the processes
    base = sum((e - s) * b for s, e, _, b in plan[:phase_idx])
    dataset = DPPatchDataset(root, "train", patch, blurmap_dir=blurmap_dir, augment=cfg.augment, seed=cfg.seed,
                             progress=rt.is_main, patch_pool=cfg.patch_pool,
                             combined_input=engine.spec.input_kind == "combined")
    sampler = ShardedBatchSampler(batch // rt.world, p_end - p_start, base=base, rank=rt.rank, world=rt.world,
                                  start_step=start_step)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=cfg.num_workers, pin_memory=rt.device.type == "cuda",
        # An explicit generator: worker seeds do not draw from (and so do not disturb) the global torch RNG.
        generator=torch.Generator().manual_seed(cfg.seed + 7919 * phase_idx + start_step),
        persistent_workers=False,
    )
    yield from loader


# ---------------------------------------------------------------------------------------------------------------
# Validation and samples


@dataclass
class ValImage:
    scene: str
    left: torch.Tensor  # 1x3xHxW
    right: torch.Tensor
    target: torch.Tensor
    blurmap: torch.Tensor | None


def val_view(cfg: ValConfig) -> str:
    return f"crop{cfg.crop}" if cfg.mode == "crop" else "full"


def load_val_images(root: Path, cfg: ValConfig, blurmap_dir: Path | None,
                    combined_input: bool = False) -> list[ValImage]:
    """The val split as centre crops (crop-val) or full images; empty if the manifest has no val scenes.
    ``combined_input``: a combined-input model's views are the camera combined image C where the scene has one."""
    from ldp.data.sampler import DPImageDataset

    if load_manifest(root, split="val").empty:
        return []
    dataset = DPImageDataset(root, "val", blurmap_dir=blurmap_dir, progress=False, combined_input=combined_input)
    count = len(dataset) if cfg.max_images <= 0 else min(cfg.max_images, len(dataset))
    images = []
    for i in range(count):
        item = dataset[i]
        if "target" not in item:
            raise DatasetError(f"{root / MANIFEST_NAME}: val scene {item['scene']} has no target image")
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
        values.update({f"loss_{k}": v for k, v in floats(terms).items()})
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        outputs.append(pred.cpu())
    n = max(1, len(images))
    return {k: v / n for k, v in sums.items()}, outputs


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


# ---------------------------------------------------------------------------------------------------------------
# Logs


class CsvLog:
    """Append-only CSV that, on resume, first drops the rows written after the checkpoint."""

    def __init__(self, path: Path, keep_until: int):
        self.path = path
        self.fields: list[str] | None = None
        rows: list[dict[str, str]] = []
        if path.is_file():
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
