"""Stage `tables`: the paper's tables (paper value, ours, difference, 95 % CI, labels) → results/tables/.

Reads params `experiments` (which rows go in which table) and `tables`."""

from dataclasses import dataclass

from ldp.config import section, where_of
from ldp.experiments import ExperimentConfig, load_experiments
from ldp.runs import Layout
from ldp.tables import TablesConfig, check_table_labels, write_tables
from pipelines.common import no_args, run_stage


@dataclass(frozen=True)
class TablesJob:
    experiments: dict[str, ExperimentConfig]
    tables: TablesConfig
    layout: Layout = Layout()


def configure(params, argv) -> TablesJob:
    no_args(argv, "tables")
    experiments = load_experiments(params)
    check_table_labels(experiments, where_of(params))
    return TablesJob(experiments, section(params, "tables", TablesConfig))


def run(job: TablesJob) -> None:
    results = job.layout.results
    write_tables(job.experiments, results / "eval", results / "training", results / "tables", job.tables.profile)


if __name__ == "__main__":
    run_stage(configure, run)
