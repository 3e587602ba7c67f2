"""Stage `inputs`: the two input baselines (input-combined, input-average) under the evaluation protocol →
results/eval/<name>/, as `evaluate@<experiment>` writes a network's. They have no weights and no training.

Reads params `evaluate`, `mlflow` and `paths`."""

from dataclasses import dataclass

from ldp.config import section
from ldp.runs import Layout, MlflowConfig, dataset_source, layout_of
from pipelines.common import no_args, run_stage


@dataclass(frozen=True)
class InputsJob:
    evaluate: object  # ldp.evaluate.EvalConfig
    mlflow: MlflowConfig
    layout: Layout = Layout()


def configure(params, argv) -> InputsJob:
    from ldp.evaluate import EvalConfig

    no_args(argv, "inputs")
    return InputsJob(section(params, "evaluate", EvalConfig), section(params, "mlflow", MlflowConfig),
                     layout_of(params))


def run(job: InputsJob) -> None:
    from ldp.evaluate import evaluate, mean_metrics
    from ldp.models.input_baselines import INPUT_BASELINES
    from ldp.tracking import Tracker, run_name, standard_tags

    layout = job.layout
    layout.require_dataset()
    source = dataset_source(layout.dataset)
    for name in INPUT_BASELINES:
        out = layout.results / "eval" / name
        result = evaluate(name, None, layout.dataset, out_dir=out, cfg=job.evaluate, data_source=source or None)
        tags = standard_tags(name, protocol=result.summary["protocol"], data_source=source, clip_weights="n/a",
                             extra={"experiment": name, "stage": "evaluate", "table": "main", "blurmap": "none",
                                    "ldp_losses": False})
        with Tracker(job.evaluate, "main", run_name(name, stage="evaluate"), tags, out_dir=out,
                     enabled=job.mlflow.enabled) as tracker:
            tracker.log_metrics(mean_metrics(result.summary, "test"))
            tracker.log_artifact(out / "per_image.csv")


if __name__ == "__main__":
    run_stage(configure, run)
