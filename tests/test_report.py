"""The notebooks' helpers (ldp.report) and the report stage, on small hand-written result files."""

import json

import nbformat
import pandas as pd
import pytest

from ldp.config import ConfigError, Params
from ldp.report import (
    ReportConfig,
    labels_banner,
    latency_table,
    load_table,
    paired_differences,
    render_report,
    show_table,
    training_curves,
)
from pipelines import report as report_stage


def _per_image(results, name, psnr):
    folder = results / "eval" / name
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"scene": ["001", "002", "003"], "category": ["", "", ""], "psnr": psnr}).to_csv(
        folder / "per_image.csv", index=False)


def test_load_table_reads_the_csv_and_names_a_missing_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tables/main\.csv: run the tables stage first"):
        load_table(tmp_path, "main")
    (tmp_path / "tables").mkdir()
    pd.DataFrame({"label": ["A"], "psnr": [25.5]}).to_csv(tmp_path / "tables" / "main.csv", index=False)
    assert load_table(tmp_path, "main").to_dict("records") == [{"label": "A", "psnr": 25.5}]
    (tmp_path / "tables" / "prompts.csv").write_text("")  # a table with no rows
    assert load_table(tmp_path, "prompts").empty


def test_labels_banner_lists_each_label_once(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    df = pd.DataFrame({"labels": ["random CLIP weights; smoke schedule (8 iters)", "smoke schedule (8 iters)", None]})
    labels_banner(df, extra=["data: synthetic"])
    assert len(shown) == 1
    assert shown[0].data == ("> **Not a reproduction of the paper's numbers.** These rows carry labels:\n"
                             "- data: synthetic\n- random CLIP weights\n- smoke schedule (8 iters)")
    labels_banner(pd.DataFrame({"labels": [None]}))  # nothing to say: no banner
    assert len(shown) == 1


def test_show_table_keeps_the_reading_columns_in_order(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    df = pd.DataFrame({"psnr": [25.0], "experiment": ["x"], "label": ["X"], "labels": [""], "model": ["m"],
                       "improved": [3], "gain_psnr": [0.5], "n_paired": [4]})
    show_table(df)
    assert list(shown[0].data.columns) == ["label", "gain_psnr", "improved", "n_paired", "psnr", "labels"]


def test_paired_differences_against_the_first_network_row(tmp_path):
    _per_image(tmp_path, "base", [25.0, 26.0, 27.0])
    _per_image(tmp_path, "better", [25.5, 26.5, 27.5])
    _per_image(tmp_path, "mixed", [24.0, 26.0, 28.0])
    inputs = ["input-combined", "input-average"]  # first in every table; their gain columns cover them
    table = pd.DataFrame({"experiment": [*inputs, "base", "better", "mixed"],
                          "label": ["C", "(L+R)/2", "Base", "Better", "Mixed"]})
    diffs = paired_differences(tmp_path, table, n=200)
    assert diffs[["row", "minus"]].values.tolist() == [["Better", "Base"], ["Mixed", "Base"]]
    assert diffs["mean_diff"].tolist() == pytest.approx([0.5, 0.0])
    assert diffs.iloc[0][["ci_low", "ci_high", "frac_resamples_a_better"]].tolist() == pytest.approx([0.5, 0.5, 1.0])
    assert diffs.iloc[1]["ci_low"] < 0 < diffs.iloc[1]["ci_high"]
    assert paired_differences(tmp_path, table.iloc[:3]).empty


def test_latency_table_per_image_seconds(tmp_path):
    for name, n, model_s in (("a", 4, 2.0), ("b", 0, None)):
        (tmp_path / "eval" / name).mkdir(parents=True)
        (tmp_path / "eval" / name / "metrics.json").write_text(json.dumps(
            {"model": f"net-{name}", "n_images": n, "timing_s": {"model": model_s, "metrics": 0.4, "device": "cpu"}}))
    lat = latency_table(tmp_path)
    assert lat.iloc[0].to_dict() == {"experiment": "a", "model": "net-a", "model_s_per_image": 0.5,
                                     "metric_s_per_image": 0.1, "device": "cpu"}
    assert pd.isna(lat.iloc[1]["model_s_per_image"]) and lat.iloc[1]["metric_s_per_image"] == 0.4


def test_training_curves_fall_back_to_the_logged_csvs(tmp_path):
    logs = tmp_path / "results" / "training" / "exp"
    logs.mkdir(parents=True)
    pd.DataFrame({"iter": [1, 2], "loss": [0.5, 0.25]}).to_csv(logs / "train_log.csv", index=False)
    pd.DataFrame({"iter": [2], "psnr": [21.0]}).to_csv(logs / "val_log.csv", index=False)
    curves = training_curves(tmp_path / "results", "no-such-scheme://nowhere", ["exp", "absent"])
    assert curves.attrs["source"].startswith("files (MLflow not readable: ")
    assert curves.values.tolist() == [["exp", "train.loss", 1, 0.5], ["exp", "train.loss", 2, 0.25],
                                      ["exp", "val.psnr", 2, 21.0]]


def _notebook(path, body):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell('results_dir = "unset"', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


def test_report_stage_renders_the_notebooks_with_the_results_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nb").mkdir()
    _notebook(tmp_path / "nb" / "one.ipynb", "print('results at', results_dir)")
    params = Params({"report": {"notebooks": ["nb/one.ipynb"], "timeout_s": 60}}, source="p.yaml")
    cfg = report_stage.configure(params, [])
    assert cfg == ReportConfig(notebooks=("nb/one.ipynb",), timeout_s=60)
    render_report(cfg, tmp_path / "results")
    executed = nbformat.read(tmp_path / "results" / "report" / "one.ipynb", as_version=4)
    assert f"results at {(tmp_path / 'results').resolve()}" in executed.cells[-1].outputs[0]["text"]
    assert "results at" in (tmp_path / "results" / "report" / "one.html").read_text()


def test_failed_render_keeps_the_previous_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "results" / "report"
    report.mkdir(parents=True)
    (report / "one.html").write_text("previous")
    _notebook(tmp_path / "bad.ipynb", "raise RuntimeError('boom')")
    with pytest.raises(Exception, match="boom"):
        render_report(ReportConfig(notebooks=("bad.ipynb",), timeout_s=60), tmp_path / "results")
    assert [p.name for p in report.iterdir()] == ["one.html"] and (report / "one.html").read_text() == "previous"
    assert sorted(p.name for p in report.parent.iterdir()) == ["report"]


def test_report_stage_checks_params_before_rendering(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.ipynb").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"^given\.yaml:report\.notebooks\[1\]: missing\.ipynb not found$"):
        report_stage.configure(Params({"report": {"notebooks": ["a.ipynb", "missing.ipynb"]}}, "given.yaml"), [])
    with pytest.raises(ValueError, match=r"^given\.yaml:report\.timeout_s: must be positive, got 0$"):
        report_stage.configure(Params({"report": {"notebooks": ["a.ipynb"], "timeout_s": 0}}, "given.yaml"), [])
    with pytest.raises(ConfigError, match=r"^given\.yaml:report\.notebook: unknown key"):
        report_stage.configure(Params({"report": {"notebook": []}}, "given.yaml"), [])
    with pytest.raises(ValueError, match=r"usage: python -m pipelines\.report"):
        report_stage.configure(Params({}, "given.yaml"), ["x"])
