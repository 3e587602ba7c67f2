"""The ``ldp`` command: list-models, train, evaluate, deblur, complexity. The DVC stages call the same functions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXAMPLES = {
    "list-models": """examples:
  ldp list-models
  ldp list-models 'ldp-*'""",
    "train": """examples:
  ldp train ldp-small                      # one experiment of params.yaml (what `dvc repro train@ldp-small` runs)
  ldp train restormer-dp --params profiles/paper.yaml""",
    "evaluate": """examples:
  ldp evaluate --model restormer-dp --weights dual_pixel_defocus_deblurring.pth --data data/dataset
  ldp evaluate --model ldp-small --weights checkpoints/ldp-small/model.pt --data data/dataset \\
      --blurmap-dir data/blurmaps/clip-vitb32-ours --out results/my-eval
  ldp evaluate --experiment ldp-small      # as `dvc repro evaluate@ldp-small`""",
    "deblur": """examples:
  ldp deblur --left L.png --right R.png --out O.png --model ldp-small --weights CKPT
  ldp deblur --left L.png --right R.png --out O.png --model restormer-dp --weights restormer_dp.pth""",
    "complexity": """examples:
  ldp complexity --model ldp-small
  ldp complexity --model restormer-dp --size 256x256""",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ldp", description="ldp-bench: dual-pixel defocus deblurring benchmark suite")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, epilog=EXAMPLES[name],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    s = add("list-models", "List the registered networks.")
    s.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern (default: *)")

    s = add("train", "Train one experiment of the grid in a params file.")
    s.add_argument("experiment", help="a key under `experiments` in the params file")
    s.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")

    s = add("evaluate", "Evaluate weights under the dpdd16-restormer-v1 protocol.")
    s.add_argument("--experiment", help="evaluate an experiment of the params file (its trained weights)")
    s.add_argument("--params", default="params.yaml")
    s.add_argument("--model", help="registered model name")
    s.add_argument("--weights", help="checkpoint (official formats load as published); omit for random init")
    s.add_argument("--data", default="data/dataset", help="dataset root holding manifest.csv")
    s.add_argument("--split", default=None, help="split to evaluate (default: evaluate.split, i.e. test)")
    s.add_argument("--blurmap-dir", help="blur-map stage output (models that take a blur map)")
    s.add_argument("--out", default="results/eval/cli", help="output folder (default: results/eval/cli)")

    s = add("deblur", "Restore one DP pair of your own.")
    s.add_argument("--left", required=True)
    s.add_argument("--right", required=True)
    s.add_argument("--out", required=True, help="output PNG (16-bit)")
    s.add_argument("--model", default="ldp-small")
    s.add_argument("--weights", help="checkpoint; omit only to test the plumbing (random init)")
    s.add_argument("--blurmap", help=".npy blur map; default: estimated with the default blur-map config")

    s = add("complexity", "Params and fvcore MACs of a registered model.")
    s.add_argument("--model", required=True)
    s.add_argument("--size", default="1120x1680", help="HxW of the input (default: 1120x1680)")
    return p


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: expected HxW, e.g. 1120x1680, got {text!r}") from None
    return h, w


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"ldp {args.command}: error: {msg}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from ldp.config import load_params, section

    if args.command == "list-models":
        from ldp.registry import get_spec, list_models

        for name in list_models(args.pattern):
            spec = get_spec(name)
            print(f"{name:20s} input={spec.input_kind:11s} inference={spec.inference:6s} "
                  f"ldp_losses={'yes' if spec.ldp_losses else 'no':3s} {spec.description}")
        return 0
    if args.command == "train":
        from ldp.runs import train_experiment

        summary = train_experiment(load_params(args.params), args.experiment)
        print(json.dumps(summary, indent=2, default=str))
        return 0
    if args.command == "evaluate":
        from ldp.evaluate import EvalConfig, evaluate, format_summary

        if args.experiment:
            from ldp.runs import evaluate_experiment

            result = evaluate_experiment(load_params(args.params), args.experiment)
        else:
            if not args.model:
                raise ValueError("give --model (and --weights), or --experiment")
            params = load_params(args.params) if Path(args.params).is_file() else {}
            result = evaluate(args.model, args.weights, args.data, split=args.split, out_dir=args.out,
                              blurmap_dir=args.blurmap_dir, cfg=section(params, "evaluate", EvalConfig))
        print(format_summary(result.summary))
        return 0
    if args.command == "deblur":
        from ldp.deblur import deblur_pair

        record = deblur_pair(args.left, args.right, args.out, args.model, args.weights, blurmap=args.blurmap)
        print(json.dumps(record, indent=2, default=str))
        return 0
    if args.command == "complexity":
        from ldp.complexity import count_model

        print(json.dumps(count_model(args.model, _size(args.size)), indent=2, default=str))
        return 0
    raise ValueError(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
