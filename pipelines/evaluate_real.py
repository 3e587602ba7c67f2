"""Stage `evaluate_real`: the input baselines and every trained row on each real DP test set of params `real_sets`
(prepared by stage real_data) → results/real/<set>/<row>/ (metrics.json, per_image.csv, scores.json, samples/),
written like evaluate@<experiment>, plus results/real/index.json.

A row whose blur map cannot be made on real data (the oracle needs ground-truth defocus) gets
results/real/<set>/<row>/not_available.json with the reason instead of numbers. Networks are rebuilt from their
checkpoints' config.json. Reads params `real_sets`, `experiments` (which rows), `evaluate`, `mlflow`, `paths`."""

import json
from dataclasses import dataclass

from ldp.config import ConfigError, section, subsection, where_of
from ldp.data.real import INDEX_JSON, RealSetConfig, load_real_sets
from ldp.fsutil import atomic_dir, atomic_write_json
from ldp.runs import Layout, MlflowConfig, dataset_source, layout_of, load_trained
from ldp.tables import NOT_AVAILABLE_JSON
from pipelines.common import no_args, run_stage


@dataclass(frozen=True)
class RealEvalJob:
    sets: dict[str, RealSetConfig]
    experiments: tuple[str, ...]
    evaluate: object  # ldp.evaluate.EvalConfig
    mlflow: MlflowConfig
    layout: Layout
    where: str


def configure(params, argv) -> RealEvalJob:
    from ldp.evaluate import EvalConfig

    no_args(argv, "evaluate_real")
    return RealEvalJob(load_real_sets(params), tuple(subsection(params, "experiments")),
                       section(params, "evaluate", EvalConfig), section(params, "mlflow", MlflowConfig),
                       layout_of(params), where_of(params))


def _checked_inputs(job: RealEvalJob) -> dict:
    """The real_data index (it must list exactly the sets of params) and every row's checkpoint, before any write."""
    layout = job.layout
    index_path = layout.real / INDEX_JSON
    try:
        index = json.loads(index_path.read_text())["sets"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{index_path}: no real-set index ({exc}); run the real_data stage first") from None
    if set(index) != set(job.sets):
        raise ConfigError(f"{index_path}: prepared sets {sorted(index)} differ from {job.where}:real_sets "
                          f"{sorted(job.sets)}; re-run the real_data stage")
    if job.sets:
        for name in job.experiments:
            weights = layout.checkpoints / name / "model.pt"
            if not weights.is_file():
                raise ConfigError(f"{weights}: no trained weights for experiment {name!r} "
                                  f"({layout.key_of('checkpoints')}); run its train stage first")
    return index


def run(job: RealEvalJob) -> None:
    from ldp.evaluate import evaluate, mean_metrics
    from ldp.models.input_baselines import INPUT_BASELINES
    from ldp.tracking import Tracker, run_name, standard_tags

    index = _checked_inputs(job)
    layout = job.layout
    summary = {}
    with atomic_dir(layout.results / "real") as tmp:
        for set_name, entry in index.items():
            dataset = layout.real / set_name / "dataset"
            source = dataset_source(dataset)
            rows = {}
            for name in INPUT_BASELINES:
                print(f"evaluate_real: {set_name}: {name}", flush=True)
                evaluate(name, None, dataset, out_dir=tmp / set_name / name, cfg=job.evaluate, data_source=source,
                         quiet=True)
                rows[name] = "ok"
            for name in job.experiments:
                trained = load_trained(layout.checkpoints / name)
                exp = trained.experiment.for_evaluation(job.evaluate)
                out = tmp / set_name / name
                status = entry["blurmaps"].get(exp.blurmap, f"unavailable: blur map {exp.blurmap!r} not prepared")
                if status != "ok":
                    atomic_write_json(out / NOT_AVAILABLE_JSON, {"experiment": name, "set": set_name,
                                                                 "reason": status.removeprefix("unavailable: ")})
                    rows[name] = status
                    print(f"evaluate_real: {set_name}: {name}: {status}", flush=True)
                    continue
                print(f"evaluate_real: {set_name}: {name}", flush=True)
                result = evaluate(exp.model, trained.weights, dataset, out_dir=out,
                                  blurmap_dir=layout.real / set_name / "blurmaps" / exp.blurmap, cfg=job.evaluate,
                                  model=trained.model, data_source=source, experiment=exp.to_json(), quiet=True)
                tags = standard_tags(exp.model, protocol=result.summary["protocol"], data_source=source,
                                     extra={"experiment": name, "stage": "evaluate_real", "real_set": set_name})
                with Tracker(job.evaluate, f"real-{set_name}", run_name(name, stage=f"real-{set_name}"), tags,
                             out_dir=out, enabled=job.mlflow.enabled) as tracker:
                    tracker.log_metrics(mean_metrics(result.summary, set_name))
                rows[name] = "ok"
            summary[set_name] = {"label": entry["label"], "source": entry["source"], "n_scenes": entry["n_scenes"],
                                 "rows": rows}
        atomic_write_json(tmp / INDEX_JSON, {"sets": summary})


if __name__ == "__main__":
    run_stage(configure, run)
