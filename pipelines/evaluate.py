"""Stage `evaluate@<experiment>`: the trained weights under the evaluation protocol → results/eval/<experiment>/."""

from ldp.runs import evaluate_experiment
from pipelines.common import one_arg, run_stage


def main(params: dict, argv: list[str]) -> None:
    evaluate_experiment(params, one_arg(argv, "experiment"))


if __name__ == "__main__":
    run_stage(main)
