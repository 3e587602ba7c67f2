"""Training and evaluation of one experiment through the resolved experiment: every check runs before a file or a
tracker run exists, errors name the params file given and the exact key, and evaluation rebuilds the network from
the training run's config.json, not from the current params."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from ldp.config import ConfigError, load_params
from ldp.runs import (
    Layout,
    configure_evaluation,
    configure_training,
    evaluate_experiment,
    load_trained,
    train_experiment,
)

PARAMS = {
    "data": {"source": "synthetic", "synthetic": {"seed": 3, "height": 48, "width": 64, "train": 2, "val": 1,
                                                  "test": 2}},
    "blurmaps": {"none": {"estimator": "none"}, "oracle": {"estimator": "oracle"},
                 "classical": {"estimator": "classical", "patch_size": 16, "max_disparity": 2},
                 "missing": {"estimator": "oracle"}},
    "train": {"iters": 2, "patch_size": 32, "batch_size": 1, "val": {"every": 2, "crop": 32, "samples": 0},
              "checkpoint_every": 2},
    "ldp_losses": {"bwl": 1.0},
    "recipes": {"plain": {"loss": {"charbonnier": 1.0}}},
    "experiments": {
        "tiny-nafnet": {"model": "nafnet-dp", "blurmap": "none", "recipe": "plain",
                        "train": {"model_overrides": {"tiny": True}}},
        "tiny-ldp": {"model": "ldp-small", "blurmap": "oracle", "recipe": "plain", "ldp_losses": True,
                     "train": {"model_overrides": {"tiny": True}}},
        "tiny-ldp-classical": {"model": "ldp-small", "blurmap": "classical", "recipe": "plain",
                               "train": {"model_overrides": {"tiny": True}}},
    },
    "evaluate": {"bootstrap": 50, "lpips": False, "save_samples": 0},
    "mlflow": {"enabled": True},
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A dataset with 'none' and 'oracle' blur maps (no 'missing' maps), shared by the tests of this module."""
    from ldp.blurmap.estimate import BlurMapConfig, estimate_blurmaps
    from ldp.data.sources import load_data_config, prepare_dataset

    root = tmp_path_factory.mktemp("runs")
    prepare_dataset(load_data_config(PARAMS), root / "data" / "dataset")
    for name in ("none", "oracle", "classical"):
        estimate_blurmaps(BlurMapConfig(**PARAMS["blurmaps"][name]), root / "data" / "dataset",
                          root / "data" / "blurmaps" / name)
    return root


