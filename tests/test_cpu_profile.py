"""The CPU profile (profiles/cpu.yaml, `make cpu`) end to end at micro sizes: scripts/run_cpu_profile.py with a
profile that extends cpu.yaml and shrinks only sizes and lengths, so its grid, its real sets (../shared/realdp), its
not_runnable rows, the checks and the report all run through `dvc repro` in a work copy, then get published."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import run_cpu_profile  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

MICRO = {
    "data": {"synthetic": {"height": 64, "width": 96, "train": 2, "val": 1, "test": 3}},
    "train": {"iters": 2, "patch_size": 48, "batch_size": 2, "val": {"every": 2, "crop": 48, "max_images": 1},
              "checkpoint_every": 2, "model_overrides": {"tiny": True}},
    "recipes": {"nafnet": {"iters": 2, "batch_size": 2}},
    "evaluate": {"save_samples": 1, "bootstrap": 100},
    "complexity": {"sizes": [[64, 96]]},
}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    if run_cpu_profile.find_shared(run_cpu_profile.REALDP) is None:
        pytest.skip("../shared/realdp not available")
    tmp = tmp_path_factory.mktemp("cpu_profile")
    profile = tmp / "micro.yaml"
    profile.write_text(yaml.safe_dump({"extends": str(REPO / "profiles" / "cpu.yaml"), **MICRO}))
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "run_cpu_profile.py"), "--work", str(tmp / "work"),
                          "--publish", str(tmp / "published"), "--profile", str(profile)],
                         capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return tmp


def test_the_grid_is_the_offline_rows_and_the_clip_rows_are_not_runnable(published):
    main = pd.read_csv(published / "published" / "tables" / "main.csv")
    assert list(main["experiment"][:2]) == ["input-combined", "input-average"]
    assert {"nafnet-dp", "ldp-small-gr-oracle", "ldp-small-gr-zero"} <= set(main["experiment"])
    sources = pd.read_csv(published / "published" / "tables" / "blurmap-sources.csv")
    assert list(sources["experiment"][:2]) == ["input-combined", "input-average"]
    assert {"ldp-small-oracle", "ldp-small-gr-oracle", "ldp-small-gr-classical", "ldp-small-gr-zero"} <= set(
        sources["experiment"])
    blank = main[main["not_run"].notna()]
    assert set(blank["experiment"]) == {"ldp-small", "ldp-large", "restormer-dp", "deeprft-dp"}
    assert blank["psnr"].isna().all()
    assert (blank.set_index("experiment").loc["ldp-small", "not_run"]
            == "needs OpenAI's CLIP weights: not runnable offline")
    sources = pd.read_csv(published / "published" / "tables" / "blurmap-sources.csv")
    assert {"ldp-small-gr-oracle", "ldp-small-gr-classical", "ldp-small-gr-zero"} <= set(sources["experiment"])


def test_every_trained_row_is_scored_on_both_real_sets(published):
    tables = published / "published" / "tables"
    canon = pd.read_csv(tables / "real-canon-half.csv").set_index("experiment")
    pixel4 = pd.read_csv(tables / "real-pixel4.csv").set_index("experiment")
    assert canon.loc["input-average", "n_images"] == 10 and pixel4.loc["input-average", "n_images"] == 2
    for df in (canon, pixel4):
        assert df.loc[["nafnet-dp", "ldp-small-gr-zero", "ldp-small-gr-classical"], "gain_psnr"].notna().all()
        assert df.loc["ldp-small-gr-oracle", "not_run"].startswith("not available on this set")
    checks = (tables / "checks.md").read_text()
    assert "ldp-small-gr-oracle minus ldp-small-gr-zero" in checks and "ldp-small-oracle minus" not in checks
    assert "## Real set canon-half: the best trained row" in checks and "## Real set pixel4" in checks


def test_the_report_and_the_run_record_are_published(published):
    out = published / "published"
    for nb in ("01-main-table", "07-real-scenes", "index"):
        assert (out / "report" / f"{nb}.html").is_file(), nb
    run = json.loads((out / "run.json").read_text())
    assert run["real_sets"] == ["canon-half", "pixel4"] and run["dvc_repro_seconds"] > 0 and run["machine"]["cpu"]
    assert (out / "training" / "nafnet-dp" / "val_log.csv").is_file()
    assert not any(p.suffix == ".png" for p in (out / "eval").rglob("*"))  # samples are not published


def test_the_training_rows_ran_in_lanes_and_each_one_was_tracked(published):
    # One lane per core at the profile's 1 thread; parallel lanes must not lose a row's MLflow run.
    from mlflow.tracking import MlflowClient

    rows = {"nafnet-dp", "ldp-small-oracle", "ldp-small-gr-oracle", "ldp-small-gr-classical", "ldp-small-gr-zero"}
    training = json.loads((published / "published" / "run.json").read_text())["training"]
    assert training["threads_per_lane"] == 1 and training["lanes"] == min(os.cpu_count(), len(rows))
    assert set(training["stage_seconds"]) == {f"train@{row}" for row in rows}
    client = MlflowClient(tracking_uri=f"sqlite:///{published / 'work' / 'repo' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.stage = 'train'")
    assert sorted(r.data.tags["experiment"] for r in runs) == sorted(rows)
    assert all(r.info.status == "FINISHED" for r in runs)


def test_every_row_trained_in_the_precision_the_probe_chose(published):
    # The probe keeps a bf16 request only where measured faster, and each row records what it used.
    out = published / "published"
    chosen = json.loads((out / "run.json").read_text())["estimate"]["precision"]
    for row in ("nafnet-dp", "ldp-small-oracle", "ldp-small-gr-zero"):
        summary = json.loads((out / "training" / row / "train_summary.json").read_text())
        assert summary["precision"] == chosen, row
