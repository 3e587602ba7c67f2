"""Stage `complexity`: params and fvcore MACs of every registered model and of the CLIP tower → results/."""

import torch

from ldp.complexity import ComplexityConfig, complexity_report, render_markdown, write_complexity
from ldp.config import section
from ldp.experiments import import_model_module, load_experiments
from pipelines.common import run_stage


def main(params: dict, argv: list[str]) -> None:
    for exp in load_experiments(params).values():
        import_model_module(exp)  # user baselines named in the grid are counted too
    cfg = section(params, "complexity", ComplexityConfig)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    report = complexity_report(cfg.models, cfg.sizes, cfg)
    write_complexity(report, cfg.out_json, cfg.out_md)
    print(render_markdown(report))


if __name__ == "__main__":
    run_stage(main)
