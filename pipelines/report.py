"""Stage `report`: execute the result notebooks headless into results/report/ (.ipynb and .html)."""

from dataclasses import dataclass
from pathlib import Path

from ldp.config import section
from ldp.report import render_notebooks
from pipelines.common import RESULTS, run_stage


@dataclass(frozen=True)
class ReportConfig:
    notebooks: tuple[str, ...] = (
        "notebooks/01-main-table.ipynb",
        "notebooks/02-ablations.ipynb",
        "notebooks/03-complexity.ipynb",
        "notebooks/04-figures.ipynb",
    )
    timeout_s: int = 600


def main(params: dict, argv: list[str]) -> None:
    cfg = section(params, "report", ReportConfig)
    paths = [Path(p) for p in cfg.notebooks]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"params.yaml:report.notebooks: {p} not found")
    render_notebooks(paths, RESULTS / "report", {"results_dir": str(RESULTS.resolve())}, timeout=cfg.timeout_s)


if __name__ == "__main__":
    run_stage(main)
