"""Bootstrap statistics (ldp.stats): the CI of a mean over images and the paired CI of a difference of two runs."""

import re

import numpy as np
import pandas as pd
import pytest

from ldp.stats import StatsError, bootstrap_ci, paired_bootstrap_diff


def test_bootstrap_ci_contains_mean_and_narrows():
    rng = np.random.default_rng(3)
    vals = rng.normal(26.0, 2.0, size=76)
    lo, hi = bootstrap_ci(vals, n=2000, seed=1)
    assert lo < vals.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * vals.std(ddof=1) / np.sqrt(76), rel=0.15)
    lo4, hi4 = bootstrap_ci(np.tile(vals, 4), n=2000, seed=1)
    assert (hi4 - lo4) < 0.6 * (hi - lo)
    assert bootstrap_ci(vals, n=500, seed=7) == bootstrap_ci(vals, n=500, seed=7)  # seeded
    assert all(np.isnan(bootstrap_ci([])))
    assert all(np.isnan(bootstrap_ci([1.0, np.nan])))


def _run(values, scenes=None):
    scenes = scenes or [f"s{i:02d}" for i in range(len(values))]
    return pd.DataFrame({"scene": scenes, "psnr": values})


def test_paired_diff_identical_runs_is_zero():
    vals = np.random.default_rng(0).normal(25, 3, 30)
    res = paired_bootstrap_diff(_run(vals), _run(vals), "psnr", n=1000, seed=0)
    assert (res["mean_diff"], res["ci_low"], res["ci_high"]) == (0.0, 0.0, 0.0)
    assert res["n_images"] == 30


def test_paired_diff_is_paired_and_aligned_by_scene():
    rng = np.random.default_rng(0)
    a = rng.normal(25, 3, 40)  # large spread between images...
    b = a - 0.2 + rng.normal(0, 0.05, 40)  # ...but a consistent +0.2 dB gain of a over b
    run_b = _run(b).iloc[::-1].reset_index(drop=True)  # row order must not matter
    res = paired_bootstrap_diff(_run(a), run_b, "psnr", n=2000, seed=0)
    assert res["ci_low"] <= res["mean_diff"] <= res["ci_high"]
    assert 0.15 < res["ci_low"] and res["ci_high"] < 0.25  # an unpaired CI would straddle 0
    assert res["frac_resamples_a_better"] == 1.0
    with pytest.raises(StatsError, match="different images"):
        paired_bootstrap_diff(_run(a[:5]), _run(a[:4]), "psnr")


def test_paired_diff_reads_run_folders(tmp_path):
    for name, vals in (("a", [25.0, 26.0, 27.0]), ("b", [24.0, 26.0, 26.0])):
        (tmp_path / name).mkdir()
        _run(vals).to_csv(tmp_path / name / "per_image.csv", index=False)
    res = paired_bootstrap_diff(tmp_path / "a", tmp_path / "b", "psnr", n=200)
    assert res["mean_diff"] == pytest.approx(2 / 3)


def test_paired_diff_lower_is_better_metrics_and_bad_input(tmp_path):
    a = pd.DataFrame({"scene": ["x", "y", "z"], "mae": [0.01, 0.02, 0.03]})
    b = pd.DataFrame({"scene": ["x", "y", "z"], "mae": [0.02, 0.03, 0.04]})
    res = paired_bootstrap_diff(a, b, "mae", n=100)
    assert res["mean_diff"] == pytest.approx(-0.01)
    assert res["frac_resamples_a_better"] == 1.0  # lower MAE is better
    assert paired_bootstrap_diff(a.assign(mae=np.nan), b, "mae")["mean_diff"] is None
    with pytest.raises(StatsError, match="needs columns 'scene' and 'psnr'"):
        paired_bootstrap_diff(a, b, "psnr")
    with pytest.raises(StatsError, match=re.escape(f"{tmp_path / 'missing'}: per-image CSV not found")):
        paired_bootstrap_diff(tmp_path / "missing", b, "mae")
    with pytest.raises(StatsError, match="resamples must be positive"):
        bootstrap_ci([1.0, 2.0], n=0)
