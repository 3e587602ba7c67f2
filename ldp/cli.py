"""The ``ldp`` command: list-models, show-config, train, evaluate, deblur, blurmap, complexity, profile-overrides.

The DVC stages call the same functions. Bad input (a params key, a file, an argument) is one line on stderr and
exit status 2 (:mod:`ldp.errors`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXAMPLES = {
    "list-models": """examples:
  ldp list-models
  ldp list-models 'ldp-*'""",
    "show-config": """examples:
  ldp show-config ldp-small                # every resolved value and the params layer it came from
  ldp show-config restormer-dp --params profiles/paper.yaml   # also where its paths (dataset...) point""",
    "profile-overrides": """examples:
  ldp profile-overrides profiles/paper.yaml   # the `dvc exp run -S` arguments that turn params.yaml into it""",
    "train": """examples:
  ldp train ldp-small                      # one experiment of params.yaml (what `dvc repro train@ldp-small` runs)
  ldp train restormer-dp --params profiles/paper.yaml
  ldp train ldp-small --restart            # discard an interrupted run of another config and start anew
  ldp train ldp-small --params exp/params.yaml   # data and outputs where exp/params.yaml's `paths` say""",
    "evaluate": """examples:
  ldp evaluate --model restormer-dp --weights dual_pixel_defocus_deblurring.pth --data data/dataset
  ldp evaluate --model ldp-small --weights checkpoints/ldp-small/model.pt --data data/dataset \\
      --blurmap-dir data/blurmaps/clip-vitb32-ours --out results/my-eval
  ldp evaluate --experiment ldp-small      # as `dvc repro evaluate@ldp-small`
  ldp evaluate --model input-average --data data/dataset   # an input baseline: no weights (dvc repro inputs)
  ldp evaluate --experiment ldp-small --protocols all      # every protocol in one pass, with the drift table
  ldp evaluate --restorations results/published/ifan --data data/dataset --protocols all --out results/eval/ifan
                                           # score a folder of restored PNGs (one per test scene), no model""",
    "deblur": """examples:
  ldp deblur --left L.png --right R.png --out O.png --model ldp-small --weights CKPT
  ldp deblur --left L.png --right R.png --out O.png --model restormer-dp --weights restormer_dp.pth""",
    "blurmap": """examples:
  ldp blurmap --left L.png --right R.png --out MAP.npy --estimator classical
  ldp blurmap --left L.png --right R.png --out MAP.npy --params params.yaml --map clip-vitb32-ours
  ldp blurmap --data data/dataset --estimator oracle --out maps/oracle        # a prepared dataset (manifest.csv)
  ldp blurmap --data ~/dpdd --estimator clip --weights openai --split test    # DPDD's test_l/source, test_r/source
  ldp blurmap --data captures/ --estimator clip --clip-model ViT-B-16 --prompt-format ours   # *_L.png/*_R.png""",
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

    s = add("show-config", "Print an experiment as resolved from a params file, each value with its source.")
    s.add_argument("experiment", help="a key under `experiments` in the params file")
    s.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")

    s = add("profile-overrides", "Print the `dvc exp run -S` overrides that turn params.yaml into a profile.")
    s.add_argument("profile", help="a profile file (profiles/*.yaml, which extends params.yaml)")

    s = add("train", "Train one experiment of the grid in a params file.")
    s.add_argument("experiment", help="a key under `experiments` in the params file")
    s.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    s.add_argument("--restart", action="store_true",
                   help="discard an interrupted run of another config (a finished run stays until the new one ends)")

    s = add("evaluate", "Evaluate weights (or a folder of restorations) under the dpdd16-restormer-v1 protocol "
                        "and, with --protocols, the others (docs/protocols.md).")
    s.add_argument("--experiment", help="evaluate an experiment of the params file (its trained weights)")
    s.add_argument("--params", default="params.yaml")
    s.add_argument("--model", help="registered model name")
    s.add_argument("--weights", help="checkpoint (official formats load as published); omit for random init "
                                    "(the input baselines input-combined, input-average take none)")
    s.add_argument("--data", default="data/dataset", help="dataset root holding manifest.csv")
    s.add_argument("--split", default=None, help="split to evaluate (default: evaluate.split, i.e. test)")
    s.add_argument("--blurmap-dir", help="blur-map stage output (models that take a blur map)")
    s.add_argument("--out", default="results/eval/cli", help="output folder (default: results/eval/cli)")
    s.add_argument("--restorations", help="score this folder of restored PNGs (8- or 16-bit, named like the split's "
                                          "scenes) instead of running a model")
    s.add_argument("--protocol", help="the protocol of metrics.json (default: evaluate.protocol, dpdd16-restormer-v1)")
    s.add_argument("--protocols", help="also score under these protocols in the same pass: 'all' or a comma list "
                                       "(default: evaluate.protocols); protocols.json holds them and the drift")

    s = add("deblur", "Restore one DP pair of your own.")
    s.add_argument("--left", required=True)
    s.add_argument("--right", required=True)
    s.add_argument("--out", required=True, help="output PNG (16-bit)")
    s.add_argument("--model", help="registered model (default: the one the --weights were trained as, from the "
                                   "config.json beside them)")
    s.add_argument("--weights", help="checkpoint; omit only to test the plumbing (random init)")
    s.add_argument("--blurmap", help=".npy blur map; default: estimated with the default blur-map config")

    s = add("blurmap", "Estimate blur maps for one DP pair or for every scene of a DP folder.")
    s.add_argument("--left", help="left view (pair mode, with --right and --out MAP.npy)")
    s.add_argument("--right", help="right view (pair mode)")
    s.add_argument("--defocus", help="pair mode, oracle: the ground-truth signed defocus map (.npy, H×W)")
    s.add_argument("--data", help="folder mode: a prepared dataset (manifest.csv), a DPDD-layout folder "
                                  "({split}_l/source... or inputL/inputR) or a folder of *_L.png/*_R.png pairs")
    s.add_argument("--out", help="pair mode: the map (.npy, patch grid; its meta beside as MAP.meta.json); folder "
                                 "mode: the output folder (default: blurmaps/<map id or estimator>)")
    s.add_argument("--params", help="params file of --map (default: params.yaml)")
    s.add_argument("--map", help="start from the entry blurmaps.<MAP> of --params; the options below override it")
    s.add_argument("--estimator", help="clip | classical | oracle | none (default: the --map entry's, else clip)")
    s.add_argument("--clip-model", help="ViT-B-32 | ViT-B-16 | RN50 (default: the --map entry's, else ViT-B-32)")
    s.add_argument("--weights", help="CLIP weights: openai | none (random init, smoke only) | a checkpoint path")
    s.add_argument("--prompt-format", help="ours | diff_lr | inconsistent | halves | single (default: ours)")
    s.add_argument("--patch-size", type=int)
    s.add_argument("--device", help="auto (cuda when available), cpu, cuda, cuda:1 ...")
    s.add_argument("--split", help="folder mode: only this split (default: every scene)")
    s.add_argument("--no-progress", action="store_true", help="folder mode: no progress bar")

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
    from ldp.errors import run_guarded

    args = _parser().parse_args(argv)
    return run_guarded(lambda: _run(args), f"ldp {args.command}")


