#!/usr/bin/env python
"""Compare a synthetic DP test split with the real DPDD Canon scenes: three means and six distributions.

Means (over scenes, both sets at their own size, as before): PSNR(combined, target), SSIM(combined, target)
(skimage, data_range=1, channel_axis=-1) and PSNR(left, right). Exit status 1 when a synthetic mean lies outside
+-2 dB (+-0.1 SSIM) of the real one, 2 on bad input.

Distributions (``--distributions``; docs/data-synthetic.md, "Realism"), each a Wasserstein-1 distance
(scipy.stats.wasserstein_distance) between the synthetic and the real sample. The real scenes are first resized
(area) to the synthetic width, so both cover a 36 mm sensor at the same pixel pitch:

- ``disparity_px``: per-patch L/R disparity (sub-pixel peak of the normalised cross-correlation over horizontal
  shifts of the right view), textured 24-px patches;
- ``disparity_per_blur``: that disparity over the patch's blur size (below), patches with blur >= 2 px;
- ``blur_px``: per-patch blur size, the diameter of the disc that best maps the target onto the combined view
  (per-patch gain and offset fitted); the same estimator on both sets (the synthetic oracle map is reported too);
- ``grad``: gradient magnitude of the combined view (grey, per pixel);
- ``noise``: residual std (image minus a 5x5 Gaussian) in flat patches of the left view, with its intensity;
- ``infocus_lr``: std(L - R) in textured patches whose blur is <= 1 px.

    python scripts/check_realism.py [--synthetic data/synthetic] [--real ../shared/realdp/dpdd_canon_dev_dpddlayout]
    python scripts/check_realism.py --render 12 [--set key=value ...] --distributions --out results/realism
    python scripts/check_realism.py --ablation --out results/realism   # the ladder of simulator changes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import wasserstein_distance
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
DISTRIBUTIONS = {
    "disparity_px": "L/R disparity per patch (px)",
    "disparity_per_blur": "disparity / blur size",
    "blur_px": "blur size per patch (px, estimated)",
    "grad": "gradient magnitude of C",
    "noise": "flat-patch residual std",
    "infocus_lr": "in-focus std(L - R)",
}
PATCH = 24
MAX_SHIFT = 8
BLUR_GRID = np.arange(0.0, 16.01, 0.5)
REAL_DEFAULT = REPO.parent / "shared/realdp/dpdd_canon_dev_dpddlayout"
PIXEL4_DEFAULT = REPO.parent / "shared/realdp/cmu_pixel4/dev/DP_data_pixel_4/gt_defocus_map"


class RealismInputError(ValueError):
    """A dataset root is missing, empty or incomplete; the message names the path."""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def dpdd_scenes(root: str | Path, split: str = "test") -> list[dict[str, Path]]:
    """(left, right, combined, target) paths of every scene of ``split`` under a DPDD-layout root (plus
    ``defocus`` where the synthetic oracle map exists)."""
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
        defocus = base / f"{split}_c" / "defocus" / f"{combined.stem}.npy"
        if defocus.is_file():
            paths["defocus"] = defocus
        scenes.append(paths)
    if not scenes:
        raise RealismInputError(f"{source_dir}: no PNG scenes")
    return scenes


def load_scenes(root: str | Path, split: str = "test") -> list[dict[str, np.ndarray]]:
    out = []
    for paths in dpdd_scenes(root, split):
        img = {key: read_image(path) for key, path in paths.items() if key != "defocus"}
        if img["combined"].shape != img["target"].shape or img["left"].shape != img["right"].shape:
            raise RealismInputError(f"{paths['combined']}: view sizes differ within the scene")
        if "defocus" in paths:
            img["defocus"] = np.load(paths["defocus"])
        out.append(img)
    return out


def means_of(scenes: list[dict[str, np.ndarray]]) -> dict[str, float]:
    rows = [
        (
            psnr(s["combined"], s["target"]),
            structural_similarity(s["combined"], s["target"], data_range=1.0, channel_axis=-1),
            psnr(s["left"], s["right"]),
        )
        for s in scenes
    ]
    means = np.mean(np.asarray(rows, dtype=np.float64), axis=0)
    return {
        "psnr_combined_target": float(means[0]),
        "ssim_combined_target": float(means[1]),
        "psnr_left_right": float(means[2]),
        "scenes": len(rows),
    }


def realism_stats(root: str | Path, split: str = "test") -> dict[str, float]:
    """Mean blur statistics of one DPDD-layout dataset split (plus ``scenes``, the count)."""
    return means_of(load_scenes(root, split))


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


# --------------------------------------------------------------------------------------- distributions


def grey(img: np.ndarray) -> np.ndarray:
    return img.mean(axis=2).astype(np.float64) if img.ndim == 3 else img.astype(np.float64)


def resize_scene(scene: dict[str, np.ndarray], width: int) -> dict[str, np.ndarray]:
    """A real scene at ``width`` px (area interpolation), the synthetic pixel pitch for the same sensor."""
    h, w = scene["left"].shape[:2]
    if w == width:
        return scene
    size = (width, max(8, int(round(h * width / w))))
    return {k: cv2.resize(v, size, interpolation=cv2.INTER_AREA) for k, v in scene.items() if k != "defocus"}


def _blocks(img: np.ndarray, patch: int) -> np.ndarray:
    """Non-overlapping patch x patch blocks -> (rows, cols, patch * patch)."""
    h, w = (img.shape[0] // patch) * patch, (img.shape[1] // patch) * patch
    b = img[:h, :w].reshape(h // patch, patch, w // patch, patch).swapaxes(1, 2)
    return b.reshape(h // patch, w // patch, patch * patch)


def _ncc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    return (a * b).sum(-1) / np.sqrt((a**2).sum(-1) * (b**2).sum(-1) + 1e-12)


def patch_disparity(left: np.ndarray, right: np.ndarray, patch: int = PATCH, max_shift: int = MAX_SHIFT):
    """Per-patch horizontal shift s (px, sub-pixel) maximising NCC(L(x), R(x + s)) and the patch texture
    (std of the horizontal gradient of L). s > 0: the right view is moved right (content behind focus)."""
    gl, gr = grey(left), grey(right)
    m = max_shift
    core_l = gl[:, m:-m]
    scores = np.stack(
        [_ncc(_blocks(core_l, patch), _blocks(gr[:, m + s : gr.shape[1] - m + s], patch)) for s in range(-m, m + 1)]
    )
    best = scores.argmax(axis=0)
    idx = np.clip(best, 1, 2 * m - 1)
    rows, cols = np.indices(best.shape)
    y0, y1, y2 = scores[idx - 1, rows, cols], scores[idx, rows, cols], scores[idx + 1, rows, cols]
    denom = y0 - 2 * y1 + y2
    frac = np.where(np.abs(denom) > 1e-9, 0.5 * (y0 - y2) / np.where(denom == 0, 1, denom), 0.0)
    shift = idx - m + np.clip(frac, -0.5, 0.5)
    texture = _blocks(np.abs(np.diff(core_l, axis=1, append=core_l[:, -1:])), patch).std(-1)
    valid = (best > 0) & (best < 2 * m) & (scores.max(axis=0) > 0.5)
    return shift, texture, valid


def _disc(diameter: float) -> np.ndarray:
    from ldp.data.psf import _disc_coverage, kernel_size

    if diameter <= 1.0:
        return np.ones((1, 1))
    k = _disc_coverage(kernel_size(diameter), diameter / 2.0)
    return k / k.sum()


def patch_blur_size(combined: np.ndarray, target: np.ndarray, patch: int = PATCH, grid=BLUR_GRID) -> np.ndarray:
    """Per-patch diameter (px) of the disc that best explains combined = gain * (target * disc) + offset."""
    c = grey(combined)
    t = grey(target)
    cb = _blocks(c, patch)
    cc = cb - cb.mean(-1, keepdims=True)
    errors = []
    for d in grid:
        blurred = cv2.filter2D(t, cv2.CV_64F, _disc(float(d)), borderType=cv2.BORDER_REFLECT_101)
        bb = _blocks(blurred, patch)
        bc = bb - bb.mean(-1, keepdims=True)
        cov = (cc * bc).sum(-1)
        errors.append((cc**2).sum(-1) - cov**2 / ((bc**2).sum(-1) + 1e-12))
    return np.asarray(grid)[np.argmin(np.stack(errors), axis=0)]


def flat_noise(img: np.ndarray, patch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(intensity, residual std) of the flattest patches (lowest 20 % of smoothed-gradient energy)."""
    g = grey(img)
    smooth = cv2.GaussianBlur(g, (5, 5), 1.0)
    resid = _blocks(g - smooth, patch)
    grad = _blocks(np.hypot(*np.gradient(cv2.GaussianBlur(g, (0, 0), 2.0))), patch).mean(-1)
    keep = grad <= np.quantile(grad, 0.2)
    return _blocks(g, patch).mean(-1)[keep], resid.std(-1)[keep]


