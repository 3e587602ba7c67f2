"""Stage `train@<experiment>`: train one row of the grid (params `train`, its recipe, `ldp_losses`, the entry)."""

from ldp.runs import train_experiment
from pipelines.common import one_arg, run_stage


def main(params: dict, argv: list[str]) -> None:
    train_experiment(params, one_arg(argv, "experiment"))


if __name__ == "__main__":
    run_stage(main)
