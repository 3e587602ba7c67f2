"""The evaluation protocol and the evaluation runner (bootstrap statistics: :mod:`ldp.stats`).

Protocol ``dpdd16-restormer-v1`` (docs/metrics.md): 16-bit PNGs divided by 65535 (8-bit by 255), full
resolution, output clamped to [0, 1], per-image PSNR (peak 1, float), skimage-identical SSIM, MAE, RMSE
("MSE_rel (RMSE)") and LPIPS-Alex when its weights are local; means per subset (all / indoor / outdoor) with
bootstrap 95 % confidence intervals.

Outputs of :func:`evaluate` in ``out_dir`` (each written atomically):
``per_image.csv``, ``metrics.json`` (everything, CIs, provenance and the labels of :mod:`ldp.labels` included),
``scores.json`` (the subset means and the labels' string facts: what ``dvc metrics show/diff`` and ``dvc exp show``
compare) and ``samples/<scene>.png`` (16-bit
restorations).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from ldp.data.manifest import load_manifest, load_scene
from ldp.device import resolve_device
from ldp.fsutil import atomic_write, atomic_write_json, replace_dir, sha256_file, temp_dir_beside
from ldp.imageio import write_image
from ldp.labels import evaluation_labels, flat_labels
from ldp.metrics import METRIC_NAMES, compute_metrics, load_lpips
from ldp.registry import build_model, get_spec
from ldp.stats import PER_IMAGE_CSV, bootstrap_ci

METRICS_JSON = "metrics.json"
SCORES_JSON = "scores.json"
SAMPLES_DIR = "samples"
SUBSETS = ("all", "indoor", "outdoor")
CSV_COLUMNS = ("scene", "category", "psnr", "ssim", "mae", "rmse", "lpips")
RANDOM_INIT = "random-init"


class EvaluationError(ValueError):
    """Bad evaluation input (dataset, split, blur maps, weights, protocol); the message names the culprit."""


@dataclass(frozen=True)
class Protocol:
    """A fixed, versioned way to turn restorations into numbers; its id goes into every result."""

    id: str
    input_scaling: str = "uint16/65535, uint8/255"
    resolution: str = "full"
    clamp: tuple[float, float] = (0.0, 1.0)
    psnr_peak: float = 1.0
    psnr_identical_db: float = 100.0
    ssim: str = "skimage structural_similarity(data_range=1, channel_axis=-1) defaults"
    ssim_window: str = "uniform 7x7"
    ssim_k1: float = 0.01
    ssim_k2: float = 0.03
    ssim_sample_covariance: bool = True
    ssim_border_crop: int = 3
    lpips: str = "LPIPS v0.1 AlexNet, normalize=True; unavailable (null) without local weights"
    rmse_printed_as: str = "MSE_rel (RMSE)"
    reduction: str = "mean of per-image values"
    subsets: tuple[str, ...] = SUBSETS
    ci: str = "bootstrap over images, percentile 95 %"


PROTOCOLS: dict[str, Protocol] = {"dpdd16-restormer-v1": Protocol(id="dpdd16-restormer-v1")}
DEFAULT_PROTOCOL = "dpdd16-restormer-v1"


def get_protocol(protocol_id: str) -> Protocol:
    if protocol_id not in PROTOCOLS:
        raise EvaluationError(f"unknown protocol {protocol_id!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol_id]


@dataclass(frozen=True)
class EvalConfig:
    """params.yaml section ``evaluate``."""

    split: str = "test"
    protocol: str = DEFAULT_PROTOCOL
    tiling: Literal["auto", "whole", "tiled", "windows"] = "auto"  # auto: the model's registered (official) mode
    tile: int = 512  # tiled: tile size; windows: window size for a model without its own ``inference_window``
    overlap: int = 64  # tiled only
    save_samples: int = 4  # restorations written as 16-bit PNG (first N scenes)
    bootstrap: int = 2000  # resamples for the 95 % confidence intervals
    seed: int = 0  # bootstrap seed, and the init seed when no weights are given
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    lpips: bool = True  # compute LPIPS when its weights are on this machine
    max_images: int = 0  # 0 = the whole split (smoke runs use a few)


@dataclass
class EvalResult:
    per_image: pd.DataFrame
    summary: dict[str, Any]
    out_dir: Path


# --------------------------------------------------------------------------------------------- helpers


def _json_clean(obj: Any) -> Any:
    """NaN/inf → None (JSON has no NaN), numpy scalars → Python."""
    if isinstance(obj, Mapping):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_batch(img: np.ndarray, device: torch.device) -> torch.Tensor:
    """H×W×3 float32 array → 1×3×H×W tensor."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].to(device)


