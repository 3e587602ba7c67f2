"""Stage `tables`: the paper's tables (paper value, ours, difference, 95 % CI, labels) → results/tables/.

Reads params `experiments` (which rows go in which table); the labels come from the evaluations' metrics.json."""

from dataclasses import dataclass

from ldp.config import where_of
from ldp.experiments import ExperimentConfig, load_experiments
from ldp.literature import write_literature_table
from ldp.runs import Layout
from ldp.tables import check_table_labels, refuse_tables_section, write_tables
from pipelines.common import no_args, run_stage


@dataclass(frozen=True)
class TablesJob:
    experiments: dict[str, ExperimentConfig]
    layout: Layout = Layout()


def configure(params, argv) -> TablesJob:
    no_args(argv, "tables")
    refuse_tables_section(params)
    experiments = load_experiments(params)
    check_table_labels(experiments, where_of(params))
    return TablesJob(experiments)


def run(job: TablesJob) -> None:
    results = job.layout.results
    write_tables(job.experiments, results / "eval", results / "tables")
    write_literature_table(results / "eval", results / "tables")  # after write_tables, which replaces the folder


if __name__ == "__main__":
    run_stage(configure, run)
