"""Build the paper's tables from the evaluation outputs: the paper's number, ours, the difference and a 95 % CI.

Every table starts with the two input baselines (``input-combined``, ``input-average``; results/eval/<name>/), and
every row carries its paired gain over the stronger of them: mean PSNR gain in dB, a paired bootstrap 95 % CI over
the scenes, and how many images it improved. Each row's labels are the ones its evaluation wrote into metrics.json
(:mod:`ldp.labels`: data, CLIP weights, schedule, inference, precision, combined input); a row whose labels say it
is not comparable with the paper gets no Δ (docs/metrics.md, "Table labels").
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ldp.config import ConfigError, section, subsection, where_of
from ldp.data.real import INDEX_JSON
from ldp.evaluate import METRICS_JSON
from ldp.experiments import TABLES, ExperimentConfig
from ldp.fsutil import atomic_dir
from ldp.labels import CAVEATS, COMPARABLE, NOT_COMPARABLE
from ldp.models.input_baselines import INPUT_BASELINE_LABELS, INPUT_BASELINES, NO_WEIGHTS
from ldp.paper_results import PaperRow, paper_row
from ldp.stats import PER_IMAGE_CSV, StatsError, paired_bootstrap_diff, read_per_image

METRICS = ("psnr", "ssim", "mae", "rmse", "lpips")
PAPER_METRICS = ("psnr", "ssim", "mae", "rmse")
SUBSETS = ("all", "indoor", "outdoor")
METRIC_TITLES = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mae": "MAE", "rmse": "MSE_rel (RMSE)", "lpips": "LPIPS"}
DECIMALS = {"psnr": 2, "ssim": 3, "mae": 3, "rmse": 3, "lpips": 3}
TABLES_MD = "tables.md"
GAIN_RESAMPLES = 2000  # paired bootstrap of the gain over the stronger input baseline (seed GAIN_SEED)
GAIN_SEED = 0
BELOW_INPUT = "▼"  # markdown marker of a row whose mean PSNR is below the stronger input baseline
REAL_TABLE_PREFIX = "real-"  # real-<set>.csv: every row scored on a real DP test set (stage evaluate_real)
CHECKS_MD = "checks.md"
REAL_TARGET_DB = 0.5  # issue 13's target: the best network over the view average on the real Canon scenes
NOT_AVAILABLE_JSON = "not_available.json"  # written by stage evaluate_real for a row it could not score


@dataclass(frozen=True)
class NotRunnable:
    """params ``not_runnable.<name>``: a row of the paper's grid a profile cannot run, shown with ``reason``."""

    table: str
    label: str
    reason: str


def load_not_runnable(params: Mapping[str, Any]) -> dict[str, NotRunnable]:
    """The ``not_runnable`` section (each entry typed; its table must be a known one)."""
    raw = subsection(params, "not_runnable")
    out = {name: section(params, f"not_runnable.{name}", NotRunnable) for name in raw}
    for name, row in out.items():
        if row.table not in TABLES:
            raise ConfigError(f"{where_of(params)}:not_runnable.{name}.table: unknown table {row.table!r} (known: "
                              f"{', '.join(TABLES)})")
    return out


def _blank_row(name: str, label: str, reason: str) -> dict[str, Any]:
    """A row without numbers: a row the profile cannot run, or one that cannot be scored on this data."""
    return {"experiment": name, "label": label, "not_run": reason, "comparable": False, "labels": reason,
            "not_comparable_because": reason, "paper_source": "n/a"}


def _with_blanks(df: pd.DataFrame, blanks: list[dict[str, Any]]) -> pd.DataFrame:
    """``df`` with the blank rows appended (after the gains: they have none)."""
    return pd.concat([df, pd.DataFrame(blanks)], ignore_index=True) if blanks else df


def refuse_tables_section(params: Mapping[str, Any]) -> None:
    """The ``tables`` section is gone (its one key, ``profile``, named the labels; they now come from what was run):
    a params file that still sets it gets an error, not a silently ignored key."""
    if "tables" in params:
        keys = ", ".join(f"tables.{k}" for k in params["tables"] or {}) or "tables"
        raise ConfigError(f"{where_of(params)}:{keys}: no longer a parameter (the tables' labels come from what was "
                          "run: docs/metrics.md, 'Table labels'); delete the tables section")


