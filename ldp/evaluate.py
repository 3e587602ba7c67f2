"""The evaluation runner (protocols: :mod:`ldp.protocols`; bootstrap statistics: :mod:`ldp.stats`).

Protocol ``dpdd16-restormer-v1`` (the default; docs/metrics.md): 16-bit PNGs divided by 65535 (8-bit by 255), full
resolution, output clamped to [0, 1], per-image PSNR (peak 1, float), skimage-identical SSIM, MAE, RMSE
("MSE_rel (RMSE)") and LPIPS-Alex when its weights are local; means per subset (all / indoor / outdoor) with
bootstrap 95 % confidence intervals. ``evaluate.protocols`` scores the same restorations under more protocols in the
same pass (docs/protocols.md).

Outputs of :func:`evaluate` in ``out_dir`` (each written atomically):
``per_image.csv``, ``metrics.json`` (everything, CIs, provenance and the labels of :mod:`ldp.labels` included),
``scores.json`` (the subset means and the labels' string facts: what ``dvc metrics show/diff`` and ``dvc exp show``
compare), ``protocols.json`` (every protocol's per-image rows, means and paired drift from the default) and
``samples/<scene>.png`` (16-bit restorations). :func:`evaluate_restorations` writes the same (no samples) for a
folder of restored images.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import time
from collections.abc import Callable, Mapping
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
from ldp.labels import evaluation_labels, flat_labels, restoration_labels
from ldp.metrics import METRIC_NAMES, load_lpips
from ldp.protocols import (
    DEFAULT_PROTOCOL,
    PROTOCOLS,  # noqa: F401  (re-exported: ldp.evaluate.PROTOCOLS predates ldp.protocols)
    Protocol,
    ProtocolError,
    expand_protocols,
    score,
)
from ldp.protocols import get_protocol as _get_protocol
from ldp.registry import build_model, get_spec
from ldp.stats import PER_IMAGE_CSV, bootstrap_ci

METRICS_JSON = "metrics.json"
SCORES_JSON = "scores.json"
PROTOCOLS_JSON = "protocols.json"  # every protocol's per-image numbers, summary and drift from the default
SAMPLES_DIR = "samples"
SUBSETS = ("all", "indoor", "outdoor")
DRIFT_METRICS = ("psnr", "ssim")
CSV_COLUMNS = ("scene", "category", "psnr", "ssim", "mae", "rmse", "lpips")
RANDOM_INIT = "random-init"


class EvaluationError(ValueError):
    """Bad evaluation input (dataset, split, blur maps, weights, protocol); the message names the culprit."""


def get_protocol(protocol_id: str) -> Protocol:
    """A registered protocol (:mod:`ldp.protocols`); an unknown name is an :class:`EvaluationError`."""
    try:
        return _get_protocol(protocol_id)
    except ProtocolError as exc:
        raise EvaluationError(str(exc)) from None


@dataclass(frozen=True)
class EvalConfig:
    """params.yaml section ``evaluate``."""

    split: str = "test"
    protocol: str = DEFAULT_PROTOCOL  # metrics.json, scores.json and per_image.csv are under this one
    protocols: tuple[str, ...] = ()  # more protocols in the same pass ("all" = every one) -> protocols.json
    tiling: Literal["auto", "whole", "tiled", "windows"] = "auto"  # auto: the model's registered (official) mode
    tile: int = 512  # tiled: tile size; windows: window size for a model without its own ``inference_window``
    overlap: int = 64  # tiled only
    save_samples: int = 4  # restorations written as 16-bit PNG (first N scenes)
    bootstrap: int = 2000  # resamples for the 95 % confidence intervals
    seed: int = 0  # bootstrap seed, and the init seed when no weights are given
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    lpips: bool = True  # compute LPIPS when its weights are on this machine
    max_images: int = 0  # 0 = the whole split (smoke runs use a few)
    cpu_threads: int = 0  # torch intra-op threads on CPU; 0 = PyTorch's default (one per core)


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


def data_source_record(root: Path, name: str | None, split: str, table: pd.DataFrame,
                       sizes_wxh: Mapping[str, int]) -> dict[str, Any]:
    """What ``metrics.json`` says of the data scored: source, manifest hash, split, bit depths, image sizes and
    where the indoor/outdoor categories came from (the data stage's stamp)."""
    from ldp.data.manifest import categories_origin

    return {
        "name": name or root.resolve().name,
        "root": str(root.resolve()),
        "manifest_sha256": sha256_file(root / "manifest.csv"),
        "split": split,
        "bit_depth": sorted({int(b) for b in table["bit_depth"] if int(b)}),
        "image_sizes_wxh": dict(sizes_wxh),
        "categories": categories_origin(root),
    }


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


def protocol_ids(cfg: EvalConfig) -> tuple[str, ...]:
    """The protocols an evaluation computes: ``evaluate.protocol`` first, then ``evaluate.protocols`` (``all`` = every
    registered one), with the default added whenever another is asked for (ldp.protocols.expand_protocols)."""
    get_protocol(cfg.protocol)
    try:
        return expand_protocols(cfg.protocols, cfg.protocol)
    except ProtocolError as exc:
        raise EvaluationError(f"evaluate.protocols: {exc}") from None


def set_cpu_threads(cfg: EvalConfig, device: torch.device) -> None:
    """``evaluate.cpu_threads`` > 0 sets torch's intra-op threads for a CPU evaluation (process-wide, as training)."""
    if cfg.cpu_threads < 0:
        raise EvaluationError(f"evaluate.cpu_threads: must be >= 0 (0 = PyTorch's default), got {cfg.cpu_threads}")
    if cfg.cpu_threads > 0 and device.type == "cpu":
        torch.set_num_threads(cfg.cpu_threads)


class ProtocolScorer:
    """Per-image rows for each protocol of one pass over the restorations (one network run per image)."""

    def __init__(self, ids: tuple[str, ...], lpips_model: Any = None) -> None:
        self.ids = ids
        self.protocols = [get_protocol(pid) for pid in ids]
        self.lpips_model = lpips_model
        self.rows: dict[str, list[dict[str, Any]]] = {pid: [] for pid in ids}

    def add(self, scene: str, category: str, pred: torch.Tensor, target: torch.Tensor, *, pred_bits: int = 0,
            target_bits: int = 16) -> dict[str, Any]:
        """Score one restoration under every protocol; returns the primary protocol's row."""
        for protocol in self.protocols:
            vals = score(protocol, pred, target, pred_bits=pred_bits, target_bits=target_bits, lpips=self.lpips_model)
            rec = {"scene": scene, "category": category}
            rec.update({k: float(vals[k][0]) if k in vals else math.nan for k in METRIC_NAMES})
            self.rows[protocol.id].append(rec)
        return self.rows[self.ids[0]][-1]

    def table(self, pid: str) -> pd.DataFrame:
        return pd.DataFrame(self.rows[pid], columns=list(CSV_COLUMNS))


def protocols_record(scorer: ProtocolScorer, n_boot: int, seed: int) -> dict[str, Any]:
    """``protocols.json``: each protocol's spec, per-image rows, subset means with CIs and, for every protocol
    but the default, the paired difference from the default (PSNR and SSIM, bootstrap 95 % CI, ldp.stats)."""
    from ldp.stats import paired_bootstrap_diff

    default = scorer.table(DEFAULT_PROTOCOL) if DEFAULT_PROTOCOL in scorer.ids else None
    out: dict[str, Any] = {"default": DEFAULT_PROTOCOL, "primary": scorer.ids[0], "protocols": {}}
    for pid in scorer.ids:
        table = scorer.table(pid)
        drift = None
        if default is not None and pid != DEFAULT_PROTOCOL and len(table):
            drift = {m: paired_bootstrap_diff(table, default, m, n=n_boot, seed=seed) for m in DRIFT_METRICS}
        out["protocols"][pid] = {"spec": get_protocol(pid).spec(), "metrics": summarize(table, n_boot, seed),
                                 "drift_from_default": drift, "per_image": table.to_dict("records")}
    out["bootstrap"] = {"resamples": n_boot, "seed": seed, "level": 0.95, "method": "percentile"}
    return out


def write_outputs(out_dir: Path, scorer: ProtocolScorer, summary: dict[str, Any], cfg: EvalConfig,
                  labeller: Callable[[Mapping[str, Any]], dict[str, Any]] = evaluation_labels) -> dict[str, Any]:
    """``per_image.csv`` (the primary protocol's), ``protocols.json``, then ``metrics.json`` (with the labels
    ``labeller`` derives from the finished summary) and ``scores.json``, each atomically; returns the summary."""
    per_image = scorer.table(scorer.ids[0])
    atomic_write(out_dir / PER_IMAGE_CSV, lambda fh: per_image.to_csv(fh, index=False, float_format="%.10g"),
                 "w", newline="")
    record = _json_clean({**protocols_record(scorer, cfg.bootstrap, cfg.seed), "model": summary.get("model"),
                          "weights": summary.get("weights"), "data_source": summary.get("data_source")})
    atomic_write_json(out_dir / PROTOCOLS_JSON, record)
    summary = _json_clean({**summary, "n_images": len(per_image),
                           "metrics": summarize(per_image, cfg.bootstrap, cfg.seed), "protocols": list(scorer.ids)})
    summary["labels"] = labeller(summary)
    atomic_write_json(out_dir / METRICS_JSON, summary)
    atomic_write_json(out_dir / SCORES_JSON, scores(summary))
    return summary


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
    ids = protocol_ids(cfg)
    split = split or cfg.split
    root = Path(dataset_root)
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device, "evaluate.device")
    set_cpu_threads(cfg, device)
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
    scorer = ProtocolScorer(ids, lpips_model)

    # Samples go to a temp folder that replaces samples/ only when the whole run succeeded.
    samples_tmp = temp_dir_beside(out_dir / SAMPLES_DIR)
    try:
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
            rec = scorer.add(row["scene"], row["category"], pred, target, pred_bits=0,
                             target_bits=int(row["bit_depth"] or 16))
            _sync(device)
            t2 = time.perf_counter()
            model_s += t1 - t0
            metric_s += t2 - t1
            bar.set_postfix(psnr=f"{rec['psnr']:.2f}")
            if i < cfg.save_samples:
                write_image(samples_tmp / f"{row['scene']}.png", to_image(pred), bits=16)

        if cfg.save_samples > 0:
            replace_dir(samples_tmp, out_dir / SAMPLES_DIR)
    finally:
        shutil.rmtree(samples_tmp, ignore_errors=True)

    summary = {
        "protocol": protocol.id,
        "protocol_spec": protocol.spec(),
        "model": model_name,
        "input_kind": spec.input_kind,
        "inference": inference_record(spec, mode, cfg, model),
        "weights": weights_rec,
        "combined_input": fed_counts if spec.input_kind == "combined" else None,  # image → number of scenes
        "data_source": data_source_record(root, data_source, split, table, sizes_wxh),
        "clip_weights": clip_weights_kind(meta) if use_blurmap else None,
        "blurmap": {"dir": str(Path(blurmap_dir).resolve()), "meta": meta} if use_blurmap else None,
        "lpips": {"available": lpips_model is not None, "reason": lpips_reason or None},
        "bootstrap": {"resamples": cfg.bootstrap, "seed": cfg.seed, "level": 0.95, "method": "percentile"},
        "experiment": dict(experiment) if experiment is not None else None,
        "timing_s": {
            "model": model_s,
            "metrics": metric_s,
            "metrics_over_model": metric_s / model_s if model_s > 0 else None,
            "device": str(device),
        },
    }
    summary = write_outputs(out_dir, scorer, summary, cfg)
    return EvalResult(per_image=scorer.table(ids[0]), summary=summary, out_dir=out_dir)


