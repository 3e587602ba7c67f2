"""End to end through DVC, on a tiny copy of the repo: one new file in baselines/ plus one params entry puts a
toy baseline in the grid, the tables and the rendered notebooks; a second `dvc repro` is a no-op; changing one
experiment's params re-runs only its own stages; `dvc exp run -S`, `dvc exp run --queue` and `dvc queue start -j 2`
work, and their MLflow runs (default store: the repo's mlflow.db, also from DVC's temporary copies) carry the
DVC experiment name."""

import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COPY = ["ldp", "baselines", "pipelines", "notebooks", "dvc.yaml", "pyproject.toml", ".dvcignore", ".gitignore",
        "results/README.md"]

TOY_BASELINE = '''"""A toy DP baseline: one 3x3 conv on the DP pair, added to the mean of the two views."""
import torch
from torch import nn

from ldp.registry import register_model


class ToyNet(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(6, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, x):
        return (x[:, :3] + x[:, 3:6]) / 2 + self.body(x)


@register_model("toy-net", input_kind="dp", description="test-only toy baseline")
def toy_net(tiny: bool = False, **overrides):
    return ToyNet(**overrides)
'''

PARAMS = {
    # dvc.yaml's stages declare `paths` (DVC wants the key), and their outs are at these defaults
    "paths": {"dataset": "data/dataset", "blurmaps": "data/blurmaps", "checkpoints": "checkpoints",
              "results": "results"},
    "data": {"source": "synthetic", "synthetic": {"seed": 1, "height": 64, "width": 96, "train": 3, "val": 1,
                                                  "test": 2}},
    "blurmaps": {"none": {"estimator": "none"}, "oracle": {"estimator": "oracle"}},
    "train": {"iters": 3, "patch_size": 32, "batch_size": 2, "val": {"every": 3, "crop": 32, "samples": 1},
              "checkpoint_every": 3},
    "ldp_losses": {"bwl": 1.0},
    "recipes": {"plain": {"loss": {"charbonnier": 1.0}}, "ldp": {"loss": {"charbonnier": 1.0}}},
    "experiments": {
        "toy-net": {"model": "toy-net", "module": "baselines.toy_net", "label": "Toy baseline",
                    "blurmap": "none", "recipe": "plain", "tables": {"main": None}},
        "ldp-tiny": {"model": "ldp-small", "label": "LDP (tiny)", "blurmap": "oracle", "recipe": "plain",
                     "ldp_losses": True, "train": {"model_overrides": {"tiny": True}},
                     "tables": {"main": "main/ldp-small", "blurmap-sources": None}},
    },
    "evaluate": {"save_samples": 2, "bootstrap": 200, "lpips": False},
    "complexity": {"models": ["toy-net", "ldp-small"], "modules": ["baselines.toy_net"], "sizes": [[32, 32]],
                   "fit_sizes": [[16, 16], [16, 32]], "clip_models": [], "clip_whole_image": [],
                   "model_overrides": {"ldp-small": {"tiny": True}}},
    "mlflow": {"enabled": True},
    "figures": {"blurmaps": ["oracle"], "bpa_experiment": "ldp-tiny", "qualitative": ["ldp-tiny", "toy-net"],
                "crop": 32},
    "report": {"timeout_s": 300},
    # declared by the real_data, evaluate_real and tables stages: DVC wants the keys, even when empty
    "real_sets": {},
    "not_runnable": {},
}


def _run(args, cwd, env):
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    """A git + DVC repo with the toy baseline, after one `dvc repro`: ``(work, env, dvc)``."""
    tmp_path = tmp_path_factory.mktemp("e2e")
    work = tmp_path / "repo"
    work.mkdir()
    for item in COPY:
        src = REPO / item
        dst = work / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    (work / "baselines" / "toy_net.py").write_text(TOY_BASELINE)  # the one new file
    (work / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    # as on a user's machine: default MLflow store, and Python writing __pycache__ into the code deps
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "PYTHONDONTWRITEBYTECODE")}
    env.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
                "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(work)})
    dvc = str(Path(sys.executable).parent / "dvc")
    _run(["git", "init", "-q"], work, env)
    _run(["git", "config", "user.name", "ldp-bench test"], work, env)  # what `make repro-env` sets up
    _run(["git", "config", "user.email", "test@localhost"], work, env)
    _run([dvc, "init", "-q"], work, env)
    _run([dvc, "config", "core.analytics", "false"], work, env)

    _run([dvc, "repro"], work, env)
    return work, env, dvc