def _run(args: argparse.Namespace) -> None:
    from ldp.config import load_params, section

    if args.command == "list-models":
        from ldp.registry import get_spec, list_models

        for name in list_models(args.pattern):
            spec = get_spec(name)
            print(f"{name:20s} input={spec.input_kind:11s} inference={spec.inference:6s} {spec.description}")
    elif args.command == "show-config":
        from ldp.experiments import resolve
        from ldp.runs import configure_evaluation, dataset_source, layout_of

        params = load_params(args.params)
        layout = layout_of(params)
        exp = resolve(params, args.experiment, data_source=dataset_source(layout.dataset))
        exp = exp.for_evaluation(configure_evaluation(params, args.experiment, layout).evaluate)
        print(exp.describe(), end="")
        print("paths:")
        for name in ("dataset", "blurmaps", "checkpoints", "results"):
            print(f"  {name:28s} {str(getattr(layout, name)):28s} {layout.key_of(name)}")
    elif args.command == "profile-overrides":
        from ldp.config import profile_overrides

        print("\n".join(profile_overrides(args.profile)))
    elif args.command == "train":
        from ldp.runs import configure_training, train_experiment

        job = configure_training(load_params(args.params), args.experiment, restart=args.restart)
        print(json.dumps(train_experiment(job), indent=2, default=str))
    elif args.command == "evaluate":
        import dataclasses

        from ldp.evaluate import PROTOCOLS_JSON, EvalConfig, evaluate, evaluate_restorations, format_summary
        from ldp.protocol_drift import format_drift, read_protocols
        from ldp.protocols import parse_protocol_list

        overrides = {"protocol": args.protocol} if args.protocol else {}
        if args.protocols:
            overrides["protocols"] = parse_protocol_list(args.protocols)
        if sum(bool(x) for x in (args.experiment, args.model, args.restorations)) != 1:
            raise ValueError("give one of --model (and --weights), --experiment or --restorations")
        if args.experiment:
            from ldp.runs import configure_evaluation, evaluate_experiment

            job = configure_evaluation(load_params(args.params), args.experiment)
            job = dataclasses.replace(job, evaluate=dataclasses.replace(job.evaluate, **overrides))
            result = evaluate_experiment(job)
        else:
            params = load_params(args.params) if Path(args.params).is_file() else {}
            cfg = dataclasses.replace(section(params, "evaluate", EvalConfig), **overrides)
            if args.restorations:
                result = evaluate_restorations(args.restorations, args.data, split=args.split, out_dir=args.out,
                                               cfg=cfg)
            else:
                result = evaluate(args.model, args.weights, args.data, split=args.split, out_dir=args.out,
                                  blurmap_dir=args.blurmap_dir, cfg=cfg)
        print(format_summary(result.summary))
        if len(result.summary.get("protocols") or []) > 1:
            print(format_drift(read_protocols(result.out_dir / PROTOCOLS_JSON)))
    elif args.command == "deblur":
        from ldp.deblur import deblur_pair

        record = deblur_pair(args.left, args.right, args.out, args.model, args.weights, blurmap=args.blurmap)
        print(json.dumps(record, indent=2, default=str))
    elif args.command == "blurmap":
        from ldp.blurmap.command import run_blurmap_command

        print(json.dumps(run_blurmap_command(args), indent=2, default=str))
    elif args.command == "complexity":
        from ldp.complexity import count_model

        print(json.dumps(count_model(args.model, _size(args.size)), indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
