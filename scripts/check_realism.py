#!/usr/bin/env python
"""Compare the synthetic test split with real DPDD Canon scenes on three blur statistics.

Statistics (means over scenes): PSNR(combined, target), SSIM(combined, target) (skimage, data_range=1,
channel_axis=-1) and PSNR(left, right). Both roots use the DPDD layout
(dd_dp_dataset_canon/{split}_{l,r}/source, {split}_c/{source,target}). Exit status 1 when the synthetic
means lie outside +-2 dB (+-0.1 SSIM) of the real ones, 2 on bad input.

    python scripts/check_realism.py [--synthetic data/synthetic]
                                    [--real ../shared/realdp/dpdd_canon_dev_dpddlayout]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from skimage.metrics import structural_similarity

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ldp.data.manifest import LAYOUT_DIR  # noqa: E402
from ldp.imageio import ImageReadError, read_image  # noqa: E402

TOLERANCE = {"psnr_combined_target": 2.0, "ssim_combined_target": 0.1, "psnr_left_right": 2.0}
LABELS = {
    "psnr_combined_target": "PSNR(combined, target) dB",
    "ssim_combined_target": "SSIM(combined, target)",
    "psnr_left_right": "PSNR(left, right) dB",
}


class RealismInputError(ValueError):
    """A dataset root is missing, empty or incomplete; the message names the path."""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def dpdd_scenes(root: str | Path, split: str = "test") -> list[dict[str, Path]]:
    """(left, right, combined, target) paths of every scene of ``split`` under a DPDD-layout root."""
    base = Path(root) / LAYOUT_DIR
    source_dir = base / f"{split}_c" / "source"
    if not source_dir.is_dir():
        raise RealismInputError(f"{source_dir}: not found (expected the DPDD layout under {root})")
    scenes = []
    for combined in sorted(source_dir.glob("*.png")):
        paths = {
            "combined": combined,
            "target": base / f"{split}_c" / "target" / combined.name,
            "left": base / f"{split}_l" / "source" / f"{combined.stem}_L.png",
            "right": base / f"{split}_r" / "source" / f"{combined.stem}_R.png",
        }
        for key, path in paths.items():
            if not path.is_file():
                raise RealismInputError(f"{path}: missing {key} image for scene {combined.stem}")
        scenes.append(paths)
    if not scenes:
        raise RealismInputError(f"{source_dir}: no PNG scenes")
    return scenes


def realism_stats(root: str | Path, split: str = "test") -> dict[str, float]:
    """Mean blur statistics of one DPDD-layout dataset split (plus ``scenes``, the count)."""
    rows = []
    for paths in dpdd_scenes(root, split):
        img = {key: read_image(path) for key, path in paths.items()}
        if img["combined"].shape != img["target"].shape or img["left"].shape != img["right"].shape:
            raise RealismInputError(f"{paths['combined']}: view sizes differ within the scene")
        rows.append(
            (
                psnr(img["combined"], img["target"]),
                structural_similarity(img["combined"], img["target"], data_range=1.0, channel_axis=-1),
                psnr(img["left"], img["right"]),
            )
        )
    means = np.mean(np.asarray(rows, dtype=np.float64), axis=0)
    return {
        "psnr_combined_target": float(means[0]),
        "ssim_combined_target": float(means[1]),
        "psnr_left_right": float(means[2]),
        "scenes": len(rows),
    }


def compare(synthetic: dict[str, float], real: dict[str, float]) -> dict[str, dict]:
    """Per statistic: both values, the difference, the tolerance and whether it passes."""
    out = {}
    for key, tol in TOLERANCE.items():
        diff = synthetic[key] - real[key]
        out[key] = {
            "synthetic": synthetic[key],
            "real": real[key],
            "diff": diff,
            "tolerance": tol,
            "ok": bool(abs(diff) <= tol),
        }
    return out


def format_table(result: dict[str, dict], n_syn: int, n_real: int) -> str:
    lines = [
        f"{'statistic':<28}{'synthetic':>11}{'real':>9}{'diff':>9}{'tol':>7}  result",
        f"{'(scenes)':<28}{n_syn:>11d}{n_real:>9d}",
    ]
    for key, row in result.items():
        fmt = ".3f" if key.startswith("ssim") else ".2f"
        lines.append(
            f"{LABELS[key]:<28}{row['synthetic']:>11{fmt}}{row['real']:>9{fmt}}{row['diff']:>+9{fmt}}"
            f"{row['tolerance']:>7.2g}  {'pass' if row['ok'] else 'FAIL'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--synthetic", type=Path, default=Path("data/synthetic"), help="synthetic dataset root"
    )
    parser.add_argument(
        "--real",
        type=Path,
        default=REPO.parent / "shared/realdp/dpdd_canon_dev_dpddlayout",
        help="real DPDD-layout root",
    )
    parser.add_argument(
        "--split", default="test", help="split of the synthetic set to compare (default test)"
    )
    args = parser.parse_args(argv)
    try:
        syn = realism_stats(args.synthetic, args.split)
        real = realism_stats(args.real, "test")
    except (RealismInputError, ImageReadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = compare(syn, real)
    print(f"synthetic: {args.synthetic} ({args.split})   real: {args.real} (test)")
    print(format_table(result, syn["scenes"], real["scenes"]))
    ok = all(row["ok"] for row in result.values())
    print("realism check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
