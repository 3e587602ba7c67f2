"""Stage `evaluate@<experiment>`: the trained weights under the evaluation protocol → results/eval/<experiment>/.

The network is rebuilt from the training run's config.json; only params `evaluate` and `mlflow` are read."""

from ldp.runs import configure_evaluation, evaluate_experiment
from pipelines.common import one_arg, run_stage


def configure(params, argv):
    return configure_evaluation(params, one_arg(argv, "experiment"))


run = evaluate_experiment

if __name__ == "__main__":
    run_stage(configure, run)
