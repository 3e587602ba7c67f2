"""Real DP test sets (params `real_sets`, ldp/data/real.py) and the `real_data` stage: strict configs, root errors,
the DPDD-layout and Pixel 4 preparations on tiny folders made here, index.json, and the real ../shared sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ldp.config import ConfigError, Params
from ldp.data.manifest import SOURCE_STAMP, load_manifest, load_scene
from ldp.data.real import (
    CONVERSION_JSON,
    EXPOSURE_LEVEL,
    PIXEL4_BLACK,
    PIXEL4_WHITE,
    RealSetConfig,
    load_real_sets,
    prepare_real_set,
)
from ldp.data.sources import DatasetError
from ldp.evaluate import EvalConfig, evaluate
from ldp.imageio import write_image
from pipelines import real_data as stage

RNG = np.random.default_rng(0)
EVAL = EvalConfig(save_samples=0, lpips=False, bootstrap=20)


def make_dpdd(root: Path, scenes=("s1", "s2"), h=16, w=24) -> Path:
    """A tiny DPDD-layout folder (test split): L, R, C and target per scene."""
    base = root / "dd_dp_dataset_canon"
    for s in scenes:
        clean = RNG.integers(10000, 50000, (h, w, 3), dtype=np.uint16)
        for rel in (f"test_l/source/{s}_L.png", f"test_r/source/{s}_R.png", f"test_c/source/{s}.png"):
            noise = RNG.integers(0, 2000, (h, w, 3), dtype=np.uint16)
            write_image(base / rel, clean + noise)
        write_image(base / f"test_c/target/{s}.png", clean)
    return root


def make_pixel4(root: Path, gain: float, offset: float, scenes=("001", "013"), h=24, w=32) -> Path:
    """A tiny CMU Pixel 4 folder (the README's names): 16-bit grey L/R of 14-bit raw values, and a GT of half the
    size, aligned with the centre crop, equal to ``gain * ((L+R)/2 - black) + offset`` in raw units."""
    base = root / "DP_data_pixel_4"
    for s in scenes:
        left = RNG.integers(1100, 9000, (h, w)).astype(np.uint16)
        right = RNG.integers(1100, 9000, (h, w)).astype(np.uint16)
        mean = (left.astype(np.float64) + right) / 2
        gt = gain * (mean[h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2] - PIXEL4_BLACK) + offset
        write_image(base / f"{s}_left.png", left)
        write_image(base / f"{s}_right.png", right)
        write_image(base / "gt_all_in_focus_im" / f"{s}_gt.png", np.rint(gt).astype(np.uint16))
        write_image(base / "gt_defocus_map" / f"{s}_gt.png", np.zeros((h // 2, w // 2), np.uint8))
    return root


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


# ---------------------------------------------------------------------------------------------- configs

@pytest.mark.parametrize(("entry", "match"), [
    ({"x": {"source": "pixel4", "rooot": "a"}}, r"exp\.yaml:real_sets\.x\.rooot: unknown key \(did you mean 'root'"),
    ({"x": {"source": "nikon", "root": "a"}}, r"exp\.yaml:real_sets\.x\.source: 'nikon' is not one of"),
    ({"x": {"source": "pixel4"}}, r"exp\.yaml:real_sets\.x\.root: required key is missing"),
    ({"x": {"source": "pixel4", "root": " "}}, r"exp\.yaml:real_sets\.x\.root: expected a folder"),
    ({"../x": {"source": "pixel4", "root": "a"}}, r"exp\.yaml:real_sets\.\.\./x: not a safe folder name"),
    ({"x": "pixel4"}, r"exp\.yaml:real_sets\.x: expected a mapping"),
])
def test_config_errors_name_the_key(entry, match):
    with pytest.raises(ConfigError, match=match):
        load_real_sets(Params({"real_sets": entry}, "exp.yaml"))


def test_configs_load_with_default_labels():
    sets = load_real_sets({"real_sets": {"canon-half": {"source": "dpdd_layout", "root": "a"},
                                         "p4": {"source": "pixel4", "root": "b", "label": "mine"}}})
    assert sets["canon-half"] == RealSetConfig("dpdd_layout", "a") and "DPDD layout" in sets["canon-half"].display_label
    assert sets["p4"].display_label == "mine"
    assert load_real_sets({"real_sets": {}}) == {} == load_real_sets({})


@pytest.mark.parametrize("source", ["dpdd_layout", "pixel4"])
def test_a_missing_or_wrong_root_names_the_key_and_path(tmp_path, source):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=rf"exp\.yaml:real_sets\.s\.root: {missing} is not a folder"):
        prepare_real_set("s", RealSetConfig(source, str(missing)), tmp_path / "out", "exp.yaml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=rf"exp\.yaml:real_sets\.s\.root: {tmp_path / 'empty'}"):
        prepare_real_set("s", RealSetConfig(source, str(tmp_path / "empty")), tmp_path / "out", "exp.yaml")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------- preparations

def test_dpdd_layout_set_prepares_loads_and_evaluates(tmp_path):
    root = make_dpdd(tmp_path / "src")
    out = prepare_real_set("canon", RealSetConfig("dpdd_layout", str(root)), tmp_path / "real" / "canon")
    table = load_manifest(out, "test")
    assert list(table["scene"]) == ["s1", "s2"] and set(table["bit_depth"]) == {16}
    assert table["combined"][0].endswith("test_c/source/s1.png")
    assert not list(out.rglob("*.png")), "a DPDD-layout root is indexed in place"
    stamp = json.loads((out / SOURCE_STAMP).read_text())
    assert stamp["source"] == "real:dpdd_layout" and stamp["set"] == "canon" and stamp["categories"] == "none"
    assert set(load_scene(out, table.iloc[0])) == {"left", "right", "combined", "target"}
    result = evaluate("input-average", None, out, out_dir=tmp_path / "eval", cfg=EVAL, quiet=True)
    assert len(result.per_image) == 2
    assert not list((tmp_path / "real").glob(".*")), "no build folder is left behind"


def test_pixel4_conversion_fits_the_gt_and_records_its_choices(tmp_path):
    k, c = 4.5, 600.0  # GT = k ((L+R)/2 - black) + c in raw units
    root = make_pixel4(tmp_path / "dev", k, c)
    out = prepare_real_set("p4", RealSetConfig("pixel4", str(root)), tmp_path / "p4")
    table = load_manifest(out, "test")
    assert list(table["scene"]) == ["001", "013"] and set(table["combined"]) == {""}
    assert set(zip(table["height"], table["width"], strict=True)) == {(12, 16)} and set(table["bit_depth"]) == {16}
    conversion = json.loads((out / CONVERSION_JSON).read_text())
    stamp = json.loads((out / SOURCE_STAMP).read_text())
    assert stamp["source"] == "real:pixel4" and stamp["conversion"] == conversion["recipe"]
    for scene, record in conversion["scenes"].items():
        assert record["crop_rows"] == [6, 18] and record["crop_cols"] == [8, 24]
        # (L+R)/2 in linear units = gain * GT/65535 + offset
        assert record["gain"] == pytest.approx(65535 / (PIXEL4_WHITE * k), rel=1e-3), scene
        assert record["offset"] == pytest.approx(-c / (PIXEL4_WHITE * k), abs=1e-4), scene
        assert record["fit_correlation"] > 0.9999
    row = table.iloc[0]
    scene = load_scene(out, row)
    assert set(scene) == {"left", "right", "target"}
    for img in scene.values():
        assert img.shape == (12, 16, 3) and np.array_equal(img[..., 0], img[..., 2])
        assert 0 <= img.min() and img.max() <= 1
    # The target is the fitted GT: it matches the views' average (same exposure and gamma) up to quantisation.
    linear = {k: v[..., 0].astype(np.float64) ** 2.2 for k, v in scene.items()}
    mean = (linear["left"] + linear["right"]) / 2
    assert np.percentile(mean, 99.5) == pytest.approx(EXPOSURE_LEVEL, abs=0.02)
    unclipped = (linear["left"] < 0.999) & (linear["right"] < 0.999)
    assert unclipped.mean() > 0.5 and np.abs(linear["target"] - mean)[unclipped].max() < 2e-3


# ------------------------------------------------------------------------------------------------ stage

def _stage_params(tmp_path: Path, real_sets: dict) -> Params:
    return Params({
        "real_sets": real_sets,
        "blurmaps": {"classical": {"estimator": "classical", "patch_size": 8, "max_disparity": 2},
                     "oracle": {"estimator": "oracle", "patch_size": 8},
                     "unused": {"estimator": "clip"}},
        "experiments": {"a": {"model": "ldp-small", "blurmap": "classical", "recipe": "ldp"},
                        "b": {"model": "ldp-small", "blurmap": "oracle", "recipe": "ldp"}},
        "paths": {"real": str(tmp_path / "data" / "real")},
    }, tmp_path / "params.yaml")


def test_stage_writes_sets_blurmaps_and_index(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a relative root resolves against the working folder
    make_dpdd(tmp_path / "src")
    make_pixel4(tmp_path / "p4", 4.5, 600.0, scenes=("001",))
    params = _stage_params(tmp_path, {"canon": {"source": "dpdd_layout", "root": "src"},
                                      "p4": {"source": "pixel4", "root": "p4", "label": "phone"}})
    stage.run(stage.configure(params, []))
    real = tmp_path / "data" / "real"
    index = json.loads((real / stage.INDEX_JSON).read_text())["sets"]
    assert list(index) == ["canon", "p4"]
    assert index["canon"]["n_scenes"] == 2 and index["canon"]["size"] == [16, 24]
    assert index["canon"]["source"] == "dpdd_layout" and index["canon"]["root"] == "src"
    assert index["p4"] == {"label": "phone", "source": "pixel4", "root": "p4", "n_scenes": 1, "size": [12, 16],
                           "blurmaps": index["p4"]["blurmaps"]}
    for name in index:
        assert index[name]["blurmaps"]["classical"] == "ok"
        assert index[name]["blurmaps"]["oracle"].startswith("unavailable: no ground-truth defocus map")
        assert "unused" not in index[name]["blurmaps"]
        assert sorted(p.name for p in (real / name / "blurmaps").iterdir()) == ["classical"]
        meta = json.loads((real / name / "blurmaps" / "classical" / "meta.json").read_text())
        assert meta["dataset"] == str(real / name / "dataset")
    table = load_manifest(real / "canon" / "dataset")
    assert load_scene(real / "canon" / "dataset", table.iloc[1])["left"].shape == (16, 24, 3)
    assert not list((tmp_path / "data").glob(".*")), "the build folder was swapped in"
    out = capsys.readouterr().out
    assert "real_data: canon" in out and "real_data: p4: 1 scenes, 12x16" in out


def test_empty_real_sets_writes_an_empty_index(tmp_path):
    stage.run(stage.configure(_stage_params(tmp_path, {}), []))
    real = tmp_path / "data" / "real"
    assert json.loads((real / stage.INDEX_JSON).read_text()) == {"sets": {}}
    assert [p.name for p in real.iterdir()] == [stage.INDEX_JSON]


def test_stage_checks_every_root_before_writing(tmp_path):
    make_dpdd(tmp_path / "src")
    params = _stage_params(tmp_path, {"canon": {"source": "dpdd_layout", "root": str(tmp_path / "src")},
                                      "p4": {"source": "pixel4", "root": str(tmp_path / "nope")}})
    with pytest.raises(DatasetError, match=r"params\.yaml:real_sets\.p4\.root: .*nope is not a folder"):
        stage.run(stage.configure(params, []))
    assert not (tmp_path / "data").exists()


def test_stage_names_an_experiment_blurmap_that_is_not_defined(tmp_path):
    params = _stage_params(tmp_path, {})
    params["experiments"]["a"]["blurmap"] = "missing"
    with pytest.raises(ConfigError, match=r"params\.yaml:experiments\.a\.blurmap: 'missing' is not defined"):
        stage.configure(params, [])


# ------------------------------------------------------------------------------------ the real ../shared sets

def test_the_real_shared_sets(shared_dir, tmp_path):
    realdp = shared_dir / "realdp"
    sets = {"canon-half": (RealSetConfig("dpdd_layout", str(realdp / "dpdd_canon_dev_dpddlayout")), 10, (496, 832)),
            "pixel4": (RealSetConfig("pixel4", str(realdp / "cmu_pixel4" / "dev")), 2, (1008, 1344))}
    for name, (cfg, n, size) in sets.items():
        if not Path(cfg.root).is_dir():
            pytest.skip(f"{cfg.root} not found")
        out = prepare_real_set(name, cfg, tmp_path / name)
        table = load_manifest(out, "test")
        assert len(table) == n, name
        assert set(zip(table["height"], table["width"], strict=True)) == {size}, name
        for _, row in table.iterrows():
            scene = load_scene(out, row)
            for img in scene.values():
                assert img.shape == (*size, 3) and 0 <= img.min() and img.max() <= 1
            psnr = _psnr((scene["left"] + scene["right"]) / 2, scene["target"])
            assert 15 < psnr < 45, (name, row["scene"], psnr)