def check_table_labels(experiments: Mapping[str, ExperimentConfig], where: str) -> None:
    """Two rows of one table with the same label would read as one row printed twice: refuse them."""
    for table in TABLES:
        seen: dict[str, str] = {}
        for name, exp in experiments.items():
            if table not in exp.tables:
                continue
            label = row_label(name, exp)
            if label in seen:
                raise ConfigError(f"{where}:experiments.{name}.label: {label!r} is also the label of "
                                  f"experiments.{seen[label]} in table {table!r}; give each row its own label")
            seen[label] = name


def row_label(name: str, exp: ExperimentConfig) -> str:
    return exp.label or name


def is_input_baseline_run(metrics: Mapping[str, Any]) -> bool:
    """Evaluated as a weight-free input baseline (``weights`` is ``none needed (input baseline)``)."""
    return metrics.get("weights") == NO_WEIGHTS


def _stat(metrics: Mapping[str, Any], subset: str, metric: str) -> tuple[float, float, float]:
    entry = ((metrics.get("metrics") or {}).get(subset) or {}).get(metric) or {}
    ci = entry.get("ci95") or [None, None]
    mean, lo, hi = (math.nan if v is None else float(v) for v in (entry.get("mean"), *ci))
    return mean, lo, hi


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {what} not readable: {exc}") from exc


def _experiment_row(name: str, exp: ExperimentConfig) -> dict[str, Any]:
    return {"experiment": name, "label": row_label(name, exp), "model": exp.model, "blurmap": exp.blurmap,
            "ldp_losses": exp.ldp_losses}


