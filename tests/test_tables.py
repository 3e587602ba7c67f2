"""ldp.tables and the tables stage on small hand-written evaluation outputs (metrics.json with the labels
ldp.labels derives from it, per_image.csv), the input baselines' rows and every row's paired gain over the stronger
of them."""

import dataclasses
import json
import math

import pandas as pd
import pytest

from ldp.config import ConfigError, Params
from ldp.experiments import ExperimentConfig
from ldp.labels import evaluation_labels
from ldp.models.input_baselines import NO_WEIGHTS
from ldp.runs import Layout
from ldp.stats import bootstrap_ci
from ldp.tables import GAIN_RESAMPLES, GAIN_SEED, build_table, check_table_labels, to_markdown, write_tables
from pipelines import tables as tables_stage

SCENES = ["s1", "s2", "s3", "s4"]
# Per-image PSNR on the four scenes. The view average (mean 24.5) beats the combined image (mean 24.0), so every gain
# is over input-average: restormer-dp +0.5 (3 of 4 improved), nafnet-dp -0.5 (none), restormer-dp-plus +1.5 on each.
PER_IMAGE = {"input-combined": [23.0, 24.0, 25.0, 24.0], "input-average": [23.5, 24.5, 25.0, 25.0],
             "restormer-dp": [24.0, 25.0, 26.0, 25.0], "nafnet-dp": [23.0, 24.0, 25.0, 24.0],
             "restormer-dp-plus": [25.0, 26.0, 26.5, 26.5]}


DPDD_TEST = {"1680x1120": 76}  # what an evaluation of the DPDD test set records as its image sizes
SMALL = {"96x64": 4}
WHOLE = {"mode": "whole", "registered": "whole", "official": True}


def _experiment(recipe="restormer", iters=8, clip=(), precision="fp32"):
    """The parts of a resolved experiment (metrics.json ``experiment``) that the labels read."""
    return {"recipe": recipe, "train": {"iters": iters, "precision": precision, "augment": "restormer_dihedral"},
            "clip_weights_kinds": list(clip)}


def _metrics(psnr: float, *, weights=None, source="synthetic", clip=None, ci=(-0.5, 0.5), sizes=SMALL,
             experiment=None, inference=WHOLE) -> dict:
    """A metrics.json as the evaluation writes it, its labels computed by ldp.labels as there."""
    entry = {"psnr": {"mean": psnr, "ci95": [psnr + ci[0], psnr + ci[1]]},
             "ssim": {"mean": 0.8, "ci95": [0.79, 0.81]}, "mae": {"mean": 0.04, "ci95": [0.039, 0.041]},
             "rmse": {"mean": 0.05, "ci95": [0.049, 0.051]}, "lpips": {"mean": None, "ci95": None}}
    empty = {m: {"mean": None, "ci95": None} for m in entry}
    metrics = {"n_images": 4, "model": "m", "data_source": {"name": source, "split": "test", "image_sizes_wxh": sizes},
               "clip_weights": clip, "inference": inference, "combined_input": None, "experiment": experiment,
               "weights": weights if weights is not None else {"path": "/x/model.pt", "sha256": "ab" * 32},
               "metrics": {"all": entry, "indoor": empty, "outdoor": empty}}
    return {**metrics, "labels": evaluation_labels(metrics)}


def _write_run(root, name, metrics, psnr=None, scenes=SCENES):
    """metrics.json and per_image.csv (``psnr`` per scene, default PER_IMAGE[name]) of one evaluation."""
    (root / "eval" / name).mkdir(parents=True, exist_ok=True)
    (root / "eval" / name / "metrics.json").write_text(json.dumps(metrics))
    values = PER_IMAGE[name] if psnr is None else psnr
    pd.DataFrame({"scene": scenes, "category": "", "psnr": values}).to_csv(root / "eval" / name / "per_image.csv",
                                                                          index=False)


EXPERIMENTS = {
    "restormer-dp": ExperimentConfig(model="restormer-dp", blurmap="none", recipe="restormer", label="Restormer-DP",
                                     tables={"main": "main/restormer-dp", "losses": "tab3/restormer"}),
    "nafnet-dp": ExperimentConfig(model="nafnet-dp", blurmap="none", recipe="nafnet", tables={"main": None}),
    "restormer-dp-plus": ExperimentConfig(model="restormer-dp", blurmap="clip", recipe="restormer", ldp_losses=True,
                                          label="Restormer-DP+", tables={"losses": "tab3/restormer+"}),
}


