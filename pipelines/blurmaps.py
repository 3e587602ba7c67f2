"""Stage `blurmaps@<id>`: estimate one blur-map set (params `blurmaps.<id>`) for every scene of the dataset
(`paths.dataset`) into `paths.blurmaps`/<id>."""

from ldp.blurmap.estimate import BlurMapConfig, estimate_blurmaps
from ldp.config import ConfigError, section, subsection, where_of
from ldp.runs import layout_of
from pipelines.common import one_arg, run_stage


def configure(params, argv):
    map_id = one_arg(argv, "blur-map id")
    if map_id not in subsection(params, "blurmaps"):
        raise ConfigError(f"{where_of(params)}:blurmaps.{map_id}: no such blur-map entry")
    return map_id, section(params, f"blurmaps.{map_id}", BlurMapConfig), layout_of(params)


def run(job) -> None:
    map_id, cfg, layout = job
    estimate_blurmaps(cfg, layout.require_dataset(), layout.blurmaps / map_id)


if __name__ == "__main__":
    run_stage(configure, run)