@pytest.fixture
def run_dir(workspace, tmp_path, monkeypatch):
    """A fresh output tree (checkpoints, results, MLflow store) over the shared dataset."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return tmp_path, Layout(dataset=workspace / "data" / "dataset", blurmaps=workspace / "data" / "blurmaps",
                            checkpoints=tmp_path / "checkpoints", results=tmp_path / "results")


def _params_file(tmp_path: Path, edit=None) -> Path:
    data = json.loads(json.dumps(PARAMS))
    if edit:
        edit(data)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _mlflow_runs(tmp_path: Path) -> int:
    db = tmp_path / "mlflow.db"
    if not db.is_file():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


@pytest.mark.parametrize(("experiment", "edit", "message"), [
    ("tiny-nafnet", lambda d: d["train"].update(iters=0), r"grid.yaml:train.iters: must be > 0"),
    ("tiny-nafnet", lambda d: d["recipes"]["plain"].update(optim={"lr": 0.0}),
     r"grid.yaml:recipes.plain.optim.lr: must be > 0"),
    ("tiny-nafnet", lambda d: d["experiments"]["tiny-nafnet"]["train"].update(patch_size=0),
     r"grid.yaml:experiments.tiny-nafnet.train.patch_size: must be > 0"),
    ("tiny-nafnet", lambda d: d["train"].update(batch_size=-1), r"grid.yaml:train.batch_size: must be > 0"),
    ("tiny-nafnet", lambda d: d["train"].update(patch_size=128), r"grid.yaml:train.patch_size"),
    ("tiny-nafnet", lambda d: d["train"].update(checkpoint_every=-1), r"grid.yaml:train.checkpoint_every"),
    ("tiny-nafnet", lambda d: d["train"]["val"].update(crop=-4), r"grid.yaml:train.val.crop"),
    ("tiny-nafnet", lambda d: d["experiments"]["tiny-nafnet"].update(model="nafnet-nope"),
     r"grid.yaml:experiments.tiny-nafnet.model: unknown model 'nafnet-nope'"),
    ("tiny-nafnet", lambda d: d["experiments"]["tiny-nafnet"]["train"].update(model_overrides={"widthh": 3}),
     r"grid.yaml:experiments.tiny-nafnet.train.model_overrides.widthh: unknown key"),
    ("tiny-ldp", lambda d: d["experiments"]["tiny-ldp"].update(blurmap="missing"), r"missing"),
])
def test_a_bad_value_fails_before_any_file_or_tracker_run(run_dir, experiment, edit, message):
    tmp_path, layout = run_dir
    params = load_params(_params_file(tmp_path, edit))
    with pytest.raises((ConfigError, ValueError, FileNotFoundError), match=message):
        train_experiment(configure_training(params, experiment, layout))
    assert not (layout.checkpoints / experiment).exists()
    assert not (layout.results / "training" / experiment).exists()
    assert _mlflow_runs(tmp_path) == 0


def test_evaluation_rebuilds_the_network_from_config_json(run_dir):
    tmp_path, layout = run_dir
    summary = train_experiment(configure_training(load_params(_params_file(tmp_path)), "tiny-nafnet", layout))
    assert summary["iterations"] == 2
    saved = json.loads((layout.checkpoints / "tiny-nafnet" / "config.json").read_text())
    assert saved["train"]["model_overrides"] == {"tiny": True} and saved["model"] == "nafnet-dp"
    assert (layout.results / "training" / "tiny-nafnet" / "config.json").read_text() == \
        (layout.checkpoints / "tiny-nafnet" / "config.json").read_text()

    # The grid changes after training (the full-size model now): evaluation still builds the trained tiny net.
    changed = load_params(_params_file(tmp_path, lambda d: d["experiments"]["tiny-nafnet"].update(train={})))
    result = evaluate_experiment(configure_evaluation(changed, "tiny-nafnet", layout))
    assert result.summary["experiment"]["train"]["model_overrides"] == {"tiny": True}
    assert result.summary["experiment"]["inference"] in ("whole", "tiled")
    assert result.summary["n_images"] == 2
    assert result.summary["data_source"]["name"] == "synthetic"  # the data stage's stamp, through config.json
    trained = load_trained(layout.checkpoints / "tiny-nafnet")
    assert sum(p.numel() for p in trained.model.parameters()) < 2_000_000
    assert _mlflow_runs(tmp_path) == 2  # one training, one evaluation


def test_evaluation_without_a_finished_training_names_the_file(run_dir):
    tmp_path, layout = run_dir
    job = configure_evaluation(load_params(_params_file(tmp_path)), "tiny-ldp", layout)
    with pytest.raises(FileNotFoundError, match=r"checkpoints/tiny-ldp/config.json"):
        evaluate_experiment(job)


def test_deblur_rebuilds_the_trained_network_and_its_blur_map_config(run_dir):
    from ldp.deblur import DeblurError, deblur_pair

    tmp_path, layout = run_dir
    train_experiment(configure_training(load_params(_params_file(tmp_path)), "tiny-ldp-classical", layout))
    weights = layout.checkpoints / "tiny-ldp-classical" / "model.pt"
    scene = layout.dataset / "dd_dp_dataset_canon" / "test_l" / "source"
    left = sorted(scene.glob("*_L.png"))[0]
    right = Path(str(left).replace("test_l", "test_r").replace("_L.png", "_R.png"))
    rec = deblur_pair(left, right, tmp_path / "out.png", None, weights, device="cpu")
    assert rec["model"] == "ldp-small" and rec["experiment"] == "tiny-ldp-classical"
    assert rec["blurmap"]["estimator"] == "classical"  # the map config it was trained with, not the default
    with pytest.raises(DeblurError, match=r"trained as 'ldp-small' \(its config.json\), not 'nafnet-dp'"):
        deblur_pair(left, right, tmp_path / "out.png", "nafnet-dp", weights, device="cpu")
