"""Stage `data`: build the dataset named by params `data` into `paths.dataset` (manifest + DPDD layout)."""

from ldp.data.sources import load_data_config, prepare_dataset
from ldp.runs import layout_of
from pipelines.common import no_args, run_stage


def configure(params, argv):
    no_args(argv, "data")
    return load_data_config(params), layout_of(params)


def run(job) -> None:
    cfg, layout = job
    prepare_dataset(cfg, layout.dataset)


if __name__ == "__main__":
    run_stage(configure, run)
