"""Train or evaluate one experiment of the grid, as the DVC stages and ``ldp train`` / ``ldp evaluate`` do.

``configure_*`` read and check every param a job needs (touching no file); the job functions then run it. Training
writes the resolved experiment as ``checkpoints/<name>/config.json``; evaluation and figures rebuild the network from
that file (:func:`load_trained`), never from the current params.

Where a job reads and writes is the params file's ``paths`` section (:class:`PathsConfig`, :func:`layout_of`): a
relative path resolves against the folder of the params file that set it, an unset one is the default relative to the
working folder (what the DVC stages use: dvc.yaml's outs are fixed at the defaults).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldp.config import PATHS_SECTION, ConfigError, section, subsection, where_of
from ldp.experiments import CONFIG_JSON, ResolvedExperiment, read_resolved, resolve
from ldp.fsutil import atomic_dir, atomic_write_json

TRAIN_LOGS = ("train_log.csv", "val_log.csv")


@dataclass(frozen=True)
class MlflowConfig:
    """params.yaml section ``mlflow``; the tracking URI comes from MLFLOW_TRACKING_URI or the repo's sqlite store."""

    enabled: bool = True


@dataclass(frozen=True)
class PathsConfig:
    """params.yaml section ``paths``: where the stages and ``ldp train/evaluate --params`` read and write.

    A relative path resolves against the folder of the params file that set it (a value inherited through
    ``extends`` against the base file's folder); a key no file sets is the default, relative to the working folder.
    dvc.yaml's outs are fixed at these defaults, so under ``dvc repro`` params.yaml must keep them.
    """

    dataset: str = "data/dataset"  # a prepared dataset root (manifest.csv), written by the data stage
    blurmaps: str = "data/blurmaps"  # one folder per blur-map id
    checkpoints: str = "checkpoints"  # one folder per experiment
    results: str = "results"  # training/, eval/, real/, figures/, tables/, report/
    real: str = "data/real"  # the prepared real test sets of params `real_sets` and their blur maps


@dataclass(frozen=True)
class Layout:
    """Where a run reads and writes (the DVC stages use the defaults, relative to the repo root).

    ``where`` names, for each field, the params key behind it (``exp/params.yaml:paths.dataset``), for errors."""

    dataset: Path = Path("data/dataset")
    blurmaps: Path = Path("data/blurmaps")
    checkpoints: Path = Path("checkpoints")
    results: Path = Path("results")
    real: Path = Path("data/real")
    where: tuple[tuple[str, str], ...] = dataclasses.field(default=(), compare=False, repr=False)

    def key_of(self, name: str) -> str:
        """The params key that chose ``name`` (a field), or a note that it is the default."""
        return dict(self.where).get(name, f"the default of {PATHS_SECTION}.{name}")

    def require_dataset(self) -> Path:
        """``dataset``, or a :class:`ConfigError` naming the path and the params key when it holds no manifest."""
        from ldp.data.manifest import MANIFEST_NAME

        if not (self.dataset / MANIFEST_NAME).is_file():
            what = "no such folder" if not self.dataset.is_dir() else f"no {MANIFEST_NAME} in it"
            raise ConfigError(f"{self.dataset}: no prepared dataset ({what}); the path is {self.key_of('dataset')}. "
                              "Build it with `python -m pipelines.data --params FILE` or set paths.dataset")
        return self.dataset


def layout_of(params: Mapping[str, Any]) -> Layout:
    """The :class:`Layout` of a params file's ``paths`` section; errors name the file and key."""
    cfg = section(params, PATHS_SECTION, PathsConfig)
    raw = subsection(params, PATHS_SECTION)
    values: dict[str, Path] = {}
    where: list[tuple[str, str]] = []
    for f in dataclasses.fields(PathsConfig):
        key = f"{PATHS_SECTION}.{f.name}"
        text = getattr(cfg, f.name)
        if not text.strip():
            raise ConfigError(f"{where_of(params, key)}:{key}: expected a path, got an empty string")
        value = Path(text).expanduser()
        if f.name in raw:
            origin = where_of(params, key)
            if not value.is_absolute():
                value = Path(os.path.normpath(Path(origin).parent / value))
            where.append((f.name, f"{origin}:{key}"))
        else:
            where.append((f.name, f"{where_of(params)}:{key} (not set: the default {text!r}, relative to the "
                                  "working folder)"))
        values[f.name] = value
    return Layout(**values, where=tuple(where))


@dataclass(frozen=True)
class TrainJob:
    experiment: ResolvedExperiment
    mlflow: MlflowConfig
    layout: Layout
    restart: bool = False


@dataclass(frozen=True)
class EvalJob:
    name: str
    evaluate: Any  # ldp.evaluate.EvalConfig
    mlflow: MlflowConfig
    layout: Layout


@dataclass(frozen=True)
class TrainedRun:
    model: Any  # nn.Module in eval mode, trained weights loaded
    experiment: ResolvedExperiment
    weights: Path


def dataset_source(dataset: Path) -> str:
    """The source the data stage stamped on ``dataset`` (``synthetic``, ``dpdd``...), or ``""`` before it ran."""
    from ldp.data.manifest import SOURCE_STAMP

    stamp = Path(dataset) / SOURCE_STAMP
    try:
        return str(json.loads(stamp.read_text()).get("source", ""))
    except (OSError, ValueError):
        return ""