def table_row(table: str, name: str, exp: ExperimentConfig, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One row of ``table``: the experiment's means and CIs, the paper's values and the differences."""
    return _fill_row(_experiment_row(name, exp), paper_row(exp.tables[table]), metrics)


def input_baseline_row(name: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The row of the input baseline ``name`` (the paper reports none)."""
    if not is_input_baseline_run(metrics):
        raise ValueError(f"{name}/{METRICS_JSON}: weights {metrics.get('weights')!r}, not an input baseline's "
                         f"{NO_WEIGHTS!r}; re-run the inputs stage (dvc repro inputs)")
    row = {"experiment": name, "label": INPUT_BASELINE_LABELS[name], "model": name, "blurmap": "none",
           "ldp_losses": False}
    return _fill_row(row, None, metrics)


def _fill_row(row: dict[str, Any], paper: PaperRow | None, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The means, CIs and labels of ``metrics``; the paper's values, and the differences only where the labels say
    the row is comparable with the paper (NaN otherwise, with the reasons in ``not_comparable_because``)."""
    labels = metrics["labels"]
    comparable = labels[COMPARABLE] == "yes"
    row["n_images"] = metrics.get("n_images")
    for subset in SUBSETS:
        suffix = "" if subset == "all" else f"_{subset}"
        for metric in METRICS:
            mean, lo, hi = _stat(metrics, subset, metric)
            row[f"{metric}{suffix}"], row[f"{metric}{suffix}_ci_lo"], row[f"{metric}{suffix}_ci_hi"] = mean, lo, hi
    for metric in PAPER_METRICS:
        ref = getattr(paper, metric) if paper else None
        row[f"paper_{metric}"] = math.nan if ref is None else ref
        row[f"diff_{metric}"] = math.nan if ref is None or not comparable else row[metric] - ref
    for subset in ("indoor", "outdoor"):
        ref = getattr(paper, f"psnr_{subset}") if paper else None
        row[f"paper_psnr_{subset}"] = math.nan if ref is None else ref
    row["paper_source"] = paper.source if paper else "not reported by the paper"
    row["comparable"] = comparable
    row["labels"] = "; ".join(labels[CAVEATS])
    row["not_comparable_because"] = "; ".join(labels[NOT_COMPARABLE])
    return row


def _read_metrics(eval_dir: Path, name: str, what: str) -> dict[str, Any]:
    path = Path(eval_dir) / name / METRICS_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: evaluation output missing for {what} {name!r}")
    metrics = _read_json(path, "evaluation output")
    labels = metrics.get("labels")
    if not isinstance(labels, Mapping) or not {COMPARABLE, CAVEATS, NOT_COMPARABLE} <= set(labels):
        raise ValueError(f"{path}: no labels (an evaluation from before ldp.labels); re-run it (dvc repro evaluate)")
    return metrics


def build_table(table: str, experiments: Mapping[str, ExperimentConfig], eval_dir: Path,
                not_runnable: Mapping[str, NotRunnable] | None = None) -> pd.DataFrame:
    """The rows of ``table``: the input baselines first, then one per experiment that lists it (in the order of
    ``experiments``), each with its paired PSNR gain over the stronger input baseline (:func:`add_gains`); then
    the rows of ``not_runnable`` for this table, without numbers."""
    rows = [input_baseline_row(name, _read_metrics(eval_dir, name, "input baseline")) for name in INPUT_BASELINES]
    for name, exp in experiments.items():
        if table in exp.tables:
            rows.append(table_row(table, name, exp, _read_metrics(eval_dir, name, "experiment")))
    blanks = [_blank_row(name, row.label, row.reason) for name, row in (not_runnable or {}).items()
              if row.table == table]
    return _with_blanks(add_gains(pd.DataFrame(rows), eval_dir), blanks)


def build_real_table(set_dir: Path, experiments: Mapping[str, ExperimentConfig]) -> pd.DataFrame:
    """Every row scored on one real set (results/real/<set>/): the input baselines, then each experiment, with the
    gain over the stronger input; an experiment stage evaluate_real could not score gets its reason, no numbers."""
    rows = [input_baseline_row(name, _read_metrics(set_dir, name, "input baseline")) for name in INPUT_BASELINES]
    blanks = []
    for name, exp in experiments.items():
        missing = Path(set_dir) / name / NOT_AVAILABLE_JSON
        if missing.is_file():
            reason = _read_json(missing, "reason").get("reason", "not available")
            blanks.append(_blank_row(name, row_label(name, exp), f"not available on this set: {reason}"))
            continue
        rows.append(_fill_row(_experiment_row(name, exp), None, _read_metrics(set_dir, name, "experiment")))
    return _with_blanks(add_gains(pd.DataFrame(rows), set_dir), blanks)


def add_gains(df: pd.DataFrame, eval_dir: Path) -> pd.DataFrame:
    """Each row's PSNR gain over the stronger input baseline (the input row with the higher mean PSNR; the first
    on a tie), paired by scene on the rows' per-image files: ``gain_over`` (that baseline's experiment),
    ``gain_psnr`` and its paired bootstrap 95 % CI ``gain_psnr_ci_lo/hi``, and ``improved`` of ``n_paired`` images
    (strictly higher PSNR than the baseline on that image)."""
    inputs = df[df["experiment"].isin(INPUT_BASELINES)]
    stronger = inputs.sort_values("psnr", ascending=False, kind="stable", na_position="last")["experiment"].iloc[0]
    base_path = Path(eval_dir) / stronger / PER_IMAGE_CSV
    base = read_per_image(base_path)
    gains = []
    for name in df["experiment"]:
        path = Path(eval_dir) / name / PER_IMAGE_CSV
        other = read_per_image(path)
        try:
            res = paired_bootstrap_diff(other, base, "psnr", n=GAIN_RESAMPLES, seed=GAIN_SEED)
        except StatsError as exc:
            raise ValueError(f"{path} against {base_path}: {exc}") from None
        paired = other[["scene", "psnr"]].merge(base[["scene", "psnr"]], on="scene", suffixes=("", "_base"))
        gains.append({"gain_over": stronger, "gain_psnr": _nan(res["mean_diff"]),
                      "gain_psnr_ci_lo": _nan(res["ci_low"]), "gain_psnr_ci_hi": _nan(res["ci_high"]),
                      "improved": int((paired["psnr"] > paired["psnr_base"]).sum()), "n_paired": len(paired)})
    return pd.concat([df.reset_index(drop=True), pd.DataFrame(gains)], axis=1)


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _fmt(value: float, metric: str) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{DECIMALS[metric]}f}"


def _cell(text: Any) -> str:
    """Text that stays inside one markdown table cell (no row break, no column break)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _gain_cells(r: Mapping[str, Any]) -> list[str]:
    """The gain over the stronger input baseline [CI] (▼ when below it) and "k of n" images improved."""
    if isinstance(r.get("not_run"), str):
        return [f"not run: {r['not_run']}", "–"]
    if r["experiment"] == r["gain_over"]:
        return ["reference", "–"]
    gain, lo, hi = r["gain_psnr"], r["gain_psnr_ci_lo"], r["gain_psnr_ci_hi"]
    if math.isnan(gain):
        return ["–", "–"]
    marker = f"{BELOW_INPUT} " if gain < 0 else ""
    return [f"{marker}{gain:+.2f} [{lo:+.2f}, {hi:+.2f}]", f"{int(r['improved'])} of {int(r['n_paired'])}"]


