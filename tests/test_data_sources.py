"""Dataset sources: DPDD-layout reader (real scenes), folder/dpd_disp sources, splits, and bad-input errors."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from ldp.config import ConfigError, section
from ldp.data.download import UnsafeArchiveError
from ldp.data.manifest import UNVERIFIED_LISTS, categories_origin, load_manifest, load_scene
from ldp.data.sources import (
    DataConfig,
    DatasetError,
    FolderConfig,
    dpdd_categories,
    index_dpd_disp,
    index_dpdd_layout,
    prepare_dataset,
    read_split_list,
)
from ldp.imageio import write_image

RNG = np.random.default_rng(0)


def _img(h=12, w=20, bits=16):
    hi = 65536 if bits == 16 else 256
    return RNG.integers(0, hi, (h, w, 3), dtype=np.uint16 if bits == 16 else np.uint8)


def make_dpdd(root: Path, scenes=("s1", "s2", "s3"), split="test", h=12, w=20, target_names=None) -> Path:
    base = root / "dd_dp_dataset_canon"
    for i, s in enumerate(scenes):
        write_image(base / f"{split}_l/source/{s}_L.png", _img(h, w))
        write_image(base / f"{split}_r/source/{s}_R.png", _img(h, w))
        write_image(base / f"{split}_c/source/{s}.png", _img(h, w))
        tname = target_names[i] if target_names else s
        write_image(base / f"{split}_c/target/{tname}.png", _img(h, w))
    return base


def _prepare_fails(cfg: DataConfig, out: Path, match: str) -> str:
    with pytest.raises(DatasetError, match=match) as err:
        prepare_dataset(cfg, out)
    assert not out.exists(), "a failed build must not leave a dataset behind"
    assert not list(out.parent.glob(f".{out.name}.build-*"))
    return str(err.value)


# ------------------------------------------------------------------------------------------ real scenes

def test_dpdd_layout_reader_on_real_scenes(realdp_dpdd, tmp_path):
    rows = index_dpdd_layout(realdp_dpdd)
    assert len(rows) == 10 and {r["split"] for r in rows} == {"test"}
    assert [r["scene"] for r in rows] == [f"canon_{i:02d}" for i in range(10)]
    for r in rows:
        assert r["left"].name == f"{r['scene']}_L.png" and r["right"].name == f"{r['scene']}_R.png"
        assert r["target"].parent.name == "target" and r["combined"].parent.name == "source"

    out = prepare_dataset(DataConfig(source="dpdd", root=str(realdp_dpdd)), tmp_path / "real")
    table = load_manifest(out, "test")
    assert len(table) == 10
    assert set(table["bit_depth"]) == {16}
    assert set(zip(table["height"], table["width"], strict=True)) == {(496, 832)}
    assert not list(out.glob("**/*.png")), "an existing copy is indexed in place, not copied"
    scene = load_scene(out, table.iloc[3])
    assert set(scene) == {"left", "right", "target", "combined"}
    for arr in scene.values():
        assert arr.shape == (496, 832, 3) and arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
    assert np.abs(scene["left"] - scene["right"]).mean() > 0  # real DP views differ


# ---------------------------------------------------------------------------------------------- layouts

def test_official_target_numbers_are_paired_by_sorted_order(tmp_path):
    make_dpdd(tmp_path, scenes=("1P0A0917", "1P0A0933"), target_names=("1P0A0916", "1P0A0932"))
    rows = index_dpdd_layout(tmp_path)
    assert [(r["scene"], r["target"].stem) for r in rows] == [("1P0A0917", "1P0A0916"), ("1P0A0933", "1P0A0932")]


def test_restormer_layout_and_official_labels(tmp_path):
    base = tmp_path / "Datasets" / "DPDD"
    names = ["1P0A0917", "1P0A1046", "1P0A2521"]
    for n in names:
        for folder, suffix in (("inputL", "_L"), ("inputR", "_R"), ("inputC", ""), ("target", "")):
            write_image(base / folder / f"{n}{suffix}.png", _img())
    np.save(base / "indoor_labels.npy", np.array([2, 3]))  # 1-based positions in the sorted test list
    np.save(base / "outdoor_labels.npy", np.array([1]))
    out = prepare_dataset(DataConfig(source="dpdd", root=str(tmp_path)), tmp_path / "out")
    table = load_manifest(out).set_index("scene")
    assert table.loc["1P0A1046", "category"] == "indoor" and table.loc["1P0A0917", "category"] == "outdoor"
    assert table.loc["1P0A2521", "category"] == "indoor"
    assert categories_origin(out) == "official labels (indoor_labels.npy, outdoor_labels.npy)"
    again = prepare_dataset(DataConfig(source="dpdd", root=str(out)), tmp_path / "again")  # a prepared root
    assert categories_origin(again) == categories_origin(out)


def test_without_label_npys_the_stamp_says_the_lists_are_unverified(tmp_path):
    make_dpdd(tmp_path / "d", scenes=("1P0A1046", "1P0A2521"))  # in ldp/data/splits
    out = prepare_dataset(DataConfig(source="dpdd", root=str(tmp_path / "d")), tmp_path / "out")
    assert set(load_manifest(out)["category"]) <= {"indoor", "outdoor"}
    assert categories_origin(out) == UNVERIFIED_LISTS


def _restormer_split(folder: Path, names, h=12, w=20) -> None:
    for n in names:
        for view, suffix in (("inputL", "_L"), ("inputR", "_R"), ("inputC", ""), ("target", "")):
            write_image(folder / view / f"{n}{suffix}.png", _img(h, w))


def test_restormer_train_and_val_zips_are_full_images_for_their_splits(tmp_path):
    """Restormer's train/val zips hold full-resolution images in {train,val}/DPDD/{inputL,inputR,inputC,target}
    (its scripts cut the patches locally, into *_crops folders): each is its own split, the crops are not read."""
    base = tmp_path / "Datasets"
    splits = {"train": ["1P0A0001", "1P0A0002", "1P0A0003"], "val": ["1P0A0100"], "test": ["1P0A0917", "1P0A1046"]}
    for split, names in splits.items():
        _restormer_split(base / split / "DPDD", names)
    write_image(base / "train" / "DPDD" / "inputL_crops" / "1P0A0001_L_0.png", _img(4, 4))  # a locally cut patch
    out = prepare_dataset(DataConfig(source="dpdd", root=str(base)), tmp_path / "out")
    table = load_manifest(out)
    assert {s: sorted(table.loc[table["split"] == s, "scene"]) for s in splits} == splits
    assert set(zip(table["height"], table["width"], strict=True)) == {(12, 20)}
    assert all(load_manifest(out, "train")["combined"].str.contains("inputC"))
    # one zip's folder on its own: the split its path names, not test
    rows = index_dpdd_layout(base / "train" / "DPDD")
    assert sorted(r["scene"] for r in rows) == splits["train"] and {r["split"] for r in rows} == {"train"}
    assert {r["split"] for r in index_dpdd_layout(base / "val")} == {"val"}


def test_portrait_frames_are_kept(tmp_path):
    make_dpdd(tmp_path / "d", scenes=("land",), h=12, w=20)
    make_dpdd(tmp_path / "d", scenes=("port",), h=20, w=12)
    table = load_manifest(prepare_dataset(DataConfig(source="dpdd", root=str(tmp_path / "d")), tmp_path / "o"))
    sizes = {r.scene: (r.height, r.width) for r in table.itertuples()}
    assert sizes == {"land": (12, 20), "port": (20, 12)}


def test_a_root_with_a_manifest_becomes_the_output_dataset(tmp_path):
    make_dpdd(tmp_path / "d")
    first = prepare_dataset(DataConfig(source="dpdd", root=str(tmp_path / "d")), tmp_path / "o")
    second = prepare_dataset(DataConfig(source="dpdd", root=str(first)), tmp_path / "o2")
    assert second == tmp_path / "o2" and (second / "manifest.csv").is_file() and (second / "source.json").is_file()
    a, b = load_manifest(first), load_manifest(second)
    assert list(a["scene"]) == list(b["scene"])
    for ra, rb in zip(a.to_dict("records"), b.to_dict("records"), strict=True):
        assert (first / ra["left"]).resolve() == (second / rb["left"]).resolve()
    assert prepare_dataset(DataConfig(source="dpdd", root=str(first)), tmp_path / "o2") == second  # up to date


def test_folder_source_with_and_without_target(tmp_path):
    cap = tmp_path / "caps"
    for k in ("001", "002"):
        write_image(cap / "raw" / f"img{k}_left.png", _img())
        write_image(cap / "raw" / f"img{k}_right.png", _img())
        write_image(cap / "gt" / f"img{k}.png", _img())
    folder = FolderConfig(left="raw/img*_left.png", right="raw/img*_right.png")
    table = load_manifest(prepare_dataset(DataConfig(source="folder", root=str(cap), folder=folder),
                                          tmp_path / "o1"))
    assert list(table["scene"]) == ["001", "002"] and set(table["target"]) == {""}
    with_gt = FolderConfig(left="raw/img*_left.png", right="raw/img*_right.png", target="gt/img*.png")
    table = load_manifest(prepare_dataset(DataConfig(source="folder", root=str(cap), folder=with_gt),
                                          tmp_path / "o2"))
    assert all(t.endswith(f"img{s}.png") for s, t in zip(table["scene"], table["target"], strict=True))


def test_dpd_disp_pairs_without_target(tmp_path):
    for d, s in (("Quantitative", "0101"), ("Qualitative", "0001")):
        for v in "BLR":
            path = tmp_path / d / f"{s}_{v}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), _img(bits=8))
    rows = index_dpd_disp(tmp_path)
    assert [r["scene"] for r in rows] == ["Qualitative_0001", "Quantitative_0101"]
    assert all(r["target"] == "" and r["combined"] for r in rows)
    out = prepare_dataset(DataConfig(source="dpd_disp", root=str(tmp_path)), tmp_path.parent / "disp_out")
    assert set(load_manifest(out)["bit_depth"]) == {8}


def test_committed_indoor_outdoor_lists():
    indoor, outdoor = read_split_list("dpdd_test_indoor"), read_split_list("dpdd_test_outdoor")
    assert len(indoor) == 37 and len(outdoor) == 39 and not set(indoor) & set(outdoor)
    assert indoor[0] == "1P0A1046" and outdoor[0] == "1P0A0917" and outdoor[-1] == "1P0A2501"
    assert len(dpdd_categories()) == 76
    header = (Path(__file__).parents[1] / "ldp/data/splits/dpdd_test_indoor.txt").read_text().splitlines()[0]
    assert "UNVERIFIED" in header


def test_config_is_strict():
    cfg = section({"data": {"source": "dpdd", "root": "/x", "dpdd": {"splits": ["test"]}}}, "data", DataConfig)
    assert cfg.dpdd.splits == ("test",) and cfg.root == "/x"
    with pytest.raises(ConfigError, match="data.dpdd.sha"):
        section({"data": {"dpdd": {"sha": "x"}}}, "data", DataConfig)
    with pytest.raises(ConfigError, match="data.source"):
        section({"data": {"source": "dpdd_blur"}}, "data", DataConfig)


# -------------------------------------------------------------------------------------------- bad input

def test_truncated_png(tmp_path):
    make_dpdd(tmp_path / "d")
    bad = tmp_path / "d/dd_dp_dataset_canon/test_r/source/s2_R.png"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    msg = _prepare_fails(DataConfig(source="dpdd", root=str(tmp_path / "d")), tmp_path / "out", "s2_R.png")
    assert "truncated or corrupt" in msg


def test_corrupt_png(tmp_path):
    make_dpdd(tmp_path / "d")
    (tmp_path / "d/dd_dp_dataset_canon/test_c/target/s1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    _prepare_fails(DataConfig(source="dpdd", root=str(tmp_path / "d")), tmp_path / "out", "target/s1.png")


def test_left_right_size_mismatch(tmp_path):
    make_dpdd(tmp_path / "d")
    write_image(tmp_path / "d/dd_dp_dataset_canon/test_r/source/s3_R.png", _img(12, 22))
    msg = _prepare_fails(DataConfig(source="dpdd", root=str(tmp_path / "d")), tmp_path / "out", "s3_R.png")
    assert "22x12" in msg and "20x12" in msg


def test_mixed_bit_depths(tmp_path):
    make_dpdd(tmp_path / "d")
    write_image(tmp_path / "d/dd_dp_dataset_canon/test_l/source/s2_L.png", _img(bits=8))
    _prepare_fails(DataConfig(source="dpdd", root=str(tmp_path / "d")), tmp_path / "out", "s2_L.png.*mixed bit")


def test_missing_target(tmp_path):
    make_dpdd(tmp_path / "d")
    (tmp_path / "d/dd_dp_dataset_canon/test_c/target/s2.png").unlink()
    _prepare_fails(DataConfig(source="dpdd", root=str(tmp_path / "d")), tmp_path / "out",
                   "missing target for scene 's2'")


def test_missing_view(tmp_path):
    make_dpdd(tmp_path / "d")
    (tmp_path / "d/dd_dp_dataset_canon/test_r/source/s3_R.png").unlink()
    _prepare_fails(DataConfig(source="dpdd", root=str(tmp_path / "d")), tmp_path / "out",
                   "s3_L.png: left view has no matching right view")


def test_missing_folder_target(tmp_path):
    for k in ("1", "2"):
        write_image(tmp_path / "c" / f"{k}_L.png", _img())
        write_image(tmp_path / "c" / f"{k}_R.png", _img())
    write_image(tmp_path / "c" / "1_T.png", _img())
    folder = FolderConfig(target="*_T.png")
    _prepare_fails(DataConfig(source="folder", root=str(tmp_path / "c"), folder=folder), tmp_path / "out",
                   "2_L.png: missing target")


@pytest.mark.parametrize("source", ["dpdd", "folder", "dpd_disp"])
def test_empty_folder(tmp_path, source):
    (tmp_path / "empty" / "dd_dp_dataset_canon" / "test_l" / "source").mkdir(parents=True)
    _prepare_fails(DataConfig(source=source, root=str(tmp_path / "empty")), tmp_path / "out", "empty|no ")


def test_archive_with_dotdot_entry_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("dd_dp_dataset_canon/test_l/source/a_L.png", b"x")
        zf.writestr("../../escape.png", b"x")
    (tmp_path / "dpdd.zip").write_bytes(buf.getvalue())
    with pytest.raises(UnsafeArchiveError, match="escape.png"):
        prepare_dataset(DataConfig(source="dpdd", root=str(tmp_path / "dpdd.zip")), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.build-*"))


def test_stage_exit_code_and_one_line_error(tmp_path, capsys, monkeypatch):
    """The data stage (pipelines/data.py, the one entry) on a corrupt image: status 2, one line naming it."""
    from pipelines import data as stage
    from pipelines.common import run_stage

    make_dpdd(tmp_path / "d")
    (tmp_path / "d/dd_dp_dataset_canon/test_l/source/s1_L.png").write_bytes(b"broken")
    params = tmp_path / "params.yaml"
    params.write_text(f"data:\n  source: dpdd\n  root: {tmp_path / 'd'}\n")
    monkeypatch.chdir(tmp_path)  # the stage writes data/dataset under the working directory
    with pytest.raises(SystemExit) as exited:
        run_stage(stage.configure, stage.run, ["--params", str(params)])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "s1_L.png" in err
    assert not (tmp_path / "data").exists()
