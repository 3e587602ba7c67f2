"""Estimated GPU wall time of each row of a profile, from the measured MAC counts and an ASSUMED throughput.

    python scripts/estimate_wall_time.py [--params profiles/paper.yaml] [--complexity results/complexity.json]

No GPU was available to measure step times, so this is arithmetic, not a measurement: training MACs = 3 x forward
MACs per pixel (results/complexity.json, fvcore, at 256x256) x the pixels the schedule feeds (every phase's
iterations x global batch x patch^2), plus L_bal's CLIP forward and backward on ``bal_max_patches`` patches per
iteration; the blur maps are 1176 CLIP patches per 1120x1680 image over the 500 DPDD images (350 train, 74 val,
76 test); evaluation is the network on the 76 test images at 1120x1680. Time = MACs / an effective throughput,
printed for a low and a high assumption (default 10 and 30 TMAC/s, i.e. 20-60 TFLOP/s sustained in fp32/TF32 on
one A100/H100-class GPU; element-wise ops, data loading and validation are not counted). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DPDD_IMAGES = 350 + 74 + 76
DPDD_TEST = 76
CLIP_PATCHES = 1176


def _fmt_hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def main(argv: list[str] | None = None) -> int:
    from ldp.config import load_params
    from ldp.experiments import load_experiments, resolve
    from ldp.train.config import phases

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default=str(REPO / "profiles" / "paper.yaml"))
    ap.add_argument("--complexity", default=str(REPO / "results" / "complexity.json"))
    ap.add_argument("--tmacs", type=float, nargs=2, default=(10.0, 30.0), metavar=("LOW", "HIGH"),
                    help="assumed effective throughput in TMAC/s (default 10 30)")
    args = ap.parse_args(argv)
    complexity = json.loads(Path(args.complexity).read_text())
    params = load_params(args.params)
    low, high = (v * 1e12 for v in args.tmacs)

    def fwd_per_px(model: str) -> float:
        count = complexity["models"][model]["counts"]["256x256"]
        return count["macs"] / (256 * 256)

    def clip_per_patch(name: str) -> float:
        return complexity["clip"][f"clip:{name}"]["macs_per_patch"]

    rows, maps = [], {}
    for name in load_experiments(params):
        exp = resolve(params, name)
        cfg = exp.train
        pixels = sum((end - start) * batch * patch * patch for start, end, patch, batch in phases(cfg))
        train_macs = 3 * fwd_per_px(exp.model) * pixels
        if cfg.loss.bal > 0:
            train_macs += 3 * cfg.loss.bal_max_patches * clip_per_patch(cfg.loss.bal_clip_model) * cfg.iters
        eval_macs = DPDD_TEST * complexity["models"][exp.model]["counts"]["1120x1680"]["macs"]
        bmap = exp.blurmap_config
        if bmap.estimator == "clip":
            maps[exp.blurmap] = DPDD_IMAGES * CLIP_PATCHES * clip_per_patch(bmap.clip_model)
        rows.append((name, cfg.iters, pixels, train_macs, eval_macs, exp.blurmap))

    print(f"Assumed effective throughput: {args.tmacs[0]:g}-{args.tmacs[1]:g} TMAC/s (NOT measured).\n")
    print("| row | iterations | training pixels | training | evaluation (76 images) | blur map |")
    print("|---|---:|---:|---:|---:|---|")
    for name, iters, pixels, train_macs, eval_macs, bmap in rows:
        print(f"| {name} | {iters:,} | {pixels / 1e9:.0f} G | {_fmt_hours(train_macs / high)}-"
              f"{_fmt_hours(train_macs / low)} | {_fmt_hours(eval_macs / high)}-{_fmt_hours(eval_macs / low)} | "
              f"{bmap} |")
    print("\n| blur map (500 DPDD images) | CLIP MACs | time |")
    print("|---|---:|---:|")
    for map_id, macs in sorted(maps.items()):
        print(f"| {map_id} | {macs / 1e15:.1f} P | {_fmt_hours(macs / high)}-{_fmt_hours(macs / low)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
