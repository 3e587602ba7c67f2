"""ldp.tables and the tables stage on small hand-written evaluation outputs (metrics.json, per_image.csv,
train_summary.json), the input baselines' rows and every row's paired gain over the stronger of them."""

import dataclasses
import json
import math

import pandas as pd
import pytest

from ldp.config import ConfigError, Params
from ldp.experiments import ExperimentConfig
from ldp.models.input_baselines import NO_WEIGHTS
from ldp.runs import Layout
from ldp.stats import bootstrap_ci
from ldp.tables import (
    GAIN_RESAMPLES,
    GAIN_SEED,
    UNTRAINED,
    build_table,
    check_table_labels,
    row_labels,
    to_markdown,
    write_tables,
)
from pipelines import tables as tables_stage

SCENES = ["s1", "s2", "s3", "s4"]
# Per-image PSNR on the four scenes. The view average (mean 24.5) beats the combined image (mean 24.0), so every gain
# is over input-average: restormer-dp +0.5 (3 of 4 improved), nafnet-dp -0.5 (none), restormer-dp-plus +1.5 on each.
PER_IMAGE = {"input-combined": [23.0, 24.0, 25.0, 24.0], "input-average": [23.5, 24.5, 25.0, 25.0],
             "restormer-dp": [24.0, 25.0, 26.0, 25.0], "nafnet-dp": [23.0, 24.0, 25.0, 24.0],
             "restormer-dp-plus": [25.0, 26.0, 26.5, 26.5]}


def _metrics(psnr: float, *, weights=None, source="synthetic", clip=None, ci=(-0.5, 0.5)) -> dict:
    entry = {"psnr": {"mean": psnr, "ci95": [psnr + ci[0], psnr + ci[1]]},
             "ssim": {"mean": 0.8, "ci95": [0.79, 0.81]}, "mae": {"mean": 0.04, "ci95": [0.039, 0.041]},
             "rmse": {"mean": 0.05, "ci95": [0.049, 0.051]}, "lpips": {"mean": None, "ci95": None}}
    empty = {m: {"mean": None, "ci95": None} for m in entry}
    return {"n_images": 4, "data_source": {"name": source}, "clip_weights": clip,
            "weights": weights if weights is not None else {"path": "/x/model.pt", "sha256": "ab" * 32},
            "metrics": {"all": entry, "indoor": empty, "outdoor": empty}}


def _write_run(root, name, metrics, summary=None, psnr=None, scenes=SCENES):
    """metrics.json and per_image.csv (``psnr`` per scene, default PER_IMAGE[name]) of one evaluation."""
    (root / "eval" / name).mkdir(parents=True, exist_ok=True)
    (root / "eval" / name / "metrics.json").write_text(json.dumps(metrics))
    values = PER_IMAGE[name] if psnr is None else psnr
    pd.DataFrame({"scene": scenes, "category": "", "psnr": values}).to_csv(root / "eval" / name / "per_image.csv",
                                                                          index=False)
    if summary is not None:
        (root / "training" / name).mkdir(parents=True)
        (root / "training" / name / "train_summary.json").write_text(json.dumps(summary))


EXPERIMENTS = {
    "restormer-dp": ExperimentConfig(model="restormer-dp", blurmap="none", recipe="restormer", label="Restormer-DP",
                                     tables={"main": "main/restormer-dp", "losses": "tab3/restormer"}),
    "nafnet-dp": ExperimentConfig(model="nafnet-dp", blurmap="none", recipe="nafnet", tables={"main": None}),
    "restormer-dp-plus": ExperimentConfig(model="restormer-dp", blurmap="clip", recipe="restormer", ldp_losses=True,
                                          label="Restormer-DP+", tables={"losses": "tab3/restormer+"}),
}


def _write_inputs(root, combined=PER_IMAGE["input-combined"], average=PER_IMAGE["input-average"], source="synthetic"):
    for name, psnr in (("input-combined", combined), ("input-average", average)):
        _write_run(root, name, _metrics(sum(psnr) / len(psnr), weights=NO_WEIGHTS, source=source), psnr=psnr)


@pytest.fixture
def results(tmp_path):
    _write_inputs(tmp_path)
    _write_run(tmp_path, "restormer-dp", _metrics(25.0), {"iterations": 8, "clip_weights_kinds": []})
    _write_run(tmp_path, "nafnet-dp", _metrics(24.0, weights="random-init"))
    _write_run(tmp_path, "restormer-dp-plus", _metrics(26.0, clip="random", source="dpdd"),
               {"iterations": 8, "clip_weights_kinds": ["random"]})
    return tmp_path


