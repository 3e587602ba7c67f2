"""Helpers the result notebooks use (reading ``results/`` and MLflow only), and headless notebook rendering."""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ldp.fsutil import atomic_dir
from ldp.models.input_baselines import INPUT_BASELINES
from ldp.stats import paired_bootstrap_diff, read_per_image

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from pandas.io.formats.style import Styler


@dataclass(frozen=True)
class ReportConfig:
    """params.yaml section ``report``: the notebooks rendered (paths from the repo root), in the order the index
    page lists them, and a per-cell timeout."""

    notebooks: tuple[str, ...] = (
        "notebooks/01-main-table.ipynb",
        "notebooks/02-ablations.ipynb",
        "notebooks/03-complexity.ipynb",
        "notebooks/04-figures.ipynb",
        "notebooks/05-protocols.ipynb",
        "notebooks/06-literature.ipynb",
        "notebooks/07-real-scenes.ipynb",
    )
    timeout_s: int = 600


TABLE_COLUMNS = ["label", "gain_psnr", "gain_psnr_ci_lo", "gain_psnr_ci_hi", "improved", "n_paired",
                 "paper_psnr", "psnr", "psnr_ci_lo", "psnr_ci_hi", "diff_psnr",
                 "paper_ssim", "ssim", "diff_ssim", "paper_mae", "mae", "diff_mae",
                 "paper_rmse", "rmse", "diff_rmse", "lpips", "n_images", "labels"]