def configure_training(params: Mapping[str, Any], name: str, layout: Layout | None = None,
                       restart: bool = False) -> TrainJob:
    """Reads ``experiments.<name>``, ``train``, ``recipes.<r>``, ``ldp_losses``, ``blurmaps.<id>``, ``mlflow`` and,
    unless ``layout`` is given, ``paths``."""
    layout = layout_of(params) if layout is None else layout
    experiment = resolve(params, name, data_source=dataset_source(layout.dataset))
    return TrainJob(experiment, section(params, "mlflow", MlflowConfig), layout, restart)


def configure_evaluation(params: Mapping[str, Any], name: str, layout: Layout | None = None) -> EvalJob:
    """Reads ``evaluate``, ``mlflow`` and, unless ``layout`` is given, ``paths``; the network comes from the training
    run's ``config.json``."""
    from ldp.evaluate import EvalConfig

    layout = layout_of(params) if layout is None else layout
    return EvalJob(name, section(params, "evaluate", EvalConfig), section(params, "mlflow", MlflowConfig), layout)


def _tags(exp: ResolvedExperiment, stage: str, **extra: Any) -> dict[str, str]:
    from ldp.tracking import standard_tags

    return standard_tags(exp.model, data_source=exp.data_source, clip_weights=",".join(exp.clip_weights_kinds) or "n/a",
                         extra={"experiment": exp.name, "stage": stage, "table": exp.primary_table(),
                                "blurmap": exp.blurmap, "ldp_losses": exp.ldp_losses, **extra})


def _run_name(exp: ResolvedExperiment, stage: str) -> str:
    """``ldp-small-vitb16`` (not ``ldp-small-ldp-small-vitb16``) for the experiment ``ldp-small-vitb16``, the stage
    after a colon, ``@<DVC experiment>`` appended inside dvc exp."""
    from ldp.tracking import run_name

    variant = exp.name.removeprefix(f"{exp.model}-") if exp.name != exp.model else None
    return run_name(exp.model, variant, stage=stage)


def train_experiment(job: TrainJob) -> dict[str, Any]:
    from ldp.tracking import Tracker
    from ldp.train import run_training

    exp, layout = job.experiment, job.layout
    layout.require_dataset()
    out = layout.checkpoints / exp.name

    def open_tracker(run_id: str | None) -> Tracker:
        return Tracker(exp.train, exp.primary_table(), _run_name(exp, "train"), _tags(exp, "train"), out_dir=out,
                       enabled=job.mlflow.enabled, run_id=run_id)

    summary = run_training(exp.train, exp.model, layout.dataset, out, blurmap_dir=layout.blurmaps / exp.blurmap,
                           open_tracker=open_tracker, restart=job.restart, key_path=exp.key_path,
                           record=exp.to_json())
    as_run = read_resolved(out)  # precision and CLIP weight kinds as used
    summary = {**summary, "experiment": exp.name, "clip_weights_kinds": list(as_run.clip_weights_kinds),
               "labels": as_run.labels}
    with atomic_dir(layout.results / "training" / exp.name) as logs:
        for fname in (*TRAIN_LOGS, CONFIG_JSON):
            if (out / fname).is_file():
                shutil.copy2(out / fname, logs / fname)
        atomic_write_json(logs / "train_summary.json", summary, default=str)
        atomic_write_json(logs / "scores.json", train_scores(summary))
    return summary


def train_scores(summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers of ``train_summary.json`` that DVC compares (``val.psnr``, ``val.loss``, ``train.loss``,
    ``iterations``: the dotted names the MLflow runs use), and its labels' string facts (``labels.schedule``...)."""
    from ldp.labels import flat_labels

    val, final = summary.get("val_last") or {}, summary.get("final_train") or {}
    out: dict[str, Any] = {"val": {k: val[k] for k in ("psnr", "loss") if val.get(k) is not None},
                           "train": {"loss": final["total"]} if final.get("total") is not None else {},
                           "iterations": summary.get("iterations"), "labels": flat_labels(summary.get("labels") or {})}
    return {k: v for k, v in out.items() if v not in (None, {})}


def load_trained(checkpoint_dir: str | Path) -> TrainedRun:
    """The network of a finished training run, rebuilt from its ``config.json``, with its weights loaded."""
    from ldp import build_model
    from ldp.checkpoint import load_weights

    folder = Path(checkpoint_dir)
    exp = read_resolved(folder)
    weights = folder / "model.pt"
    model = build_model(exp.model, **exp.model_overrides)
    load_weights(model, weights)
    return TrainedRun(model.eval(), exp, weights)


def evaluate_experiment(job: EvalJob):
    from ldp.evaluate import evaluate, mean_metrics
    from ldp.tracking import Tracker

    layout = job.layout
    layout.require_dataset()
    trained = load_trained(layout.checkpoints / job.name)
    exp = trained.experiment.for_evaluation(job.evaluate)
    out = layout.results / "eval" / job.name
    result = evaluate(exp.model, trained.weights, layout.dataset, out_dir=out,
                      blurmap_dir=layout.blurmaps / exp.blurmap, cfg=job.evaluate, model=trained.model,
                      data_source=exp.data_source, experiment=exp.to_json())
    tags = _tags(exp, "evaluate", protocol=result.summary["protocol"])
    with Tracker(job.evaluate, exp.primary_table(), _run_name(exp, "evaluate"), tags, out_dir=out,
                 enabled=job.mlflow.enabled) as tracker:
        tracker.log_metrics(mean_metrics(result.summary, "test"))
        tracker.log_artifact(out / "per_image.csv")
        tracker.log_artifact(out / "samples", "samples")
    return result
