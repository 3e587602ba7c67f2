"""The notebooks' helpers (ldp.report) and the report stage, on small hand-written result files."""

import json
import re

import nbformat
import pandas as pd
import pytest

from ldp.config import ConfigError, Params
from ldp.report import (
    GAIN_COLOURS,
    GAIN_TITLE,
    INPUT_ROW_CSS,
    INPUT_RULE_CSS,
    ROW,
    SUBSET_METRICS,
    ReportConfig,
    fmt_ci,
    fmt_number,
    format_table,
    gain_figure,
    gain_verdict,
    index_html,
    labels_banner,
    latency_table,
    load_table,
    notebook_summary,
    paired_differences,
    render_report,
    show_table,
    split_labels,
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


DATA = "not the DPDD test set (synthetic, test split, 4 images (4 at 160x96); the paper's is 76 images)"
SHORT = "short schedule (8 of 200000 iterations)"
RANDOM = "random CLIP weights"


def _results_table():
    """A table as ldp.tables writes it: the two input baselines first (the view average is the stronger), then a
    resolved gain, a resolved loss and an unresolved row."""
    n = 5
    return pd.DataFrame({
        "experiment": ["input-combined", "input-average", "good", "bad", "noise"],
        "label": ["Input: combined image C", "Input: view average (L+R)/2", "Good", "Bad", "Noise"],
        "gain_over": ["input-average"] * n,
        "gain_psnr": [-0.0000004, 0.0, 0.0387, -5.666, 0.012],
        "gain_psnr_ci_lo": [-0.000003, 0.0, 0.031, -7.924, -0.02],
        "gain_psnr_ci_hi": [0.000003, 0.0, 0.0512, -3.856, 0.05],
        "improved": [2, 0, 4, 0, 2], "n_paired": [4] * n, "n_images": [4] * n,
        "paper_psnr": [float("nan")] * 2 + [25.71, 26.66, float("nan")],
        "psnr": [23.95604, 23.95604, 23.99471, 18.28904, 23.968],
        "psnr_ci_lo": [21.2081, 21.2081, 21.2446, 16.9155, 21.2],
        "psnr_ci_hi": [25.7881, 25.7881, 25.8449, 19.6612, 25.8],
        "diff_psnr": [float("nan")] * 2 + [-1.71529, float("nan"), float("nan")],
        "ssim": [0.76761, 0.76761, 0.768449, 0.47751, 0.7677],
        "mae": [0.0387075, 0.0387075, 0.03876, 0.09194, 0.0387],
        "lpips": [0.12345, 0.12345, 0.2, 0.3, 0.25],
        "labels": [DATA, DATA, f"{DATA}; {SHORT}", f"{DATA}; {SHORT}; {RANDOM}", None],
        "paper_source": ["not reported by the paper"] * 2 + ["LDP supplementary Tab. 3"] * 2
                        + ["not reported by the paper"],
    })


def _cell_css(html: str, row: int, col: int) -> str:
    """All CSS declarations the styled table's HTML gives cell (row, col)."""
    props = []
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", html):
        if re.search(rf"_row{row}_col{col}(?![0-9])", selectors):
            props.append(" ".join(body.split()))
    return " ".join(props)


def test_numbers_round_per_metric_and_a_ci_is_one_cell():
    assert fmt_number(23.95604, 2) == "23.96" and fmt_number(0.0387075, 4) == "0.0387"
    assert fmt_number(0.0387, 2, signed=True) == "+0.04" and fmt_number(-5.666, 2, signed=True) == "-5.67"
    assert fmt_number(-0.0000004, 2, signed=True) == "0.00"  # no "-0.00"
    assert fmt_number(float("nan"), 2) == "–" and fmt_ci(1.0, float("nan"), 2) == "–"
    assert fmt_ci(-7.924, -3.856, 2, signed=True) == "[-7.92, -3.86]"
    out = format_table(_results_table()).data
    psnr, ssim, mae, lpips = (out[(t, "ours")].tolist() for t in ("PSNR (dB)", "SSIM", "MAE", "LPIPS"))
    assert psnr == ["23.96", "23.96", "23.99", "18.29", "23.97"]
    assert ssim[:4] == ["0.768", "0.768", "0.768", "0.478"]
    assert mae[:4] == ["0.0387", "0.0387", "0.0388", "0.0919"]
    assert lpips[0] == "0.123"
    assert out[("PSNR (dB)", "95 % CI")].tolist()[:4] == ["[21.21, 25.79]"] * 2 + ["[21.24, 25.84]", "[16.92, 19.66]"]
    assert out[("PSNR (dB)", "paper")].tolist() == ["–", "–", "25.71", "26.66", "–"]
    assert out[("PSNR (dB)", "Δ")].tolist() == ["–", "–", "-1.72", "–", "–"]
    assert out[(GAIN_TITLE, "gain")].tolist() == ["0.00", "reference", "+0.04", "-5.67", "+0.01"]
    assert out[(GAIN_TITLE, "95 % CI")].tolist() == ["[0.00, 0.00]", "–", "[+0.03, +0.05]", "[-7.92, -3.86]",
                                                   "[-0.02, +0.05]"]
    assert out[(GAIN_TITLE, "images improved")].tolist() == ["2 of 4", "–", "4 of 4", "0 of 4", "2 of 4"]
    # no labels column, no experiment column; SSIM and MAE have no CI columns in this table, so none is shown
    assert all("label" not in sub.lower() for _, sub in out.columns) and ("SSIM", "95 % CI") not in out.columns


def test_labels_are_footnotes_each_listed_once():
    assert split_labels(f"{DATA}; {SHORT}") == [DATA, SHORT]  # the "; " inside the parentheses does not split
    assert split_labels(None) == [] and split_labels(float("nan")) == []
    styler = format_table(_results_table())
    assert styler.data[ROW].tolist() == ["Input: combined image C<sup>1</sup>",
                                         "Input: view average (L+R)/2<sup>1</sup>", "Good<sup>1,2</sup>",
                                         "Bad<sup>1,2,3</sup>", "Noise"]
    caption = styler.caption
    for i, label in enumerate([DATA, SHORT, RANDOM], 1):
        escaped = label.replace("'", "&#x27;")
        assert caption.count(escaped) == 1 and f"<sup>{i}</sup> {escaped}" in caption
    assert caption.count("<sup>") == 3
    assert "Paper values: LDP supplementary Tab. 3 (Good, Bad)." in caption
    assert "Test images per row: 4." in caption


def test_gain_is_coloured_by_the_sign_of_its_ci_and_input_rows_stand_apart():
    assert gain_verdict(0.04, 0.03, 0.05) == "gain"
    assert gain_verdict(-5.7, -7.9, -3.9) == "loss"
    assert gain_verdict(0.01, -0.02, 0.05) == "unresolved" and gain_verdict(0.0, 0.0, 0.0) == "unresolved"
    assert gain_verdict(float("nan"), 0.1, 0.2) == "unresolved"
    styler = format_table(_results_table()).set_uuid("t")
    html = styler.to_html()
    gain_col = list(styler.data.columns).index((GAIN_TITLE, "gain"))
    ci_col = list(styler.data.columns).index((GAIN_TITLE, "95 % CI"))
    for row, verdict in ((1, "unresolved"), (2, "gain"), (3, "loss"), (4, "unresolved")):
        for col in (gain_col, ci_col):
            assert f"color: {GAIN_COLOURS[verdict]}" in _cell_css(html, row, col)
    psnr_col = list(styler.data.columns).index(("PSNR (dB)", "ours"))
    assert "color" not in _cell_css(html, 2, psnr_col)  # only the gain is coloured
    shade = " ".join(INPUT_ROW_CSS.split())
    assert shade in _cell_css(html, 0, 0) and shade in _cell_css(html, 1, psnr_col)
    assert shade not in _cell_css(html, 2, 0)
    assert " ".join(INPUT_RULE_CSS.split()) in _cell_css(html, 1, 0)  # a rule under the last input row
    assert " ".join(INPUT_RULE_CSS.split()) not in _cell_css(html, 0, 0)


def test_columns_without_any_value_are_left_out_and_named():
    df = _results_table().assign(lpips=float("nan"), diff_psnr=float("nan"))
    styler = format_table(df)
    assert ("LPIPS", "ours") not in styler.data.columns and ("PSNR (dB)", "Δ") not in styler.data.columns
    assert "Left out (no value in any row): PSNR (dB): Δ, LPIPS: ours." in styler.caption
    sub = format_table(df.assign(psnr_indoor=[20.0] * 5, psnr_indoor_ci_lo=19.0, psnr_indoor_ci_hi=21.0,
                                 psnr_outdoor=float("nan")), metrics=SUBSET_METRICS, gain=False)
    assert list(sub.data.columns) == [ROW, ("PSNR indoor (dB)", "ours"), ("PSNR indoor (dB)", "95 % CI")]


def test_show_table_says_when_rows_are_not_comparable_then_shows_the_formatted_table(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    show_table(_results_table())
    assert len(shown) == 1 and shown[0].data[ROW].iloc[2] == "Good<sup>1,2</sup>"  # no `comparable` column
    show_table(_results_table().assign(comparable=[False, False, True, False, True]))
    assert shown[1].data.startswith("> **Not a reproduction of the paper's numbers.** 3 of 5 rows are not comparable")
    assert shown[2].data[ROW].iloc[0] == "Input: combined image C<sup>1</sup>"
    show_table(_results_table().assign(comparable=True))
    assert len(shown) == 4  # all comparable: the table alone


def test_gain_figure_has_one_bar_per_row_and_a_zero_line():
    df = _results_table()
    fig = gain_figure(df, "Main")
    ax = fig.axes[0]
    assert len(ax.patches) == len(df)
    assert [round(p.get_width(), 4) for p in ax.patches] == [-0.0, 0.0, 0.0387, -5.666, 0.012]
    assert [t.get_text() for t in ax.get_yticklabels()] == df["label"].tolist()  # top row first
    assert ax.get_ylim()[0] > ax.get_ylim()[1]
    assert any(list(line.get_xdata()) == [0, 0] for line in ax.get_lines())  # the zero line
    right = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert right[1] == "reference" and right[3] == "-5.67 [-7.92, -3.86]"
    assert ax.patches[3].get_facecolor()[:3] == pytest.approx(
        tuple(int(GAIN_COLOURS["loss"][i:i + 2], 16) / 255 for i in (1, 3, 5)))
    assert "Input: view average (L+R)/2" in ax.get_xlabel()


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
    pd.DataFrame({"iter": [1, 2], "total": [0.5, 0.25], "lr": [1e-3, 1e-3]}).to_csv(logs / "train_log.csv",
                                                                                   index=False)
    pd.DataFrame({"iter": [2], "view": ["crop96"], "val_psnr": [21.0]}).to_csv(logs / "val_log.csv", index=False)
    curves = training_curves(tmp_path / "results", "no-such-scheme://nowhere", ["exp", "absent"])
    assert curves.attrs["source"].startswith("files (MLflow not readable: ")
    assert curves.values.tolist() == [["exp", "train.loss", 1, 0.5], ["exp", "train.loss", 2, 0.25],
                                      ["exp", "val.psnr", 2, 21.0]]


def _notebook(path, body, intro="# One\n\nA notebook that prints. More text."):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_markdown_cell(intro),
                nbformat.v4.new_code_cell('results_dir = "unset"', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


def test_report_stage_renders_the_notebooks_without_code_and_an_index(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nb").mkdir()
    _notebook(tmp_path / "nb" / "one.ipynb", "code_only_marker = 'results at'\nprint(code_only_marker, results_dir)")
    params = Params({"report": {"notebooks": ["nb/one.ipynb"], "timeout_s": 60}}, source="p.yaml")
    cfg = report_stage.configure(params, []).report
    assert cfg == ReportConfig(notebooks=("nb/one.ipynb",), timeout_s=60)
    render_report(cfg, tmp_path / "results")
    report = tmp_path / "results" / "report"
    executed = nbformat.read(report / "one.ipynb", as_version=4)
    assert f"results at {(tmp_path / 'results').resolve()}" in executed.cells[-1].outputs[0]["text"]
    assert "code_only_marker" in executed.cells[-1].source  # the executed notebook keeps the code
    page = (report / "one.html").read_text()
    assert f"results at {(tmp_path / 'results').resolve()}" in page  # the output is kept
    assert "code_only_marker" not in page and 'results_dir = "unset"' not in page  # no input cell
    assert "In&nbsp;[" not in page and "jp-InputPrompt" not in page.split("</style>")[-1]
    assert page.count("jp-mod-noInput") == 3  # parameters, papermill's injected parameters, the body
    index = (report / "index.html").read_text()
    assert '<a href="one.html">One</a> — A notebook that prints.' in index
    assert '<a href="one.ipynb">executed notebook</a>' in index
    assert sorted(p.name for p in report.iterdir()) == ["index.html", "one.html", "one.ipynb"]


def test_the_index_lists_every_notebook_with_its_first_markdown_line(tmp_path):
    _notebook(tmp_path / "01-a.ipynb", "pass", "# 01 · Main table\n\nThe **main** table. Then more.\n\nMore.")
    _notebook(tmp_path / "02-b.ipynb", "pass", "# 02 · Ablations\n\n- **Tab. 1** and Fig. A: prompts. More.\n- Tab. 2")
    _notebook(tmp_path / "05-c.ipynb", "pass", "No heading here. Second sentence.")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("pass")]
    nbformat.write(nb, tmp_path / "06-d.ipynb")
    summaries = [notebook_summary(tmp_path / f) for f in ("01-a.ipynb", "02-b.ipynb", "05-c.ipynb", "06-d.ipynb")]
    assert summaries == [("01 · Main table", "The **main** table."),
                         ("02 · Ablations", "**Tab. 1** and Fig. A: prompts."),  # no cut after an abbreviation
                         ("05-c", "No heading here."), ("06-d", "")]
    index = index_html([(f"{name}.html", *summary) for name, summary in zip(
        ("01-a", "02-b", "05-c", "06-d"), summaries, strict=True)])
    assert re.findall(r'<li><a href="([^"]+)">', index) == ["01-a.html", "02-b.html", "05-c.html", "06-d.html"]
    assert '<a href="01-a.html">01 · Main table</a> — The <strong>main</strong> table.' in index
    assert '<a href="06-d.html">06-d</a> <span' in index


def test_the_default_report_names_the_notebooks_in_the_tree():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for path in ReportConfig().notebooks:
        assert (repo / path).is_file(), path
        title, line = notebook_summary(repo / path)
        assert title[:2].isdigit() and line


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