def test_rows_values_paper_differences_and_labels(results):
    main = build_table("main", EXPERIMENTS, results / "eval", results / "training", "smoke")
    assert list(main["experiment"]) == ["input-combined", "input-average", "restormer-dp", "nafnet-dp"]
    restormer = main.iloc[2]
    assert restormer["label"] == "Restormer-DP"
    assert (restormer["psnr"], restormer["psnr_ci_lo"], restormer["psnr_ci_hi"]) == (25.0, 24.5, 25.5)
    assert restormer["paper_psnr"] == 26.66 and restormer["diff_psnr"] == pytest.approx(25.0 - 26.66)
    assert restormer["diff_ssim"] == pytest.approx(0.8 - 0.833)
    assert restormer["paper_source"] == "LDP supplementary Tab. 3"
    assert restormer["labels"] == ("data: synthetic (not DPD-blur; not comparable with the paper); "
                                   "smoke schedule (8 iters)")
    assert math.isnan(restormer["psnr_indoor"]) and math.isnan(restormer["lpips"])
    nafnet = main.iloc[3]
    assert nafnet["label"] == "nafnet-dp"  # no label: the experiment's name
    assert math.isnan(nafnet["paper_psnr"]) and math.isnan(nafnet["diff_psnr"])
    assert nafnet["paper_source"] == "not reported by the paper"
    losses = build_table("losses", EXPERIMENTS, results / "eval", results / "training", "paper")
    assert list(losses["label"])[2:] == ["Restormer-DP", "Restormer-DP+"]
    assert losses.iloc[2]["labels"].startswith("data: synthetic")
    assert losses.iloc[3]["labels"] == "random CLIP weights"  # DPDD, paper profile: only the CLIP weights


def test_untrained_evaluation_is_labelled_not_a_crash():
    """An evaluation of a random init records weights as the string 'random-init' (it crashed with AttributeError)."""
    labels = row_labels(_metrics(20.0, weights="random-init"), None, "smoke")
    assert labels == ["data: synthetic (not DPD-blur; not comparable with the paper)", UNTRAINED]
    assert UNTRAINED not in row_labels(_metrics(20.0), {"iterations": 8}, "smoke")
    assert row_labels(_metrics(20.0, source="dpdd"), {"iterations": 600000}, "paper") == []


def test_untrained_row_through_the_stage(results):
    params = Params({"experiments": {"nafnet-dp": {"model": "nafnet-dp", "blurmap": "none", "recipe": "nafnet",
                                                   "tables": {"main": None}}}}, source="my-params.yaml")
    job = tables_stage.configure(params, [])
    tables_stage.run(dataclasses.replace(job, layout=Layout(results=results)))
    main = pd.read_csv(results / "tables" / "main.csv")
    data_label = "data: synthetic (not DPD-blur; not comparable with the paper)"
    assert main["labels"].tolist() == [data_label, data_label, f"{data_label}; {UNTRAINED}"]
    assert f"; {UNTRAINED} |" in (results / "tables" / "tables.md").read_text()


def _md_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| Row ")]


def test_markdown_has_exactly_the_csv_rows_per_table(results):
    """A row in two tables (Restormer-DP: main and losses) is printed once in each, as in each CSV."""
    out = results / "tables"
    frames = write_tables(EXPERIMENTS, results / "eval", results / "training", out, "smoke")
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
                                                      "25.00 [24.50, 25.50]", "-1.66"]
    assert "Paper values: Input: combined image C: not reported by the paper; " in main_md
    assert "Restormer-DP: LDP supplementary Tab. 3; nafnet-dp: not reported by the paper" in main_md
    prompts_md = next(v for k, v in sections.items() if k.startswith("Tab. 1"))  # no network rows: the inputs only
    assert [r.split(" | ")[0] for r in _md_rows(prompts_md)] == ["| Input: combined image C",
                                                                  "| Input: view average (L+R)/2"]


