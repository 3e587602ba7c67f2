"""Stage `tables`: the paper's tables (paper value, ours, difference, 95 % CI, labels) and the protocol drift table
(protocol_drift.csv/.md: each run under every evaluation protocol, paired difference from the default; the input
baselines and experiments first, then any other folder of results/eval with a protocols.json, e.g. a restorations
folder scored with `ldp evaluate --restorations`) →
results/tables/.

Also one table per real DP test set (real-<set>.csv, from stage evaluate_real's results/real/) and checks.md (does
every trained row beat its input, the oracle map against a zero map, the best row on each real set).

Reads params `experiments` (which rows go in which table) and `not_runnable` (rows shown with a reason, no numbers);
the labels come from the evaluations' metrics.json, the drift from their protocols.json."""

from dataclasses import dataclass, field

from ldp.config import where_of
from ldp.experiments import ExperimentConfig, load_experiments
from ldp.literature import write_literature_table
from ldp.models.input_baselines import INPUT_BASELINES
from ldp.protocol_drift import drift_files
from ldp.runs import Layout, layout_of
from ldp.tables import NotRunnable, check_table_labels, load_not_runnable, refuse_tables_section, write_tables
from pipelines.common import no_args, run_stage


@dataclass(frozen=True)
class TablesJob:
    experiments: dict[str, ExperimentConfig]
    layout: Layout = Layout()
    not_runnable: dict[str, NotRunnable] = field(default_factory=dict)


def configure(params, argv) -> TablesJob:
    no_args(argv, "tables")
    refuse_tables_section(params)
    experiments = load_experiments(params)
    check_table_labels(experiments, where_of(params))
    return TablesJob(experiments, layout_of(params), load_not_runnable(params))


def run(job: TablesJob) -> None:
    results = job.layout.results
    runs = [*INPUT_BASELINES, *job.experiments]
    real = results / "real"
    write_tables(job.experiments, results / "eval", results / "tables",
                 extra_files=drift_files(results / "eval", runs, others=True), not_runnable=job.not_runnable,
                 real_dir=real if (real / "index.json").is_file() else None)
    write_literature_table(results / "eval", results / "tables")  # after write_tables, which replaces the folder


if __name__ == "__main__":
    run_stage(configure, run)
