"""Scale-out of a training stage: `train.processes: 2` makes `python -m pipelines.train <exp>` re-launch itself
under torchrun (2 gloo processes on the CPU) with no change to dvc.yaml; the result equals the one-process run
with the same global batch, and only rank 0 writes outputs and logs to MLflow."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ldp.checkpoint import safe_load

REPO = Path(__file__).resolve().parents[1]
PARAMS = {
    "data": {"source": "synthetic", "synthetic": {"seed": 4, "height": 48, "width": 64, "train": 3, "val": 1,
                                                  "test": 1}},
    "blurmaps": {"none": {"estimator": "none"}},
    "train": {"iters": 3, "patch_size": 32, "batch_size": 2, "val": {"every": 0, "crop": 32, "samples": 0},
              "checkpoint_every": 3, "device": "cpu", "cpu_threads": 1, "seed": 5},
    "recipes": {"restormer": {"augment": "restormer_dihedral",
                              "patch_pool": {"size": 40, "stride": 8, "drop_fraction": 0.3}}},
    "experiments": {"tiny": {"model": "nafnet-dp", "blurmap": "none", "recipe": "restormer",
                             "train": {"model_overrides": {"tiny": True}}}},
    "mlflow": {"enabled": True},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from ldp.blurmap.estimate import BlurMapConfig, estimate_blurmaps
    from ldp.data.sources import load_data_config, prepare_dataset

    root = tmp_path_factory.mktemp("scale_out")
    prepare_dataset(load_data_config(PARAMS), root / "dataset")
    estimate_blurmaps(BlurMapConfig(estimator="none"), root / "dataset", root / "blurmaps" / "none")
    return root


def _stage(data: Path, work: Path, processes: int) -> subprocess.CompletedProcess:
    """The training stage as dvc.yaml runs it, in a fresh work folder (data/ linked in)."""
    params = json.loads(json.dumps(PARAMS))
    params["train"]["processes"] = processes
    (work / "data").mkdir(parents=True)
    for name in ("dataset", "blurmaps"):
        (work / "data" / name).symlink_to(data / name)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
           "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "pipelines.train", "tiny"], cwd=work, env=env, timeout=400,
                          capture_output=True, text=True)


def _runs(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        return [r[0] for r in con.execute("SELECT name FROM runs")]


@pytest.mark.slow
def test_two_gloo_processes_through_the_stage_match_one_process(data, tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    done = _stage(data, two, 2)
    assert done.returncode == 0, done.stderr[-3000:]
    done = _stage(data, one, 1)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((two / "results" / "training" / "tiny" / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["iterations"] == 3
    assert json.loads((one / "results" / "training" / "tiny" / "train_summary.json").read_text())["world_size"] == 1
    ddp_w, one_w = safe_load(two / "checkpoints" / "tiny" / "model.pt"), safe_load(one / "checkpoints" / "tiny"
                                                                                   / "model.pt")
    assert ddp_w.keys() == one_w.keys()
    for k in ddp_w:  # same samples, gradients averaged over 2 x 1 instead of 1 x 2: float rounding only
        torch.testing.assert_close(ddp_w[k], one_w[k], rtol=1e-4, atol=1e-5, msg=k)
    assert safe_load(two / "checkpoints" / "tiny" / "last.pt")["world"] == 2
    assert len(_runs(two / "mlflow.db")) == 1  # rank 1 opened no MLflow run
    leftovers = [p.name for p in (two / "checkpoints").iterdir()]
    assert leftovers == ["tiny"]  # no partial folder or lock left by any rank
