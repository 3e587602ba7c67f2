"""`ldp evaluate --restorations DIR`: scoring a folder of restored images (8- or 16-bit PNG, matched to the split's
scenes by name) without a model, under every protocol; bad folders get one error naming every problem."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ldp.cli import main
from ldp.data.manifest import layout_paths, load_manifest, write_manifest
from ldp.evaluate import PROTOCOLS_JSON, RESTORATIONS, EvalConfig, EvaluationError, evaluate, evaluate_restorations
from ldp.imageio import read_image, read_image_raw, write_image
from ldp.metrics import compute_metrics
from ldp.protocol_drift import read_protocols
from ldp.protocols import DEFAULT_PROTOCOL, PROTOCOLS, get_protocol, score

H, W = 28, 40
CFG = EvalConfig(save_samples=0, bootstrap=200, lpips=False, device="cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rest")
    rng = np.random.default_rng(5)
    rows = []
    for i, (split, cat) in enumerate([("test", "indoor"), ("test", "outdoor"), ("test", "indoor"),
                                      ("train", "")]):
        paths = layout_paths(split, f"r{i}")
        target = rng.random((H, W, 3)).astype(np.float32)
        row = {"scene": f"r{i}", "split": split, "category": cat, "height": H, "width": W, "bit_depth": 16}
        for col in ("target", "left", "right"):
            img = target if col == "target" else np.clip(target + 0.05 * rng.standard_normal(target.shape), 0, 1)
            write_image(root / paths[col], img.astype(np.float32), bits=16)
            row[col] = paths[col]
        rows.append(row)
    write_manifest(root, rows)
    return root


def _restorations(root: Path, out: Path, bits: int = 16) -> Path:
    """(L+R)/2 of every test scene, as <scene>.png."""
    out.mkdir(parents=True, exist_ok=True)
    for row in load_manifest(root, "test").to_dict("records"):
        img = 0.5 * (read_image(root / row["left"]) + read_image(root / row["right"]))
        write_image(out / f"{row['scene']}.png", img, bits=bits)
    return out


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None]


@pytest.mark.parametrize("bits", [16, 8])
def test_restorations_folder_scored_like_a_model(tiny, tmp_path, bits):
    rdir = _restorations(tiny, tmp_path / f"r{bits}", bits)
    out = tmp_path / "out"
    res = evaluate_restorations(rdir, tiny, out_dir=out, cfg=dataclasses.replace(CFG, protocols=("all",)),
                                quiet=True)
    table = pd.read_csv(out / "per_image.csv", dtype={"scene": str})
    assert table["scene"].tolist() == ["r0", "r1", "r2"]  # the test split only
    for row in table.to_dict("records"):
        pred = read_image(rdir / f"{row['scene']}.png")
        target = read_image(tiny / f"dd_dp_dataset_canon/test_c/target/{row['scene']}.png")
        want = compute_metrics(_t(pred), _t(target))
        for k in ("psnr", "ssim", "mae", "rmse"):
            assert row[k] == pytest.approx(float(want[k][0]), rel=1e-9, abs=1e-12)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary == res.summary
    assert summary["model"] == RESTORATIONS and summary["weights"] == f"restorations from {rdir.resolve()}"
    assert summary["restorations"]["bit_depth"] == {str(bits): 3} and len(summary["restorations"]["sha256"]) == 64
    assert summary["protocol"] == DEFAULT_PROTOCOL and summary["n_images"] == 3
    labels = summary["labels"]
    assert labels["inference"].startswith("n/a (restorations from") and labels["schedule"].startswith("n/a")
    assert any("how they were made is not recorded" in c for c in labels["caveats"])
    scores = json.loads((out / "scores.json").read_text())
    assert scores["all"]["psnr"] == pytest.approx(table["psnr"].mean())
    record = read_protocols(out / PROTOCOLS_JSON)
    assert list(record["protocols"]) == list(PROTOCOLS)
    # the 8-bit protocols read a 16-bit restoration as v >> 8; an 8-bit one as it is
    pred = read_image_raw(rdir / "r0.png")
    target = read_image(tiny / "dd_dp_dataset_canon/test_c/target/r0.png")
    for pid in PROTOCOLS:
        want = score(get_protocol(pid), _t(read_image(rdir / "r0.png")), _t(target), pred_bits=bits, target_bits=16)
        got = record["protocols"][pid]["per_image"][0]
        assert got["psnr"] == pytest.approx(float(want["psnr"][0]), rel=1e-12)
    if bits == 8:  # an 8-bit restoration against the 8-bit reading of the target
        p8 = record["protocols"]["dpdd8-restormer-v1"]["per_image"][0]["psnr"]
        t8 = (np.round(target.astype(np.float64) * 65535).astype(np.int64) >> 8) / 255.0
        assert p8 == pytest.approx(10 * np.log10(1 / np.mean((pred / 255.0 - t8) ** 2)), abs=1e-6)


def test_restorations_match_the_target_file_name(tmp_path):
    """A restoration named like the scene's target file (Restormer's script saves under that name) matches too."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    target = rng.random((H, W, 3)).astype(np.float32)
    write_image(root / "t/1P0A0916.png", target)
    write_manifest(root, [{"scene": "scene-a", "split": "test", "category": "", "target": "t/1P0A0916.png",
                           "left": "", "right": "", "combined": "", "height": H, "width": W, "bit_depth": 16}])
    rdir = tmp_path / "r"
    write_image(rdir / "1P0A0916.png", target)
    res = evaluate_restorations(rdir, root, out_dir=tmp_path / "o", cfg=CFG, quiet=True)
    assert res.per_image["scene"].tolist() == ["scene-a"] and res.per_image["psnr"].iloc[0] == 100.0


