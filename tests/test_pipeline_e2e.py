"""End to end through DVC, on a tiny copy of the repo: one new file in baselines/ plus one params entry puts a
toy baseline in the grid, the tables and the rendered notebooks; a second `dvc repro` is a no-op; changing one
experiment's params re-runs only its own stages."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COPY = ["ldp", "baselines", "pipelines", "notebooks", "dvc.yaml", "pyproject.toml", ".dvcignore", "results/README.md"]

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
    "data": {"source": "synthetic", "synthetic": {"seed": 1, "height": 64, "width": 96, "train": 3, "val": 1,
                                                  "test": 2}},
    "blurmaps": {"none": {"estimator": "none"}, "oracle": {"estimator": "oracle"}},
    "train": {"iters": 3, "patch_size": 32, "batch_size": 2, "val": {"every": 3, "crop": 32, "samples": 1},
              "checkpoint_every": 3},
    "ldp_losses": {"bwl": 1.0},
    "recipes": {"plain": {"loss": {"charbonnier": 1.0}}},
    "experiments": {
        "toy-net": {"model": "toy-net", "module": "baselines.toy_net", "label": "Toy baseline",
                    "blurmap": "none", "recipe": "plain", "tables": {"main": None}},
        "ldp-tiny": {"model": "ldp-small", "label": "LDP (tiny)", "blurmap": "oracle", "recipe": "plain",
                     "ldp_losses": True, "train": {"model_overrides": {"tiny": True}},
                     "tables": {"main": "main/ldp-small", "blurmap-sources": None}},
    },
    "evaluate": {"save_samples": 2, "bootstrap": 200, "lpips": False},
    "complexity": {"models": ["toy-net", "ldp-small"], "sizes": [[32, 32]], "fit_sizes": [[16, 16], [16, 32]],
                   "clip_models": [], "clip_whole_image": [], "model_overrides": {"ldp-small": {"tiny": True}}},
    "mlflow": {"enabled": True},
    "figures": {"blurmaps": ["oracle"], "bpa_experiment": "ldp-tiny", "qualitative": ["ldp-tiny", "toy-net"],
                "crop": 32},
    "tables": {"profile": "smoke"},
    "report": {"timeout_s": 300},
}


def _run(args, cwd, env):
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


@pytest.mark.slow
def test_toy_baseline_flows_through_the_whole_pipeline(tmp_path):
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
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(work),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    dvc = str(Path(sys.executable).parent / "dvc")
    _run(["git", "init", "-q"], work, env)
    _run([dvc, "init", "-q"], work, env)
    _run([dvc, "config", "core.analytics", "false"], work, env)

    _run([dvc, "repro"], work, env)

    main = pd.read_csv(work / "results" / "tables" / "main.csv")
    assert set(main["experiment"]) == {"toy-net", "ldp-tiny"}
    toy = main.set_index("experiment").loc["toy-net"]
    assert 0 < toy["psnr"] < 100 and toy["psnr_ci_lo"] <= toy["psnr"] <= toy["psnr_ci_hi"]
    assert "smoke schedule" in toy["labels"] and "synthetic" in toy["labels"]
    ldp_row = main.set_index("experiment").loc["ldp-tiny"]
    assert ldp_row["paper_psnr"] == pytest.approx(26.9) and ldp_row["diff_psnr"] == pytest.approx(
        ldp_row["psnr"] - 26.9)
    metrics = json.loads((work / "results" / "eval" / "toy-net" / "metrics.json").read_text())
    assert metrics["protocol"] == "dpdd16-restormer-v1" and metrics["n_images"] == 2
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

    params = yaml.safe_load((work / "params.yaml").read_text())
    params["experiments"]["toy-net"]["train"] = {"iters": 4}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run([dvc, "status"], work, env)
    assert "train@toy-net" in status
    assert "train@ldp-tiny" not in status and "evaluate@ldp-tiny" not in status and "blurmaps@" not in status