def to_markdown(table: str, df: pd.DataFrame, title: str | None = None) -> str:
    """``table`` as a markdown section: one line per row of ``df`` (the gain over the stronger input baseline, then
    paper, ours [CI], Δ for each metric)."""
    lines = [f"## {title or TABLES[table]}", ""]
    if df.empty:
        return "\n".join(lines + ["(no rows)", ""])
    head = ["Row", "PSNR gain over the stronger input (dB) [95 % CI]", "images improved"]
    with_paper = bool(df["paper_psnr"].notna().any())  # a real-set table has no paper values: no paper, no Δ
    for m in PAPER_METRICS:
        name = METRIC_TITLES[m]
        head += [f"{name} paper", "ours [95 % CI]", "Δ"] if with_paper else [f"{name} [95 % CI]"]
    head.append("Labels")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in df.to_dict("records"):
        cells = [_cell(r["label"]), *_gain_cells(r)]
        for m in PAPER_METRICS:
            ours = f"{_fmt(r[m], m)} [{_fmt(r[m + '_ci_lo'], m)}, {_fmt(r[m + '_ci_hi'], m)}]"
            diff = _nan(r.get(f"diff_{m}"))
            delta = "–" if math.isnan(diff) else f"{diff:+.{DECIMALS[m]}f}"
            cells += [_fmt(_nan(r.get(f"paper_{m}")), m), ours, delta] if with_paper else [ours]
        cells.append(_cell(r["labels"] or ""))
        lines.append("| " + " | ".join(cells) + " |")
    reference = df.loc[df["experiment"] == df["gain_over"].iloc[0]].iloc[0]
    lines += ["", f"Gain: paired over the {int(reference['n_paired'])} test scenes (bootstrap, {GAIN_RESAMPLES} "
                  "resamples) "
                  f"against **{_cell(reference['label'])}**, the stronger input baseline (higher mean PSNR on this "
                  f"test set); {BELOW_INPUT} = mean PSNR below it."]
    sources = sorted({f"{_cell(r['label'])}: {r['paper_source']}" for r in df.to_dict("records")
                      if not isinstance(r.get("not_run"), str)})
    lines += ["", "Paper values: " + "; ".join(sources)] if with_paper else []
    withheld = [f"{_cell(r['label'])} ({_cell(r['not_comparable_because'])})" for r in df.to_dict("records")
                if not r["comparable"] and not math.isnan(r["paper_psnr"])]
    if withheld:
        lines += ["", "Δ left empty (–) for the rows whose labels say they are not comparable with the paper: "
                      + "; ".join(withheld) + "."]
    return "\n".join(lines + [""])


def write_tables(experiments: Mapping[str, ExperimentConfig], eval_dir: Path, out_dir: Path,
                 extra_files: Mapping[str, str] | None = None, not_runnable: Mapping[str, NotRunnable] | None = None,
                 real_dir: Path | None = None) -> dict[str, pd.DataFrame]:
    """Write ``<out_dir>/<table>.csv`` and ``tables.md`` from the same frames, atomically (temp dir, then rename);
    with ``real_dir`` (results/real/, stage evaluate_real) also one ``real-<set>.csv`` per real set and
    ``checks.md`` (:func:`checks_markdown`); ``extra_files`` (name -> text, e.g. the protocol drift table) go into
    the same folder in the same step."""
    tables = {table: build_table(table, experiments, eval_dir, not_runnable) for table in TABLES}
    titles = dict(TABLES)
    for set_name, entry in real_sets(real_dir).items():
        key = f"{REAL_TABLE_PREFIX}{set_name}"
        tables[key] = build_real_table(real_dir / set_name, experiments)
        titles[key] = f"Real scenes: {entry['label']} ({set_name}, {entry['n_scenes']} scenes)"
    md = ["# Tables", "", "Each row's labels say what it was run on and with (results/README.md explains how to read "
          "them).", ""]
    with atomic_dir(out_dir) as tmp:
        for table, df in tables.items():
            df.to_csv(tmp / f"{table}.csv", index=False, float_format="%.6g")
            md.append(to_markdown(table, df, titles[table]))
        (tmp / TABLES_MD).write_text("\n".join(md))
        (tmp / CHECKS_MD).write_text(checks_markdown(tables, experiments, eval_dir, real_dir))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return tables


def real_sets(real_dir: Path | None) -> dict[str, Any]:
    """The sets stage evaluate_real scored (its index.json), or none."""
    if real_dir is None:
        return {}
    return _read_json(Path(real_dir) / INDEX_JSON, "real-set index")["sets"]


