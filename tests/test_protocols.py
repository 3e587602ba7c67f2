"""The evaluation protocols (ldp/protocols.py): each one against an independent computation with the library it names
(cv2 for reading and resizing, scikit-image's structural_similarity with the named options, the PSNR formula in
numpy) on real DPDD-layout images, one evaluation pass scoring every protocol, the drift table, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from skimage.metrics import structural_similarity

from ldp.cli import main
from ldp.config import section
from ldp.data.manifest import layout_paths, write_manifest
from ldp.evaluate import PROTOCOLS_JSON, EvalConfig, EvaluationError, evaluate
from ldp.imageio import write_image
from ldp.literature import PROTOCOLS as LITERATURE_PROTOCOLS
from ldp.protocol_drift import DRIFT_CSV, DRIFT_MD, drift_files, drift_table, read_protocols
from ldp.protocols import (
    DEFAULT_PROTOCOL,
    PROTOCOLS,
    ProtocolError,
    expand_protocols,
    get_protocol,
    half_resolution,
    parse_protocol_list,
    reduce_to_8bit,
    score,
)

H, W = 30, 44


# ------------------------------------------------------------------------------------------ the registry


def test_registry_is_frozen_versioned_and_cited():
    assert DEFAULT_PROTOCOL == "dpdd16-restormer-v1" and list(PROTOCOLS)[0] == DEFAULT_PROTOCOL
    assert set(PROTOCOLS) == set(LITERATURE_PROTOCOLS)  # the literature table names the same ids
    for pid, p in PROTOCOLS.items():
        assert p.id == pid and p.version == 1 and pid.endswith(f"-v{p.version}")
        assert p.cites and all(isinstance(c, str) and c for c in p.cites)
        with pytest.raises(AttributeError):
            p.reading = "16bit"  # frozen
        assert json.loads(json.dumps(p.spec()))["id"] == pid
    default = PROTOCOLS[DEFAULT_PROTOCOL]
    assert (default.reading, default.resolution, default.ssim_kind, default.lpips) == ("16bit", "full",
                                                                                     "skimage-uniform7", True)
    assert "test_dual_pixel_defocus_deblur.py" in default.cites[0]
    mm = PROTOCOLS["dpdd8-mmagic-v1"]
    assert (mm.reading, mm.ssim_kind, mm.ssim_data_range, mm.ssim_sample_covariance) == ("8bit", "gaussian11-255",
                                                                                       255.0, False)
    assert "DDDNet ran its network on half-resolution inputs" in PROTOCOLS["dpdd16-half-v1"].scope


def test_protocol_lists():
    assert expand_protocols(()) == (DEFAULT_PROTOCOL,)
    assert expand_protocols(["all"]) == tuple(PROTOCOLS)
    # the default joins whenever another protocol is asked for (the drift is measured from it)
    assert expand_protocols(["dpdd16-half-v1"], "dpdd8-mmagic-v1") == ("dpdd8-mmagic-v1", DEFAULT_PROTOCOL,
                                                                       "dpdd16-half-v1")
    assert expand_protocols(["dpdd8-restormer-v1", "all", DEFAULT_PROTOCOL])[0] == DEFAULT_PROTOCOL
    assert parse_protocol_list(" dpdd8-mmagic-v1 , dpdd16-half-v1") == ("dpdd8-mmagic-v1", "dpdd16-half-v1")
    with pytest.raises(ProtocolError, match="unknown protocol 'dpdd8-v0'; known: dpdd16-restormer-v1"):
        parse_protocol_list("all,dpdd8-v0")
    with pytest.raises(ProtocolError, match="--protocols"):
        parse_protocol_list(" , ")
    with pytest.raises(ProtocolError, match="unknown protocol"):
        get_protocol("nope")


# ------------------------------------------------------------------------- the pieces against the libraries


def test_8bit_reading_is_what_cv2_and_pil_return(tmp_path):
    """A 16-bit PNG read as 8-bit by cv2.imread(IMREAD_COLOR) (IFAN, mmagic) or PIL .convert('RGB') (DDDNet) is
    v >> 8, for every one of the 65536 values."""
    from PIL import Image

    v = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    path = tmp_path / "all16.png"
    assert cv2.imwrite(str(path), np.stack([v, v[::-1], v.T], axis=-1))
    ours = reduce_to_8bit(torch.from_numpy(cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float32) / 65535),
                          16)
    via_cv2 = cv2.imread(str(path), cv2.IMREAD_COLOR).astype(np.float32) / 255
    via_pil = np.asarray(Image.open(path).convert("RGB"))[..., ::-1].astype(np.float32) / 255  # RGB -> BGR
    assert torch.equal(ours, torch.from_numpy(via_cv2))
    assert np.array_equal(via_pil, via_cv2)
    eight = torch.rand(1, 3, 4, 4)
    assert torch.equal(reduce_to_8bit(eight, 8), eight) and torch.equal(reduce_to_8bit(eight, 0), eight)


def test_half_resolution_is_cv2_inter_area(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.random((H, W, 3)).astype(np.float32)
    ours = half_resolution(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    ref = cv2.resize(img, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
    assert ours.shape == ref.shape and np.abs(ours - ref).max() < 1e-6
    odd = half_resolution(torch.from_numpy(img[:-1, :-1]).permute(2, 0, 1)[None])
    assert odd.shape[-2:] == ((H - 1) // 2, (W - 1) // 2)  # the odd last row and column are dropped


# -------------------------------------------------------------------------------- each protocol, real images


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def _reference(pid: str, pred: np.ndarray, target_path: Path) -> tuple[float, float]:
    """PSNR and SSIM of the float restoration ``pred`` (H×W×3 RGB in [0, 1]) against the target file, computed with
    the libraries the protocol names and nothing of ldp."""
    if PROTOCOLS[pid].reading == "8bit":
        target = cv2.cvtColor(cv2.imread(str(target_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) / 255.0
    else:
        target = cv2.cvtColor(cv2.imread(str(target_path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB) / 65535.0
    pred = np.clip(pred, 0, 1).astype(np.float64)
    if PROTOCOLS[pid].resolution == "half":
        h, w = target.shape[:2]
        pred = cv2.resize(pred, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        target = cv2.resize(target, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    if PROTOCOLS[pid].ssim_kind == "gaussian11-255":
        ssim = structural_similarity(pred * 255, target * 255, data_range=255, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, channel_axis=-1)
    else:
        ssim = structural_similarity(pred, target, data_range=1, channel_axis=-1)
    return _psnr(pred, target), float(ssim)


@pytest.mark.parametrize("pid", list(PROTOCOLS))
def test_each_protocol_matches_an_independent_computation_on_real_images(pid, realdp_dpdd):
    base = realdp_dpdd / "dd_dp_dataset_canon"
    for k in range(2):
        read16 = lambda p: cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)  # noqa: E731
        left = read16(base / f"test_l/source/canon_{k:02d}_L.png")
        right = read16(base / f"test_r/source/canon_{k:02d}_R.png")
        target_path = base / f"test_c/target/canon_{k:02d}.png"
        target16 = read16(target_path)
        assert target16.dtype == np.uint16
        pred = 0.5 * (left.astype(np.float32) + right.astype(np.float32)) / 65535  # a float restoration
        want_psnr, want_ssim = _reference(pid, pred, target_path)
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]  # noqa
        got = score(PROTOCOLS[pid], to_t(pred), to_t(target16 / 65535.0), pred_bits=0, target_bits=16)
        assert abs(float(got["psnr"][0]) - want_psnr) < 1e-4, pid
        assert abs(float(got["ssim"][0]) - want_ssim) < 1e-5, pid


# ----------------------------------------------------------------------------------- one pass, every protocol


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """4 test scenes (2 indoor, 2 outdoor), 16-bit PNGs in the DPDD layout."""
    root = tmp_path_factory.mktemp("proto")
    rng = np.random.default_rng(3)
    rows = []
    for i, cat in enumerate(["indoor", "outdoor", "indoor", "outdoor"]):
        paths = layout_paths("test", f"p{i}")
        target = rng.random((H, W, 3)).astype(np.float32)
        row = {"scene": f"p{i}", "split": "test", "category": cat, "height": H, "width": W, "bit_depth": 16}
        for col in ("target", "left", "right"):
            img = target if col == "target" else np.clip(target + 0.04 * (i + 1) * rng.standard_normal(target.shape),
                                                         0, 1).astype(np.float32)
            write_image(root / paths[col], img, bits=16)
            row[col] = paths[col]
        rows.append(row)
    write_manifest(root, rows)
    return root


CFG = EvalConfig(save_samples=0, bootstrap=300, lpips=False, device="cpu")


def test_one_pass_scores_every_protocol_and_keeps_the_default_outputs(tiny, tmp_path):
    import dataclasses

    plain = evaluate("input-average", None, tiny, out_dir=tmp_path / "plain", cfg=CFG, quiet=True)
    cfg = dataclasses.replace(CFG, protocols=("all",))
    res = evaluate("input-average", None, tiny, out_dir=tmp_path / "all", cfg=cfg, quiet=True)
    # the default protocol's files are as without the other protocols
    assert (tmp_path / "all/per_image.csv").read_bytes() == (tmp_path / "plain/per_image.csv").read_bytes()
    assert res.summary["metrics"] == plain.summary["metrics"]
    assert res.summary["protocols"] == list(PROTOCOLS) and plain.summary["protocols"] == [DEFAULT_PROTOCOL]
    assert json.loads((tmp_path / "all/scores.json").read_text()) == json.loads((tmp_path / "plain/scores.json")
                                                                                 .read_text())
    record = read_protocols(tmp_path / "all" / PROTOCOLS_JSON)
    assert record["default"] == DEFAULT_PROTOCOL and list(record["protocols"]) == list(PROTOCOLS)
    default_rows = pd.DataFrame(record["protocols"][DEFAULT_PROTOCOL]["per_image"])
    assert np.allclose(default_rows["psnr"], res.per_image["psnr"], rtol=0, atol=1e-9)
    assert record["protocols"][DEFAULT_PROTOCOL]["drift_from_default"] is None
    for pid in list(PROTOCOLS)[1:]:
        entry = record["protocols"][pid]
        rows = pd.DataFrame(entry["per_image"])
        assert rows["scene"].tolist() == ["p0", "p1", "p2", "p3"] and rows["lpips"].isna().all()
        for m in ("psnr", "ssim"):
            drift = entry["drift_from_default"][m]
            want = float((rows[m] - default_rows[m]).mean())
            assert drift["mean_diff"] == pytest.approx(want, abs=1e-12)
            assert drift["ci_low"] <= drift["mean_diff"] <= drift["ci_high"] and drift["n_images"] == 4
        assert entry["metrics"]["indoor"]["n_images"] == 2
        assert entry["metrics"]["all"]["psnr"]["mean"] == pytest.approx(rows["psnr"].mean())
    # 8-bit reading moves the numbers; on noisy random images the 2x2 mean removes noise, so half-res PSNR is higher
    assert record["protocols"]["dpdd8-restormer-v1"]["drift_from_default"]["psnr"]["mean_diff"] != 0
    assert record["protocols"]["dpdd16-half-v1"]["drift_from_default"]["psnr"]["mean_diff"] > 1


def test_protocol_config_keys(tiny, tmp_path):
    cfg = section({"evaluate": {"protocols": ["all"], "cpu_threads": 2}}, "evaluate", EvalConfig)
    assert cfg.protocols == ("all",) and cfg.cpu_threads == 2
    bad = EvalConfig(protocols=("dpdd8-v0",), device="cpu", lpips=False)
    with pytest.raises(EvaluationError, match="evaluate.protocols: unknown protocol 'dpdd8-v0'"):
        evaluate("input-average", None, tiny, out_dir=tmp_path / "bad", cfg=bad, quiet=True)
    with pytest.raises(EvaluationError, match="evaluate.cpu_threads"):
        evaluate("input-average", None, tiny, out_dir=tmp_path / "bad", cfg=EvalConfig(cpu_threads=-1, device="cpu"),
                 quiet=True)
    assert not (tmp_path / "bad").exists()
    before = torch.get_num_threads()
    try:
        evaluate("input-average", None, tiny, out_dir=tmp_path / "t", quiet=True,
                 cfg=EvalConfig(cpu_threads=2, device="cpu", lpips=False, save_samples=0, bootstrap=10))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_drift_table_from_eval_folders(tiny, tmp_path):
    import dataclasses

    eval_dir = tmp_path / "eval"
    cfg = dataclasses.replace(CFG, protocols=("all",))
    for name in ("input-average", "input-combined"):
        evaluate(name, None, tiny, out_dir=eval_dir / name, cfg=cfg, quiet=True)
    evaluate("input-average", None, tiny, out_dir=eval_dir / "only-default", cfg=CFG, quiet=True)
    df = drift_table(eval_dir, ["input-combined", "input-average", "not-run"])
    assert df["protocol"].tolist() == [p for p in PROTOCOLS for _ in range(2)]
    assert df["run"].tolist()[:2] == ["input-combined", "input-average"]
    first = df[df["protocol"] == DEFAULT_PROTOCOL]
    assert (first["psnr_diff"] == 0).all() and (first["psnr"] == first["psnr_default"]).all()
    record = read_protocols(eval_dir / "input-average" / PROTOCOLS_JSON)
    row = df[(df["protocol"] == "dpdd8-mmagic-v1") & (df["run"] == "input-average")].iloc[0]
    assert row["ssim_diff"] == pytest.approx(record["protocols"]["dpdd8-mmagic-v1"]["drift_from_default"]["ssim"]
                                             ["mean_diff"])
    assert row["psnr"] - row["psnr_default"] == pytest.approx(row["psnr_diff"], abs=1e-9)  # same images: paired
    files = drift_files(eval_dir, ["input-average"])
    assert set(files) == {DRIFT_CSV, DRIFT_MD}
    assert "## `dpdd16-half-v1`" in files[DRIFT_MD] and "| input-average | input-average | 4 |" in files[DRIFT_MD]
    assert pd.read_csv(__import__("io").StringIO(files[DRIFT_CSV]))["protocol"].nunique() == len(PROTOCOLS)
    # every folder with a protocols.json when no runs are named; a single-protocol run has only its default row
    assert set(drift_table(eval_dir)["run"]) == {"input-average", "input-combined", "only-default"}
    with_others = drift_table(eval_dir, ["input-combined"], others=True)
    assert list(with_others["run"].drop_duplicates()) == ["input-combined", "input-average", "only-default"]
    assert "(no protocols.json" in drift_files(tmp_path / "empty", [])[DRIFT_MD]


def test_tables_stage_writes_the_drift_table(tiny, tmp_path, monkeypatch):
    """pipelines/tables.py: write_tables puts protocol_drift.{csv,md} into results/tables in the same step."""
    from ldp.tables import write_tables

    eval_dir = tmp_path / "eval"
    import dataclasses

    for name in ("input-average", "input-combined"):
        evaluate(name, None, tiny, out_dir=eval_dir / name, cfg=dataclasses.replace(CFG, protocols=("all",)),
                 quiet=True)
    out = tmp_path / "tables"
    write_tables({}, eval_dir, out, extra_files=drift_files(eval_dir, ["input-combined", "input-average"]))
    assert (out / DRIFT_CSV).is_file() and (out / "tables.md").is_file()
    assert pd.read_csv(out / DRIFT_CSV).shape[0] == 2 * len(PROTOCOLS)


def test_cli_protocols_all(tiny, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["evaluate", "--model", "input-average", "--data", str(tiny), "--out", str(out), "--params",
                 str(tmp_path / "none.yaml"), "--protocols", "all"]) == 0
    printed = capsys.readouterr().out
    assert "dpdd8-mmagic-v1" in printed and "ΔPSNR" in printed
    assert list(read_protocols(out / PROTOCOLS_JSON)["protocols"]) == list(PROTOCOLS)
    assert main(["evaluate", "--model", "input-average", "--data", str(tiny), "--out", str(out), "--params",
                 str(tmp_path / "none.yaml"), "--protocols", "dpdd8-v0"]) == 2
    assert "unknown protocol 'dpdd8-v0'" in capsys.readouterr().err
    assert main(["evaluate", "--model", "input-average", "--restorations", str(tmp_path), "--data", str(tiny)]) == 2
    assert "give one of" in capsys.readouterr().err