def _write_inputs(root, combined=PER_IMAGE["input-combined"], average=PER_IMAGE["input-average"], source="synthetic",
                  sizes=SMALL):
    for name, psnr in (("input-combined", combined), ("input-average", average)):
        _write_run(root, name, _metrics(sum(psnr) / len(psnr), weights=NO_WEIGHTS, source=source, sizes=sizes),
                   psnr=psnr)


NOT_DPDD = "not the DPDD test set (synthetic, test split, 4 images (4 at 96x64); the paper's is 76 images at 1680x1120)"
UNTRAINED = "untrained (random init)"


@pytest.fixture
def results(tmp_path):
    _write_inputs(tmp_path)
    _write_run(tmp_path, "restormer-dp", _metrics(25.0, experiment=_experiment()))
    _write_run(tmp_path, "nafnet-dp", _metrics(24.0, weights="random-init"))
    _write_run(tmp_path, "restormer-dp-plus", _metrics(26.0, clip="random", source="dpdd", sizes=DPDD_TEST,
                                                       experiment=_experiment(iters=300000, clip=["random"])))
    return tmp_path


def test_rows_values_paper_values_and_labels(results):
    main = build_table("main", EXPERIMENTS, results / "eval")
    assert list(main["experiment"]) == ["input-combined", "input-average", "restormer-dp", "nafnet-dp"]
    restormer = main.iloc[2]
    assert restormer["label"] == "Restormer-DP"
    assert (restormer["psnr"], restormer["psnr_ci_lo"], restormer["psnr_ci_hi"]) == (25.0, 24.5, 25.5)
    assert restormer["paper_psnr"] == 26.66 and restormer["paper_ssim"] == 0.833
    assert math.isnan(restormer["diff_psnr"]) and math.isnan(restormer["diff_ssim"])  # not comparable: no Δ
    assert restormer["paper_source"] == "LDP supplementary Tab. 3"
    assert restormer["labels"] == f"{NOT_DPDD}; short schedule (8 of 300000 iterations)"
    assert not restormer["comparable"] and restormer["not_comparable_because"] == restormer["labels"]
    assert math.isnan(restormer["psnr_indoor"]) and math.isnan(restormer["lpips"])
    nafnet = main.iloc[3]
    assert nafnet["label"] == "nafnet-dp"  # no label: the experiment's name
    assert math.isnan(nafnet["paper_psnr"]) and math.isnan(nafnet["diff_psnr"])
    assert nafnet["paper_source"] == "not reported by the paper"
    losses = build_table("losses", EXPERIMENTS, results / "eval")
    assert list(losses["label"])[2:] == ["Restormer-DP", "Restormer-DP+"]
    assert losses.iloc[2]["labels"].startswith("not the DPDD test set (synthetic")
    assert losses.iloc[3]["labels"] == "random CLIP weights"  # the DPDD test set, the full schedule: only the CLIP


def _labels(**kwargs) -> dict:
    return _metrics(20.0, **kwargs)["labels"]


def test_untrained_evaluation_is_labelled_not_a_crash():
    """An evaluation of a random init records weights as the string 'random-init' (it crashed with AttributeError)."""
    assert _labels(weights="random-init")["caveats"] == [NOT_DPDD, UNTRAINED]
    assert UNTRAINED not in _labels(experiment=_experiment())["caveats"]
    full = _labels(source="dpdd", sizes=DPDD_TEST, experiment=_experiment(iters=300000))
    assert full["caveats"] == [] and full["comparable_with_paper"] == "yes"


def test_untrained_row_through_the_stage(results):
    params = Params({"experiments": {"nafnet-dp": {"model": "nafnet-dp", "blurmap": "none", "recipe": "nafnet",
                                                   "tables": {"main": None}}}}, source="my-params.yaml")
    job = tables_stage.configure(params, [])
    tables_stage.run(dataclasses.replace(job, layout=Layout(results=results)))
    main = pd.read_csv(results / "tables" / "main.csv")
    assert main["labels"].tolist() == [NOT_DPDD, NOT_DPDD, f"{NOT_DPDD}; {UNTRAINED}"]
    assert f"; {UNTRAINED} |" in (results / "tables" / "tables.md").read_text()