def _scored(df: pd.DataFrame) -> pd.DataFrame:
    """The trained rows of a table that have numbers (not the input baselines, not the blank rows)."""
    blank = df["not_run"].apply(lambda v: isinstance(v, str)) if "not_run" in df else False
    return df[~df["experiment"].isin(INPUT_BASELINES) & ~blank]


def _gain_text(gain: float, lo: float, hi: float) -> str:
    return f"{gain:+.2f} dB [{lo:+.2f}, {hi:+.2f}]"


def map_pairs(experiments: Mapping[str, ExperimentConfig]) -> list[tuple[str, str]]:
    """(oracle-map row, zero-map row) pairs: same model, recipe, losses and training overrides, maps oracle/none."""
    def key(exp: ExperimentConfig) -> str:
        return json.dumps([exp.model, exp.recipe, exp.ldp_losses, exp.train], sort_keys=True, default=str)

    oracle = {key(e): n for n, e in experiments.items() if e.blurmap == "oracle"}
    return [(oracle[key(e)], n) for n, e in experiments.items() if e.blurmap == "none" and key(e) in oracle]


def checks_markdown(tables: Mapping[str, pd.DataFrame], experiments: Mapping[str, ExperimentConfig],
                    eval_dir: Path, real_dir: Path | None) -> str:
    """What the numbers say about the questions a short run can answer: does every trained row beat the stronger
    input (CI above 0), does the best row beat the view average on each real set by REAL_TARGET_DB, and what the
    oracle map is worth against a zero map (paired over the test scenes)."""
    from ldp.models.input_baselines import INPUT_AVERAGE

    lines = ["# Checks", "", "Computed by the tables stage from the rows' per-image files (paired bootstrap, "
             f"{GAIN_RESAMPLES} resamples, 95 % CI). Short schedules: see each row's labels.", "",
             "## Every trained row against the stronger input baseline (synthetic test split)", ""]
    seen: dict[str, Any] = {}
    for table in TABLES:
        for r in _scored(tables[table]).to_dict("records"):
            seen[r["experiment"]] = r
    for r in seen.values():
        verdict = "yes" if r["gain_psnr_ci_lo"] > 0 else "**no**"
        gain = _gain_text(r["gain_psnr"], r["gain_psnr_ci_lo"], r["gain_psnr_ci_hi"])
        lines.append(f"- {verdict}: {_cell(r['label'])} {gain} over {r['gain_over']}")
    lines.append("")
    lines.append("## The oracle map against a zero map (same network and schedule, synthetic test split)")
    lines.append("")
    pairs = map_pairs(experiments)
    for oracle, zero in pairs:
        res = paired_bootstrap_diff(read_per_image(Path(eval_dir) / oracle / PER_IMAGE_CSV),
                                    read_per_image(Path(eval_dir) / zero / PER_IMAGE_CSV), "psnr",
                                    n=GAIN_RESAMPLES, seed=GAIN_SEED)
        lines.append(f"- {oracle} minus {zero}: {_gain_text(res['mean_diff'], res['ci_low'], res['ci_high'])}")
    lines += ["- (no oracle/zero pair in this grid)"] if not pairs else []
    for set_name in real_sets(real_dir):
        df = tables[f"{REAL_TABLE_PREFIX}{set_name}"]
        scored = _scored(df)
        lines += ["", f"## Real set {set_name}: the best trained row against the view average (L+R)/2", ""]
        if scored.empty:
            lines.append("- no trained row could be scored on this set")
            continue
        base = read_per_image(Path(real_dir) / set_name / INPUT_AVERAGE / PER_IMAGE_CSV)
        best = scored.sort_values("psnr", ascending=False).iloc[0]
        res = paired_bootstrap_diff(read_per_image(Path(real_dir) / set_name / best["experiment"] / PER_IMAGE_CSV),
                                    base, "psnr", n=GAIN_RESAMPLES, seed=GAIN_SEED)
        met = res["mean_diff"] >= REAL_TARGET_DB and res["ci_low"] > 0
        lines.append(f"- best: {_cell(best['label'])} {_gain_text(res['mean_diff'], res['ci_low'], res['ci_high'])}"
                     f" over the view average; at least +{REAL_TARGET_DB} dB with the CI above 0: "
                     f"{'yes' if met else '**no**'}")
    return "\n".join(lines + [""])
