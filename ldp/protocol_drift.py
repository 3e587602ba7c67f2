"""The protocol drift table: how far each run's numbers move under the other evaluation protocols.

Every evaluation writes ``protocols.json`` beside its ``metrics.json`` (:func:`ldp.evaluate.write_outputs`): each
protocol's subset means and, for every protocol but the default (``dpdd16-restormer-v1``), the paired difference from
the default over the same images (PSNR and SSIM, bootstrap 95 % CI). :func:`drift_table` collects them from
``results/eval/<run>/protocols.json`` into one row per (protocol, run); the tables stage writes it as
``results/tables/protocol_drift.csv`` and ``protocol_drift.md`` (docs/protocols.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ldp.protocols import DEFAULT_PROTOCOL, PROTOCOLS

PROTOCOLS_JSON = "protocols.json"  # = ldp.evaluate.PROTOCOLS_JSON (not imported: keeps this module light)
DRIFT_CSV = "protocol_drift.csv"
DRIFT_MD = "protocol_drift.md"
DRIFT_METRICS = ("psnr", "ssim")
COLUMNS = ["protocol", "run", "model", "n_images", "psnr", "ssim", "psnr_default", "ssim_default",
           "psnr_diff", "psnr_diff_ci_lo", "psnr_diff_ci_hi", "ssim_diff", "ssim_diff_ci_lo", "ssim_diff_ci_hi",
           "summary"]


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def read_protocols(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: protocols record not readable: {exc}") from exc
    if not isinstance(record, Mapping) or not isinstance(record.get("protocols"), Mapping):
        raise ValueError(f"{path}: no 'protocols' entry (an evaluation from before ldp.protocols); re-run it")
    return dict(record)


def drift_rows(run: str, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per protocol of one run's ``protocols.json`` (the default protocol's row has zero drift)."""
    protocols = record["protocols"]
    default = protocols.get(DEFAULT_PROTOCOL)
    rows = []
    for pid, entry in protocols.items():
        means = (entry.get("metrics") or {}).get("all") or {}
        row: dict[str, Any] = {"protocol": pid, "run": run, "model": record.get("model"),
                               "n_images": means.get("n_images"),
                               "summary": PROTOCOLS[pid].summary if pid in PROTOCOLS else ""}
        for m in DRIFT_METRICS:
            row[m] = _num((means.get(m) or {}).get("mean"))
            base = ((default or {}).get("metrics") or {}).get("all") or {}
            row[f"{m}_default"] = _num((base.get(m) or {}).get("mean"))
            drift = (entry.get("drift_from_default") or {}).get(m) or {}
            if pid == DEFAULT_PROTOCOL:
                drift = {"mean_diff": 0.0, "ci_low": 0.0, "ci_high": 0.0}
            row[f"{m}_diff"] = _num(drift.get("mean_diff"))
            row[f"{m}_diff_ci_lo"] = _num(drift.get("ci_low"))
            row[f"{m}_diff_ci_hi"] = _num(drift.get("ci_high"))
        rows.append(row)
    return rows


def drift_table(eval_dir: str | Path, runs: Iterable[str] | None = None, others: bool = False) -> pd.DataFrame:
    """The drift rows of ``runs`` (folders of ``eval_dir``; every folder with a ``protocols.json`` when None), sorted
    by protocol (registry order, the default first) then run (in the given order). ``others``: the remaining folders
    with a ``protocols.json`` follow, sorted (e.g. a restorations folder scored with ``ldp evaluate
    --restorations``). A run given by name without a ``protocols.json`` is skipped."""
    eval_dir = Path(eval_dir)
    found = sorted(p.parent.name for p in eval_dir.glob(f"*/{PROTOCOLS_JSON}"))
    names = list(runs) if runs is not None else found
    if others:
        names += [name for name in found if name not in names]
    rows = []
    for name in names:
        path = eval_dir / name / PROTOCOLS_JSON
        if path.is_file():
            rows.extend(drift_rows(name, read_protocols(path)))
    df = pd.DataFrame(rows, columns=COLUMNS)
    if df.empty:
        return df
    order = {pid: i for i, pid in enumerate(PROTOCOLS)}
    run_order = {name: i for i, name in enumerate(names)}
    df = df.assign(_p=df["protocol"].map(lambda p: order.get(p, len(order))), _r=df["run"].map(run_order))
    return df.sort_values(["_p", "_r"], kind="stable").drop(columns=["_p", "_r"]).reset_index(drop=True)


def _diff(r: Mapping[str, Any], m: str, decimals: int) -> str:
    d, lo, hi = r[f"{m}_diff"], r[f"{m}_diff_ci_lo"], r[f"{m}_diff_ci_hi"]
    if math.isnan(d):
        return "–"
    return f"{d:+.{decimals}f} [{lo:+.{decimals}f}, {hi:+.{decimals}f}]"


def to_markdown(df: pd.DataFrame) -> str:
    """The drift table as markdown: one section per protocol, one line per run."""
    lines = ["# Protocol drift", "",
             f"Each run's mean PSNR and SSIM under each protocol and the paired difference from the default protocol "
             f"`{DEFAULT_PROTOCOL}` over the same images (bootstrap 95 % CI). The protocols are defined in "
             "ldp/protocols.py and docs/protocols.md; the non-default ones rescore the same restorations (8-bit "
             "reading of the targets, another SSIM, or a downscale at scoring time), they do not re-run a network.", ""]
    if df.empty:
        return "\n".join(lines + ["(no protocols.json with other protocols under results/eval: set "
                                  "evaluate.protocols, e.g. [all])", ""])
    for pid, group in df.groupby("protocol", sort=False):
        lines += [f"## `{pid}`", "", str(group["summary"].iloc[0]), "",
                  "| run | model | n | PSNR (dB) | SSIM | ΔPSNR vs default (dB) [95 % CI] | "
                  "ΔSSIM vs default [95 % CI] |",
                  "|---|---|---|---|---|---|---|"]
        for r in group.to_dict("records"):
            psnr = "–" if math.isnan(r["psnr"]) else f"{r['psnr']:.3f}"
            ssim = "–" if math.isnan(r["ssim"]) else f"{r['ssim']:.4f}"
            lines.append(f"| {r['run']} | {r['model']} | {r['n_images']} | {psnr} | {ssim} | {_diff(r, 'psnr', 3)} | "
                         f"{_diff(r, 'ssim', 4)} |")
        lines.append("")
    return "\n".join(lines)


def drift_files(eval_dir: str | Path, runs: Iterable[str] | None = None, others: bool = False) -> dict[str, str]:
    """``{protocol_drift.csv: text, protocol_drift.md: text}`` for the tables stage to write."""
    df = drift_table(eval_dir, runs, others)
    return {DRIFT_CSV: df.to_csv(index=False, float_format="%.6g"), DRIFT_MD: to_markdown(df)}


def format_drift(record: Mapping[str, Any]) -> str:
    """A short text table of one evaluation's protocols (what ``ldp evaluate --protocols`` prints)."""
    rows = drift_rows("", record)
    lines = [f"{'protocol':<22} {'PSNR':>8} {'SSIM':>7}  {'ΔPSNR [95 % CI]':<28} ΔSSIM [95 % CI]"]
    for r in rows:
        lines.append(f"{r['protocol']:<22} {r['psnr']:>8.3f} {r['ssim']:>7.4f}  {_diff(r, 'psnr', 3):<28} "
                     f"{_diff(r, 'ssim', 4)}")
    return "\n".join(lines)
