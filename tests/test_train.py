"""ldp.train: config merging, LR schedule, outputs, SIGKILL resume identity and DDP on gloo.

The run lifecycle (checks before any file, the partial folder, lock, SIGTERM, MLflow resume) is in
tests/test_run_lifecycle.py.
"""

import csv
import json
import math
import multiprocessing
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ldp import build_model
from ldp.checkpoint import CheckpointError, load_weights, safe_load
from ldp.config import ConfigError, merge_overrides
from ldp.data.manifest import write_manifest
from ldp.imageio import write_image
from ldp.train import (
    EMAConfig,
    LRFactor,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    ValConfig,
    lr_at,
    partial_dir,
    phases,
    run_training,
)

REPO = Path(__file__).resolve().parents[1]
MODEL = "nafnet-dp"  # tiny=True: width 8, two levels; a few ms per 32x32 step on CPU


def make_tiny_dataset(root: Path, n_train: int = 4, n_val: int = 2, size: int = 40, seed: int = 0) -> Path:
    """A DPDD-layout dataset of smooth random scenes whose DP views are shifted, softened copies."""
    import cv2

    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            scene = f"{split}{i:02d}"
            low = rng.random((size // 4, size // 4, 3)).astype(np.float32)
            target = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)
            soft = cv2.GaussianBlur(target, (5, 5), 1.5)
            left, right = np.roll(soft, 1, axis=1), np.roll(soft, -1, axis=1)
            base = "dd_dp_dataset_canon"
            paths = {
                "left": f"{base}/{split}_l/source/{scene}_L.png",
                "right": f"{base}/{split}_r/source/{scene}_R.png",
                "target": f"{base}/{split}_c/target/{scene}.png",
            }
            for key, img in (("left", left), ("right", right), ("target", target)):
                write_image(root / paths[key], img)
            rows.append({"scene": scene, "split": split, "category": "indoor", **paths, "combined": "",
                         "defocus": "", "height": size, "width": size, "bit_depth": 16})
    write_manifest(root, rows)
    return root


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(iters=6, patch_size=32, batch_size=2, checkpoint_every=2, log_every=1, seed=3,
                device="cpu", model_overrides={"tiny": True}, val=ValConfig(every=3, crop=32, samples=1),
                optim=OptimConfig(lr=2e-3, grad_clip=0.5), schedule=ScheduleConfig(warmup_iters=2))
    base.update(kw)
    return TrainConfig(**base)


def state_of(path: Path) -> dict:
    return safe_load(path)


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"tensor {k} differs"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_dp"))


# ---------------------------------------------------------------------------------------------------------------
# Config


def test_merge_overrides_is_strict_and_deep():
    defaults = {"iters": 100, "optim": {"lr": 3e-4, "weight_decay": 1e-4}, "model_overrides": {"tiny": True}}
    merged = merge_overrides(TrainConfig, defaults, {"optim": {"lr": 1e-3}, "model_overrides": {"width": 8}},
                             "params.yaml:experiments.x.train")
    assert merged == {"iters": 100, "optim": {"lr": 1e-3, "weight_decay": 1e-4}, "model_overrides": {"width": 8}}
    with pytest.raises(ConfigError, match=r"experiments\.x\.train\.optim\.lrr: unknown key \(did you mean 'lr'"):
        merge_overrides(TrainConfig, defaults, {"optim": {"lrr": 1}}, "params.yaml:experiments.x.train")
    with pytest.raises(ConfigError, match=r"experiments\.x\.train\.iter: unknown key"):
        merge_overrides(TrainConfig, defaults, {"iter": 1}, "params.yaml:experiments.x.train")


def test_progressive_phases_cover_iters():
    cfg = TrainConfig(iters=10, progressive=((4, 32, 8), (3, 48, 4), (100, 64, 2)))
    assert phases(cfg) == [(0, 4, 32, 8), (4, 7, 48, 4), (7, 10, 64, 2)]
    # Fewer iterations than listed: later phases are not reached; more: the last phase continues.
    assert phases(TrainConfig(iters=5, progressive=((4, 32, 8), (3, 48, 4), (3, 64, 2)))) == [
        (0, 4, 32, 8), (4, 5, 48, 4)]
    assert phases(TrainConfig(iters=9, progressive=((4, 32, 8),))) == [(0, 9, 32, 8)]
    assert phases(TrainConfig(iters=7, patch_size=40, batch_size=3)) == [(0, 7, 40, 3)]


def test_lr_schedule_shape():
    cfg = TrainConfig(iters=100, optim=OptimConfig(lr=1e-3),
                      schedule=ScheduleConfig(warmup_iters=10, flat_iters=20, eta_min=1e-6))
    lrs = [lr_at(cfg, t) for t in range(cfg.iters)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # linear warm-up
    assert all(b > a for a, b in zip(lrs[:10], lrs[1:10], strict=False))
    assert all(lr == pytest.approx(1e-3) for lr in lrs[10:31])  # flat, then the cosine starts at the peak
    assert all(b < a for a, b in zip(lrs[30:], lrs[31:], strict=False))  # strictly decreasing cosine
    mid = 30 + 35  # half-way through the 70 cosine steps
    assert lrs[mid] == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5, rel=1e-9)
    assert lr_at(cfg, 100) == pytest.approx(1e-6)  # eta_min at the end
    # The optimiser really follows it (LambdaLR around AdamW, as in the trainer).
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, LRFactor(100, 10, 20, 1e-3))
    seen = []
    for _ in range(100):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx(lrs, rel=1e-12)
    no_warmup = TrainConfig(iters=4, optim=OptimConfig(lr=2.0), schedule=ScheduleConfig(eta_min=0.0))
    assert [lr_at(no_warmup, t) for t in range(4)] == pytest.approx(
        [2.0 * 0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)])


