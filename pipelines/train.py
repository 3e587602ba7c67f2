"""Stage `train@<experiment>`: train one row of the grid (params `train`, its recipe, `ldp_losses`, its blur map's
entry, the experiment's entry, `mlflow` and `paths`: it reads <paths.dataset> and <paths.blurmaps>/<id>, writes
<paths.checkpoints>/<experiment> and <paths.results>/training/<experiment>).

With `train.processes` > 1 (or `auto` and several GPUs) the stage re-runs itself under torchrun (ldp/train/launch.py);
rank 0 does the whole job (outputs, MLflow), the other ranks only join the training."""

import sys

from ldp.runs import TrainJob, configure_training, train_experiment
from ldp.train import run_training
from ldp.train.engine import launch_rank
from ldp.train.launch import relaunch_if_wanted
from pipelines.common import one_arg, run_stage


def configure(params, argv):
    return configure_training(params, one_arg(argv, "experiment"))


def run(job: TrainJob) -> None:
    exp, layout = job.experiment, job.layout
    status = relaunch_if_wanted(exp.train, "pipelines.train", sys.argv[1:], exp.key_path)
    if status is not None:
        if status:
            sys.exit(status)  # the ranks have printed their error
        return
    if launch_rank() != 0:
        run_training(exp.train, exp.model, layout.dataset, layout.checkpoints / exp.name,
                     blurmap_dir=layout.blurmaps / exp.blurmap, restart=job.restart, key_path=exp.key_path)
        return
    train_experiment(job)


if __name__ == "__main__":
    run_stage(configure, run)
