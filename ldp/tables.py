"""Build the paper's tables from the evaluation outputs: the paper's number, ours, the difference and a 95 % CI.

Rows that rest on random CLIP weights, smoke schedules or non-DPDD data carry labels that say so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ldp.experiments import TABLES, ExperimentConfig
from ldp.fsutil import atomic_dir
from ldp.paper_results import paper_row

METRICS = ("psnr", "ssim", "mae", "rmse", "lpips")
METRIC_TITLES = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mae": "MAE", "rmse": "MSE_rel (RMSE)", "lpips": "LPIPS"}
DECIMALS = {"psnr": 2, "ssim": 3, "mae": 3, "rmse": 3, "lpips": 3}


def row_labels(metrics: dict[str, Any], train_summary: dict[str, Any] | None, profile: str,
               exp: ExperimentConfig) -> list[str]:
    """Why a row must not be read as a reproduction of the paper."""
    labels = []
    source = (metrics.get("data_source") or {}).get("name", "")
    if source != "dpdd":
        labels.append(f"data: {source or 'unknown'} (not DPD-blur; not comparable with the paper)")
    kinds = {metrics.get("clip_weights")} | set((train_summary or {}).get("clip_weights_kinds", []))
    if "random" in kinds:
        labels.append("random CLIP weights")
    if profile != "paper":
        iters = (train_summary or {}).get("iterations")
        labels.append(f"smoke schedule ({iters} iters)" if iters else "smoke schedule")
    weights = metrics.get("weights") or {}
    if weights.get("kind") == "random-init" or weights.get("source") == "random-init":
        labels.append("untrained (random init)")
    return labels


def _stat(metrics: dict[str, Any], subset: str, metric: str) -> tuple[float, float, float]:
    entry = ((metrics.get("metrics") or {}).get(subset) or {}).get(metric) or {}
    mean = entry.get("mean")
    ci = entry.get("ci95") or [None, None]
    as_f = [math.nan if v is None else float(v) for v in (mean, *ci)]
    return as_f[0], as_f[1], as_f[2]


def build_table(table: str, experiments: dict[str, ExperimentConfig], eval_dir: Path, train_dir: Path,
                profile: str) -> pd.DataFrame:
    rows = []
    for name, exp in experiments.items():
        if table not in exp.tables:
            continue
        metrics_path = eval_dir / name / "metrics.json"
        if not metrics_path.is_file():
            raise FileNotFoundError(f"{metrics_path}: evaluation output missing for experiment {name!r}")
        metrics = json.loads(metrics_path.read_text())
        summary_path = train_dir / name / "train_summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
        paper = paper_row(exp.tables[table])
        row: dict[str, Any] = {
            "experiment": name, "label": exp.label or name, "model": exp.model, "blurmap": exp.blurmap,
            "ldp_losses": exp.ldp_losses, "n_images": metrics.get("n_images"),
        }
        for subset in ("all", "indoor", "outdoor"):
            for metric in METRICS:
                mean, lo, hi = _stat(metrics, subset, metric)
                sfx = "" if subset == "all" else f"_{subset}"
                row[f"{metric}{sfx}"] = mean
                row[f"{metric}{sfx}_ci_lo"] = lo
                row[f"{metric}{sfx}_ci_hi"] = hi
        for metric in ("psnr", "ssim", "mae", "rmse"):
            ref = getattr(paper, metric) if paper else None
            row[f"paper_{metric}"] = math.nan if ref is None else ref
            row[f"diff_{metric}"] = row[metric] - ref if ref is not None else math.nan
        for subset in ("indoor", "outdoor"):
            ref = getattr(paper, f"psnr_{subset}") if paper else None
            row[f"paper_psnr_{subset}"] = math.nan if ref is None else ref
        row["paper_source"] = paper.source if paper else "not reported by the paper"
        row["labels"] = "; ".join(row_labels(metrics, summary, profile, exp))
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(v: float, metric: str) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{DECIMALS[metric]}f}"


def to_markdown(table: str, df: pd.DataFrame) -> str:
    lines = [f"## {TABLES[table]}", ""]
    if df.empty:
        return "\n".join(lines + ["(no rows)", ""])
    head = ["Row"]
    for m in ("psnr", "ssim", "mae", "rmse"):
        head += [f"{METRIC_TITLES[m]} paper", "ours [95 % CI]", "Δ"]
    head.append("Labels")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in df.iterrows():
        cells = [str(r["label"])]
        for m in ("psnr", "ssim", "mae", "rmse"):
            ours = f"{_fmt(r[m], m)} [{_fmt(r[m + '_ci_lo'], m)}, {_fmt(r[m + '_ci_hi'], m)}]"
            diff = r[f"diff_{m}"]
            cells += [_fmt(r[f"paper_{m}"], m), ours, "–" if math.isnan(diff) else f"{diff:+.{DECIMALS[m]}f}"]
        cells.append(r["labels"] or "")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Paper values: " + "; ".join(sorted({f"{r['label']}: {r['paper_source']}" for _, r in df.iterrows()})))
    lines.append("")
    return "\n".join(lines)


def write_tables(experiments: dict[str, ExperimentConfig], eval_dir: Path, train_dir: Path, out_dir: Path,
                 profile: str) -> dict[str, pd.DataFrame]:
    """Write ``<out_dir>/<table>.csv`` and ``tables.md`` atomically (temp dir, then rename)."""
    tables = {}
    md = ["# Tables", "", f"Profile: **{profile}**. How to read them: results/README.md.", ""]
    with atomic_dir(out_dir) as tmp:
        for table in TABLES:
            df = build_table(table, experiments, Path(eval_dir), Path(train_dir), profile)
            tables[table] = df
            df.to_csv(tmp / f"{table}.csv", index=False, float_format="%.6g")
            md.append(to_markdown(table, df))
        (tmp / "tables.md").write_text("\n".join(md))
    return tables