@pytest.fixture(scope="module")
def blurmaps(dataset) -> Path:
    from ldp.blurmap.io import save_blurmap, write_meta
    from ldp.data.manifest import load_manifest

    folder = dataset.parent / "blurmaps" / "test"
    rng = np.random.default_rng(1)
    for scene in load_manifest(dataset)["scene"]:
        save_blurmap(folder, scene, rng.random((4, 4)).astype(np.float32))
    write_meta(folder, {"estimator": "test", "patch_size": 10, "weights_kind": "random"})
    return folder


def registered_models() -> list[str]:
    try:
        import baselines  # noqa: F401  (registers the in-tree baselines, as the entry point does)
    except ImportError:
        pass
    from ldp import list_models

    return list_models()


# ---------------------------------------------------------------------------------------------------------------
# Training runs


@pytest.mark.parametrize("name", registered_models())
def test_every_registered_model_trains(name, dataset, blurmaps, tmp_path):
    from ldp.losses import LossConfig
    from ldp.models.input_baselines import INPUT_BASELINES
    from ldp.registry import get_spec

    if name in INPUT_BASELINES:
        pytest.skip(f"{name} is a parameter-free input baseline: nothing to train (tests/test_input_baselines.py)")
    needs_map = get_spec(name).input_kind == "dp+blurmap"
    # LDP models train with L_bwl on, which reads the blur map; the others with their plain pixel loss.
    loss = LossConfig(charbonnier=1.0, bwl=0.5) if needs_map else LossConfig()
    cfg = tiny_cfg(iters=2, batch_size=1, checkpoint_every=0, loss=loss, val=ValConfig(every=0, crop=32, samples=1))
    out = tmp_path / name
    summary = run_training(cfg, name, dataset, out, blurmap_dir=blurmaps if needs_map else None)
    assert summary["iterations_this_run"] == 2
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    assert len(rows) == 2 and all(math.isfinite(float(r["total"])) for r in rows)
    assert ("bwl" in rows[0]) == needs_map
    assert (out / "samples" / "val00_blurmap.png").is_file() == needs_map
    load_weights(build_model(name, tiny=True), out / "model.pt")
    if needs_map:
        with pytest.raises(ConfigError, match="takes a blur map as input"):
            run_training(cfg, name, dataset, tmp_path / "nomap")


def test_train_writes_outputs_and_learns(dataset, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_cfg(iters=12, val=ValConfig(every=4, crop=32, samples=1))
    summary = run_training(cfg, MODEL, dataset, out, record={"experiment": "x", "model": MODEL})
    for name in ("last.pt", "model.pt", "train_log.csv", "val_log.csv", "train_summary.json", "model_summary.txt"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text()) == {"experiment": "x", "model": MODEL}
    assert not partial_dir(out).exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    assert [int(r["iter"]) for r in rows] == list(range(1, 13))
    assert {"iter", "lr", "total", "patch", "batch"} <= set(rows[0])
    assert float(rows[0]["lr"]) == pytest.approx(lr_at(cfg, 0), rel=1e-6)
    val = list(csv.DictReader((out / "val_log.csv").open()))
    assert [int(r["iter"]) for r in val] == [4, 8, 12] and {r["view"] for r in val} == {"crop32"}
    assert float(val[-1]["val_loss"]) < float(val[0]["val_loss"])  # it learns the tiny task
    assert summary == json.loads((out / "train_summary.json").read_text())
    assert summary["iterations"] == 12 and summary["val_last"]["iter"] == 12 and "crop-val" in summary["val_view"]
    assert summary["it_per_s"] > 0
    # model.pt is a plain state dict that loads into a fresh model; last.pt is weights-only loadable too.
    fresh = build_model(MODEL, tiny=True)
    load_weights(fresh, out / "model.pt")
    ckpt = state_of(out / "last.pt")
    assert ckpt["iteration"] == 12 and ckpt["sampler"] == {"phase": 0, "step": 12, "world": 1, "seed": 3}
    assert_identical(fresh.state_dict(), ckpt["model"])
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "val00_input.png", "val00_output.png", "val00_target.png"]


