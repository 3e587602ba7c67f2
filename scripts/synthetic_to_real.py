#!/usr/bin/env python
"""Synthetic-to-real gain: train a small DP network on a synthetic set, score it on the real Canon scenes.

The network (``nafnet-dp`` in its tiny config by default) is trained on random patches of a synthetic train split
for a fixed wall-clock budget, then run on the 10 real DPDD Canon scenes, resized (area) to the synthetic width
(so both cover the same 36 mm sensor at the same pixel pitch; docs/data-synthetic.md). The figure that decides is
the paired PSNR gain over the input baseline (L+R)/2, with a bootstrap CI over the scenes (ldp.stats).

This is a SHORT schedule (minutes on one CPU core): it compares simulators, it is not a deblurring result.

    python scripts/synthetic_to_real.py --out results/realism/s2r-new --minutes 4           # current simulator
    python scripts/synthetic_to_real.py --synthetic /tmp/old_syn --out results/realism/s2r-old  # a given set
    python scripts/synthetic_to_real.py --compare RUN_OLD RUN_NEW --out results/realism     # paired table
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ldp.data.manifest import load_manifest, load_scene  # noqa: E402
from ldp.fsutil import atomic_write_json, atomic_write_text  # noqa: E402
from ldp.imageio import ImageReadError  # noqa: E402
from ldp.stats import paired_bootstrap_diff  # noqa: E402

REAL_DEFAULT = REPO.parent / "shared/realdp/dpdd_canon_dev_dpddlayout"


class S2RInputError(ValueError):
    """Bad input path or option; the message names it."""


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    mse = float(np.mean((np.clip(pred, 0, 1).astype(np.float64) - target.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def load_split(root: Path, split: str) -> list[dict[str, np.ndarray]]:
    table = load_manifest(root)
    rows = table[table["split"] == split]
    if rows.empty:
        raise S2RInputError(f"{root}/manifest.csv: no {split!r} scenes")
    return [load_scene(root, row) for _, row in rows.iterrows()]


def real_scenes(real_root: Path, width: int) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The real test scenes (name, {left, right, target}) resized to ``width`` px."""
    sys.path.insert(0, str(REPO / "scripts"))
    from check_realism import dpdd_scenes, load_scenes, resize_scene

    names = [p["combined"].stem for p in dpdd_scenes(real_root)]
    return [(n, resize_scene(s, width)) for n, s in zip(names, load_scenes(real_root), strict=True)]


def sample_batch(scenes, rng: np.random.Generator, batch: int, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for _ in range(batch):
        s = scenes[int(rng.integers(len(scenes)))]
        h, w = s["left"].shape[:2]
        y, x = int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))
        win = (slice(y, y + patch), slice(x, x + patch))
        left, right, target = s["left"][win], s["right"][win], s["target"][win]
        if rng.random() < 0.5:  # vertical flip keeps the DP geometry; a horizontal flip would need an L/R swap
            left, right, target = left[::-1], right[::-1], target[::-1]
        if rng.random() < 0.5:  # horizontal flip + L/R swap: mirrors the scene and keeps the disparity sign
            left, right, target = right[:, ::-1], left[:, ::-1], target[:, ::-1]
        xs.append(np.concatenate([left, right], axis=2))
        ys.append(target)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(np.stack(a))).permute(0, 3, 1, 2).float()  # noqa: E731
    return to_t(xs), to_t(ys)


def train(scenes, model: torch.nn.Module, minutes: float, max_iters: int, batch: int, patch: int, lr: float,
          seed: int) -> dict:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    t0, it, losses = time.perf_counter(), 0, []
    model.train()
    while it < max_iters and time.perf_counter() - t0 < minutes * 60.0:
        x, y = sample_batch(scenes, rng, batch, patch)
        loss = torch.nn.functional.l1_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        it += 1
    return {"iters": it, "seconds": time.perf_counter() - t0, "final_loss_mean_last100": float(np.mean(losses[-100:]))}


@torch.no_grad()
def score(model: torch.nn.Module, scenes) -> tuple[pd.DataFrame, pd.DataFrame]:
    model.eval()
    rows_m, rows_b = [], []
    for name, s in scenes:
        x = torch.from_numpy(np.concatenate([s["left"], s["right"]], axis=2)).permute(2, 0, 1)[None].float()
        pred = model(x)[0].permute(1, 2, 0).numpy()
        rows_m.append({"scene": name, "psnr": psnr(pred, s["target"])})
        rows_b.append({"scene": name, "psnr": psnr(0.5 * (s["left"] + s["right"]), s["target"])})
    return pd.DataFrame(rows_m), pd.DataFrame(rows_b)


