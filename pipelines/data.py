"""Stage `data`: build the dataset named by params `data` into data/dataset (manifest + DPDD layout)."""

from ldp.data.sources import load_data_config, prepare_dataset
from pipelines.common import DATASET, run_stage


def main(params: dict, argv: list[str]) -> None:
    prepare_dataset(load_data_config(params), DATASET)


if __name__ == "__main__":
    run_stage(main)
