"""Stage `train@<experiment>`: train one row of the grid (params `train`, its recipe, `ldp_losses`, its blur map's
entry, the experiment's entry and `mlflow`)."""

from ldp.runs import configure_training, train_experiment
from pipelines.common import one_arg, run_stage


def configure(params, argv):
    return configure_training(params, one_arg(argv, "experiment"))


run = train_experiment

if __name__ == "__main__":
    run_stage(configure, run)