def _md_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| Row ")]


def test_markdown_has_exactly_the_csv_rows_per_table(results):
    """A row in two tables (Restormer-DP: main and losses) is printed once in each, as in each CSV."""
    out = results / "tables"
    frames = write_tables(EXPERIMENTS, results / "eval", out)
    md = (out / "tables.md").read_text()
    sections = {s.split("\n", 1)[0]: s for s in md.split("\n## ")[1:]}
    main_md = next(v for k, v in sections.items() if k.startswith("Main table"))
    losses_md = next(v for k, v in sections.items() if k.startswith("Tab. 3"))
    for section, table in ((main_md, "main"), (losses_md, "losses")):
        rows = _md_rows(section)
        csv = pd.read_csv(out / f"{table}.csv")
        assert [r.split(" | ")[0].removeprefix("| ") for r in rows] == csv["label"].tolist()
        assert len(frames[table]) == len(csv)
    assert [r.split(" | ")[0] for r in _md_rows(main_md)] == [
        "| Input: combined image C", "| Input: view average (L+R)/2", "| Restormer-DP", "| nafnet-dp"]
    assert _md_rows(main_md)[2].split(" | ")[1:6] == ["+0.50 [+0.12, +0.88]", "3 of 4", "26.66",
                                                      "25.00 [24.50, 25.50]", "–"]  # not comparable: no Δ
    assert "Paper values: Input: combined image C: not reported by the paper; " in main_md
    assert "Restormer-DP: LDP supplementary Tab. 3; nafnet-dp: not reported by the paper" in main_md
    prompts_md = next(v for k, v in sections.items() if k.startswith("Tab. 1"))  # no network rows: the inputs only
    assert [r.split(" | ")[0] for r in _md_rows(prompts_md)] == ["| Input: combined image C",
                                                                  "| Input: view average (L+R)/2"]


def test_a_label_with_a_newline_or_bar_stays_one_markdown_row(results):
    odd = {"restormer-dp": ExperimentConfig(model="restormer-dp", blurmap="none", recipe="restormer",
                                            label="Restormer-DP\n| official", tables={"main": "main/restormer-dp"})}
    df = build_table("main", odd, results / "eval")
    rows = _md_rows(to_markdown("main", df))
    assert len(rows) == 3
    assert rows[2].startswith("| Restormer-DP \\| official | +0.50 [+0.12, +0.88] | 3 of 4 | 26.66 |")


def test_two_rows_with_one_label_in_a_table_are_refused():
    twin = dict(EXPERIMENTS, **{"restormer-dp-official": ExperimentConfig(
        model="restormer-dp", blurmap="none", recipe="restormer", label="Restormer-DP", tables={"main": None})})
    with pytest.raises(ConfigError, match=r"^p\.yaml:experiments\.restormer-dp-official\.label: 'Restormer-DP' is "
                                          r"also the label of experiments\.restormer-dp in table 'main'"):
        check_table_labels(twin, "p.yaml")
    check_table_labels(EXPERIMENTS, "p.yaml")


def test_missing_or_corrupt_evaluation_names_the_file(results):
    with pytest.raises(FileNotFoundError, match=r"eval/ldp-small/metrics\.json: evaluation output missing"):
        build_table("main", {"ldp-small": ExperimentConfig(model="ldp-small", blurmap="x", recipe="ldp")},
                    results / "eval")
    unlabelled = {k: v for k, v in _metrics(24.0).items() if k != "labels"}  # an evaluation from before the labels
    (results / "eval" / "nafnet-dp" / "metrics.json").write_text(json.dumps(unlabelled))
    with pytest.raises(ValueError, match=r"eval/nafnet-dp/metrics\.json: no labels .*re-run it"):
        build_table("main", EXPERIMENTS, results / "eval")
    (results / "eval" / "nafnet-dp" / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"eval/nafnet-dp/metrics\.json: evaluation output not readable"):
        build_table("main", EXPERIMENTS, results / "eval")


