"""Stage `tables`: the paper's tables (paper value, ours, difference, 95 % CI, labels) → results/tables/."""

from dataclasses import dataclass
from typing import Literal

from ldp.config import section
from ldp.experiments import load_experiments
from ldp.tables import write_tables
from pipelines.common import RESULTS, run_stage


@dataclass(frozen=True)
class TablesConfig:
    profile: Literal["smoke", "paper"] = "smoke"


def main(params: dict, argv: list[str]) -> None:
    cfg = section(params, "tables", TablesConfig)
    write_tables(load_experiments(params), RESULTS / "eval", RESULTS / "training", RESULTS / "tables", cfg.profile)


if __name__ == "__main__":
    run_stage(main)