def mean_metrics(summary: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """``{"<prefix>.<subset>.<metric>": mean}`` of every metric with a mean: what the tracker logs for a run."""
    return {f"{prefix}.{subset}.{m}": v["mean"] for subset, stats in summary["metrics"].items()
            for m, v in stats.items() if isinstance(v, dict) and v.get("mean") is not None}


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


# ----------------------------------------------------------------------------------- restorations folder

RESTORATIONS = "restorations"  # the ``model`` of a restorations-folder evaluation


def match_restorations(restorations_dir: Path, table: pd.DataFrame) -> dict[str, Path]:
    """``scene -> file`` for a folder of restored images: ``<name>.png`` matches the scene whose manifest name is
    ``<name>``, or whose target file is named ``<name>.png`` (Restormer's script saves under the target's name).
    Hidden files (``.*``) are ignored. Missing scenes, extra entries and two files for one scene are one
    :class:`EvaluationError` listing them all."""
    if not restorations_dir.is_dir():
        raise EvaluationError(f"{restorations_dir}: restorations folder not found")
    by_name: dict[str, str] = {}
    for row in table.to_dict("records"):
        by_name[row["scene"]] = row["scene"]
        by_name.setdefault(Path(row["target"]).stem, row["scene"])
    found: dict[str, Path] = {}
    extra, twice = [], []
    for path in sorted(restorations_dir.iterdir()):
        if path.name.startswith("."):
            continue
        scene = by_name.get(path.stem) if path.is_file() and path.suffix.lower() == ".png" else None
        if scene is None:
            extra.append(path.name + ("/" if path.is_dir() else ""))
        elif scene in found:
            twice.append(f"{found[scene].name} and {path.name} (scene {scene})")
        else:
            found[scene] = path
    missing = [s for s in table["scene"] if s not in found]
    problems = []
    if missing:
        problems.append(f"{len(missing)} scenes have no restoration: {', '.join(missing[:10])}"
                        + (" ..." if len(missing) > 10 else ""))
    if extra:
        problems.append(f"{len(extra)} entries match no scene of the split (PNG named like a scene expected): "
                        + ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else ""))
    if twice:
        problems.append("two files for one scene: " + "; ".join(twice))
    if problems:
        raise EvaluationError(f"{restorations_dir}: " + "; ".join(problems))
    return found