def to_image(t: torch.Tensor) -> np.ndarray:
    """1×3×H×W tensor → H×W×3 float32 array."""
    return t[0].permute(1, 2, 0).float().cpu().numpy()


def weights_record(weights: str | Path | None, model_name: str = "") -> dict[str, Any] | str:
    """``{"path", "sha256"}`` of a weights file, ``"random-init"`` without one, and the weight-free record of an
    input baseline (which takes no weights file)."""
    from ldp.models.input_baselines import NO_WEIGHTS, is_input_baseline

    if is_input_baseline(model_name):
        return NO_WEIGHTS
    if weights is None:
        return RANDOM_INIT
    path = Path(weights)
    return {"path": str(path.resolve()), "sha256": sha256_file(path)}


def prepare_model(
    model_name: str, weights: str | Path | None, device: torch.device, seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build a registered model (with its build ``overrides``) and load weights safely (``weights_only=True``);
    random init when None. An input baseline takes no weights."""
    from ldp.models.input_baselines import is_input_baseline

    if weights is not None and is_input_baseline(model_name):
        raise EvaluationError(f"{weights}: model {model_name!r} is an input baseline and takes no weights")
    torch.manual_seed(seed)
    model = build_model(model_name, **(overrides or {}))
    if weights is not None:
        from ldp.checkpoint import load_weights

        if not Path(weights).is_file():
            raise EvaluationError(f"{weights}: weights file not found")
        load_weights(model, weights, strict=True)
    return model.to(device).eval()


def blurmap_meta(blurmap_dir: str | Path | None) -> dict[str, Any]:
    if blurmap_dir is None:
        return {}
    from ldp.blurmap.io import read_meta

    return read_meta(blurmap_dir)


def clip_weights_kind(meta: Mapping[str, Any]) -> str | None:
    """The CLIP weights behind a blur-map set (its meta.json's ``weights_kind``; ``n/a`` for non-CLIP maps)."""
    kind = meta.get("weights_kind")
    return kind if isinstance(kind, str) else None


def load_blurmap_tensor(blurmap_dir: str | Path, scene: str, size: tuple[int, int], device: torch.device):
    """The stage's blur map for ``scene`` at image size, as 1×1×H×W."""
    from ldp.blurmap.io import load_blurmap

    return torch.from_numpy(np.asarray(load_blurmap(blurmap_dir, scene, size), dtype=np.float32))[None, None].to(device)


def restore(
    model: nn.Module,
    input_kind: str,
    left: torch.Tensor,
    right: torch.Tensor,
    blurmap: torch.Tensor | None,
    mode: str,
    tile: int,
    overlap: int,
    *,
    label: str = "the input",
) -> torch.Tensor:
    """Run the model on one full-resolution pair (whole or tiled) and clamp to [0, 1].

    A NaN or Inf anywhere in the raw output raises :class:`EvaluationError` naming ``label`` (the image and the
    weights): clamping would turn an Inf into a plausible pixel and a NaN into metrics that are quietly missing.
    """
    from ldp.models.inputs import make_input
    from ldp.models.tiling import infer

    x = make_input(input_kind, left, right, blurmap)
    with torch.inference_mode():
        out = infer(model, x, mode=mode, tile=tile, overlap=overlap).float()
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        raise EvaluationError(f"{label}: the model output has {bad} NaN/Inf values (of {out.numel()}); the weights "
                              "are broken or do not fit this model")
    return out.clamp(0.0, 1.0)


def inference_record(spec: Any, mode: str, cfg: EvalConfig, model: nn.Module) -> dict[str, Any]:
    """How the restorations were computed: the mode, its sizes, and whether it is the model's registered mode (the
    official test's, where the model has one: docs/metrics.md); a one-line ``deviation`` when it is not."""
    from ldp.models.tiling import inference_window

    record: dict[str, Any] = {"mode": mode, "registered": spec.inference, "official": mode == spec.inference,
                              "deviation": None}
    if mode == "tiled":
        record.update(tile=cfg.tile, overlap=cfg.overlap)
        how = f"{cfg.tile}-px tiles, {cfg.overlap}-px blended overlap"
    elif mode == "windows":
        record["window"] = inference_window(model, cfg.tile)
        how = f"non-overlapping {record['window']}-px windows"
    else:
        how = "the whole image at once"
    if mode != spec.inference:
        record["deviation"] = (f"scored with {mode} inference ({how}) instead of {spec.inference}, the registered "
                               f"mode of {spec.name} (evaluate.tiling: {cfg.tiling})")
    return record


def summarize(per_image: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
    """Means and bootstrap CIs per subset; unavailable metrics (all NaN) give ``None``."""
    out: dict[str, Any] = {}
    for subset in SUBSETS:
        rows = per_image if subset == "all" else per_image[per_image["category"] == subset]
        entry: dict[str, Any] = {"n_images": len(rows)}
        for metric in METRIC_NAMES:
            vals = rows[metric].to_numpy(dtype=np.float64) if metric in rows else np.array([])
            if len(vals) == 0 or not np.all(np.isfinite(vals)):
                entry[metric] = {"mean": None, "ci95": None}
                continue
            lo, hi = bootstrap_ci(vals, n=n_boot, seed=seed)
            entry[metric] = {"mean": float(vals.mean()), "ci95": [lo, hi]}
        # The supplement's MSE_rel equals 10^(-PSNR/20) of the printed mean PSNR in 10 of its 11 rows (not Tab. 3's
        # DeepRFT); by Jensen that is <= mean RMSE
        psnr_mean = entry["psnr"]["mean"]
        entry["rmse_from_mean_psnr"] = None if psnr_mean is None else 10 ** (-psnr_mean / 20)
        out[subset] = entry
    return out


# ------------------------------------------------------------------------------------------------ runner


def evaluate(
    model_name: str,
    weights: str | Path | None,
    dataset_root: str | Path,
    split: str | None = None,
    out_dir: str | Path = "results/eval",
    blurmap_dir: str | Path | None = None,
    cfg: EvalConfig | None = None,
    *,
    model: nn.Module | None = None,
    data_source: str | None = None,
    experiment: Mapping[str, Any] | None = None,
    quiet: bool = False,
) -> EvalResult:
    """Evaluate ``model_name`` on a dataset split under ``cfg.protocol`` and write the results to ``out_dir``.

    ``weights=None`` evaluates a random init (recorded as ``"random-init"``; an input baseline, which has no
    weights, is recorded as ``"none needed (input baseline)"``); ``model`` passes an already
    built network (e.g. right after training) instead of building one. ``split`` overrides ``cfg.split``.
    ``experiment`` (a resolved experiment as JSON) is recorded in ``metrics.json``.
    Models with input kind ``dp+blurmap`` read their blur maps from ``blurmap_dir`` (the blur-map stage).
    """
    cfg = cfg or EvalConfig()
    protocol = get_protocol(cfg.protocol)
    split = split or cfg.split
    root = Path(dataset_root)
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device, "evaluate.device")
    spec = get_spec(model_name)

    table = load_manifest(root, split)
    if table.empty:
        raise EvaluationError(f"{root / 'manifest.csv'}: no rows for split {split!r}")
    from ldp.models.input_baselines import INPUT_AVERAGE, combined_views

    views_needed = spec.input_kind in ("dp", "dp+blurmap") or model_name == INPUT_AVERAGE
    needed = ("left", "right", "target") if views_needed else ("target",)
    for col in needed:
        empty = table.loc[table[col] == "", "scene"].tolist()
        if empty:
            raise EvaluationError(f"{root / 'manifest.csv'}: split {split!r} lacks '{col}' for scenes {empty[:5]}")
    if spec.input_kind == "combined":
        no_src = table.loc[(table["combined"] == "") & ((table["left"] == "") | (table["right"] == "")), "scene"]
        if len(no_src):
            raise EvaluationError(f"{root / 'manifest.csv'}: scenes {no_src.tolist()[:5]} lack a combined view")
    if cfg.max_images > 0:
        table = table.iloc[: cfg.max_images]

    use_blurmap = spec.input_kind == "dp+blurmap"
    meta: dict[str, Any] = {}
    if use_blurmap:
        if blurmap_dir is None:
            raise EvaluationError(
                f"model {model_name!r} takes a blur map: pass blurmap_dir (the blur-map stage output)"
            )
        meta = blurmap_meta(blurmap_dir)

    mode = spec.inference if cfg.tiling == "auto" else cfg.tiling
    if model is None:
        model = prepare_model(model_name, weights, device, seed=cfg.seed)
    else:
        model = model.to(device).eval()
    weights_rec = weights_record(weights, model_name)
    lpips_model, lpips_reason = load_lpips(device) if cfg.lpips else (None, "disabled (evaluate.lpips: false)")

    # Samples go to a temp folder that replaces samples/ only when the whole run succeeded.
    samples_tmp = temp_dir_beside(out_dir / SAMPLES_DIR)
    try:
        rows: list[dict[str, Any]] = []
        model_s = metric_s = 0.0
        fed_counts: dict[str, int] = {}  # combined-kind models: which image each scene's input was
        sizes_wxh: dict[str, int] = {}  # image size (WxH) -> number of images evaluated at it
        bar = tqdm(table.to_dict("records"), desc=f"eval {model_name}", disable=quiet, unit="img")
        for i, row in enumerate(bar):
            scene = load_scene(root, row)
            target = to_batch(scene["target"], device)
            h, w = target.shape[-2:]
            sizes_wxh[f"{w}x{h}"] = sizes_wxh.get(f"{w}x{h}", 0) + 1
            left = to_batch(scene["left"], device) if "left" in scene else None
            right = to_batch(scene["right"], device) if "right" in scene else None
            if spec.input_kind == "combined":
                left_img, right_img, fed = combined_views(model_name, scene)
                left, right = to_batch(left_img, device), to_batch(right_img, device)
                fed_counts[fed] = fed_counts.get(fed, 0) + 1
            bmap = load_blurmap_tensor(blurmap_dir, row["scene"], (h, w), device) if use_blurmap else None

            source = root / (row["left"] or row["combined"] or row["target"])
            _sync(device)
            t0 = time.perf_counter()
            pred = restore(model, spec.input_kind, left, right, bmap, mode, cfg.tile, cfg.overlap,
                           label=f"scene {row['scene']} ({source}), weights {_weights_label(weights_rec)}")
            _sync(device)
            t1 = time.perf_counter()
            if pred.shape != target.shape:
                raise EvaluationError(
                    f"scene {row['scene']}: model output {tuple(pred.shape)} != target {tuple(target.shape)}"
                )
            vals = compute_metrics(pred, target, lpips=lpips_model)
            _sync(device)
            t2 = time.perf_counter()
            model_s += t1 - t0
            metric_s += t2 - t1

            rec = {"scene": row["scene"], "category": row["category"]}
            rec.update({k: float(vals[k][0]) if k in vals else math.nan for k in METRIC_NAMES})
            rows.append(rec)
            bar.set_postfix(psnr=f"{rec['psnr']:.2f}")
            if i < cfg.save_samples:
                write_image(samples_tmp / f"{row['scene']}.png", to_image(pred), bits=16)

        per_image = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
        atomic_write(out_dir / PER_IMAGE_CSV, lambda fh: per_image.to_csv(fh, index=False, float_format="%.10g"),
                     "w", newline="")
        if cfg.save_samples > 0:
            replace_dir(samples_tmp, out_dir / SAMPLES_DIR)
    finally:
        shutil.rmtree(samples_tmp, ignore_errors=True)

    manifest_path = root / "manifest.csv"
    summary = {
        "protocol": protocol.id,
        "protocol_spec": dataclasses.asdict(protocol),
        "model": model_name,
        "input_kind": spec.input_kind,
        "inference": inference_record(spec, mode, cfg, model),
        "weights": weights_rec,
        "combined_input": fed_counts if spec.input_kind == "combined" else None,  # image → number of scenes
        "data_source": {
            "name": data_source or root.resolve().name,
            "root": str(root.resolve()),
            "manifest_sha256": sha256_file(manifest_path),
            "split": split,
            "bit_depth": sorted({int(b) for b in table["bit_depth"] if int(b)}),
            "image_sizes_wxh": sizes_wxh,
        },
        "clip_weights": clip_weights_kind(meta) if use_blurmap else None,
        "blurmap": {"dir": str(Path(blurmap_dir).resolve()), "meta": meta} if use_blurmap else None,
        "lpips": {"available": lpips_model is not None, "reason": lpips_reason or None},
        "n_images": len(per_image),
        "metrics": summarize(per_image, cfg.bootstrap, cfg.seed),
        "bootstrap": {"resamples": cfg.bootstrap, "seed": cfg.seed, "level": 0.95, "method": "percentile"},
        "experiment": dict(experiment) if experiment is not None else None,
        "timing_s": {
            "model": model_s,
            "metrics": metric_s,
            "metrics_over_model": metric_s / model_s if model_s > 0 else None,
            "device": str(device),
        },
    }
    summary = _json_clean(summary)
    summary["labels"] = evaluation_labels(summary)
    atomic_write_json(out_dir / METRICS_JSON, summary)
    atomic_write_json(out_dir / SCORES_JSON, scores(summary))
    return EvalResult(per_image=per_image, summary=summary, out_dir=out_dir)


def scores(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{subset: {metric: mean, "n_images": n}, "labels": {fact: text}}``: the numbers of ``metrics.json`` that DVC
    compares, and its labels' string facts (``dvc metrics show`` prints them as columns; ldp.labels)."""
    out: dict[str, dict[str, Any]] = {}
    for subset, entry in summary["metrics"].items():
        if not entry.get("n_images"):
            continue
        row: dict[str, float | int] = {m: entry[m]["mean"] for m in METRIC_NAMES if entry[m]["mean"] is not None}
        out[subset] = {**row, "n_images": entry["n_images"]}
    out["labels"] = flat_labels(summary["labels"])
    return out


def format_summary(summary: Mapping[str, Any]) -> str:
    """A short table of the means per subset, with RMSE labelled as the paper's MSE_rel."""
    labels = {"psnr": "PSNR", "ssim": "SSIM", "mae": "MAE", "rmse": "MSE_rel (RMSE)", "lpips": "LPIPS"}
    lines = [f"{summary['model']} | {summary['protocol']} | weights: {_weights_label(summary['weights'])}"]
    lines.append(f"{'subset':<8} {'n':>4} " + " ".join(f"{labels[m]:>16}" for m in METRIC_NAMES))
    for subset, entry in summary["metrics"].items():
        cells = []
        for m in METRIC_NAMES:
            mean = entry[m]["mean"]
            cells.append(f"{'n/a' if mean is None else f'{mean:.4f}':>16}")
        lines.append(f"{subset:<8} {entry['n_images']:>4} " + " ".join(cells))
    return "\n".join(lines)


def _weights_label(rec: Any) -> str:
    return rec if isinstance(rec, str) else f"{rec['path']} (sha256 {rec['sha256'][:12]})"
