"""Stage `figures`: the data behind the paper's figures → results/figures/ (ldp.figures; the notebooks plot it).

Reads params `figures` and `paths` only: the networks, their labels and blur-map configs come from the training runs'
config.json (<paths.checkpoints>/<experiment>/), the restorations from the evaluations
(<paths.results>/eval/<experiment>/)."""

from dataclasses import dataclass

from ldp.config import section, where_of
from ldp.experiments import CONFIG_JSON
from ldp.figures import FiguresConfig, FigureSources, check_figure_inputs, check_figures_config, make_figures
from ldp.runs import Layout, layout_of, load_trained
from pipelines.common import no_args, run_stage


@dataclass(frozen=True)
class FiguresJob:
    figures: FiguresConfig
    layout: Layout = Layout()

    @property
    def sources(self) -> FigureSources:
        return FigureSources(self.layout.dataset, self.layout.blurmaps, self.layout.results / "eval")

    def has_run(self, experiment: str) -> bool:
        return (self.layout.checkpoints / experiment / CONFIG_JSON).is_file()


def configure(params, argv) -> FiguresJob:
    no_args(argv, "figures")
    cfg = section(params, "figures", FiguresConfig)
    check_figures_config(cfg, where_of(params))
    return FiguresJob(cfg, layout_of(params))


def run(job: FiguresJob) -> None:
    check_figure_inputs(job.figures, job.sources, job.has_run)  # outputs of earlier stages: checked before writing
    make_figures(job.figures, job.sources, lambda name: load_trained(job.layout.checkpoints / name),
                 job.layout.results / "figures")


if __name__ == "__main__":
    run_stage(configure, run)
