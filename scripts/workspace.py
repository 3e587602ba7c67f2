"""A work copy of the project for running a params profile through `dvc repro` without touching the checkout:
``<work>/repo`` holds the code, the profile resolved into its params.yaml, and its own git, DVC cache and MLflow
store. Used by scripts/rehearse_paper.py and scripts/run_cpu_profile.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CODE = ["ldp", "baselines", "pipelines", "notebooks", "profiles", "dvc.yaml", "params.yaml", "pyproject.toml",
        ".dvcignore", ".gitignore", "results/README.md"]
BIN = Path(sys.executable).parent


def find_shared(probe: str) -> Path | None:
    """The shared folder (``../shared`` beside the checkout, or ``$LDP_SHARED``) when it holds ``probe``."""
    for base in (REPO.parent / "shared", Path(os.environ.get("LDP_SHARED", "/nonexistent"))):
        if (base / probe).exists():
            return base
    return None


def sync_code(repo: Path) -> None:
    """Copy the project's code into ``repo``, replacing what an earlier run copied (data, checkpoints, results and
    the DVC cache stay, so a later `dvc repro` re-runs only the stages whose code or params changed)."""
    for item in CODE:
        src, dst = REPO / item, repo / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)


def write_params(repo: Path, params: Mapping[str, Any], header: str) -> None:
    (repo / "params.yaml").write_text(f"# {header}\n" + yaml.safe_dump(dict(params), sort_keys=False))


def workspace_env(repo: Path, home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME")}
    env.update({"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
                "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(repo), "PYTHONUNBUFFERED": "1"})
    if home is not None:
        env.update({"HOME": str(home), "HF_HOME": str(home / "hf"), "HF_HUB_OFFLINE": "1"})
    return env


def run(args: list[str], cwd: Path, env: Mapping[str, str], log: Path, echo: bool = False) -> None:
    """Run ``args`` in ``cwd``, appending its output to ``log`` (and to the terminal with ``echo``); a failure
    exits with the command, its status and the log's tail."""
    print("$", " ".join(args), flush=True)
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(args)}\n")
        fh.flush()
        if echo:
            proc = subprocess.Popen(args, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
            for line in proc.stdout:
                fh.write(line)
                sys.stdout.write(line)
            code = proc.wait()
        else:
            code = subprocess.run(args, cwd=cwd, env=dict(env), stdout=fh, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = log.read_text()[-4000:]
        raise SystemExit(f"{' '.join(args)} failed (exit {code}); log {log}:\n{tail}")


def init_repo(repo: Path, env: Mapping[str, str], log: Path, who: str) -> None:
    """git + DVC in ``repo`` (once), with a local identity and DVC analytics off."""
    if (repo / ".dvc").is_dir():
        return
    dvc = str(BIN / "dvc")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", f"ldp-bench {who}"],
                ["git", "config", "user.email", f"{who}@localhost"], [dvc, "init", "-q"],
                [dvc, "config", "core.analytics", "false"]):
        run(cmd, repo, env, log)
