"""Stage `report`: execute the result notebooks headless into <paths.results>/report/ (.ipynb, and .html without
the code cells), each reading <paths.results>, and write report/index.html linking them.

Reads params `report` and `paths`."""

from dataclasses import dataclass

from ldp.config import section, where_of
from ldp.report import ReportConfig, check_notebooks, render_report
from ldp.runs import Layout, layout_of
from pipelines.common import no_args, run_stage


@dataclass(frozen=True)
class ReportJob:
    report: ReportConfig
    layout: Layout = Layout()


def configure(params, argv) -> ReportJob:
    no_args(argv, "report")
    cfg = section(params, "report", ReportConfig)
    check_notebooks(cfg, where_of(params))
    return ReportJob(cfg, layout_of(params))


def run(job: ReportJob) -> None:
    render_report(job.report, job.layout.results)


if __name__ == "__main__":
    run_stage(configure, run)