def test_a_label_with_a_newline_or_bar_stays_one_markdown_row(results):
    odd = {"restormer-dp": ExperimentConfig(model="restormer-dp", blurmap="none", recipe="restormer",
                                            label="Restormer-DP\n| official", tables={"main": "main/restormer-dp"})}
    df = build_table("main", odd, results / "eval", results / "training", "smoke")
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
                    results / "eval", results / "training", "smoke")
    (results / "eval" / "nafnet-dp" / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"eval/nafnet-dp/metrics\.json: evaluation output not readable"):
        build_table("main", EXPERIMENTS, results / "eval", results / "training", "smoke")


def test_failed_rebuild_keeps_the_finished_tables(results):
    out = results / "tables"
    write_tables(EXPERIMENTS, results / "eval", results / "training", out, "smoke")
    before = (out / "tables.md").read_text()
    (results / "eval" / "restormer-dp-plus" / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError):
        write_tables(EXPERIMENTS, results / "eval", results / "training", out, "smoke")
    assert (out / "tables.md").read_text() == before
    assert sorted(p.name for p in results.iterdir()) == ["eval", "tables", "training"]  # no temp folder left


def test_stage_rejects_arguments_and_bad_params():
    params = Params({"experiments": {"a": {"model": "m", "blurmap": "b", "recipe": "r"}}, "tables": {"profil": 1}},
                    source="given.yaml")
    with pytest.raises(ValueError, match=r"usage: python -m pipelines\.tables"):
        tables_stage.configure(params, ["extra"])
    with pytest.raises(ConfigError, match=r"^given\.yaml:tables\.profil: unknown key"):
        tables_stage.configure(params, [])


def _gain_row(df, name):
    return df.set_index("experiment").loc[name]


def test_input_baselines_come_first_with_paired_gains_over_the_stronger(results):
    # the same restormer-dp numbers, written in another scene order: the gain pairs by scene, not by row
    _write_run(results, "restormer-dp", _metrics(25.0), psnr=PER_IMAGE["restormer-dp"][::-1], scenes=SCENES[::-1])
    main = build_table("main", EXPERIMENTS, results / "eval", results / "training", "smoke")
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
    losses = build_table("losses", EXPERIMENTS, results / "eval", results / "training", "smoke")
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
    main = build_table("main", EXPERIMENTS, results / "eval", results / "training", "smoke")
    assert set(main["gain_over"]) == {"input-combined"}
    assert _gain_row(main, "restormer-dp")["gain_psnr"] == pytest.approx(25.0 - 25.0)
    assert _gain_row(main, "input-average")["gain_psnr"] == pytest.approx(24.0 - 25.0)
    assert list(main["experiment"][:2]) == ["input-combined", "input-average"]  # order fixed, whichever is stronger


def test_input_baseline_rows_are_not_labelled_untrained_or_smoke(results):
    main = build_table("main", EXPERIMENTS, results / "eval", results / "training", "smoke")
    for name, label in (("input-combined", "Input: combined image C"),
                        ("input-average", "Input: view average (L+R)/2")):
        row = _gain_row(main, name)
        assert row["label"] == label and row["model"] == name and row["blurmap"] == "none"
        assert row["labels"] == "data: synthetic (not DPD-blur; not comparable with the paper)"
        assert math.isnan(row["paper_psnr"]) and row["paper_source"] == "not reported by the paper"
    assert row_labels(_metrics(24.0, weights=NO_WEIGHTS, source="dpdd"), None, "smoke") == []


def test_missing_or_mismatched_input_baseline_names_the_files(results):
    (results / "eval" / "input-average" / "per_image.csv").write_text("scene,category,psnr\ns1,,20\ns2,,20\n"
                                                                       "s3,,20\nother,,20\n")
    with pytest.raises(ValueError, match=r"eval/input-combined/per_image\.csv against .*eval/input-average/"
                                         r"per_image\.csv: runs cover different images"):
        build_table("main", EXPERIMENTS, results / "eval", results / "training", "smoke")
    (results / "eval" / "input-average" / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"eval/input-average/metrics\.json: evaluation output missing for "
                                                r"input baseline 'input-average'"):
        build_table("prompts", EXPERIMENTS, results / "eval", results / "training", "smoke")
    (results / "eval" / "input-average" / "metrics.json").write_text(json.dumps(_metrics(24.0, weights="random-init")))
    with pytest.raises(ValueError, match=r"input-average/metrics\.json: weights 'random-init', not an input baseline"):
        build_table("main", EXPERIMENTS, results / "eval", results / "training", "smoke")
