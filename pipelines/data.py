"""Stage `data`: build the dataset named by params `data` into data/dataset (manifest + DPDD layout)."""

from ldp.data.sources import load_data_config, prepare_dataset
from ldp.runs import Layout
from pipelines.common import no_args, run_stage


def configure(params, argv):
    no_args(argv, "data")
    return load_data_config(params)


def run(cfg) -> None:
    prepare_dataset(cfg, Layout().dataset)


if __name__ == "__main__":
    run_stage(configure, run)
