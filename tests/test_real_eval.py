"""Stage evaluate_real and the tables built from it: every trained row and the input baselines on a real set, the
oracle row marked "not available" there, the not_runnable rows shown without numbers, and checks.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from test_real_sets import make_dpdd

from ldp.config import ConfigError, Params
from ldp.runs import configure_evaluation, configure_training, evaluate_experiment, train_experiment
from pipelines import evaluate_real, inputs, real_data, tables

TINY = {"model_overrides": {"tiny": True}}
GRID = {
    "data": {"source": "synthetic", "synthetic": {"seed": 1, "height": 48, "width": 64, "train": 2, "val": 1,
                                                  "test": 3}},
    "blurmaps": {"none": {"estimator": "none"}, "oracle": {"estimator": "oracle"}},
    "train": {"iters": 2, "patch_size": 32, "batch_size": 1, "val": {"every": 2, "crop": 32, "samples": 0},
              "checkpoint_every": 2},
    "recipes": {"plain": {"loss": {"charbonnier": 1.0}}},
    "experiments": {
        "net": {"model": "nafnet-dp", "blurmap": "none", "recipe": "plain", "train": TINY,
                "tables": {"main": None}},
        "gr-oracle": {"model": "ldp-small-gr", "blurmap": "oracle", "recipe": "plain", "train": TINY,
                      "tables": {"main": None, "blurmap-sources": None}},
        "gr-zero": {"model": "ldp-small-gr", "blurmap": "none", "recipe": "plain", "train": TINY,
                    "tables": {"main": None, "blurmap-sources": None}},
    },
    "not_runnable": {"ldp-small": {"table": "main", "label": "LDP-Small (CLIP map)",
                                   "reason": "needs OpenAI's CLIP weights: not runnable offline"}},
    "evaluate": {"bootstrap": 50, "lpips": False, "save_samples": 0, "protocols": []},
    "mlflow": {"enabled": False},
}


def _params(tmp_path: Path, data: dict) -> Params:
    return Params({**data, "paths": {"dataset": str(tmp_path / "data" / "dataset"),
                                     "blurmaps": str(tmp_path / "data" / "blurmaps"),
                                     "checkpoints": str(tmp_path / "checkpoints"),
                                     "results": str(tmp_path / "results"), "real": str(tmp_path / "data" / "real")}},
                  tmp_path / "grid.yaml")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny grid trained, evaluated on its synthetic test split and on one real (DPDD-layout) set, and tabled."""
    from ldp.blurmap.estimate import BlurMapConfig, estimate_blurmaps
    from ldp.data.sources import load_data_config, prepare_dataset

    tmp = tmp_path_factory.mktemp("real_eval")
    grid = {**GRID, "real_sets": {"canon": {"source": "dpdd_layout",
                                            "root": str(make_dpdd(tmp / "src", ("a", "b", "c"), 64, 96))}}}
    params = _params(tmp, grid)
    prepare_dataset(load_data_config(params), tmp / "data" / "dataset")
    for name, cfg in GRID["blurmaps"].items():
        estimate_blurmaps(BlurMapConfig(**cfg), tmp / "data" / "dataset", tmp / "data" / "blurmaps" / name)
    for name in GRID["experiments"]:
        train_experiment(configure_training(params, name))
        evaluate_experiment(configure_evaluation(params, name))
    inputs.run(inputs.configure(params, []))
    real_data.run(real_data.configure(params, []))
    evaluate_real.run(evaluate_real.configure(params, []))
    tables.run(tables.configure(params, []))
    return tmp


def test_every_row_is_scored_on_the_real_set_and_the_oracle_is_not_available(finished):
    real = finished / "results" / "real"
    index = json.loads((real / "index.json").read_text())["sets"]["canon"]
    assert index["rows"]["net"] == index["rows"]["gr-zero"] == "ok"
    assert index["rows"]["gr-oracle"].startswith("unavailable: no ground-truth defocus")
    for name in ("input-combined", "input-average", "net", "gr-zero"):
        metrics = json.loads((real / "canon" / name / "metrics.json").read_text())
        assert metrics["n_images"] == 3 and metrics["data_source"]["name"] == "real:dpdd_layout", name
        assert "not the DPDD test set" in "; ".join(metrics["labels"]["caveats"])
    assert not (real / "canon" / "gr-oracle" / "metrics.json").exists()
    assert "no ground-truth defocus" in json.loads((real / "canon" / "gr-oracle" /
                                                     evaluate_real.NOT_AVAILABLE_JSON).read_text())["reason"]


def test_the_real_table_has_inputs_gains_and_the_blank_row(finished):
    df = pd.read_csv(finished / "results" / "tables" / "real-canon.csv")
    assert list(df["experiment"]) == ["input-combined", "input-average", "net", "gr-zero", "gr-oracle"]
    scored = df.iloc[:4]
    assert scored["gain_psnr"].notna().all() and scored["n_paired"].eq(3).all()
    assert df.iloc[4]["not_run"].startswith("not available on this set") and pd.isna(df.iloc[4]["psnr"])
    md = (finished / "results" / "tables" / "tables.md").read_text()
    assert "## Real scenes:" in md and "not run: not available on this set" in md


def test_not_runnable_rows_are_shown_without_numbers(finished):
    main = pd.read_csv(finished / "results" / "tables" / "main.csv")
    row = main[main["experiment"] == "ldp-small"].iloc[0]
    assert row["not_run"] == "needs OpenAI's CLIP weights: not runnable offline" and pd.isna(row["psnr"])
    assert "| LDP-Small (CLIP map) | not run: needs OpenAI's CLIP weights" in (
        finished / "results" / "tables" / "tables.md").read_text()


def test_checks_report_every_row_the_map_pair_and_the_best_real_row(finished):
    checks = (finished / "results" / "tables" / "checks.md").read_text()
    for name in ("net", "gr-oracle", "gr-zero"):
        assert re.search(rf"^- (yes|\*\*no\*\*): {name} [+-]\d+\.\d\d dB \[", checks, re.M), name
    assert "- gr-oracle minus gr-zero: " in checks
    assert "## Real set canon: the best trained row against the view average" in checks
    assert "with the CI above 0: " in checks


def test_evaluate_real_needs_the_prepared_sets_and_the_checkpoints(tmp_path):
    grid = {**GRID, "real_sets": {"canon": {"source": "dpdd_layout", "root": str(tmp_path)}}}
    job = evaluate_real.configure(_params(tmp_path, grid), [])
    with pytest.raises(ConfigError, match=r"index.json: no real-set index .*run the real_data stage"):
        evaluate_real.run(job)
    (tmp_path / "data" / "real").mkdir(parents=True)
    (tmp_path / "data" / "real" / "index.json").write_text(json.dumps({"sets": {"canon": {}}}))
    with pytest.raises(ConfigError, match=r"net/model.pt: no trained weights for experiment 'net'"):
        evaluate_real.run(job)
    assert not (tmp_path / "results").exists()


def test_notebook_07_renders_the_real_tables_and_the_checks(finished, tmp_path):
    from ldp.report import render_notebooks

    repo = Path(__file__).resolve().parents[1]
    render_notebooks([repo / "notebooks" / "07-real-scenes.ipynb"], tmp_path / "report",
                     {"results_dir": str(finished / "results")}, timeout=120)
    html = (tmp_path / "report" / "07-real-scenes.html").read_text()
    assert "Real scenes: " in html and "gr-oracle minus gr-zero" in html and "Traceback" not in html
