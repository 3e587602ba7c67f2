"""Stage `complexity`: params and fvcore MACs of every registered model and of the CLIP tower → results/.

Reads only params `complexity` (models outside the repo are counted when `complexity.modules` names them)."""

import torch

from ldp.complexity import ComplexityConfig, complexity_report, render_markdown, write_complexity
from ldp.config import section
from pipelines.common import no_args, run_stage


def configure(params, argv) -> ComplexityConfig:
    no_args(argv, "complexity")
    return section(params, "complexity", ComplexityConfig)


def run(cfg: ComplexityConfig) -> None:
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    report = complexity_report(cfg.models, cfg.sizes, cfg)
    write_complexity(report, cfg.out_json, cfg.out_md)
    print(render_markdown(report))


if __name__ == "__main__":
    run_stage(configure, run)