def test_progressive_and_ema(dataset, tmp_path):
    out = tmp_path / "prog"
    cfg = tiny_cfg(iters=5, progressive=((2, 24, 3), (3, 32, 2)), ema=EMAConfig(enabled=True, decay=0.5),
                   val=ValConfig(every=0, crop=32, samples=0))
    run_training(cfg, MODEL, dataset, out)
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    assert [(r["patch"], r["batch"]) for r in rows] == [("24", "3")] * 2 + [("32", "2")] * 3
    ckpt = state_of(out / "last.pt")
    assert ckpt["sampler"]["phase"] == 1 and ckpt["sampler"]["step"] == 3
    final = state_of(out / "model.pt")
    assert_identical(final, ckpt["ema"])  # model.pt holds the EMA weights when EMA is on
    assert any(not torch.equal(final[k], ckpt["model"][k]) for k in final)


def _child(cfg: TrainConfig, root: Path, out: Path, slow: float = 0.0, env: dict | None = None,
           open_tracker=None) -> None:
    """Body of a forked training process (fork: no second torch import, which costs 10+ s on a busy machine)."""
    from ldp.train.engine import Engine

    os.environ.update(env or {})
    if slow:  # slow the loop down so that the parent can kill it mid-run; the numbers are untouched
        step = Engine.step

        def slow_step(self, batch):
            values = step(self, batch)
            time.sleep(slow)
            return values

        Engine.step = slow_step
    run_training(cfg, MODEL, root, out, open_tracker=open_tracker)


