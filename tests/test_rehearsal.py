"""The paper profile's dress rehearsal (scripts/rehearse_paper.py, `make rehearse-paper`): every code path of
`make paper` on the CPU at micro sizes, on real DPDD Canon scenes in both DPDD layouts, with OpenAI-format CLIP files
loaded through the `openai` path and an official-format Restormer checkpoint. Skips without ../shared."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import rehearse_paper  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    if rehearse_paper.find_shared() is None:
        pytest.skip("../shared/realdp not available")
    work = tmp_path_factory.mktemp("rehearsal")
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "rehearse_paper.py"), "--work", str(work)],
                         capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return work, json.loads((work / "rehearsal.json").read_text())


def test_every_row_of_the_paper_grid_ran_at_the_profile_code_paths(rehearsal):
    work, summary = rehearsal
    repo = work / "repo"
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert set(summary["rows"]) == set(params["experiments"]) and "ldp-small-oracle" not in summary["rows"]
    rows = summary["rows"]
    assert rows["restormer-dp"]["inference"] == "whole" and rows["deeprft-dp"]["inference"] == "windows"
    assert rows["restormer-dp"]["augment"] == "restormer_dihedral" and rows["deeprft-dp"]["augment"] == "deeprft_modes"
    assert rows["ldp-small"]["augment"] == "dp_flips"
    for name in ("restormer-dp", "restormer-dp-plus", "deeprft-dp", "nafnet-dp"):
        assert rows[name]["precision"] == "fp32"
    for name, row in rows.items():
        assert row["protocol"] == "dpdd16-restormer-v1" and row["comparable"] == "no", name
        assert row["images_per_subset"] == {"all": 4, "indoor": 2, "outdoor": 2}, name  # the npy labels
        assert row["subsets"].startswith("indoor/outdoor: official labels (indoor_labels.npy"), name
    for name in ("ldp-small", "ldp-small-vitb16", "ldp-small-rn50", "restormer-dp-plus"):
        assert rows[name]["clip_weights"] == "checkpoint", name  # the openai slot's files are not OpenAI's release
    # Restormer's progressive schedule and its patch pool ran (the training record of the row)
    summary_json = json.loads((repo / "results/training/restormer-dp/train_summary.json").read_text())
    assert summary_json["iterations"] == 2 and summary_json["precision"] == "fp32"
    config = json.loads((repo / "checkpoints/restormer-dp/config.json").read_text())
    assert config["train"]["progressive"] == [[1, 48, 4], [1, 64, 2]]
    assert config["train"]["patch_pool"]["size"] == 80


def test_the_blur_maps_loaded_the_openai_format_files_and_flagged_them(rehearsal):
    work, _ = rehearsal
    for map_id, name in (("clip-vitb32-ours", "ViT-B-32"), ("clip-vitb16-ours", "ViT-B-16"),
                         ("clip-rn50-ours", "RN50")):
        meta = json.loads((work / "repo/data/blurmaps" / map_id / "meta.json").read_text())
        assert meta["weights_kind"] == "checkpoint" and "is not the release's" in meta["weights_source"]
        assert meta["clip_model"] == name and (work / "home/.cache/clip" / f"{name}.pt").is_file()


def test_both_dpdd_layouts_index_alike_and_the_npy_labels_are_used(rehearsal):
    work, summary = rehearsal
    assert summary["layouts"] == {"scenes": 7, "test_indoor": 2}
    manifest = pd.read_csv(work / "repo/data/dataset/manifest.csv", keep_default_na=False)
    test = manifest[manifest["split"] == "test"].sort_values("scene")
    assert list(test["category"]) == ["indoor", "outdoor"] * 2  # 1-based: positions 1 and 3 are indoor
    assert test["combined"].str.contains("test_c/source").all()  # the camera's combined image C is there


def test_an_official_restormer_checkpoint_evaluates_whole_image(rehearsal):
    _, summary = rehearsal
    rec = summary["official_restormer_checkpoint"]
    assert rec["inference"] == "whole" and rec["weights"]["path"].endswith("dual_pixel_defocus_deblurring.pth")
    assert 0 < rec["psnr"] < 100  # loaded strictly from {'params': ...} (a key mismatch is an error)


def test_tables_figures_and_report_carry_the_labels(rehearsal):
    work, _ = rehearsal
    repo = work / "repo"
    main = pd.read_csv(repo / "results/tables/main.csv")
    assert list(main["experiment"][:2]) == ["input-combined", "input-average"]
    assert main["diff_psnr"].isna().all()  # nothing here is comparable with the paper
    labels = " ".join(main["labels"].astype(str))
    assert "not the DPDD test set" in labels and "short schedule" in labels and "random CLIP weights" not in labels
    assert any((repo / "results/figures").iterdir())
    for nb in ("01-main-table", "02-ablations", "03-complexity", "04-figures", "05-protocols", "06-literature",
               "07-real-scenes", "index"):
        assert (repo / "results/report" / f"{nb}.html").is_file(), nb
    drift = pd.read_csv(repo / "results/tables/protocol_drift.csv")
    assert {"restormer-dp", "deeprft-dp", "input-average"} <= set(drift["run"])
    assert set(drift["protocol"]) >= {"dpdd16-restormer-v1", "dpdd8-mmagic-v1", "dpdd16-half-v1"}