def scene_samples(scene: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The samples of every distribution for one scene."""
    shift, texture, valid = patch_disparity(scene["left"], scene["right"])
    m = MAX_SHIFT
    core = {k: scene[k][:, m:-m] for k in ("combined", "target", "left", "right")}
    blur = patch_blur_size(core["combined"], core["target"])[: shift.shape[0], : shift.shape[1]]
    textured = valid & (texture > 0.01)
    lr = _blocks(grey(core["left"]) - grey(core["right"]), PATCH).std(-1)[: shift.shape[0], : shift.shape[1]]
    gc = grey(scene["combined"])
    grad = np.hypot(*np.gradient(gc)).ravel()
    grad = grad[rng.choice(grad.size, size=min(grad.size, 4000), replace=False)]
    intensity, noise = flat_noise(scene["left"])
    out = {
        "disparity_px": shift[textured],
        "disparity_per_blur": (np.abs(shift) / np.maximum(blur, 1e-6))[textured & (blur >= 2.0)],
        "blur_px": blur[textured],
        "grad": grad,
        "noise": noise,
        "noise_intensity": intensity,
        "infocus_lr": lr[textured & (blur <= 1.0)],
    }
    if "defocus" in scene:
        oracle = _blocks(np.abs(scene["defocus"][:, m:-m]).astype(np.float64), PATCH)
        oracle = np.median(oracle, axis=-1)[: shift.shape[0], : shift.shape[1]]
        out["oracle_blur_px"] = oracle[textured]
        out["oracle_blur_all"] = np.abs(scene["defocus"]).ravel()[::7] / max(np.abs(scene["defocus"]).max(), 1e-6)
    return out


def dataset_samples(scenes: list[dict[str, np.ndarray]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    per = [scene_samples(s, rng) for s in scenes]
    return {k: np.concatenate([p[k] for p in per]) for k in per[0]}


def pixel4_blur_shape(folder: Path) -> np.ndarray | None:
    """The Pixel 4 ground-truth defocus maps, each divided by its maximum (units unknown: shape only)."""
    files = sorted(Path(folder).glob("*_gt.png")) if Path(folder).is_dir() else []
    if not files:
        return None
    from ldp.imageio import read_image_raw

    maps = [read_image_raw(f).astype(np.float64) for f in files]
    return np.concatenate([(m / max(m.max(), 1e-6)).ravel()[::97] for m in maps])


def _summary(x: np.ndarray) -> dict[str, float]:
    if x.size == 0:
        return {"n": 0}
    q = np.percentile(x, [10, 50, 90])
    return {"n": int(x.size), "mean": float(x.mean()), "p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2])}


def distances(syn: dict[str, np.ndarray], real: dict[str, np.ndarray]) -> dict[str, dict]:
    out = {}
    for key in DISTRIBUTIONS:
        a, b = syn[key], real[key]
        out[key] = {
            "wasserstein": float(wasserstein_distance(a, b)) if a.size and b.size else None,
            "synthetic": _summary(a),
            "real": _summary(b),
        }
    return out


def noise_curve(samples: dict[str, np.ndarray], edges=(0.0, 0.1, 0.25, 0.45, 0.7, 1.01)) -> list[dict]:
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (samples["noise_intensity"] >= lo) & (samples["noise_intensity"] < hi)
        rows.append({"intensity": [lo, min(hi, 1.0)], "n": int(sel.sum()),
                     "median_std": float(np.median(samples["noise"][sel])) if sel.any() else None})
    return rows


# --------------------------------------------------------------------------------------- rendering variants


def render_variant(overrides: dict, scenes: int, out_root: Path, base: dict | None = None) -> Path:
    """Render ``scenes`` test scenes of SyntheticConfig (defaults, then ``base``, then ``overrides``)."""
    from ldp.data.synthetic import SyntheticConfig, generate_synthetic

    fields = {f.name: f for f in dataclasses.fields(SyntheticConfig)}
    values = {**(base or {}), **overrides}
    for key, value in values.items():
        if key not in fields:
            raise RealismInputError(f"--set {key}: unknown data.synthetic key")
        if isinstance(value, list):
            values[key] = tuple(value)
    cfg = dataclasses.replace(SyntheticConfig(), train=0, val=0, test=scenes, **values)
    return generate_synthetic(cfg, out_root, progress=False)


# the ladder of simulator changes, each step adding one to the previous (docs/data-synthetic.md)
LEGACY = {
    "psf_model": "rdpd", "vignetting": 0.0, "infocus_residual_weight": 0.0, "noise_model": "display",
    "noise_read": 0.012, "noise_shot": 0.0002, "noise_target_scale": 1.0, "chromatic_focus_shift": [0.0, 0.0, 0.0],
}
ABLATION = [
    ("legacy (RDPD ramp 0.2, display noise)", {}),
    ("+ physical half-aperture split", {"psf_model": "physical"}),
    ("+ vignetting / cat's eye", {"vignetting": None}),
    ("+ in-focus residual", {"infocus_residual_weight": None}),
    ("+ linear Poisson-Gaussian noise", {"noise_model": "linear", "noise_read": None, "noise_shot": None,
                                         "noise_target_scale": None}),
    ("+ chromatic focus shift (optional)", {"chromatic_focus_shift": [0.02, 0.0, -0.02]}),
]


def ablation_steps() -> list[tuple[str, dict]]:
    """Cumulative overrides per step; ``None`` means the current default of that key."""
    from ldp.data.synthetic import SyntheticConfig

    defaults = SyntheticConfig()
    steps, current = [], dict(LEGACY)
    for name, change in ABLATION:
        for key, value in change.items():
            current[key] = getattr(defaults, key) if value is None else value
        steps.append((name, {k: list(v) if isinstance(v, tuple) else v for k, v in current.items()}))
    return steps


def evaluate_root(root: Path, real_scenes, real_samples, split: str = "test") -> dict:
    syn_scenes = load_scenes(root, split)
    width = syn_scenes[0]["left"].shape[1]
    if real_samples is None or real_samples.get("_width") != width:
        raise RealismInputError("internal: real samples at another width")
    syn = dataset_samples(syn_scenes)
    result = {
        "means": compare(means_of(syn_scenes), means_of(real_scenes)),
        "distances": distances(syn, real_samples),
        "noise_curve": noise_curve(syn),
        "scenes": len(syn_scenes),
        "width": width,
    }
    if "oracle_blur_px" in syn:
        est, ora = syn["blur_px"], syn["oracle_blur_px"]
        result["blur_estimator_vs_oracle"] = {
            "corr": float(np.corrcoef(est, ora)[0, 1]) if est.size > 2 else None,
            "median_abs_err_px": float(np.median(np.abs(est - ora))) if est.size else None,
        }
        result["_oracle"] = syn["oracle_blur_px"]
        result["_oracle_all"] = syn["oracle_blur_all"]
    result["_samples"] = syn
    return result


def real_samples_at(real_scenes, width: int) -> dict:
    samples = dataset_samples([resize_scene(s, width) for s in real_scenes])
    samples["_width"] = width
    return samples


def write_report(out: Path, rows: list[tuple[str, dict]], real: dict, real_means: dict, pixel4) -> None:
    from ldp.fsutil import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    keys = list(DISTRIBUTIONS)
    clean = []
    for name, res in rows:
        entry = {k: v for k, v in res.items() if not k.startswith("_")}
        entry["name"] = name
        if pixel4 is not None and "_oracle_all" in res:
            entry["blur_shape_vs_pixel4"] = float(wasserstein_distance(res["_oracle_all"], pixel4))
        clean.append(entry)
    payload = {"real": {"means": real_means, "noise_curve": noise_curve(real),
                        "summaries": {k: _summary(real[k]) for k in keys}},
               "variants": clean,
               "note": "Wasserstein-1 distances synthetic vs the 10 real Canon scenes resized to the synthetic "
                       "width; lower is closer. blur_shape_vs_pixel4: oracle |c| / max vs the Pixel 4 GT "
                       "defocus map / max (units unknown, shape only)."}
    atomic_write_text(out / "realism.json", json.dumps(payload, indent=2) + "\n")
    lines = ["# Realism: synthetic vs the 10 real DPDD Canon scenes", "",
             "Generated by `scripts/check_realism.py`. Wasserstein-1 distance to the real sample (lower is "
             "closer); the real scenes are resized to the synthetic width first. Means: the three old statistics "
             "(synthetic - real).", "",
             "| variant | " + " | ".join(DISTRIBUTIONS[k] for k in keys) + " | blur shape vs Pixel 4 | "
             "ΔPSNR(C,T) | ΔSSIM | ΔPSNR(L,R) |",
             "|---|" + "---|" * (len(keys) + 4)]
    for entry in clean:
        d = entry["distances"]
        m = entry["means"]
        cells = [f"{d[k]['wasserstein']:.4g}" if d[k]["wasserstein"] is not None else "–" for k in keys]
        shape = entry.get("blur_shape_vs_pixel4")
        lines.append(f"| {entry['name']} | " + " | ".join(cells) + f" | {shape:.3f} |" if shape is not None
                     else f"| {entry['name']} | " + " | ".join(cells) + " | – |")
        lines[-1] += (f" {m['psnr_combined_target']['diff']:+.2f} | {m['ssim_combined_target']['diff']:+.3f} |"
                      f" {m['psnr_left_right']['diff']:+.2f} |")
    lines += ["", "Medians (p10–p90):", "",
              "| variant | " + " | ".join(DISTRIBUTIONS[k] for k in keys) + " |", "|---|" + "---|" * len(keys)]

    def cell(s):
        return f"{s['p50']:.3g} ({s['p10']:.3g}–{s['p90']:.3g})" if s.get("n") else "–"

    lines.append("| **real** | " + " | ".join(cell(_summary(real[k])) for k in keys) + " |")
    for entry in clean:
        lines.append(f"| {entry['name']} | " + " | ".join(cell(entry["distances"][k]["synthetic"]) for k in keys)
                     + " |")
    lines += ["", "Blur-size estimator on the synthetic sets (vs the oracle map): " + "; ".join(
        f"{e['name']}: r = {e['blur_estimator_vs_oracle']['corr']:.2f}, median |err| "
        f"{e['blur_estimator_vs_oracle']['median_abs_err_px']:.2f} px"
        for e in clean if e.get("blur_estimator_vs_oracle", {}).get("corr") is not None), ""]
    lines += [separation_table(), ""]
    atomic_write_text(out / "realism.md", "\n".join(lines) + "\n")
    _figure(out / "realism.png", rows, real)


def _figure(path: Path, rows, real) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(DISTRIBUTIONS)
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    show = [rows[0], rows[-2] if len(rows) > 2 else rows[-1]] if len(rows) > 1 else rows
    for ax, key in zip(axes.ravel(), keys, strict=False):
        hi = np.percentile(np.concatenate([real[key]] + [r["_samples"][key] for _, r in show]), 99)
        lo = min(0.0, np.percentile(real[key], 1))
        bins = np.linspace(lo, hi, 40)
        ax.hist(real[key], bins=bins, density=True, histtype="stepfilled", alpha=0.35, color="k", label="real")
        for (name, r), colour in zip(show, ("tab:blue", "tab:red"), strict=False):
            ax.hist(r["_samples"][key], bins=bins, density=True, histtype="step", lw=1.5, color=colour,
                    label=name[:32])
        ax.set_title(DISTRIBUTIONS[key], fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)


def separation_table(cocs=(2.0, 4.0, 8.0, 16.0)) -> str:
    """Centroid separation / CoC of the DP PSFs: ideal split, the defaults on and off axis, and the old RDPD ramp."""
    from ldp.data.psf import (
        IDEAL_SPLIT_SEPARATION,
        ButterworthParams,
        DPOptics,
        dp_psfs,
        half_aperture_psfs,
        psf_centroid_separation,
    )
    from ldp.data.synthetic import SyntheticConfig

    d = SyntheticConfig()
    default = DPOptics(split_softness=d.dp_split_softness, crosstalk=d.dp_crosstalk, vignetting=d.vignetting,
                       pupil_ratio=d.pupil_ratio)
    rows = [
        ("ideal: hard split, uniform disc", lambda c: half_aperture_psfs(c, (0.0, 0.0), DPOptics(split_softness=0))),
        ("defaults, on axis", lambda c: half_aperture_psfs(c, (0.0, 0.0), default)),
        ("defaults, frame edge (1, 0)", lambda c: half_aperture_psfs(c, (1.0, 0.0), default)),
        ("defaults, corner (0.8, 0.6)", lambda c: half_aperture_psfs(c, (0.8, 0.6), default)),
        ("rdpd, n=6 cf=2.5 beta=0.2 floor 0.2", lambda c: dp_psfs(c, ButterworthParams(ramp_floor=d.dp_ramp_floor))),
    ]
    lines = [f"PSF centroid separation / CoC (ideal split theory 4/(3 pi) = {IDEAL_SPLIT_SEPARATION:.4f})", "",
             "| PSFs | " + " | ".join(f"c = {c:g} px" for c in cocs) + " |", "|---|" + "---|" * len(cocs)]
    for name, make in rows:
        lines.append(f"| {name} | " + " | ".join(f"{psf_centroid_separation(*make(c)) / c:.3f}" for c in cocs) + " |")
    return "\n".join(lines)


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise RealismInputError(f"--set {item}: expected key=value")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", type=Path, default=Path("data/synthetic"), help="synthetic dataset root")
    parser.add_argument("--real", type=Path, default=REAL_DEFAULT, help="real DPDD-layout root")
    parser.add_argument("--split", default="test", help="split of the synthetic set to compare (default test)")
    parser.add_argument("--render", type=int, default=0, help="render this many test scenes instead of --synthetic")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="data.synthetic override for --render (JSON value)")
    parser.add_argument("--distributions", action="store_true", help="also compare the six distributions")
    parser.add_argument("--ablation", action="store_true",
                        help="render the ladder of simulator changes (--render scenes each, default 12)")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=ROOT",
                        help="another dataset root to report beside the variants (e.g. the HEAD simulator's)")
    parser.add_argument("--pixel4", type=Path, default=PIXEL4_DEFAULT, help="Pixel 4 GT defocus maps")
    parser.add_argument("--out", type=Path, default=None, help="write realism.{md,json,png} here")
    parser.add_argument("--psf", action="store_true", help="print the PSF centroid separation / CoC and exit")
    args = parser.parse_args(argv)
    if args.psf:
        print(separation_table())
        return 0
    try:
        if not (args.distributions or args.ablation):
            root = args.synthetic
            with tempfile.TemporaryDirectory() as tmp:
                if args.render:
                    root = render_variant(_parse_set(args.set), args.render, Path(tmp) / "syn")
                syn = realism_stats(root, args.split)
            real_means = realism_stats(args.real, "test")
            result = compare(syn, real_means)
            print(f"synthetic: {root} ({args.split})   real: {args.real} (test)")
            print(format_table(result, syn["scenes"], real_means["scenes"]))
            ok = all(row["ok"] for row in result.values())
            print("realism check:", "PASS" if ok else "FAIL")
            return 0 if ok else 1
        real_scenes = load_scenes(args.real, "test")
        real_means = means_of(real_scenes)
        rows: list[tuple[str, dict]] = []
        real = None
        with tempfile.TemporaryDirectory() as tmp:
            for item in args.extra:
                name, _, root = item.partition("=")
                width = load_scenes(root, args.split)[0]["left"].shape[1]
                real = real if real is not None and real["_width"] == width else real_samples_at(real_scenes, width)
                rows.append((name, evaluate_root(Path(root), real_scenes, real, args.split)))
            if args.ablation:
                variants = ablation_steps()
            elif args.render:
                variants = [("rendered", _parse_set(args.set))]
            else:
                variants = []
            for i, (name, overrides) in enumerate(variants):
                t0 = time.perf_counter()
                root = render_variant(overrides, args.render or 12, Path(tmp) / f"v{i}")
                width = load_scenes(root)[0]["left"].shape[1]
                real = real if real is not None and real["_width"] == width else real_samples_at(real_scenes, width)
                rows.append((name, evaluate_root(root, real_scenes, real)))
                print(f"[{time.perf_counter() - t0:.1f} s] {name}", file=sys.stderr)
            if not variants and not args.extra:
                root = args.synthetic
                width = load_scenes(root, args.split)[0]["left"].shape[1]
                real = real_samples_at(real_scenes, width)
                rows.append((str(root), evaluate_root(Path(root), real_scenes, real, args.split)))
    except (RealismInputError, ImageReadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, res in rows:
        d = res["distances"]
        print(f"{name}: " + ", ".join(f"{k} {d[k]['wasserstein']:.4g}" for k in DISTRIBUTIONS
                                      if d[k]["wasserstein"] is not None))
    if args.out:
        write_report(args.out, rows, real, real_means, pixel4_blur_shape(args.pixel4))
        print(f"wrote {args.out}/realism.md, realism.json, realism.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