def test_bad_restoration_folders_get_one_error_naming_them(tiny, tmp_path):
    rdir = _restorations(tiny, tmp_path / "bad")
    (rdir / "r1.png").unlink()
    (rdir / "notes.txt").write_text("x")
    (rdir / "r9.png").write_bytes((rdir / "r0.png").read_bytes())
    (rdir / "sub").mkdir()
    (rdir / ".hidden").write_text("ignored")
    with pytest.raises(EvaluationError) as err:
        evaluate_restorations(rdir, tiny, out_dir=tmp_path / "o", cfg=CFG, quiet=True)
    msg = str(err.value)
    assert str(rdir) in msg and "1 scenes have no restoration: r1" in msg
    assert "3 entries match no scene" in msg and "notes.txt" in msg and "r9.png" in msg and "sub/" in msg
    assert ".hidden" not in msg
    assert not (tmp_path / "o").exists()

    sized = _restorations(tiny, tmp_path / "sized")
    write_image(sized / "r2.png", np.zeros((H, W + 2, 3), np.float32))
    (sized / "r0.png").write_bytes(b"not a png")
    with pytest.raises(EvaluationError) as err:
        evaluate_restorations(sized, tiny, out_dir=tmp_path / "o", cfg=CFG, quiet=True)
    msg = str(err.value)
    assert "2 restorations cannot be scored" in msg
    assert f"{sized / 'r2.png'}: size {W + 2}x{H}, but the target of scene r2" in msg and f"is {W}x{H}" in msg
    assert f"{sized / 'r0.png'}: cannot decode image" in msg
    with pytest.raises(EvaluationError, match="restorations folder not found"):
        evaluate_restorations(tmp_path / "absent", tiny, out_dir=tmp_path / "o", cfg=CFG, quiet=True)


def test_cli_restorations_all_protocols(tiny, tmp_path, capsys):
    rdir = _restorations(tiny, tmp_path / "cli")
    out = tmp_path / "out"
    args = ["evaluate", "--restorations", str(rdir), "--data", str(tiny), "--out", str(out), "--params",
            str(tmp_path / "none.yaml"), "--protocols", "all"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"restorations | {DEFAULT_PROTOCOL} | weights: restorations from" in printed and "dpdd16-half-v1" in printed
    assert list(read_protocols(out / PROTOCOLS_JSON)["protocols"]) == list(PROTOCOLS)
    (rdir / "r0.png").unlink()
    assert main(args) == 2
    assert "scenes have no restoration: r0" in capsys.readouterr().err


def test_restorations_agree_with_the_model_run_that_made_them(tiny, tmp_path):
    """input-average's own samples (16-bit PNGs of its restorations) scored as a folder give its numbers to the
    16-bit quantisation of the files."""
    model = evaluate("input-average", None, tiny, out_dir=tmp_path / "m",
                     cfg=dataclasses.replace(CFG, save_samples=10), quiet=True)
    folder = evaluate_restorations(tmp_path / "m" / "samples", tiny, out_dir=tmp_path / "f", cfg=CFG, quiet=True)
    assert np.allclose(folder.per_image["psnr"], model.per_image["psnr"], atol=1e-3)
    assert np.allclose(folder.per_image["ssim"], model.per_image["ssim"], atol=1e-5)


def test_restorations_of_real_scenes(realdp_dpdd, tmp_path):
    """Two real Canon scenes: their (L+R)/2 as 16-bit PNGs, scored under every protocol."""
    base = realdp_dpdd / "dd_dp_dataset_canon"
    rows, rdir = [], tmp_path / "r"
    for k in range(2):
        scene = f"canon_{k:02d}"
        row = {"scene": scene, "split": "test", "category": "", "combined": "", "defocus": "", "bit_depth": 16,
               "left": str(base / f"test_l/source/{scene}_L.png"), "right": str(base / f"test_r/source/{scene}_R.png"),
               "target": str(base / f"test_c/target/{scene}.png")}
        h, w = read_image_raw(row["target"]).shape[:2]
        rows.append({**row, "height": h, "width": w})
        write_image(rdir / f"{scene}.png", 0.5 * (read_image(row["left"]) + read_image(row["right"])), bits=16)
    root = tmp_path / "data"
    root.mkdir()
    write_manifest(root, rows)
    res = evaluate_restorations(rdir, root, out_dir=tmp_path / "o", cfg=dataclasses.replace(CFG, protocols=("all",)),
                                quiet=True)
    record = read_protocols(tmp_path / "o" / PROTOCOLS_JSON)
    assert res.summary["n_images"] == 2 and set(record["protocols"]) == set(PROTOCOLS)
    for pid in list(PROTOCOLS)[1:]:
        assert record["protocols"][pid]["drift_from_default"]["psnr"]["n_images"] == 2


def test_restoration_labels_come_from_ldp_labels_with_the_subsets_label():
    from ldp.data.manifest import UNVERIFIED_LISTS
    from ldp.labels import restoration_labels

    summary = {"data_source": {"name": "dpdd", "split": "test", "image_sizes_wxh": {"1680x1120": 76},
                               "categories": UNVERIFIED_LISTS},
               "metrics": {"all": {"n_images": 76}, "indoor": {"n_images": 37}, "outdoor": {"n_images": 39}}}
    labels = restoration_labels(summary, Path("published/method-x"))
    assert labels["subsets"] == f"indoor/outdoor: {UNVERIFIED_LISTS}"
    assert any("UNVERIFIED scene lists" in c for c in labels["caveats"])
    assert labels["inference"] == "n/a (restorations from published/method-x)"
