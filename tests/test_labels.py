"""ldp.labels: every label comes from a fact of the run (data identity and image size, CLIP weights, iterations
against the recipe's reference schedule, inference mode, precision, combined input), is written by the evaluation
into metrics.json and scores.json and by training into its scores.json, and a row it calls not comparable gets no Δ
in the tables."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import baselines  # noqa: F401  (registers restormer-dp)
from ldp.config import load_params
from ldp.data.manifest import layout_paths, write_manifest
from ldp.evaluate import EvalConfig, evaluate
from ldp.experiments import ExperimentConfig, resolve
from ldp.imageio import write_image
from ldp.labels import (
    clip_label,
    combined_input_label,
    data_label,
    inference_label,
    precision_label,
    schedule_label,
    training_labels,
)
from ldp.models.input_baselines import FED_CAMERA_C, FED_VIEW_AVERAGE, INPUT_BASELINES
from ldp.paper_results import REFERENCE_SCHEDULES
from ldp.runs import train_scores
from ldp.tables import build_table, to_markdown

REPO = Path(__file__).resolve().parents[1]
PAPER = load_params(REPO / "profiles" / "paper.yaml")


def test_the_dpdd_test_set_is_76_images_of_1680x1120_from_its_test_split():
    assert data_label("dpdd", "test", {"1680x1120": 76}).comparable
    assert data_label("dpdd", "test", {"1680x1120": 75, "1120x1680": 1}).comparable  # a portrait frame, if any
    for source, split, sizes in (("dpdd", "test", {"320x240": 6}),  # the issue's run: 6 real scenes, cropped
                                 ("dpdd", "test", {"1680x1120": 75}), ("dpdd", "val", {"1680x1120": 76}),
                                 ("dpdd", "test", {"1680x1120": 75, "840x560": 1}),
                                 ("synthetic", "test", {"1680x1120": 76})):
        label = data_label(source, split, sizes)
        assert not label.comparable and label.value.startswith("not the DPDD test set"), (source, split, sizes)
    assert data_label("dpdd", "test", {"320x240": 6}).caveat == (
        "not the DPDD test set (dpdd, test split, 6 images (6 at 320x240); the paper's is 76 images at 1680x1120)")


def test_clip_weights_schedule_inference_precision_and_combined_input_labels():
    assert clip_label(["openai", None]).caveat is None and clip_label([]).value == "n/a"
    assert clip_label(["random", "openai"]) == clip_label(["openai", "random"])
    assert not clip_label(["openai", "random"]).comparable and not clip_label(["checkpoint"]).comparable

    short = schedule_label("restormer", 2)
    assert (short.caveat, short.comparable) == ("short schedule (2 of 300000 iterations)", False)
    assert schedule_label("restormer", 300000) == schedule_label("restormer", 300000)
    assert schedule_label("restormer", 300000).caveat is None and schedule_label("deeprft", 66000).comparable
    ours = schedule_label("ldp", 200000)  # the paper gives no LDP schedule: comparable, and labelled so
    assert ours.comparable and ours.caveat == "schedule is our choice (200000 iterations; the paper gives none)"
    assert not schedule_label("my-recipe", 10**6).comparable  # no reference length to judge it by

    whole = {"mode": "whole", "registered": "whole", "official": True}
    tiled = {"mode": "tiled", "registered": "whole", "official": False, "tile": 512, "overlap": 64}
    assert inference_label(whole).comparable and inference_label(whole).caveat is None
    assert inference_label(tiled).caveat == "tiled inference, not the official whole"
    assert not inference_label(tiled).comparable and not inference_label(None).comparable

    assert precision_label("fp32").caveat is None
    bf16 = precision_label("bf16")  # an option that labels the row, not a reason to withhold its Δ
    assert bf16.comparable and bf16.caveat == "bf16 training (the official recipes train in fp32)"

    assert combined_input_label("m", None).value == "n/a"
    assert combined_input_label("m", {FED_CAMERA_C: 4}).caveat is None
    assert combined_input_label("m", {FED_CAMERA_C: 3, FED_VIEW_AVERAGE: 1}).caveat == (
        "combined input (L+R)/2 on 1 of 4 images (no camera image C)")
    assert combined_input_label("input-average", {FED_VIEW_AVERAGE: 4}).caveat is None  # what it is by design


def test_reference_schedules_are_the_paper_profiles_lengths():
    """Each paper-profile row runs its recipe's reference length, so its labels carry no schedule caveat but ours."""
    for name in PAPER["experiments"]:
        exp = resolve(PAPER, name, data_source="dpdd")
        assert exp.train.iters == REFERENCE_SCHEDULES[exp.recipe].iters, name
        expected = [] if REFERENCE_SCHEDULES[exp.recipe].official else [
            f"schedule is our choice ({exp.train.iters} iterations; the paper gives none)"]
        assert [c for c in exp.labels["caveats"] if "schedule" in c] == expected, name


def test_training_labels_go_into_the_training_scores():
    exp = resolve(load_params(REPO / "params.yaml"), "restormer-dp", data_source="synthetic")
    assert exp.labels == training_labels(exp)
    assert exp.labels["caveats"] == ["trained on synthetic data, not DPDD",
                                     f"short schedule ({exp.train.iters} of 300000 iterations)"]
    scores = train_scores({"iterations": exp.train.iters, "val_last": {"psnr": 20.0}, "labels": exp.labels})
    assert scores["labels"] == {"data": "synthetic", "clip_weights": "n/a",
                                "schedule": f"short schedule ({exp.train.iters} of 300000 iterations)",
                                "precision": "fp32", "augment": "restormer_dihedral", "comparable_with_paper": "no"}


