"""The params file chooses the data and the outputs (section `paths`): each relative path resolves against the folder
of the params file that set it, `ldp train` / `ldp evaluate --experiment` and the stage scripts read and write there
(nothing in the working folder), and a bad key or a missing dataset is one error naming the file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ldp.cli import main
from ldp.config import ConfigError, load_params, where_of
from ldp.runs import Layout, PathsConfig, configure_evaluation, configure_training, layout_of

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "data": {"source": "synthetic", "synthetic": {"seed": 5, "height": 48, "width": 64, "train": 2, "val": 1,
                                                  "test": 2}},
    "blurmaps": {"none": {"estimator": "none"}},
    "train": {"iters": 2, "patch_size": 32, "batch_size": 1, "val": {"every": 2, "crop": 32, "samples": 0},
              "checkpoint_every": 2},
    "recipes": {"plain": {"loss": {"charbonnier": 1.0}}},
    "experiments": {"tiny": {"model": "nafnet-dp", "blurmap": "none", "recipe": "plain",
                             "train": {"model_overrides": {"tiny": True}}}},
    "evaluate": {"bootstrap": 20, "lpips": False, "save_samples": 0},
    "mlflow": {"enabled": False},
}


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_relative_paths_resolve_against_the_file_that_set_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = _write(tmp_path / "base" / "params.yaml", {"paths": {"dataset": "shared/data", "blurmaps": "/abs/maps"}})
    child = _write(tmp_path / "base" / "exp" / "child.yaml",
                   {"extends": "../params.yaml", "paths": {"results": "out", "blurmaps": None}})
    params = load_params(child)
    assert where_of(params, "paths.dataset") == str(base) and where_of(params, "paths.results") == str(child)
    layout = layout_of(params)
    assert layout.dataset.resolve() == tmp_path / "base" / "shared" / "data"  # inherited: the base file's folder
    assert layout.results.resolve() == tmp_path / "base" / "exp" / "out"  # set here: this file's folder
    assert layout.blurmaps == Path("data/blurmaps")  # null deletes the inherited value: the default again
    assert layout.checkpoints == Path("checkpoints")  # set by no file: the default, relative to the working folder
    assert layout.key_of("dataset") == f"{base}:paths.dataset"
    assert "not set" in layout.key_of("checkpoints")
    assert layout_of(load_params(base)).blurmaps == Path("/abs/maps")  # absolute paths stay as written


def test_the_repo_and_its_profiles_keep_the_repo_data(monkeypatch):
    monkeypatch.chdir(REPO)
    assert layout_of(load_params("params.yaml")) == Layout()  # what dvc.yaml's outs are
    assert layout_of(load_params("params.yaml")).dataset == Path("data/dataset")
    defaults = PathsConfig()
    paper = layout_of(load_params(REPO / "profiles" / "paper.yaml"))  # extends ../params.yaml: the repo root
    assert paper.dataset == REPO / defaults.dataset and paper.checkpoints == REPO / defaults.checkpoints


@pytest.mark.parametrize(("paths", "message"), [
    ({"datset": "x"}, r"p.yaml:paths.datset: unknown key \(did you mean 'dataset'\?\)"),
    ({"dataset": 3}, r"p.yaml:paths.dataset: expected a string"),
    ({"results": " "}, r"p.yaml:paths.results: expected a path, got an empty string"),
    ("data", r"p.yaml:paths: expected a mapping"),
])
def test_a_bad_paths_key_names_the_file_and_key(tmp_path, paths, message):
    params = load_params(_write(tmp_path / "p.yaml", {"paths": paths}))
    with pytest.raises(ConfigError, match=message):
        layout_of(params)


def test_train_and_evaluate_write_under_the_params_folder_and_nothing_in_the_cwd(tmp_path, monkeypatch, capsys):
    from pipelines import blurmaps as blurmaps_stage
    from pipelines import data as data_stage
    from pipelines.common import run_stage

    exp = tmp_path / "exp"
    params = _write(exp / "params.yaml", {"paths": {"dataset": "data", "blurmaps": "maps", "checkpoints": "ckpt",
                                                    "results": "out"}, **TINY})
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_stage(data_stage.configure, data_stage.run, ["--params", str(params)])
    run_stage(blurmaps_stage.configure, blurmaps_stage.run, ["none", "--params", str(params)])
    assert (exp / "data" / "manifest.csv").is_file() and (exp / "maps" / "none" / "meta.json").is_file()

    assert main(["train", "tiny", "--params", str(params)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["iterations"] == 2
    assert (exp / "ckpt" / "tiny" / "model.pt").is_file()
    assert (exp / "out" / "training" / "tiny" / "train_summary.json").is_file()

    assert main(["evaluate", "--experiment", "tiny", "--params", str(params)]) == 0
    metrics = json.loads((exp / "out" / "eval" / "tiny" / "metrics.json").read_text())
    assert metrics["n_images"] == 2
    assert sorted(p.name for p in exp.iterdir()) == ["ckpt", "data", "maps", "out", "params.yaml"]
    assert list(cwd.iterdir()) == []  # nothing in the working folder


def test_a_missing_dataset_names_the_path_the_file_and_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    params = _write(tmp_path / "exp" / "params.yaml", {"paths": {"dataset": "nowhere"}, **TINY})
    assert main(["train", "tiny", "--params", str(params)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{tmp_path / 'exp' / 'nowhere'}: no prepared dataset (no such folder)" in err
    assert f"{params}:paths.dataset" in err
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "results").exists()

    (tmp_path / "exp" / "nowhere").mkdir()
    assert main(["evaluate", "--experiment", "tiny", "--params", str(params)]) == 2
    assert "no manifest.csv in it" in capsys.readouterr().err


def test_every_stage_and_show_config_take_the_layout_of_their_params(tmp_path, monkeypatch, capsys):
    """Each stage's configure (what `python -m pipelines.<stage> --params FILE` runs) carries layout_of(params)."""
    import importlib

    monkeypatch.chdir(REPO)  # the report stage checks its notebooks from the repo root
    grid = yaml.safe_load((REPO / "params.yaml").read_text())
    grid["paths"] = {"dataset": "d", "blurmaps": "b", "checkpoints": "c", "results": "r"}
    params_file = _write(tmp_path / "grid" / "params.yaml", grid)
    params = load_params(params_file)
    want = layout_of(params)
    assert want.dataset == tmp_path / "grid" / "d" and want.results == tmp_path / "grid" / "r"
    experiment, map_id = "ldp-small", next(iter(grid["blurmaps"]))
    jobs = {
        "data": lambda m: m.configure(params, [])[1],
        "blurmaps": lambda m: m.configure(params, [map_id])[2],
        "train": lambda m: m.configure(params, [experiment]).layout,
        "evaluate": lambda m: m.configure(params, [experiment]).layout,
        "inputs": lambda m: m.configure(params, []).layout,
        "figures": lambda m: m.configure(params, []).layout,
        "tables": lambda m: m.configure(params, []).layout,
        "report": lambda m: m.configure(params, []).layout,
    }
    for stage, layout_from in jobs.items():
        assert layout_from(importlib.import_module(f"pipelines.{stage}")) == want, stage
    assert configure_training(params, experiment).layout == want
    assert configure_evaluation(params, experiment).layout == want

    assert main(["show-config", experiment, "--params", str(params_file)]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'grid' / 'd'}" in out and f"{params_file}:paths.dataset" in out