def compare_runs(runs: list[Path], out: Path | None) -> dict:
    """Per run its gain over (L+R)/2; then each later run against the first, paired over the real scenes."""
    summaries = []
    for run in runs:
        if not (run / "s2r.json").is_file():
            raise S2RInputError(f"{run}/s2r.json: not found (not a synthetic_to_real.py output folder)")
        summaries.append(json.loads((run / "s2r.json").read_text()))
    first = pd.read_csv(runs[0] / "per_image_model.csv", dtype={"scene": str})
    rows = []
    for run, summary in zip(runs, summaries, strict=True):
        other = pd.read_csv(run / "per_image_model.csv", dtype={"scene": str})
        g = summary["gain_vs_input"]
        rows.append({"run": summary.get("label") or str(run), "iters": summary["iters"],
                     "psnr_model": summary["psnr_model_mean"], "psnr_input": summary["psnr_input_mean"],
                     "gain": g["mean_diff"], "gain_ci": [g["ci_low"], g["ci_high"]],
                     "vs_first": paired_bootstrap_diff(other, first, "psnr") if run != runs[0] else None})
    lines = ["| run | iterations | PSNR model | PSNR (L+R)/2 | gain vs (L+R)/2 [95% CI] | vs first run [95% CI] |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        vs = r["vs_first"]
        vs_txt = f"{vs['mean_diff']:+.2f} [{vs['ci_low']:+.2f}, {vs['ci_high']:+.2f}]" if vs else "–"
        lines.append(f"| {r['run']} | {r['iters']} | {r['psnr_model']:.2f} | {r['psnr_input']:.2f} | "
                     f"{r['gain']:+.2f} [{r['gain_ci'][0]:+.2f}, {r['gain_ci'][1]:+.2f}] | {vs_txt} |")
    table = "\n".join(lines)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "s2r_compare.json", {"runs": rows})
        atomic_write_text(out / "s2r_compare.md", table + "\n")
    print(table)
    return {"runs": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", type=Path, default=None,
                        help="a synthetic dataset root to train on (else rendered now with --scenes/--set)")
    parser.add_argument("--scenes", type=int, default=48, help="train scenes to render (default 48, 192x288)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="data.synthetic override when rendering (JSON value)")
    parser.add_argument("--real", type=Path, default=REAL_DEFAULT)
    parser.add_argument("--model", default="nafnet-dp")
    parser.add_argument("--minutes", type=float, default=4.0, help="training wall-clock budget")
    parser.add_argument("--max-iters", type=int, default=100000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, default=None, help="folder for s2r.json and the per-image CSVs")
    parser.add_argument("--compare", type=Path, nargs="+", default=None, metavar="RUN",
                        help="compare finished runs (output folders) instead of training; table into --out")
    args = parser.parse_args(argv)
    if args.compare:
        try:
            compare_runs(args.compare, args.out)
        except S2RInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.out is None:
        print("error: --out is required when training", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    import ldp

    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = args.synthetic
            if root is None:
                sys.path.insert(0, str(REPO / "scripts"))
                from check_realism import _parse_set

                from ldp.data.synthetic import SyntheticConfig, generate_synthetic

                overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in _parse_set(args.set).items()}
                cfg = dataclasses.replace(SyntheticConfig(), train=args.scenes, val=0, test=0, **overrides)
                t0 = time.perf_counter()
                root = generate_synthetic(cfg, Path(tmp) / "syn", progress=False)
                render_s = time.perf_counter() - t0
            else:
                render_s = None
            scenes = load_split(Path(root), "train")
        width = scenes[0]["left"].shape[1]
        real = real_scenes(args.real, width)
    except (S2RInputError, ImageReadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model = ldp.build_model(args.model, tiny=True)
    log = train(scenes, model, args.minutes, args.max_iters, args.batch, args.patch, args.lr, args.seed)
    per_model, per_base = score(model, real)
    gain = paired_bootstrap_diff(per_model, per_base, "psnr")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "per_image_model.csv", per_model.to_csv(index=False))
    atomic_write_text(args.out / "per_image_input.csv", per_base.to_csv(index=False))
    summary = {
        "label": args.label,
        "schedule": f"SHORT: {log['iters']} iterations in {log['seconds']:.0f} s on {args.threads} CPU thread(s), "
                    f"batch {args.batch} of {args.patch}-px patches; not a deblurring result",
        "model": f"{args.model} (tiny)",
        "synthetic": str(args.synthetic) if args.synthetic else f"rendered now: {args.scenes} scenes, set {args.set}",
        "render_seconds": render_s,
        "train_scenes": len(scenes),
        "real": f"{args.real} (10 scenes resized to {width} px wide)",
        "psnr_model_mean": float(per_model["psnr"].mean()),
        "psnr_input_mean": float(per_base["psnr"].mean()),
        "gain_vs_input": gain,
        **log,
    }
    atomic_write_json(args.out / "s2r.json", summary)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
