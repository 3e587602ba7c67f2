"""Stage `report`: execute the result notebooks headless into results/report/ (.ipynb and .html).

Reads params `report`."""

from ldp.config import section, where_of
from ldp.report import ReportConfig, check_notebooks, render_report
from ldp.runs import Layout
from pipelines.common import no_args, run_stage


def configure(params, argv) -> ReportConfig:
    no_args(argv, "report")
    cfg = section(params, "report", ReportConfig)
    check_notebooks(cfg, where_of(params))
    return cfg


def run(cfg: ReportConfig) -> None:
    render_report(cfg, Layout().results)


if __name__ == "__main__":
    run_stage(configure, run)