def _fork(target, *args) -> multiprocessing.process.BaseProcess:
    proc = multiprocessing.get_context("fork").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def test_sigkill_and_resume_gives_identical_weights(dataset, tmp_path):
    cfg = tiny_cfg(iters=10, checkpoint_every=3, val=ValConfig(every=4, crop=32, samples=0))
    # Uninterrupted reference, in this process.
    ref_out = tmp_path / "ref"
    run_training(cfg, MODEL, dataset, ref_out)
    # The same run in another process, SIGKILLed after a checkpoint and before the end.
    out = tmp_path / "killed"
    proc = _fork(_child, cfg, dataset, out, 0.3)

    work = partial_dir(out)  # where the run writes until it has finished

    def logged_iters(folder: Path = work) -> list[int]:
        path = folder / "train_log.csv"
        return [int(r["iter"]) for r in csv.DictReader(path.open())] if path.is_file() else []

    # Kill once a checkpoint exists and at least one more iteration has run after it (that work is lost).
    deadline = time.monotonic() + 120
    while not ((work / "last.pt").is_file()
               and max(logged_iters(), default=0) > state_of(work / "last.pt")["iteration"]):
        assert proc.is_alive(), f"child exited early with code {proc.exitcode}"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL
    killed_at = state_of(work / "last.pt")["iteration"]
    assert 3 <= killed_at < cfg.iters
    assert max(logged_iters()) > killed_at  # rows written after the checkpoint must be dropped on resume
    assert not out.exists()  # nothing is in the output folder until the run has finished
    # Resume, in this process.
    summary = run_training(cfg, MODEL, dataset, out)
    assert summary["resumed_from"] == killed_at
    assert_identical(state_of(out / "model.pt"), state_of(ref_out / "model.pt"))
    ref_ckpt, ckpt = state_of(ref_out / "last.pt"), state_of(out / "last.pt")
    assert_identical(ckpt["model"], ref_ckpt["model"])
    assert ckpt["optimizer"]["state"].keys() == ref_ckpt["optimizer"]["state"].keys()
    for k, s in ref_ckpt["optimizer"]["state"].items():
        assert torch.equal(ckpt["optimizer"]["state"][k]["exp_avg_sq"], s["exp_avg_sq"])
    assert logged_iters(out) == list(range(1, cfg.iters + 1))
    ref_rows = list(csv.DictReader((ref_out / "train_log.csv").open()))
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    assert [r["total"] for r in rows] == [r["total"] for r in ref_rows]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gloo_two_processes_match_one_process_with_the_same_global_batch(dataset, tmp_path):
    # batch_size is global: 2 ranks take 1 each and see the samples of 1 process x 2; DDP averages the gradients.
    cfg = tiny_cfg(iters=4, batch_size=2, checkpoint_every=2, val=ValConfig(every=0, crop=32, samples=0))
    out = tmp_path / "ddp"
    port = _free_port()
    procs = [
        _fork(_child, cfg, dataset, out, 0.0,
              {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
        for rank in range(2)
    ]
    for p in procs:
        p.join(timeout=150)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
    assert codes == [0, 0], f"DDP ranks exited with {codes}"
    ckpt = state_of(out / "last.pt")
    assert ckpt["world"] == 2 and len(ckpt["rng"]) == 2
    single = tmp_path / "single"
    run_training(cfg, MODEL, dataset, single)
    ddp_w, one_w = state_of(out / "model.pt"), state_of(single / "model.pt")
    assert ddp_w.keys() == one_w.keys()
    for k in ddp_w:
        torch.testing.assert_close(ddp_w[k], one_w[k], rtol=1e-4, atol=1e-5, msg=k)
    # Resuming a 2-process checkpoint with one process is refused (the sample order would differ).
    shutil.copytree(out, partial_dir(out))
    with pytest.raises(CheckpointError, match="2 process"):
        run_training(cfg, MODEL, dataset, out)


@pytest.mark.parametrize(("kw", "key"), [
    ({"batch_size": 3}, "batch_size"),
    ({"progressive": ((2, 24, 4), (2, 32, 3))}, r"progressive\[1\]"),
])
def test_global_batch_must_divide_over_the_processes(dataset, tmp_path, monkeypatch, kw, key):
    monkeypatch.setenv("WORLD_SIZE", "2")  # checked before any process group or file exists
    out = tmp_path / "odd"
    with pytest.raises(ConfigError, match=rf"experiments\.x\.train\.{key}: the global batch 3 does not divide "
                                          r"over 2 processes"):
        run_training(tiny_cfg(**kw), MODEL, dataset, out, key_path=lambda k: f"p.yaml:experiments.x.train.{k}")
    assert not out.exists() and not partial_dir(out).exists()


def test_official_augmentation_and_patch_pool_train_and_record_precision(dataset, tmp_path):
    from ldp.train.config import PatchPoolConfig

    out = tmp_path / "restormer-like"
    cfg = tiny_cfg(iters=3, patch_size=24, augment="restormer_dihedral", precision="auto",
                   patch_pool=PatchPoolConfig(size=32, stride=8, drop_fraction=0.3),
                   val=ValConfig(every=0, crop=32, samples=0))
    record = {"format": "test", "train": {"precision": "auto", "augment": cfg.augment}}
    summary = run_training(cfg, MODEL, dataset, out, record=record)
    assert summary["precision"] == "fp32"  # auto on a CPU
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"] == {"precision": "fp32", "augment": "restormer_dihedral"}  # the precision used
    assert (dataset / ".cache" / "patch_pool").is_dir()
    with pytest.raises(ConfigError, match=r"train\.patch_size: patch size 40 is larger than the pool's windows"):
        run_training(tiny_cfg(patch_size=40, patch_pool=PatchPoolConfig(size=32)), MODEL, dataset, tmp_path / "x")
    with pytest.raises(ConfigError, match=r"train\.patch_pool\.drop_fraction: must be in \[0, 1\)"):
        run_training(tiny_cfg(patch_pool=PatchPoolConfig(size=32, drop_fraction=1.0)), MODEL, dataset,
                     tmp_path / "x")
    with pytest.raises(ConfigError, match=r"train\.patch_pool: pool window 48 does not fit the smallest train"):
        run_training(tiny_cfg(patch_pool=PatchPoolConfig(size=48)), MODEL, dataset, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_config_json_records_the_precision_and_clip_weights_as_used():
    from ldp.train.loop import as_run

    record = {"train": {"precision": "auto", "iters": 2}, "clip_weights_kinds": ["openai"]}
    used = as_run(record, "bf16", ("checkpoint",))  # a file in the openai slot that is not OpenAI's release
    assert used["train"]["precision"] == "bf16" and used["clip_weights_kinds"] == ["checkpoint"]
    assert as_run(record, "fp32", ())["clip_weights_kinds"] == ["openai"] and record["train"]["precision"] == "auto"
