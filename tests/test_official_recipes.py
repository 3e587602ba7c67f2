"""The recipes of both profiles follow the official training protocols: augmentation per recipe, Restormer's patch
pool, fp32 for the official-recipe rows (bf16 labels the row), global batches that divide over 8 GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ldp.config import load_params
from ldp.experiments import resolve
from ldp.train import check_values
from ldp.train.config import PatchPoolConfig

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = {"restormer-dp": "restormer_dihedral", "restormer-dp-plus": "restormer_dihedral",
            "deeprft-dp": "deeprft_modes", "deeprft-dp-plus": "deeprft_modes", "nafnet-dp": "dp_flips"}


@pytest.mark.parametrize("profile", ["params.yaml", "profiles/paper.yaml"])
def test_each_row_gets_its_recipes_augmentation_precision_and_pool(profile):
    params = load_params(REPO / profile)
    paper = profile != "params.yaml"
    pool = PatchPoolConfig(512, 204, 0.3) if paper else PatchPoolConfig(80, 32, 0.3)
    for name in params["experiments"]:
        exp = resolve(params, name)
        cfg = exp.train
        if exp.recipe == "ldp":
            assert (cfg.augment, cfg.precision, cfg.patch_pool) == ("dp_flips", "auto", None), name
        else:
            assert cfg.augment == OFFICIAL[name] and cfg.precision == "fp32", name
            assert cfg.patch_pool == (pool if exp.recipe == "restormer" else None), name
        assert exp.labels["precision"] == cfg.precision and exp.labels["augment"] == cfg.augment
        assert cfg.processes == ("auto" if paper else 1)
        check_values(cfg, exp.key_path, world=8 if paper else 1)  # the official batches are global over 8 GPUs


def test_smoke_pool_fits_the_synthetic_images():
    params = load_params(REPO / "params.yaml")
    exp = resolve(params, "restormer-dp")
    synthetic = params["data"]["synthetic"]
    assert exp.train.patch_size <= exp.train.patch_pool.size <= min(synthetic["height"], synthetic["width"])