def test_failed_rebuild_keeps_the_finished_tables(results):
    out = results / "tables"
    write_tables(EXPERIMENTS, results / "eval", out)
    before = (out / "tables.md").read_text()
    (results / "eval" / "restormer-dp-plus" / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError):
        write_tables(EXPERIMENTS, results / "eval", out)
    assert (out / "tables.md").read_text() == before
    assert sorted(p.name for p in results.iterdir()) == ["eval", "tables"]  # no temp folder left


def test_stage_rejects_arguments_and_the_retired_profile_param():
    """``tables.profile`` named the labels; they now come from what was run, and a file still setting it is told so."""
    params = Params({"experiments": {"a": {"model": "m", "blurmap": "b", "recipe": "r"}},
                     "tables": {"profile": "paper"}}, source="given.yaml")
    with pytest.raises(ValueError, match=r"usage: python -m pipelines\.tables"):
        tables_stage.configure(params, ["extra"])
    with pytest.raises(ConfigError, match=r"^given\.yaml:tables\.profile: no longer a parameter"):
        tables_stage.configure(params, [])


def _gain_row(df, name):
    return df.set_index("experiment").loc[name]


def test_input_baselines_come_first_with_paired_gains_over_the_stronger(results):
    # the same restormer-dp numbers, written in another scene order: the gain pairs by scene, not by row
    _write_run(results, "restormer-dp", _metrics(25.0), psnr=PER_IMAGE["restormer-dp"][::-1], scenes=SCENES[::-1])
    main = build_table("main", EXPERIMENTS, results / "eval")
    assert list(main["experiment"][:2]) == ["input-combined", "input-average"]
    assert set(main["gain_over"]) == {"input-average"}  # mean 24.5 against 24.0
    assert set(main["n_paired"]) == {4}
    base = PER_IMAGE["input-average"]
    for name, improved in (("input-combined", 0), ("input-average", 0), ("restormer-dp", 3), ("nafnet-dp", 0)):
        row, diffs = _gain_row(main, name), [a - b for a, b in zip(PER_IMAGE[name], base, strict=True)]
        lo, hi = bootstrap_ci(diffs, n=GAIN_RESAMPLES, seed=GAIN_SEED)
        assert row["gain_psnr"] == pytest.approx(sum(diffs) / 4), name
        assert (row["gain_psnr_ci_lo"], row["gain_psnr_ci_hi"]) == pytest.approx((lo, hi)), name
        assert row["improved"] == improved, name
    assert _gain_row(main, "restormer-dp")["gain_psnr"] == pytest.approx(0.5)
    assert _gain_row(main, "nafnet-dp")["gain_psnr"] == pytest.approx(-0.5)
    assert (_gain_row(main, "input-average")[["gain_psnr", "gain_psnr_ci_lo", "gain_psnr_ci_hi"]] == 0).all()
    losses = build_table("losses", EXPERIMENTS, results / "eval")
    plus = _gain_row(losses, "restormer-dp-plus")  # +1.5 dB on every scene: the CI is the point
    assert (plus["gain_psnr"], plus["gain_psnr_ci_lo"], plus["gain_psnr_ci_hi"], plus["improved"]) == \
        pytest.approx((1.5, 1.5, 1.5, 4))

    rows = {r.split(" | ")[0].removeprefix("| "): r.split(" | ")[1:3] for r in _md_rows(to_markdown("main", main))}
    assert rows["Input: view average (L+R)/2"] == ["reference", "–"]
    assert rows["Input: combined image C"][0].startswith("▼ -0.50 [")  # below its input, at a glance
    assert rows["nafnet-dp"][0].startswith("▼ -0.50 [") and rows["nafnet-dp"][1] == "0 of 4"
    assert rows["Restormer-DP"] == ["+0.50 [+0.12, +0.88]", "3 of 4"]
    assert "against **Input: view average (L+R)/2**, the stronger input baseline" in to_markdown("main", main)


def test_the_stronger_input_baseline_is_the_one_with_the_higher_mean_psnr(results):
    _write_inputs(results, combined=[24.0, 25.0, 25.5, 25.5], average=[23.0, 24.0, 25.0, 24.0])
    main = build_table("main", EXPERIMENTS, results / "eval")
    assert set(main["gain_over"]) == {"input-combined"}
    assert _gain_row(main, "restormer-dp")["gain_psnr"] == pytest.approx(25.0 - 25.0)
    assert _gain_row(main, "input-average")["gain_psnr"] == pytest.approx(24.0 - 25.0)
    assert list(main["experiment"][:2]) == ["input-combined", "input-average"]  # order fixed, whichever is stronger