@pytest.mark.slow
@pytest.mark.e2e
def test_toy_baseline_flows_through_the_whole_pipeline(tiny_repo):
    work, env, dvc = tiny_repo

    main = pd.read_csv(work / "results" / "tables" / "main.csv")
    assert list(main["experiment"]) == ["input-combined", "input-average", "toy-net", "ldp-tiny"]  # inputs first
    assert main["gain_psnr_ci_lo"].le(main["gain_psnr"]).all() and main["n_paired"].eq(2).all()
    toy = main.set_index("experiment").loc["toy-net"]
    assert 0 < toy["psnr"] < 100 and toy["psnr_ci_lo"] <= toy["psnr"] <= toy["psnr_ci_hi"]
    assert "3 iterations of recipe 'plain'" in toy["labels"] and "not the DPDD test set (synthetic" in toy["labels"]
    ldp_row = main.set_index("experiment").loc["ldp-tiny"]  # synthetic data, 3 iterations: no Δ against the paper
    assert ldp_row["paper_psnr"] == pytest.approx(26.9) and math.isnan(ldp_row["diff_psnr"])
    assert not ldp_row["comparable"] and "not the DPDD test set" in ldp_row["not_comparable_because"]
    metrics = json.loads((work / "results" / "eval" / "toy-net" / "metrics.json").read_text())
    assert metrics["protocol"] == "dpdd16-restormer-v1" and metrics["n_images"] == 2
    scores = json.loads((work / "results" / "eval" / "toy-net" / "scores.json").read_text())
    assert scores["all"]["psnr"] == pytest.approx(metrics["metrics"]["all"]["psnr"]["mean"])
    shown = json.loads(_run([dvc, "metrics", "show", "--json"], work, env))  # what `dvc metrics show` tabulates
    shown_files = next(iter(shown.values()))["data"]
    assert shown_files["results/eval/toy-net/scores.json"]["data"] == scores
    assert "psnr" in shown_files["results/training/toy-net/scores.json"]["data"]["val"]
    complexity = json.loads((work / "results" / "complexity.json").read_text())
    assert "toy-net" in complexity["models"]
    html = (work / "results" / "report" / "01-main-table.html").read_text()
    assert "Toy baseline" in html and "Not a reproduction" in html
    for nb in ("02-ablations", "03-complexity", "04-figures"):
        assert (work / "results" / "report" / f"{nb}.html").is_file()

    t0 = time.perf_counter()
    out = _run([dvc, "repro"], work, env)
    print(f"second dvc repro: {time.perf_counter() - t0:.1f} s")
    assert "Running stage" not in out

    original = (work / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["experiments"]["toy-net"]["train"] = {"iters": 4}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run([dvc, "status"], work, env)
    (work / "params.yaml").write_text(original)
    assert "train@toy-net" in status
    assert "train@ldp-tiny" not in status and "evaluate@ldp-tiny" not in status and "blurmaps@" not in status


def _mlflow_runs(db: Path) -> list[tuple[str, str]]:
    """(run name, DVC_EXP_NAME tag) of every run in a sqlite MLflow store, read with sqlite3 (no server)."""
    with sqlite3.connect(db) as con:
        return con.execute("SELECT runs.name, tags.value FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
                           "WHERE tags.key = 'DVC_EXP_NAME'").fetchall()


@pytest.mark.slow
@pytest.mark.e2e
def test_dvc_experiments_and_queue_are_tracked_under_their_names(tiny_repo):
    work, env, dvc = tiny_repo
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-q", "-m", "baseline"], work, env)
    db = work / "mlflow.db"
    assert {tag for _, tag in _mlflow_runs(db)} == {""}  # plain `dvc repro`: no DVC experiment

    out = _run([dvc, "exp", "run", "-S", "+experiments.toy-net.train.iters=4", "-n", "toy-iters4"], work, env)
    assert "Running stage 'train@toy-net'" in out and "Running stage 'train@ldp-tiny'" not in out
    _run(["git", "checkout", "--", "."], work, env)  # back to the baseline params for the queued runs
    for iters in (5, 6):
        _run([dvc, "exp", "run", "--queue", "-S", f"+experiments.toy-net.train.iters={iters}", "-n",
              f"toy-iters{iters}"], work, env)
    _run([dvc, "queue", "start", "-j", "2"], work, env)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = _run([dvc, "queue", "status"], work, env)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    _run([dvc, "queue", "stop", "--kill"], work, env)
    assert "Failed" not in status, status + _run([dvc, "queue", "logs", "toy-iters5"], work, env)
    shown = _run([dvc, "exp", "show", "--no-pager", "--csv"], work, env)
    for name in ("toy-iters4", "toy-iters5", "toy-iters6"):
        assert name in shown, shown

    runs = _mlflow_runs(db)  # the queued runs ran in .dvc/tmp/exps copies and still logged here
    for name in ("toy-iters4", "toy-iters5", "toy-iters6"):
        tagged = {run for run, tag in runs if tag == name}
        assert {f"toy-net:train@{name}", f"toy-net:evaluate@{name}"} <= tagged, runs  # the changed experiment
        assert not any(run.startswith("ldp-tiny") for run in tagged), tagged  # untouched experiment: not re-run


def _doc_steps() -> list[tuple[str, str, str]]:
    """(language, target, body) of every fenced block marked ``step`` in docs/adding-a-baseline.md, in order."""
    text = (REPO / "docs" / "adding-a-baseline.md").read_text()
    return [(m["lang"], m["target"] or "", m["body"])
            for m in re.finditer(r"```(?P<lang>\w+) step(?:=(?P<target>\S+))?\n(?P<body>.*?)```", text, re.S)]


@pytest.mark.slow
@pytest.mark.e2e
def test_adding_a_baseline_as_the_doc_says(tiny_repo):
    """Runs docs/adding-a-baseline.md's steps literally (last in this module: it adds a row to the tiny repo)."""
    work, env, dvc = tiny_repo
    steps = _doc_steps()
    assert [(lang, target) for lang, target, _ in steps] == [
        ("bash", ""), ("python", "baselines/__init__.py"), ("yaml", "params.yaml:experiments"), ("bash", "")]
    for lang, target, body in steps:
        if lang == "bash":
            for line in body.strip().splitlines():
                cmd = line.split("#")[0].split()
                out = _run([dvc if cmd[0] == "dvc" else cmd[0], *cmd[1:]], work, env)
                if cmd[:2] == ["dvc", "repro"] and "train@my-net" in cmd:
                    assert "Running stage 'train@my-net'" in out and "Running stage 'train@toy-net'" not in out
        elif target == "baselines/__init__.py":
            init = work / "baselines" / "__init__.py"
            lines = [body.strip() if line.startswith("from baselines import") else line
                     for line in init.read_text().splitlines()]
            assert body.strip() in lines  # the doc's line replaced the one import line
            init.write_text("\n".join(lines) + "\n")
        else:
            params = yaml.safe_load((work / "params.yaml").read_text())
            params["experiments"].update(yaml.safe_load(body))
            (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    listed = _run([str(Path(sys.executable).parent / "ldp"), "list-models", "my-*"], work, env)
    assert listed.startswith("my-net")
    main = pd.read_csv(work / "results" / "tables" / "main.csv").set_index("experiment")
    assert main.loc["my-net", "label"] == "My network (DP)" and 0 < main.loc["my-net", "psnr"] < 100
    assert (work / "results" / "training" / "my-net" / "config.json").is_file()
    metrics = json.loads((work / "results" / "eval" / "my-net" / "metrics.json").read_text())
    assert metrics["experiment"]["model"] == "my-net"
    assert "my-net:train" in {run for run, _ in _mlflow_runs(work / "mlflow.db")}
