"""The run lifecycle of ldp.train.run_training (issue 10): checks before any file, a finished run is never lost,
an interrupted run is resumed or refused by name, one training per output folder, SIGTERM/SIGKILL and MLflow,
stale temp files."""

import csv
import io
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from test_train import MODEL, _child, _fork, make_tiny_dataset, tiny_cfg

from ldp.checkpoint import CheckpointError, safe_load
from ldp.config import ConfigError
from ldp.data.sources import DatasetError
from ldp.filelock import LockHeld
from ldp.losses import LossConfig
from ldp.tracking import Tracker
from ldp.train import OptimConfig, TrainConfig, ValConfig, partial_dir, run_training
from ldp.train.engine import Engine


def exp_key(key: str) -> str:
    return f"exp.yaml:experiments.x.train.{key}"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_dp_lifecycle"))


@pytest.fixture(scope="module")
def finished(dataset, tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A finished run, and the bytes of each of its outputs."""
    out = tmp_path_factory.mktemp("finished") / "run"
    run_training(tiny_cfg(iters=4, val=ValConfig(every=2, crop=32, samples=1)), MODEL, dataset, out)
    return out, snapshot(out)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fail_at_step(monkeypatch, n: int) -> None:
    """Make the n-th optimiser step of this process raise (a crash mid-run)."""
    step, calls = Engine.step, []

    def failing(self, batch):
        calls.append(1)
        if len(calls) == n:
            raise RuntimeError("crash for the test")
        return step(self, batch)

    monkeypatch.setattr(Engine, "step", failing)


def sqlite_tracker(uri: str, cfg: TrainConfig):
    return lambda run_id: Tracker({"train": cfg}, "main", "lifecycle:train", uri=uri, run_id=run_id)


# ---------------------------------------------------------------------------------------------------------------
# Defects 1, 5, 6, 9: every check before anything is touched; a failed rerun keeps the finished run


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"checkpoint_every": -1}, ConfigError, r"exp\.yaml:experiments\.x\.train\.checkpoint_every: must be >= 0"),
    ({"val": ValConfig(crop=-1)}, ConfigError, r"experiments\.x\.train\.val\.crop: must be > 0"),
    ({"iters": 0}, ConfigError, r"experiments\.x\.train\.iters: must be > 0"),
    ({"optim": OptimConfig(lr=0.0)}, ConfigError, r"experiments\.x\.train\.optim\.lr: must be > 0"),
    ({"batch_size": 0}, ConfigError, r"experiments\.x\.train\.batch_size: must be > 0"),
    ({"num_workers": -2}, ConfigError, r"experiments\.x\.train\.num_workers: must be >= 0"),
    ({"progressive": ((2, 32, 2), (2, 0, 2))}, ConfigError, r"experiments\.x\.train\.progressive\[1\]"),
    ({"patch_size": 64}, ConfigError, r"experiments\.x\.train\.patch_size: patch size 64 does not fit the smallest "
                                      r"train image .*train00_L\.png \(40x40\)"),
    ({"progressive": ((2, 32, 2), (2, 48, 1))}, ConfigError, r"train\.progressive\[1\]: patch size 48 does not fit"),
    ({"precision": "fp16"}, ConfigError, r"experiments\.x\.train\.precision: fp16 needs a GPU"),
    ({"loss": LossConfig(bwl=0.5)}, ConfigError,
     r"experiments\.x\.train\.loss\.bwl > 0 needs blur maps"),
])
def test_bad_input_fails_before_any_file_and_keeps_the_finished_run(finished, dataset, change, error, message):
    out, before = finished
    opened = []
    cfg = tiny_cfg(**{"iters": 4, "val": ValConfig(every=2, crop=32, samples=1), **change})
    with pytest.raises(error, match=message):
        run_training(cfg, MODEL, dataset, out, open_tracker=opened.append, key_path=exp_key)
    assert opened == []  # no tracker (no FAILED MLflow run, no tracking.json)
    assert snapshot(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["run"]


def test_unknown_model_and_missing_blur_maps_fail_before_any_file(finished, dataset, tmp_path):
    out, before = finished
    with pytest.raises(ConfigError, match="unknown model 'nafnet-dpp'"):
        run_training(tiny_cfg(), "nafnet-dpp", dataset, out)
    with pytest.raises(DatasetError, match=r"blur-map folder not found"):
        run_training(tiny_cfg(), MODEL, dataset, out, blurmap_dir=tmp_path / "not-built")
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "train00.npy").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"maps: no blur map for scene 'train01'"):
        run_training(tiny_cfg(), MODEL, dataset, out, blurmap_dir=tmp_path / "maps")
    with pytest.raises(Exception, match="manifest"):
        run_training(tiny_cfg(), MODEL, tmp_path / "no-dataset", out)
    assert snapshot(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["run"]


def test_a_crashed_rerun_keeps_the_finished_run_and_an_identical_rerun_trains_anew(finished, dataset, monkeypatch):
    out, before = finished
    cfg = tiny_cfg(iters=4, val=ValConfig(every=2, crop=32, samples=1))
    fail_at_step(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="crash for the test"):
        run_training(cfg, MODEL, dataset, out)
    assert snapshot(out) == before  # the new run lives in the partial folder until it finishes
    assert safe_load(partial_dir(out) / "last.pt")["iteration"] == 2
    monkeypatch.undo()
    summary = run_training(cfg, MODEL, dataset, out)  # resumes the partial run, then swaps it in
    assert summary["resumed_from"] == 2 and not partial_dir(out).exists()
    resumed, first = safe_load(out / "model.pt"), torch.load(io.BytesIO(before["model.pt"]), weights_only=True)
    assert resumed.keys() == first.keys() and all(torch.equal(resumed[k], first[k]) for k in first)  # exact resume
    again = run_training(cfg, MODEL, dataset, out)  # a finished identical run trains anew (as DVC asks)
    assert again["resumed_from"] is None and again["iterations_this_run"] == 4


# ---------------------------------------------------------------------------------------------------------------
# Defect 2: a changed config or an unreadable last.pt is refused by name; restart=True discards explicitly


def test_changed_config_is_refused_naming_the_keys_and_restart_discards(dataset, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = tiny_cfg(iters=6)
    fail_at_step(monkeypatch, 5)
    with pytest.raises(RuntimeError):
        run_training(cfg, MODEL, dataset, out)
    monkeypatch.undo()
    work = partial_dir(out)
    kept = snapshot(work)
    changed = tiny_cfg(iters=6, seed=9, optim=OptimConfig(lr=1e-2, grad_clip=0.5), checkpoint_every=3)
    with pytest.raises(ConfigError) as info:
        run_training(changed, MODEL, dataset, out, key_path=exp_key)
    message = str(info.value)
    assert "exp.yaml:experiments.x.train.optim.lr" in message and "exp.yaml:experiments.x.train.seed" in message
    assert "checkpoint_every" not in message and "--restart" in message  # resume-free keys are not changes
    assert snapshot(work) == kept and not out.exists()
    summary = run_training(changed, MODEL, dataset, out, restart=True)
    assert summary["resumed_from"] is None and summary["iterations_this_run"] == 6
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    assert [int(r["iter"]) for r in rows] == list(range(1, 7))


def test_unreadable_last_pt_is_refused_not_discarded(dataset, tmp_path, monkeypatch):
    out = tmp_path / "run"
    fail_at_step(monkeypatch, 4)
    with pytest.raises(RuntimeError):
        run_training(tiny_cfg(iters=6), MODEL, dataset, out)
    monkeypatch.undo()
    ckpt = partial_dir(out) / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated
    with pytest.raises(CheckpointError, match=rf"{ckpt}: cannot load.*--restart"):
        run_training(tiny_cfg(iters=6), MODEL, dataset, out)
    assert len(ckpt.read_bytes()) == 100
    assert run_training(tiny_cfg(iters=6), MODEL, dataset, out, restart=True)["resumed_from"] is None


# ---------------------------------------------------------------------------------------------------------------
# Defect 3: one training per output folder


def test_a_second_training_of_the_same_folder_exits_at_once_naming_the_pid(dataset, tmp_path):
    out = tmp_path / "run"
    proc = _fork(_child, tiny_cfg(iters=30, checkpoint_every=0), dataset, out, 0.3)
    try:
        deadline = time.monotonic() + 60
        while not (partial_dir(out) / "train_log.csv").is_file():
            assert proc.is_alive() and time.monotonic() < deadline, "the first training did not start"
            time.sleep(0.05)
        start = time.monotonic()
        with pytest.raises(LockHeld, match=rf"{out}: training: in use by process {proc.pid} "):
            run_training(tiny_cfg(iters=30, checkpoint_every=0), MODEL, dataset, out)
        assert time.monotonic() - start < 10
        assert proc.is_alive()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
    # The lock died with its holder: the folder can be trained again (and the partial run resumed).
    assert run_training(tiny_cfg(iters=30, checkpoint_every=0), MODEL, dataset, out)["iterations_this_run"] == 30


# ---------------------------------------------------------------------------------------------------------------
# Defects 7, 8: SIGTERM ends the run KILLED after a checkpoint; SIGKILL then resume continues the same MLflow run


def _wait_for_iteration(work: Path, proc, at_least: int) -> None:
    deadline = time.monotonic() + 90
    while True:
        path = work / "train_log.csv"
        rows = list(csv.DictReader(path.open())) if path.is_file() else []
        if rows and int(rows[-1]["iter"]) >= at_least:
            return
        assert proc.is_alive(), f"the training exited early with {proc.exitcode}"
        assert time.monotonic() < deadline, "the training did not get far enough"
        time.sleep(0.02)


def test_sigterm_writes_a_checkpoint_and_ends_the_mlflow_run_killed(dataset, tmp_path):
    from mlflow.tracking import MlflowClient

    out, uri = tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_cfg(iters=12, checkpoint_every=0, val=ValConfig(every=0, crop=32, samples=0))
    proc = _fork(_child, cfg, dataset, out, 0.3, None, sqlite_tracker(uri, cfg))
    _wait_for_iteration(partial_dir(out), proc, 2)
    os.kill(proc.pid, signal.SIGTERM)
    proc.join(timeout=60)
    assert proc.exitcode not in (0, None, -signal.SIGTERM)  # it handled the signal and stopped by itself
    stopped_at = safe_load(partial_dir(out) / "last.pt")["iteration"]  # checkpoint_every=0: only SIGTERM's
    assert 2 <= stopped_at < cfg.iters
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("main").experiment_id])
    assert run.info.status == "KILLED" and run.data.tags["val_view"] == "crop32"
    # Resumed: the same MLflow run, FINISHED, its loss history one point per step.
    summary = run_training(cfg, MODEL, dataset, out, open_tracker=sqlite_tracker(uri, cfg))
    assert summary["resumed_from"] == stopped_at
    (again,) = client.search_runs([run.info.experiment_id])
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train.loss"))
    assert steps == list(range(1, cfg.iters + 1))
    assert {"train.lr", "train.charbonnier", "val.psnr", "val.loss"} <= set(again.data.metrics)


def test_sigkill_then_resume_continues_the_same_run_and_removes_stale_temp_files(dataset, tmp_path):
    from mlflow.tracking import MlflowClient

    out, uri = tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_cfg(iters=10, checkpoint_every=3, val=ValConfig(every=0, crop=32, samples=0))
    proc = _fork(_child, cfg, dataset, out, 0.3, None, sqlite_tracker(uri, cfg))
    work = partial_dir(out)
    _wait_for_iteration(work, proc, 4)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("main").experiment_id])
    assert run.info.status == "RUNNING"  # SIGKILL leaves it so, until the resume below
    killed_at = safe_load(work / "last.pt")["iteration"]
    # What a kill during a checkpoint write leaves (ldp.fsutil.atomic_open's temp names), and files that are not.
    (work / ".last.pt.k3x_9a2b.tmp").write_bytes(b"x" * 1000)
    (work / ".train_summary.json.abcdefgh.tmp").write_text("{")
    (work / "notes.tmp").write_text("not ours")
    (tmp_path / ".last.pt.zzzzzzzz.tmp").write_text("another folder")
    summary = run_training(cfg, MODEL, dataset, out, open_tracker=sqlite_tracker(uri, cfg))
    assert summary["resumed_from"] == killed_at
    assert not list(out.glob(".*.tmp")) and (out / "notes.tmp").is_file()
    assert (tmp_path / ".last.pt.zzzzzzzz.tmp").is_file()
    (again,) = client.search_runs([run.info.experiment_id])
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    steps = {m.step for m in client.get_metric_history(run.info.run_id, "train.loss")}
    assert steps == set(range(1, cfg.iters + 1))  # steps after the checkpoint were logged again, at their steps