def test_input_baseline_rows_carry_no_schedule_label(results):
    main = build_table("main", EXPERIMENTS, results / "eval")
    for name, label in (("input-combined", "Input: combined image C"),
                        ("input-average", "Input: view average (L+R)/2")):
        row = _gain_row(main, name)
        assert row["label"] == label and row["model"] == name and row["blurmap"] == "none"
        assert row["labels"] == NOT_DPDD
        assert math.isnan(row["paper_psnr"]) and row["paper_source"] == "not reported by the paper"
    assert _labels(weights=NO_WEIGHTS, source="dpdd", sizes=DPDD_TEST)["caveats"] == []


def test_missing_or_mismatched_input_baseline_names_the_files(results):
    (results / "eval" / "input-average" / "per_image.csv").write_text("scene,category,psnr\ns1,,20\ns2,,20\n"
                                                                       "s3,,20\nother,,20\n")
    with pytest.raises(ValueError, match=r"eval/input-combined/per_image\.csv against .*eval/input-average/"
                                         r"per_image\.csv: runs cover different images"):
        build_table("main", EXPERIMENTS, results / "eval")
    (results / "eval" / "input-average" / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"eval/input-average/metrics\.json: evaluation output missing for "
                                                r"input baseline 'input-average'"):
        build_table("prompts", EXPERIMENTS, results / "eval")
    (results / "eval" / "input-average" / "metrics.json").write_text(json.dumps(_metrics(24.0, weights="random-init")))
    with pytest.raises(ValueError, match=r"input-average/metrics\.json: weights 'random-init', not an input baseline"):
        build_table("main", EXPERIMENTS, results / "eval")


def test_only_rows_whose_labels_say_comparable_get_a_delta(tmp_path):
    """The DPDD test set, the full schedule and the official inference: Δ printed (a bf16 note does not withhold it);
    the same row scored with tiles, or with random CLIP weights, gets none and a footnote names why."""
    _write_inputs(tmp_path, source="dpdd", sizes=DPDD_TEST)
    full = _experiment(iters=300000, precision="bf16")
    tiled = {"mode": "tiled", "registered": "whole", "official": False}
    cases = {"restormer-dp": _metrics(25.0, source="dpdd", sizes=DPDD_TEST, experiment=full),
             "nafnet-dp": _metrics(24.0, source="dpdd", sizes=DPDD_TEST, experiment=full, inference=tiled),
             "restormer-dp-plus": _metrics(26.0, source="dpdd", sizes=DPDD_TEST, clip="random", experiment=full)}
    for name, metrics in cases.items():
        _write_run(tmp_path, name, metrics)
    experiments = {**EXPERIMENTS, "nafnet-dp": dataclasses.replace(EXPERIMENTS["nafnet-dp"],
                                                                   tables={"main": "main/deeprft-dp"})}
    main = build_table("main", experiments, tmp_path / "eval").set_index("experiment")
    restormer, tiled_row = main.loc["restormer-dp"], main.loc["nafnet-dp"]
    assert restormer["comparable"] and restormer["diff_psnr"] == pytest.approx(25.0 - 26.66)
    assert restormer["labels"] == "bf16 training (the official recipes train in fp32)"
    assert not tiled_row["comparable"] and math.isnan(tiled_row["diff_psnr"])
    assert tiled_row["not_comparable_because"] == "tiled inference, not the official whole"
    assert tiled_row["labels"] == "tiled inference, not the official whole; " + restormer["labels"]
    md = to_markdown("main", main.reset_index())
    assert "Δ left empty (–) for the rows whose labels say they are not comparable with the paper: nafnet-dp " \
           "(tiled inference, not the official whole)." in md
    losses = build_table("losses", experiments, tmp_path / "eval").set_index("experiment")
    assert math.isnan(losses.loc["restormer-dp-plus", "diff_psnr"]) and losses.loc["restormer-dp", "comparable"]