class ViewAverage(nn.Module):
    """Stands in for the trained network (the labels do not depend on it): (L+R)/2 of a 6-channel DP input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x[:, :3] + x[:, 3:])


def _cropped_dpdd(root: Path, n: int = 6, h: int = 240, w: int = 320) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        scene, paths = f"1P0A{i:04d}", {}
        row = {"scene": scene, "split": "test", "category": "", "height": h, "width": w, "bit_depth": 16}
        for col, path in layout_paths("test", scene).items():
            if col != "defocus":
                write_image(root / path, rng.random((h, w, 3)).astype(np.float32), bits=16)
                row[col] = paths[col] = path
        rows.append(row)
    write_manifest(root, rows)
    return root


def test_the_issues_run_is_labelled_and_gets_no_delta(tmp_path):
    """The paper profile's Restormer-DP with 2 iterations, scored on 6 real-looking DPDD scenes cropped to 240x320:
    it printed 13.38 dB beside the paper's 26.66 with no label. Now metrics.json, scores.json and the tables say what
    was run, and the Δ column is empty with a footnote."""
    data = _cropped_dpdd(tmp_path / "data")
    cfg = EvalConfig(save_samples=0, lpips=False, bootstrap=20)
    exp = resolve(PAPER, "restormer-dp", data_source="dpdd")
    exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, iters=2, precision="fp32"))
    exp = exp.for_evaluation(cfg)
    evals = tmp_path / "eval"
    for name in INPUT_BASELINES:
        evaluate(name, None, data, out_dir=evals / name, cfg=cfg, data_source="dpdd", quiet=True)
    weights = tmp_path / "model.pt"  # recorded by path and hash; the network is passed in built
    torch.save({}, weights)
    evaluate("restormer-dp", weights, data, out_dir=evals / "restormer-dp", cfg=cfg, model=ViewAverage(),
             data_source="dpdd", experiment=exp.to_json(), quiet=True)

    metrics = json.loads((evals / "restormer-dp" / "metrics.json").read_text())
    assert metrics["data_source"]["image_sizes_wxh"] == {"320x240": 6}
    not_dpdd = ("not the DPDD test set (dpdd, test split, 6 images (6 at 320x240); the paper's is 76 images at "
                "1680x1120)")
    assert metrics["labels"]["caveats"] == [not_dpdd, "short schedule (2 of 300000 iterations)"]
    assert metrics["labels"]["comparable_with_paper"] == "no"
    assert metrics["labels"]["inference"] == "whole (official)" and metrics["labels"]["clip_weights"] == "n/a"
    scores = json.loads((evals / "restormer-dp" / "scores.json").read_text())
    assert scores["all"]["psnr"] == pytest.approx(metrics["metrics"]["all"]["psnr"]["mean"])  # numbers where they were
    assert scores["labels"] == {"data": "not the DPDD test set: dpdd, test split, 6 images (6 at 320x240)",
                                "schedule": "short schedule (2 of 300000 iterations)", "clip_weights": "n/a",
                                "inference": "whole (official)", "precision": "fp32", "augment": "restormer_dihedral",
                                "combined_input": "n/a", "subsets": "n/a",
                                "comparable_with_paper": "no"}
    inputs = json.loads((evals / "input-combined" / "metrics.json").read_text())["labels"]
    assert inputs["caveats"] == [not_dpdd] and inputs["schedule"] == "n/a (input baseline)"
    assert inputs["combined_input"] == f"{FED_CAMERA_C}: 6"

    experiments = {"restormer-dp": ExperimentConfig(model="restormer-dp", blurmap="none", recipe="restormer",
                                                    label="Restormer-DP", tables={"main": "main/restormer-dp"})}
    main = build_table("main", experiments, evals)
    row = main.set_index("experiment").loc["restormer-dp"]
    assert row["paper_psnr"] == 26.66 and np.isnan(row["diff_psnr"]) and not row["comparable"]
    assert row["labels"] == f"{not_dpdd}; short schedule (2 of 300000 iterations)"
    markdown = to_markdown("main", main)
    restormer_md = next(line for line in markdown.splitlines() if line.startswith("| Restormer-DP |"))
    ours = f"{row['psnr']:.2f} [{row['psnr_ci_lo']:.2f}, {row['psnr_ci_hi']:.2f}]"
    assert restormer_md.split(" | ")[3:6] == ["26.66", ours, "–"]  # paper, ours, no Δ
    assert (f"Δ left empty (–) for the rows whose labels say they are not comparable with the paper: Restormer-DP "
            f"({not_dpdd}; short schedule (2 of 300000 iterations)).") in markdown
    assert sum(line.startswith("| Restormer-DP |") for line in markdown.splitlines()) == 1


def test_subset_numbers_say_where_their_categories_came_from():
    from ldp.data.manifest import UNVERIFIED_LISTS
    from ldp.labels import subsets_label

    metrics = {"all": {"n_images": 4}, "indoor": {"n_images": 2}, "outdoor": {"n_images": 2}}
    unverified = subsets_label(UNVERIFIED_LISTS, metrics)
    assert "UNVERIFIED" in unverified.caveat and unverified.comparable  # the 'all' numbers are unaffected
    official = subsets_label("official labels (indoor_labels.npy, outdoor_labels.npy)", metrics)
    assert official.caveat is None and "official" in official.value
    assert subsets_label("", metrics).caveat
    assert subsets_label(UNVERIFIED_LISTS, {"all": {"n_images": 4}}).value == "n/a"