def _check_restorations(files: Mapping[str, Path], table: pd.DataFrame, root: Path) -> dict[str, int]:
    """Every restoration decodes as an 8- or 16-bit RGB PNG of its target's size; one error lists every file that
    does not. Returns ``scene -> bit depth``."""
    from ldp.imageio import ImageReadError, bit_depth, read_image_raw

    bits, problems = {}, []
    for row in table.to_dict("records"):
        path = files[row["scene"]]
        try:
            img = read_image_raw(path)
        except ImageReadError as exc:
            problems.append(str(exc))
            continue
        if img.ndim != 3:
            problems.append(f"{path}: a grey image (RGB expected)")
            continue
        h, w = int(row["height"] or 0), int(row["width"] or 0)
        if not (h and w):
            h, w = read_image_raw(root / row["target"]).shape[:2]
        if img.shape[:2] != (h, w):
            problems.append(f"{path}: size {img.shape[1]}x{img.shape[0]}, but the target of scene {row['scene']} "
                            f"({root / row['target']}) is {w}x{h}")
        bits[row["scene"]] = bit_depth(img)
    if problems:
        raise EvaluationError(f"{len(problems)} restorations cannot be scored: " + "; ".join(problems))
    return bits


def evaluate_restorations(
    restorations_dir: str | Path,
    dataset_root: str | Path,
    split: str | None = None,
    out_dir: str | Path = "results/eval/restorations",
    cfg: EvalConfig | None = None,
    *,
    data_source: str | None = None,
    quiet: bool = False,
) -> EvalResult:
    """Score a folder of restored images (8- or 16-bit PNG, one per scene of the split, matched by name:
    :func:`match_restorations`) under ``cfg.protocol`` and ``cfg.protocols``, written like a model evaluation
    (``per_image.csv``, ``protocols.json``, ``metrics.json`` whose ``weights`` says ``restorations from DIR``,
    ``scores.json``). No model runs; LPIPS under the default protocol as for a model."""
    from ldp.imageio import bit_depth, read_image_raw, to_float, to_rgb_float

    cfg = cfg or EvalConfig()
    protocol = get_protocol(cfg.protocol)
    ids = protocol_ids(cfg)
    split = split or cfg.split
    root, out_dir, rdir = Path(dataset_root), Path(out_dir), Path(restorations_dir)
    device = resolve_device(cfg.device, "evaluate.device")
    set_cpu_threads(cfg, device)
    table = load_manifest(root, split)
    if table.empty:
        raise EvaluationError(f"{root / 'manifest.csv'}: no rows for split {split!r}")
    empty = table.loc[table["target"] == "", "scene"].tolist()
    if empty:
        raise EvaluationError(f"{root / 'manifest.csv'}: split {split!r} lacks 'target' for scenes {empty[:5]}")
    files = match_restorations(rdir, table)
    if cfg.max_images > 0:
        table = table.iloc[: cfg.max_images]
    bits = _check_restorations(files, table, root)

    lpips_model, lpips_reason = load_lpips(device) if cfg.lpips else (None, "disabled (evaluate.lpips: false)")
    scorer = ProtocolScorer(ids, lpips_model)
    sizes_wxh: dict[str, int] = {}
    digests = []
    t0 = time.perf_counter()
    for row in tqdm(table.to_dict("records"), desc=f"score {rdir.name}", disable=quiet, unit="img"):
        target_raw = read_image_raw(root / row["target"])
        target = to_batch(to_rgb_float(target_raw), device)
        h, w = target.shape[-2:]
        sizes_wxh[f"{w}x{h}"] = sizes_wxh.get(f"{w}x{h}", 0) + 1
        pred = to_batch(to_float(read_image_raw(files[row["scene"]])), device)
        scorer.add(row["scene"], row["category"], pred, target, pred_bits=bits[row["scene"]],
                   target_bits=bit_depth(target_raw))
        digests.append(f"{files[row['scene']].name} {sha256_file(files[row['scene']])}")
    summary: dict[str, Any] = {
        "protocol": protocol.id,
        "protocol_spec": protocol.spec(),
        "model": RESTORATIONS,
        "input_kind": None,
        "inference": None,
        "weights": f"restorations from {rdir.resolve()}",
        "restorations": {"dir": str(rdir.resolve()), "n_files": len(table),
                         "bit_depth": {str(b): sum(1 for s in table["scene"] if bits[s] == b)
                                       for b in sorted(set(bits.values()))},
                         "sha256": hashlib.sha256("\n".join(digests).encode()).hexdigest(),
                         "matched_by": "file stem = manifest scene name, or = the target file's stem"},
        "combined_input": None,
        "data_source": data_source_record(root, data_source, split, table, sizes_wxh),
        "clip_weights": None,
        "blurmap": None,
        "lpips": {"available": lpips_model is not None, "reason": lpips_reason or None},
        "bootstrap": {"resamples": cfg.bootstrap, "seed": cfg.seed, "level": 0.95, "method": "percentile"},
        "experiment": None,
        "timing_s": {"model": 0.0, "metrics": time.perf_counter() - t0, "metrics_over_model": None,
                     "device": str(device)},
    }
    summary = write_outputs(out_dir, scorer, summary, cfg,
                            labeller=lambda done: restoration_labels(done, rdir))
    return EvalResult(per_image=scorer.table(ids[0]), summary=summary, out_dir=out_dir)
