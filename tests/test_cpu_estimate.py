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
    ref = run_cpu_profile.REFERENCES["fp32"]
    monkeypatch.setattr("ldp.speed.seconds_per_step", lambda *a, **k: 2 * ref["probe_seconds_per_step"])
    est = run_cpu_profile.estimate("fp32")
    assert est["estimated_minutes"] == round(2 * ref["dvc_repro_minutes"], 1)
    assert est["probe"] == run_cpu_profile.PROBE and est["reference"] == ref and est["precision"] == "fp32"
    run_cpu_profile.print_estimate(est)
    out = capsys.readouterr().out
    assert f"estimated {2 * ref['dvc_repro_minutes']:.0f} min" in out
    assert ("over the 120-min target" in out) == (2 * ref["dvc_repro_minutes"] > run_cpu_profile.TARGET_MINUTES)


def fake_probe(fp32: float, bf16: float):
    return lambda model, patch, batch, threads, precision, **k: {"fp32": fp32, "bf16": bf16}[precision]


def test_bf16_trains_only_where_the_probe_measures_it_faster(monkeypatch):
    params = {"train": {"precision": "bf16"}, "recipes": {"nafnet": {"iters": 9, "precision": "bf16"},
                                                         "restormer": {"precision": "fp32"}, "ldp": {}}}
    asked = run_cpu_profile.precision_settings(params)
    assert asked == {"train.precision": "bf16", "recipes.nafnet.precision": "bf16",
                     "recipes.restormer.precision": "fp32"}
    monkeypatch.setattr("ldp.speed.seconds_per_step", fake_probe(2.0, 1.2))
    fast = run_cpu_profile.estimate("bf16")
    assert fast["precision"] == "bf16" and fast["probe_seconds_per_step"] == {"fp32": 2.0, "bf16": 1.2}
    assert run_cpu_profile.choose_precision(params, fast) == []
    assert run_cpu_profile.precision_settings(params) == asked
    monkeypatch.setattr("ldp.speed.seconds_per_step", fake_probe(2.0, 1.9))  # 1.05x: not worth it
    slow = run_cpu_profile.estimate("bf16")
    assert slow["precision"] == "fp32"
    notes = run_cpu_profile.choose_precision(params, slow)
    assert sorted(n.split()[0] for n in notes) == ["recipes.nafnet.precision", "train.precision"]
    assert "bf16" not in run_cpu_profile.precision_settings(params).values()


def test_within_the_target_the_estimate_prints_no_warning(capsys):
    est = {"probe_seconds_per_step": {"fp32": 0.9}, "precision": "fp32", "estimated_minutes": 67.5,
           "reference": run_cpu_profile.REFERENCES["fp32"]}
    run_cpu_profile.print_estimate(est)
    assert "over the" not in capsys.readouterr().out