def load_table(results: Path, table: str) -> pd.DataFrame:
    path = Path(results) / "tables" / f"{table}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run the tables stage first (dvc repro tables)")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def split_labels(cell: Any) -> list[str]:
    """The labels of one ``labels`` cell: ``ldp.tables`` joins them with "; ", and a label may hold "; " inside its
    parentheses ("4 images (4 at 160x96); the paper's is ..." is one label), so only top-level semicolons split."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return []
    out, depth, current = [], 0, []
    for ch in str(cell):
        depth += (ch == "(") - (ch == ")")
        if ch == ";" and depth <= 0:
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return [x.strip() for x in out if x.strip()]


def labels_banner(df: pd.DataFrame | None, extra: list[str] | None = None) -> None:
    from IPython.display import Markdown, display

    found: set[str] = set(extra or [])
    if df is not None and not df.empty and "labels" in df:
        for cell in df["labels"]:
            found.update(split_labels(cell))
    if found:
        items = "\n".join(f"- {x}" for x in sorted(found))
        display(Markdown(f"> **Not a reproduction of the paper's numbers.** These rows carry labels:\n{items}"))


# ------------------------------------------------------------------------------------------------ table formatter

@dataclass(frozen=True)
class MetricColumns:
    """One metric of a formatted table: the CSV stem (``psnr`` → ``psnr``, ``psnr_ci_lo``/``_hi``, ``paper_psnr``,
    ``diff_psnr``; any of them may be absent), its header and the decimals it is printed with."""

    key: str
    title: str
    decimals: int


# Printed precision: PSNR 2 dp (the paper's), SSIM and LPIPS 3 dp (the paper's SSIM), MAE and RMSE 4 dp (the
# paper prints 3; one more keeps differences of a few 1e-4 between our rows visible).
DECIMALS = {"psnr": 2, "ssim": 3, "mae": 4, "rmse": 4, "lpips": 3}
MAIN_METRICS = tuple(MetricColumns(key, title, DECIMALS[key]) for key, title in
                     (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("mae", "MAE"), ("rmse", "MSE_rel (RMSE)"),
                      ("lpips", "LPIPS")))
SUBSET_METRICS = (MetricColumns("psnr_indoor", "PSNR indoor (dB)", DECIMALS["psnr"]),
                  MetricColumns("psnr_outdoor", "PSNR outdoor (dB)", DECIMALS["psnr"]))
GAIN_TITLE = "PSNR gain over the stronger input (dB)"
ROW = ("", "row")
# Gain colours (text): a resolved gain (mean and CI above 0), a resolved loss (CI below 0), anything else.
GAIN_COLOURS = {"gain": "#1a7f37", "loss": "#cf222e", "unresolved": "#6e7781"}
INPUT_ROW_CSS = "background-color: #eef1f5; font-style: italic;"
INPUT_RULE_CSS = "border-bottom: 2px solid #57606a;"


def _missing(value: Any) -> bool:
    return value is None or bool(pd.isna(value))


def fmt_number(value: Any, decimals: int, signed: bool = False) -> str:
    """``value`` rounded to ``decimals`` ("–" when missing); ``signed`` prints "+" for positive values. A value that
    rounds to zero prints unsigned."""
    if _missing(value):
        return "–"
    rounded = round(float(value), decimals)
    if rounded == 0:  # no "-0.00", and no sign on a zero
        return f"{0.0:.{decimals}f}"
    return f"{rounded:+.{decimals}f}" if signed else f"{rounded:.{decimals}f}"


def fmt_ci(lo: Any, hi: Any, decimals: int, signed: bool = False) -> str:
    """A CI as one cell, "[lo, hi]" ("–" when either end is missing)."""
    if _missing(lo) or _missing(hi):
        return "–"
    return f"[{fmt_number(lo, decimals, signed)}, {fmt_number(hi, decimals, signed)}]"


def gain_verdict(gain: Any, lo: Any, hi: Any) -> str:
    """``gain`` when the mean and the whole CI are above 0, ``loss`` when the whole CI is below 0, else
    ``unresolved`` (a CI across 0, a zero gain, or a missing value)."""
    if _missing(gain) or _missing(lo) or _missing(hi):
        return "unresolved"
    if gain > 0 and lo > 0:
        return "gain"
    if hi < 0:
        return "loss"
    return "unresolved"


def footnotes(df: pd.DataFrame) -> tuple[list[list[int]], list[str]]:
    """Each row's footnote numbers and the distinct labels, numbered 1.. in order of first appearance down the
    table (so the first row's labels come first)."""
    notes: list[str] = []
    marks: list[list[int]] = []
    cells = df["labels"] if "labels" in df else [None] * len(df)
    for cell in cells:
        row = []
        for label in split_labels(cell):
            if label not in notes:
                notes.append(label)
            row.append(notes.index(label) + 1)
        marks.append(row)
    return marks, notes


def _is_input(df: pd.DataFrame) -> pd.Series:
    if "experiment" not in df:
        return pd.Series(False, index=df.index)
    return df["experiment"].isin(INPUT_BASELINES)


def _is_reference(df: pd.DataFrame) -> pd.Series:
    """The row of the stronger input baseline itself (its gain is 0 by definition)."""
    if "experiment" not in df or "gain_over" not in df:
        return pd.Series(False, index=df.index)
    return df["experiment"] == df["gain_over"]


def reference_label(df: pd.DataFrame) -> str | None:
    """The label of the stronger input baseline the gains are over (``gain_over`` names its experiment)."""
    if "gain_over" not in df or "experiment" not in df or df["gain_over"].dropna().empty:
        return None
    ref = df["gain_over"].dropna().iloc[0]
    hit = df.loc[df["experiment"] == ref, "label"] if "label" in df else pd.Series(dtype=object)
    return str(hit.iloc[0]) if not hit.empty else str(ref)


def _gain_columns(df: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    is_ref = _is_reference(df)
    gains, cis, improved = [], [], []
    for i, (_, r) in enumerate(df.iterrows()):
        if bool(is_ref.iloc[i]):
            gains.append("reference")
            cis.append("–")
            improved.append("–")
            continue
        gains.append(fmt_number(r.get("gain_psnr"), 2, signed=True))
        cis.append(fmt_ci(r.get("gain_psnr_ci_lo"), r.get("gain_psnr_ci_hi"), 2, signed=True))
        k, n = r.get("improved"), r.get("n_paired")
        improved.append("–" if _missing(k) or _missing(n) else f"{int(k)} of {int(n)}")
    return {(GAIN_TITLE, "gain"): gains, (GAIN_TITLE, "95 % CI"): cis, (GAIN_TITLE, "images improved"): improved}


def _metric_columns(df: pd.DataFrame, metrics: Sequence[MetricColumns]
                    ) -> tuple[dict[tuple[str, str], list[str]], list[str]]:
    """The paper / ours / 95 % CI / Δ cells of each metric; columns with no value in any row are left out and
    named in the second return value."""
    cols: dict[tuple[str, str], list[str]] = {}
    left_out: list[str] = []

    def empty(*names: str) -> bool:
        return all(df[n].isna().all() for n in names)

    for m in metrics:
        parts = [("paper", [f"paper_{m.key}"], lambda r, m=m: fmt_number(r[f"paper_{m.key}"], m.decimals)),
                 ("ours", [m.key], lambda r, m=m: fmt_number(r[m.key], m.decimals)),
                 ("95 % CI", [f"{m.key}_ci_lo", f"{m.key}_ci_hi"],
                  lambda r, m=m: fmt_ci(r[f"{m.key}_ci_lo"], r[f"{m.key}_ci_hi"], m.decimals)),
                 ("Δ", [f"diff_{m.key}"], lambda r, m=m: fmt_number(r[f"diff_{m.key}"], m.decimals, signed=True))]
        for sub, names, cell in parts:
            if not all(n in df for n in names):
                continue
            if empty(*names):
                left_out.append(f"{m.title}: {sub}")
                continue
            cols[(m.title, sub)] = [cell(r) for _, r in df.iterrows()]
    return cols, left_out


def _not_comparable(df: pd.DataFrame) -> set[str]:
    out: set[str] = set()
    for cell in df.get("not_comparable_because", []):
        out.update(split_labels(cell))
    return out


def _caption(df: pd.DataFrame, notes: list[str], left_out: list[str], with_gain: bool) -> str:
    lines = []
    ref = reference_label(df)
    if with_gain and ref:
        colours = ", ".join(f'<span style="color: {GAIN_COLOURS[k]}">{w}</span>' for k, w in
                            (("gain", "green: the CI is above 0"), ("loss", "red: the CI is below 0"),
                             ("unresolved", "grey: not resolved (CI across 0)")))
        lines.append(f"Gain: the row's mean PSNR minus that of <b>{html.escape(ref)}</b>, the stronger input "
                     f"baseline, paired by image (bootstrap 95 % CI); {colours}.")
    if _is_input(df).any():
        lines.append("Shaded rows: the input baselines (no network, no weights).")
    if any(c.startswith("diff_") for c in df.columns):
        lines.append("Δ = ours − paper, only for the rows comparable with the paper; – = no value.")
    if "n_images" in df and df["n_images"].nunique(dropna=True) == 1:
        lines.append(f"Test images per row: {int(df['n_images'].dropna().iloc[0])}.")
    if "paper_source" in df and "label" in df:
        sources: dict[str, list[str]] = {}
        for _, r in df.iterrows():
            src = r["paper_source"]
            if not _missing(src) and src != "not reported by the paper":
                sources.setdefault(str(src), []).append(str(r["label"]))
        if sources:
            lines.append("Paper values: " + "; ".join(f"{html.escape(s)} ({html.escape(', '.join(rows))})"
                                                      for s, rows in sources.items()) + ".")
    if left_out:
        lines.append("Left out (no value in any row): " + ", ".join(left_out) + ".")
    if notes:
        blocking = _not_comparable(df)
        lines.append("<b>Labels</b>: what the rows were run on and with (results/README.md); a row with a label "
                     "marked ✗ is not comparable with the paper and has no Δ.")
        lines += [f"<sup>{i}</sup> {html.escape(note)}{' ✗' if note in blocking else ''}"
                  for i, note in enumerate(notes, 1)]
    return "<br>".join(lines)


def format_table(df: pd.DataFrame, metrics: Sequence[MetricColumns] = MAIN_METRICS, gain: bool = True) -> Styler:
    """A results table (``results/tables/*.csv``) as a report reader sees it: rounded numbers (``DECIMALS``), each
    CI as one "[lo, hi]" column, the PSNR gain over the stronger input coloured by its CI (``gain_verdict``), the
    input-baseline rows shaded and ruled off, and the labels as numbered footnotes (a mark after each row's name,
    each distinct label once in the caption under the table)."""
    df = df.reset_index(drop=True)
    marks, notes = footnotes(df)
    names = df["label"] if "label" in df else df.get("experiment", pd.Series([""] * len(df)))
    cols: dict[tuple[str, str], list[str]] = {
        ROW: [html.escape(str(n)) + (f"<sup>{','.join(map(str, m))}</sup>" if m else "")
              for n, m in zip(names, marks, strict=True)]}
    with_gain = gain and "gain_psnr" in df
    if with_gain:
        cols.update(_gain_columns(df))
    metric_cols, left_out = _metric_columns(df, metrics)
    cols.update(metric_cols)
    if "n_images" in df and df["n_images"].nunique(dropna=True) > 1:
        cols[("", "images")] = [fmt_number(v, 0) for v in df["n_images"]]
    out = pd.DataFrame(cols, index=df.index)
    out.columns = pd.MultiIndex.from_tuples(list(cols))

    styles = pd.DataFrame("", index=out.index, columns=out.columns)
    inputs = _is_input(df)
    for i in out.index[inputs]:
        styles.loc[i, :] = INPUT_ROW_CSS
    if inputs.any() and not inputs.all():
        last = out.index[inputs][-1]
        styles.loc[last, :] = styles.loc[last, :] + INPUT_RULE_CSS
    if with_gain:
        for i, r in df.iterrows():
            verdict = gain_verdict(r["gain_psnr"], r.get("gain_psnr_ci_lo"), r.get("gain_psnr_ci_hi"))
            css = f"color: {GAIN_COLOURS[verdict]};"
            for sub in ("gain", "95 % CI"):
                styles.loc[i, (GAIN_TITLE, sub)] += css + " font-weight: bold;"
    styler = out.style.hide(axis="index").apply(lambda _: styles, axis=None)
    styler = styler.set_caption(_caption(df, notes, left_out, with_gain)).set_table_styles([
        {"selector": "caption", "props": "caption-side: bottom; text-align: left; font-size: 0.85em; "
                                         "padding-top: 0.6em; line-height: 1.4;"},
        {"selector": "th.col_heading", "props": "text-align: center;"},
        {"selector": "td", "props": "text-align: right; white-space: nowrap;"},
        {"selector": "td.col0", "props": "text-align: left;"},
    ])
    return styler


def format_plain(df: pd.DataFrame, decimals: int | dict[str, int] = 2) -> Styler:
    """A table that is not a results table (complexity, latency, paired differences): numbers rounded
    (``decimals``: one for all, or per column), no index, "–" for missing values."""
    styler = df.style.hide(axis="index")
    if isinstance(decimals, dict):
        return styler.format({c: f"{{:.{d}f}}" for c, d in decimals.items() if c in df}, na_rep="–")
    return styler.format(precision=decimals, na_rep="–")


def comparability_note(df: pd.DataFrame) -> str | None:
    """One line above a table when some of its rows are not comparable with the paper (``comparable`` false)."""
    if "comparable" not in df or df.empty:
        return None
    not_comparable = int((~df["comparable"].map(lambda v: str(v).strip().lower() == "true")).sum())
    if not not_comparable:
        return None
    return (f"> **Not a reproduction of the paper's numbers.** {not_comparable} of {len(df)} rows are not "
            "comparable with the paper: the labels marked ✗ under the table say why, and those rows have no Δ.")


def show_table(df: pd.DataFrame, metrics: Sequence[MetricColumns] = MAIN_METRICS, gain: bool = True) -> None:
    """``comparability_note`` (when there is one), then ``format_table``."""
    from IPython.display import Markdown, display

    note = comparability_note(df)
    if note:
        display(Markdown(note))
    display(format_table(df, metrics=metrics, gain=gain))


def gain_figure(df: pd.DataFrame, title: str | None = None) -> Figure:
    """PSNR gain over the stronger input baseline with its 95 % CI, one horizontal bar per row in table order
    (coloured as in the table, input baselines hatched), and a zero line. A figure not attached to pyplot, so a
    notebook shows it once, where it stands, with ``show_figure``."""
    from matplotlib.figure import Figure

    df = df.reset_index(drop=True)
    gain = pd.to_numeric(df.get("gain_psnr", pd.Series(math.nan, index=df.index)), errors="coerce")
    lo = pd.to_numeric(df.get("gain_psnr_ci_lo", gain), errors="coerce")
    hi = pd.to_numeric(df.get("gain_psnr_ci_hi", gain), errors="coerce")
    names = [str(x) for x in (df["label"] if "label" in df else df.index)]
    colours = [GAIN_COLOURS[gain_verdict(g, a, b)] for g, a, b in zip(gain, lo, hi, strict=True)]
    err = [(gain - lo).clip(lower=0).fillna(0).tolist(), (hi - gain).clip(lower=0).fillna(0).tolist()]
    fig = Figure(figsize=(7.5, 0.38 * len(df) + 1.3), layout="constrained")
    ax = fig.add_subplot()
    y = list(range(len(df)))
    bars = ax.barh(y, gain.fillna(0).tolist(), xerr=err, color=colours, alpha=0.85, capsize=3,
                   error_kw={"ecolor": "#24292f", "elinewidth": 1})
    for bar, is_input in zip(bars, _is_input(df), strict=True):
        if is_input:
            bar.set_hatch("//")
            bar.set_alpha(0.45)
    ax.axvline(0, color="#24292f", linewidth=1)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_ylim(len(df) - 0.5, -0.5)  # first row on top, as in the table
    ref = reference_label(df)
    is_ref = _is_reference(df)
    values = ax.twinx()  # the numbers beside the bars, as tick labels on the right (the layout keeps them in)
    values.set_ylim(ax.get_ylim())
    values.set_yticks(y, ["reference" if r else f"{fmt_number(g, 2, True)} {fmt_ci(a, b, 2, True)}"
                          for r, g, a, b in zip(is_ref, gain, lo, hi, strict=True)], fontsize=8)
    for tick, colour in zip(values.get_yticklabels(), colours, strict=True):
        tick.set_color(colour)
    ax.set_xlabel(f"PSNR gain (dB) over {ref or 'the stronger input'}\npaired by image, bootstrap 95 % CI")
    ax.set_title(title or "Gain over the stronger input baseline", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def show_figure(fig: Figure, dpi: int = 110) -> None:
    """Display a figure that is not attached to pyplot (``gain_figure``) as a PNG, where the call stands (inside
    a loop too), whatever the matplotlib backend."""
    import io

    from IPython.display import Image, display

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    display(Image(data=buf.getvalue(), format="png"))


def paired_differences(results: Path, df: pd.DataFrame, metric: str = "psnr", n: int = 2000) -> pd.DataFrame:
    """Paired-bootstrap CI of (row − first network row) on the same images, for each later network row of a table
    (the input baselines' rows are left out: the table's gain columns compare every row with them)."""
    networks = df[~df["experiment"].isin(INPUT_BASELINES)] if "experiment" in df else df
    if len(networks) < 2:
        return pd.DataFrame()
    first = networks.iloc[0]
    base = read_per_image(Path(results) / "eval" / first["experiment"])
    rows = []
    for _, r in networks.iloc[1:].iterrows():
        other = read_per_image(Path(results) / "eval" / r["experiment"])
        res = paired_bootstrap_diff(other, base, metric=metric, n=n, seed=0)
        rows.append({"row": r["label"], "minus": first["label"], **res})
    return pd.DataFrame(rows)


def latency_table(results: Path) -> pd.DataFrame:
    rows = []
    for path in sorted((Path(results) / "eval").glob("*/metrics.json")):
        m = json.loads(path.read_text())
        t = m.get("timing_s") or {}
        n = max(int(m.get("n_images") or 0), 1)
        rows.append({"experiment": path.parent.name, "model": m.get("model"),
                     "model_s_per_image": (t.get("model") or math.nan) / n,
                     "metric_s_per_image": (t.get("metrics") or math.nan) / n, "device": t.get("device")})
    return pd.DataFrame(rows)


def training_curves(results: Path, tracking_uri: str | None, experiments: list[str]) -> pd.DataFrame:
    """Loss and val-PSNR curves from MLflow (search_runs); falls back to results/training/*/ CSVs."""
    import logging

    frames: list[pd.DataFrame] = []
    source = "none"
    mlflow_log = logging.getLogger("mlflow")
    level = mlflow_log.level
    try:
        import mlflow
        from mlflow.tracking import MlflowClient

        from ldp.tracking import default_tracking_uri, using_tracking_uri

        # after the import (mlflow sets its logger's level when imported): no "Creating initial MLflow database
        # tables" lines in the report
        mlflow_log.setLevel(logging.WARNING)

        uri = tracking_uri or default_tracking_uri()
        client = MlflowClient(uri)
        with using_tracking_uri(uri):
            runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.stage = 'train'",
                                      order_by=["attributes.start_time DESC"])
        seen: set[str] = set()
        for _, run in runs.iterrows():
            exp = run.get("tags.experiment")
            if exp not in experiments or exp in seen:
                continue
            seen.add(exp)
            for key in ("train.loss", "val.psnr"):
                hist = client.get_metric_history(run["run_id"], key)
                frames.append(pd.DataFrame({"experiment": exp, "metric": key, "step": [h.step for h in hist],
                                            "value": [h.value for h in hist]}))
        if frames:
            source = f"MLflow ({uri.split('?')[0]})"
    except Exception as exc:  # MLflow is optional for reading; fall back to files
        source = f"files (MLflow not readable: {type(exc).__name__})"
        frames = []
    finally:
        mlflow_log.setLevel(level)
    if not frames:
        for exp in experiments:
            tdir = Path(results) / "training" / exp
            # the training stage writes `total` and `val_psnr`; `loss` and `psnr` are older logs' names
            for fname, key, names in (("train_log.csv", "train.loss", ("total", "loss")),
                                      ("val_log.csv", "val.psnr", ("val_psnr", "psnr"))):
                p = tdir / fname
                if p.is_file():
                    t = pd.read_csv(p)
                    col = next((c for c in names if c in t), None)
                    if col is not None and "iter" in t:
                        frames.append(pd.DataFrame({"experiment": exp, "metric": key, "step": t["iter"],
                                                    "value": t[col]}))
        if frames and source == "none":
            source = "files under results/training/"
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["experiment", "metric", "step", "value"])
    out.attrs["source"] = source
    return out


INDEX_HTML = "index.html"


def html_exporter() -> Any:
    """nbconvert's HTML exporter for the report: code cells' inputs and the In/Out prompts left out (the executed
    ``.ipynb`` beside each page keeps the code), every output kept."""
    from nbconvert import HTMLExporter

    return HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)


LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
# a full stop that ends a sentence: followed by a space and a capital, not after an abbreviation ("Tab. 1")
SENTENCE_END = re.compile(r"(?<!\bTab)(?<!\bTabs)(?<!\bFig)(?<!\bFigs)(?<!\bEq)(?<!\be\.g)(?<!\bi\.e)(?<!\bcf)"
                          r"(?<!\bvs)\.\s+(?=[A-Z])")


def notebook_summary(path: Path) -> tuple[str, str]:
    """A notebook's title and one line about it, both from its first markdown cell: the first heading (else the
    file name), and the first sentence of the first paragraph after it (of a list: its first item), as markdown
    ("" when there is none)."""
    import nbformat

    nb = nbformat.read(Path(path), as_version=4)
    cell = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    title, line = Path(path).stem, ""
    if cell is None:
        return title, line
    blocks = [b.strip() for b in str(cell.source).split("\n\n") if b.strip()]
    if blocks and blocks[0].startswith("#"):
        title = blocks.pop(0).splitlines()[0].lstrip("#").strip() or title
    if blocks:
        lines = blocks[0].splitlines()
        if LIST_MARK.match(lines[0]):
            lines = [lines[0]]
        text = " ".join(LIST_MARK.sub("", x).strip() for x in lines)
        end = SENTENCE_END.search(text)
        line = text[:end.start() + 1] if end else text
    return title, line


