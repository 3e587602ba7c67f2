"""Helpers the result notebooks use (reading ``results/`` and MLflow only), and headless notebook rendering."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ldp.fsutil import atomic_dir
from ldp.stats import paired_bootstrap_diff, read_per_image


@dataclass(frozen=True)
class ReportConfig:
    """params.yaml section ``report``: the notebooks rendered (paths from the repo root) and a per-cell timeout."""

    notebooks: tuple[str, ...] = (
        "notebooks/01-main-table.ipynb",
        "notebooks/02-ablations.ipynb",
        "notebooks/03-complexity.ipynb",
        "notebooks/04-figures.ipynb",
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


def labels_banner(df: pd.DataFrame | None, extra: list[str] | None = None) -> None:
    from IPython.display import Markdown, display

    found: set[str] = set(extra or [])
    if df is not None and not df.empty and "labels" in df:
        for cell in df["labels"].fillna(""):
            found.update(x.strip() for x in str(cell).split(";") if x.strip())
    if found:
        items = "\n".join(f"- {x}" for x in sorted(found))
        display(Markdown(f"> **Not a reproduction of the paper's numbers.** These rows carry labels:\n{items}"))


def show_table(df: pd.DataFrame) -> None:
    from IPython.display import display

    cols = [c for c in TABLE_COLUMNS if c in df.columns]
    display(df[cols].style.format(precision=3, na_rep="–").hide(axis="index"))


def paired_differences(results: Path, df: pd.DataFrame, metric: str = "psnr", n: int = 2000) -> pd.DataFrame:
    """Paired-bootstrap CI of (row − first network row) on the same images, for each later network row of a table
    (the input baselines' rows are left out: the table's gain columns compare every row with them)."""
    from ldp.models.input_baselines import INPUT_BASELINES

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
    frames: list[pd.DataFrame] = []
    source = "none"
    try:
        import mlflow
        from mlflow.tracking import MlflowClient

        from ldp.tracking import default_tracking_uri, using_tracking_uri

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
    if not frames:
        for exp in experiments:
            tdir = Path(results) / "training" / exp
            for fname, key, col in (("train_log.csv", "train.loss", "loss"), ("val_log.csv", "val.psnr", "psnr")):
                p = tdir / fname
                if p.is_file():
                    t = pd.read_csv(p)
                    if col in t and "iter" in t:
                        frames.append(pd.DataFrame({"experiment": exp, "metric": key, "step": t["iter"],
                                                    "value": t[col]}))
        if frames and source == "none":
            source = "files under results/training/"
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["experiment", "metric", "step", "value"])
    out.attrs["source"] = source
    return out


def render_notebooks(notebooks: list[Path], out_dir: Path, parameters: dict[str, Any], timeout: int = 600) -> None:
    """Execute each notebook headless with papermill, then export HTML with nbconvert; atomic per output dir."""
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    with atomic_dir(out_dir) as tmp:
        for nb in notebooks:
            executed = tmp / nb.name
            papermill.execute_notebook(str(nb), str(executed), parameters=parameters, cwd=str(nb.parent),
                                       kernel_name="python3", progress_bar=False, execution_timeout=timeout)
            body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
            executed.with_suffix(".html").write_text(body)


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
