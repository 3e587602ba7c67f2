"""`ldp blurmap`: one pair (--left --right --out MAP.npy) or every scene of a DP folder (--data: a prepared dataset,
the DPDD layout, or *_L/*_R pairs), with the blur-map stage's own estimator: the same maps as the stage, written
atomically with their meta; bad input is one line and exit status 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from ldp.blurmap.common import grid_shape
from ldp.blurmap.estimate import BlurMapConfig, estimate_blurmaps
from ldp.cli import main
from ldp.data.manifest import load_manifest

PATCH = 16  # 48x64 images -> 3x4 grids
DATA = {"data": {"source": "synthetic", "synthetic": {"seed": 2, "height": 48, "width": 64, "train": 1, "val": 0,
                                                      "test": 2}}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from ldp.data.sources import load_data_config, prepare_dataset

    root = tmp_path_factory.mktemp("blurmap-cli") / "dataset"
    prepare_dataset(load_data_config(DATA), root)
    return root


def _scene(dataset: Path, split: str = "test") -> dict:
    row = load_manifest(dataset, split).iloc[0]
    return {k: dataset / row[k] for k in ("left", "right", "defocus")} | {"scene": row["scene"]}


def _blurmap(*args) -> int:
    return main(["blurmap", *map(str, args)])


@pytest.mark.parametrize("estimator", ["classical", "oracle"])
def test_folder_mode_on_a_prepared_dataset_is_the_stage(dataset, tmp_path, estimator, capsys):
    out = tmp_path / "maps"
    assert _blurmap("--data", dataset, "--estimator", estimator, "--patch-size", PATCH, "--out", out) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layout"] == "manifest" and summary["scenes"] == 3 and summary["out"] == str(out)
    stage = estimate_blurmaps(BlurMapConfig(estimator=estimator, patch_size=PATCH), dataset, tmp_path / "stage",
                              progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["estimator"] == estimator and meta["layout"] == "manifest" and len(meta["scenes"]) == 3
    for scene in load_manifest(dataset)["scene"]:
        ours, theirs = np.load(out / f"{scene}.npy"), np.load(stage / f"{scene}.npy")
        assert ours.shape == (3, 4) and ours.dtype == np.float32 and 0 <= ours.min() <= ours.max() <= 1
        np.testing.assert_array_equal(ours, theirs)


def test_folder_mode_reads_the_dpdd_layout_and_a_split(dataset, tmp_path, capsys):
    plain = tmp_path / "dpdd"
    shutil.copytree(dataset / "dd_dp_dataset_canon", plain / "dd_dp_dataset_canon")  # no manifest.csv
    out = tmp_path / "maps"
    assert _blurmap("--data", plain, "--estimator", "oracle", "--patch-size", PATCH, "--split", "test",
                    "--out", out, "--no-progress") == 0
    assert json.loads(capsys.readouterr().out)["layout"] == "dpdd"
    test_scenes = list(load_manifest(dataset, "test")["scene"])
    assert sorted(p.stem for p in out.glob("*.npy")) == sorted(test_scenes)  # only the test split
    stage = estimate_blurmaps(BlurMapConfig(estimator="oracle", patch_size=PATCH, split="test"), dataset,
                              tmp_path / "stage", progress=False)
    for scene in test_scenes:  # the defocus maps come from test_c/defocus, as in the manifest
        np.testing.assert_array_equal(np.load(out / f"{scene}.npy"), np.load(stage / f"{scene}.npy"))


def test_folder_mode_reads_plain_pairs_and_refuses_the_oracle_without_ground_truth(dataset, tmp_path, capsys):
    s = _scene(dataset)
    pairs = tmp_path / "captures"
    pairs.mkdir()
    shutil.copy(s["left"], pairs / "shot_L.png")
    shutil.copy(s["right"], pairs / "shot_R.png")
    assert _blurmap("--data", pairs, "--estimator", "classical", "--patch-size", PATCH, "--out",
                    tmp_path / "maps") == 0
    assert json.loads(capsys.readouterr().out)["layout"] == "pairs"
    assert np.load(tmp_path / "maps" / "shot.npy").shape == (3, 4)

    assert _blurmap("--data", pairs, "--estimator", "oracle", "--out", tmp_path / "oracle") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "oracle estimator needs a ground-truth defocus map" in err and "shot" in err
    assert not (tmp_path / "oracle").exists()  # nothing written


def test_folder_mode_default_out_is_under_the_working_folder(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _blurmap("--data", dataset, "--estimator", "classical", "--split", "test", "--no-progress") == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(Path("blurmaps") / "classical")
    assert len(list((tmp_path / "blurmaps" / "classical").glob("*.npy"))) == 2


def test_pair_mode_classical_and_oracle_match_the_folder_maps(dataset, tmp_path, capsys):
    s = _scene(dataset)
    folder = estimate_blurmaps(BlurMapConfig(estimator="classical", patch_size=PATCH), dataset, tmp_path / "cls",
                               progress=False)
    out = tmp_path / "one" / "map.npy"
    assert _blurmap("--left", s["left"], "--right", s["right"], "--out", out, "--estimator", "classical",
                    "--patch-size", PATCH) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mode"] == "pair" and summary["grid"] == [3, 4]
    np.testing.assert_array_equal(np.load(out), np.load(folder / f"{s['scene']}.npy"))
    meta = json.loads((tmp_path / "one" / "map.meta.json").read_text())
    assert meta["estimator"] == "classical" and meta["image_size_hw"] == [48, 64] and meta["left"] == str(s["left"])

    oracle = tmp_path / "oracle.npy"
    assert _blurmap("--left", s["left"], "--right", s["right"], "--out", oracle, "--estimator", "oracle",
                    "--defocus", s["defocus"], "--patch-size", PATCH) == 0
    truth = estimate_blurmaps(BlurMapConfig(estimator="oracle", patch_size=PATCH), dataset, tmp_path / "orc",
                              progress=False)
    np.testing.assert_array_equal(np.load(oracle), np.load(truth / f"{s['scene']}.npy"))


def test_pair_mode_clip_with_random_weights(dataset, tmp_path, capsys):
    s = _scene(dataset)
    out = tmp_path / "clip.npy"
    assert _blurmap("--left", s["left"], "--right", s["right"], "--out", out, "--estimator", "clip",
                    "--weights", "none", "--clip-model", "ViT-B-32", "--patch-size", 24, "--device", "cpu") == 0
    assert json.loads(capsys.readouterr().out)["weights_kind"] == "random"
    bmap = np.load(out)
    assert bmap.shape == grid_shape(48, 64, 24) and np.isfinite(bmap).all() and 0 <= bmap.min() <= bmap.max() <= 1
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    assert meta["clip_model"] == "ViT-B-32" and meta["prompt_format"] == "ours" and meta["weights_kind"] == "random"


def test_pair_mode_starts_from_a_params_entry(dataset, tmp_path, capsys):
    s = _scene(dataset)
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"blurmaps": {"cls": {"estimator": "classical", "patch_size": PATCH,
                                                           "max_disparity": 2}}}))
    out = tmp_path / "m.npy"
    assert _blurmap("--left", s["left"], "--right", s["right"], "--out", out, "--params", params, "--map", "cls") == 0
    config = json.loads(out.with_suffix(".meta.json").read_text())["config"]
    assert config["max_disparity"] == 2 and config["estimator"] == "classical"
    capsys.readouterr()
    assert _blurmap("--left", s["left"], "--right", s["right"], "--out", out, "--params", params, "--map", "cls",
                    "--patch-size", 8) == 0  # an option replaces one field of the entry
    assert np.load(out).shape == (6, 8)
    assert json.loads(out.with_suffix(".meta.json").read_text())["config"]["max_disparity"] == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--estimator", "classical"], "give --left L.png --right R.png --out MAP.npy"),
    (["--left", "{left}", "--right", "{right}", "--data", "{data}"], "not both"),
    (["--left", "{left}", "--right", "{right}"], "one pair needs --left, --right and --out"),
    (["--left", "{left}", "--right", "{right}", "--out", "{tmp}/m.png"], "a pair's map is a .npy file"),
    (["--left", "{left}", "--right", "{right}", "--out", "{tmp}/m.npy", "--estimator", "oracle"],
     "--estimator oracle: needs the pair's ground-truth signed defocus map"),
    (["--left", "{left}", "--right", "{tmp}/nope_R.png", "--out", "{tmp}/m.npy"], "nope_R.png: file not found"),
    (["--left", "{left}", "--right", "{right}", "--out", "{tmp}/m.npy", "--estimator", "sharpness"],
     "--estimator: 'sharpness' is not one of"),
    (["--left", "{left}", "--right", "{right}", "--out", "{tmp}/m.npy", "--patch-size", "0"],
     "--patch-size: expected a positive integer"),
    (["--left", "{left}", "--right", "{right}", "--out", "{tmp}/m.npy", "--params", "{tmp}/p.yaml"],
     "--params: give --map ID too"),
    (["--left", "{left}", "--right", "{right}", "--out", "{tmp}/m.npy", "--params", "{tmp}/p.yaml", "--map", "x"],
     "p.yaml:blurmaps.x: no such blur-map entry"),
    (["--data", "{tmp}", "--estimator", "classical"], "not a DP folder"),
    (["--data", "{tmp}/missing", "--estimator", "classical"], "missing: folder not found"),
    (["--data", "{data}", "--defocus", "{left}"], "--defocus: for one pair only"),
])
def test_bad_input_is_one_line_and_status_2(dataset, tmp_path, capsys, args, message):
    (tmp_path / "p.yaml").write_text("blurmaps: {}\n")
    s = _scene(dataset)
    filled = [a.format(left=s["left"], right=s["right"], data=dataset, tmp=tmp_path) for a in args]
    assert _blurmap(*filled) == 2
    err = capsys.readouterr().err
    assert err.startswith("ldp blurmap: error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "m.npy").exists()
