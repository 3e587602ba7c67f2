"""Stage `blurmaps@<id>`: estimate one blur-map set (params `blurmaps.<id>`) for every scene of the dataset."""

from ldp.blurmap.estimate import BlurMapConfig, estimate_blurmaps
from ldp.config import section
from pipelines.common import BLURMAPS, DATASET, one_arg, run_stage


def main(params: dict, argv: list[str]) -> None:
    map_id = one_arg(argv, "blur-map id")
    if map_id not in (params.get("blurmaps") or {}):
        raise KeyError(f"params.yaml:blurmaps.{map_id}: no such blur-map entry")
    cfg = section(params, f"blurmaps.{map_id}", BlurMapConfig)
    estimate_blurmaps(cfg, DATASET, BLURMAPS / map_id)


if __name__ == "__main__":
    run_stage(main)
