"""The CPU profile's up-front estimate (scripts/run_cpu_profile.py) and the step timer under it (ldp.speed)."""

import math
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import run_cpu_profile  # noqa: E402

from ldp.speed import seconds_per_step  # noqa: E402


def test_the_step_timer_runs_the_trainer_and_restores_the_thread_count():
    before = torch.get_num_threads()
    seconds = seconds_per_step("nafnet-dp", patch=16, batch=1, threads=1, steps=1, warmup=0)
    assert math.isfinite(seconds) and seconds > 0
    assert torch.get_num_threads() == before


def test_the_estimate_scales_the_reference_run_by_the_probe(monkeypatch, capsys):
    ref = run_cpu_profile.REFERENCE
    monkeypatch.setattr("ldp.speed.seconds_per_step", lambda *a, **k: 2 * ref["probe_seconds_per_step"])
    est = run_cpu_profile.estimate()
    assert est["estimated_minutes"] == round(2 * ref["dvc_repro_minutes"], 1)
    assert est["probe"] == run_cpu_profile.PROBE and est["reference"] == ref
    run_cpu_profile.print_estimate(est)
    out = capsys.readouterr().out
    assert f"estimated {2 * ref['dvc_repro_minutes']:.0f} min" in out
    assert ("over the 120-min target" in out) == (2 * ref["dvc_repro_minutes"] > run_cpu_profile.TARGET_MINUTES)


def test_within_the_target_the_estimate_prints_no_warning(capsys):
    est = {"probe_seconds_per_step": 0.9, "estimated_minutes": 67.5}
    run_cpu_profile.print_estimate(est)
    assert "over the" not in capsys.readouterr().out