def index_html(entries: Sequence[tuple[str, str, str]]) -> str:
    """The report's index page: one line per rendered notebook, ``(page name, title, markdown line)``."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    items = []
    for page, title, line in entries:
        about = markdown2html_mistune(line).strip().removeprefix("<p>").removesuffix("</p>") if line else ""
        notebook = Path(page).with_suffix(".ipynb").name
        items.append(f'<li><a href="{html.escape(page)}">{html.escape(title)}</a>'
                     + (f" — {about}" if about else "")
                     + f' <span class="nb">(<a href="{html.escape(notebook)}">executed notebook</a>)</span></li>')
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        "<title>ldp-bench report</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:52em;margin:2em auto;padding:0 1em;"
        "line-height:1.5;color:#24292f} li{margin:0.6em 0} .nb{font-size:0.85em;color:#57606a}</style>",
        "</head>", "<body>", "<h1>ldp-bench report</h1>",
        "<p>The result notebooks, executed headless on this pipeline's <code>results/</code> (the report stage). "
        "Every table starts with the input baselines and gives each row's PSNR gain over the stronger one; its "
        "footnotes say what each row was run on and with. How to read the tables: <code>results/README.md</code>."
        "</p>", "<ul>", *items, "</ul>", "</body>", "</html>", ""])


def render_notebooks(notebooks: list[Path], out_dir: Path, parameters: dict[str, Any], timeout: int = 600) -> None:
    """Execute each notebook headless with papermill, export HTML without the code (``html_exporter``), and write
    ``index.html`` linking the pages in ``notebooks`` order; atomic for the whole output folder."""
    import nbformat
    import papermill

    exporter = html_exporter()
    entries = []
    with atomic_dir(out_dir) as tmp:
        for nb in notebooks:
            executed = tmp / nb.name
            papermill.execute_notebook(str(nb), str(executed), parameters=parameters, cwd=str(nb.parent),
                                       kernel_name="python3", progress_bar=False, execution_timeout=timeout)
            body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
            executed.with_suffix(".html").write_text(body)
            entries.append((executed.with_suffix(".html").name, *notebook_summary(nb)))
        (tmp / INDEX_HTML).write_text(index_html(entries))


def check_notebooks(cfg: ReportConfig, where: str) -> None:
    """Every notebook of ``report.notebooks`` exists (``where``: the params file, for the message)."""
    if cfg.timeout_s <= 0:
        raise ValueError(f"{where}:report.timeout_s: must be positive, got {cfg.timeout_s}")
    for i, path in enumerate(cfg.notebooks):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{where}:report.notebooks[{i}]: {path} not found")


def render_report(cfg: ReportConfig, results: Path) -> None:
    """Render ``cfg.notebooks`` into ``results/report``, each reading the results folder ``results``."""
    render_notebooks([Path(p) for p in cfg.notebooks], Path(results) / "report",
                     {"results_dir": str(Path(results).resolve())}, timeout=cfg.timeout_s)
