"""Train or evaluate one experiment of the grid, as the DVC stages and ``ldp train`` / ``ldp evaluate`` do."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldp.config import section
from ldp.experiments import (
    ExperimentConfig,
    clip_weights_kinds,
    import_model_module,
    load_experiments,
    train_overrides,
)
from ldp.fsutil import atomic_dir, atomic_write_json

TRAIN_LOGS = ("train_log.csv", "val_log.csv")


@dataclass(frozen=True)
class MlflowConfig:
    """params.yaml section ``mlflow``; the tracking URI comes from MLFLOW_TRACKING_URI or the repo's sqlite store."""

    enabled: bool = True


@dataclass(frozen=True)
class Layout:
    """Where a run reads and writes (the DVC stages use the defaults, relative to the repo root)."""

    dataset: Path = Path("data/dataset")
    blurmaps: Path = Path("data/blurmaps")
    checkpoints: Path = Path("checkpoints")
    results: Path = Path("results")


def get_experiment(params: dict, name: str) -> ExperimentConfig:
    experiments = load_experiments(params)
    if name not in experiments:
        raise KeyError(f"params.yaml:experiments.{name}: no such experiment (known: {', '.join(experiments)})")
    exp = experiments[name]
    import_model_module(exp)
    return exp


def _tags(params: dict, exp: ExperimentConfig, name: str, stage: str, **extra: Any) -> dict[str, str]:
    from ldp.tracking import standard_tags

    return standard_tags(exp.model, data_source=(params.get("data") or {}).get("source", ""),
                         clip_weights=",".join(clip_weights_kinds(params, exp)) or "n/a",
                         extra={"experiment": name, "stage": stage, "table": exp.primary_table(),
                                "blurmap": exp.blurmap, "ldp_losses": exp.ldp_losses, **extra})


def _run_name(exp: ExperimentConfig, name: str) -> str:
    """``ldp-small`` for the experiment ``ldp-small``, ``ldp-small-vitb16`` (not ``ldp-small-ldp-small-vitb16``) for
    ``ldp-small-vitb16``, ``<model>-<name>`` otherwise; ``@<DVC experiment>`` is appended inside dvc exp."""
    from ldp.tracking import run_name

    variant = name.removeprefix(f"{exp.model}-") if name != exp.model else None
    return run_name(exp.model, variant)


def train_experiment(params: dict, name: str, layout: Layout = Layout()) -> dict[str, Any]:
    from ldp.tracking import Tracker
    from ldp.train import interrupted_run, train, train_config

    exp = get_experiment(params, name)
    cfg = train_config(params, train_overrides(params, exp), override_where=f"params.yaml:experiments.{name}")
    out = layout.checkpoints / name
    with Tracker(cfg, exp.primary_table(), _run_name(exp, name), _tags(params, exp, name, "train"),
                 out_dir=out, enabled=section(params, "mlflow", MlflowConfig).enabled) as tracker:
        summary = train(cfg, exp.model, layout.dataset, out, blurmap_dir=layout.blurmaps / exp.blurmap,
                        tracker=tracker, resume=interrupted_run(out, cfg, exp.model))
    summary = {**summary, "experiment": name, "clip_weights_kinds": clip_weights_kinds(params, exp)}
    with atomic_dir(layout.results / "training" / name) as logs:
        for fname in TRAIN_LOGS:
            if (out / fname).is_file():
                shutil.copy2(out / fname, logs / fname)
        atomic_write_json(logs / "train_summary.json", summary, default=str)
        atomic_write_json(logs / "scores.json", train_scores(summary))
    return summary


def train_scores(summary: dict[str, Any]) -> dict[str, float | int]:
    """The numbers of ``train_summary.json`` that DVC compares: last validation PSNR and loss, last training loss."""
    val, final = summary.get("val_last") or {}, summary.get("final_train") or {}
    out = {"val_psnr": val.get("psnr"), "val_loss": val.get("loss"), "train_loss": final.get("total"),
           "iterations": summary.get("iterations")}
    return {k: v for k, v in out.items() if v is not None}


def load_trained_model(params: dict, name: str, layout: Layout = Layout()):
    """The experiment's network, built with its model overrides, with its trained weights loaded."""
    from ldp import build_model
    from ldp.checkpoint import load_weights
    from ldp.train import train_config

    exp = get_experiment(params, name)
    model = build_model(exp.model, **train_config(params, train_overrides(params, exp)).model_overrides)
    load_weights(model, layout.checkpoints / name / "model.pt")
    return model


def evaluate_experiment(params: dict, name: str, layout: Layout = Layout()):
    from ldp.evaluate import EvalConfig, evaluate
    from ldp.tracking import Tracker

    exp = get_experiment(params, name)
    cfg = section(params, "evaluate", EvalConfig)
    weights = layout.checkpoints / name / "model.pt"
    model = load_trained_model(params, name, layout)
    out = layout.results / "eval" / name
    source = (params.get("data") or {}).get("source", "")
    result = evaluate(exp.model, weights, layout.dataset, out_dir=out, blurmap_dir=layout.blurmaps / exp.blurmap,
                      cfg=cfg, model=model, data_source=source)
    tags = _tags(params, exp, name, "evaluate", protocol=result.summary["protocol"])
    with Tracker(cfg, exp.primary_table(), _run_name(exp, name), tags, out_dir=out,
                 enabled=section(params, "mlflow", MlflowConfig).enabled) as tracker:
        for subset, stats in result.summary["metrics"].items():
            tracker.log_metrics({f"test.{subset}.{m}": v["mean"] for m, v in stats.items()
                                 if isinstance(v, dict) and v.get("mean") is not None})
        tracker.log_artifact(out / "per_image.csv")
        tracker.log_artifact(out / "samples", "samples")
    return result
