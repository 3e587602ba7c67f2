"""The evaluation runner, end to end on a tiny dataset (the bootstrap statistics: tests/test_stats.py)."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ldp.blurmap.io import save_blurmap, write_meta
from ldp.config import ConfigError, section
from ldp.data.manifest import write_manifest
from ldp.deblur import DeblurError, deblur_pair
from ldp.evaluate import EvalConfig, EvaluationError, evaluate, format_summary
from ldp.imageio import read_image, read_image_raw, write_image
from ldp.metrics import compute_metrics
from ldp.registry import register_model, unregister_model

H, W = 40, 56


class MeanOfViews(nn.Module):
    """out = gain * (L + R) / 2 + bias: deterministic, with weights to save and load."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * 0.5 * (x[:, :3] + x[:, 3:6]) + self.bias


def _mean_model(**overrides) -> nn.Module:
    return MeanOfViews()


class MeanPlusMap(MeanOfViews):
    """out = (L + R) / 2 + 0.1 * M: shows whether the blur map reached the network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 9
        return super().forward(x) + 0.1 * x[:, 8:9]


def _blurmap_model(**overrides) -> nn.Module:
    return MeanPlusMap()


class CropsOneRow(MeanOfViews):
    """Returns one row too few on its second call: a run that fails half way."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CropsOneRow.calls += 1
        out = super().forward(x)
        return out[:, :, 1:] if CropsOneRow.calls > 1 else out


def _failing_model(**overrides) -> nn.Module:
    CropsOneRow.calls = 0
    return CropsOneRow()


TEST_MODELS = {"test-eval-mean": ("dp", _mean_model), "test-eval-blurmap": ("dp+blurmap", _blurmap_model),
               "test-eval-fails": ("dp", _failing_model)}


@pytest.fixture(scope="module", autouse=True)
def test_models():
    """Registered for this module only, so registry-wide tests elsewhere never see them."""
    for name, (kind, factory) in TEST_MODELS.items():
        register_model(name, input_kind=kind, inference="whole", description="test only")(factory)
    yield
    for name in TEST_MODELS:
        unregister_model(name)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """4 test scenes (2 indoor, 2 outdoor) + 1 train scene, 16-bit PNGs in the DPDD layout."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    rows = []
    for k, (split, cat) in enumerate([("test", "indoor"), ("test", "outdoor"), ("test", "indoor"),
                                      ("test", "outdoor"), ("train", "indoor")]):
        scene = f"s{k:02d}"
        target = rng.random((H, W, 3)).astype(np.float32)
        base = "dd_dp_dataset_canon"
        paths = {
            "target": f"{base}/{split}_c/target/{scene}.png",
            "left": f"{base}/{split}_l/source/{scene}_L.png",
            "right": f"{base}/{split}_r/source/{scene}_R.png",
        }
        write_image(root / paths["target"], target)
        for view in ("left", "right"):
            noisy = np.clip(target + rng.normal(0, 0.05 * (k + 1), target.shape), 0, 1)
            write_image(root / paths[view], noisy)
        rows.append({"scene": scene, "split": split, "category": cat, **paths, "combined": "", "defocus": "",
                     "height": H, "width": W, "bit_depth": 16})
    write_manifest(root, rows)
    return root


def _expected(root, scene: str, gain: float = 1.0) -> dict[str, float]:
    base = root / "dd_dp_dataset_canon"
    left = read_image(base / f"test_l/source/{scene}_L.png")
    right = read_image(base / f"test_r/source/{scene}_R.png")
    target = read_image(base / f"test_c/target/{scene}.png")
    to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    pred = (gain * 0.5 * (to_t(left) + to_t(right))).clamp(0, 1)
    return {k: v.item() for k, v in compute_metrics(pred, to_t(target)).items()}


@pytest.fixture()
def no_lpips_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))


def test_evaluate_end_to_end(tiny_dataset, tmp_path, no_lpips_weights):
    out = tmp_path / "run"
    cfg = EvalConfig(save_samples=2, bootstrap=500, device="cpu")
    res = evaluate("test-eval-mean", None, tiny_dataset, "test", out, cfg=cfg, quiet=True)

    table = pd.read_csv(out / "per_image.csv", dtype={"scene": str})
    assert list(table.columns) == ["scene", "category", "psnr", "ssim", "mae", "rmse", "lpips"]
    assert table["scene"].tolist() == ["s00", "s01", "s02", "s03"]  # train scene excluded
    for _, row in table.iterrows():
        want = _expected(tiny_dataset, row["scene"])
        for k in ("psnr", "ssim", "mae", "rmse"):
            assert row[k] == pytest.approx(want[k], rel=1e-8, abs=1e-10)
    assert table["lpips"].isna().all()  # unavailable is empty, never 0

    summary = json.loads((out / "metrics.json").read_text())
    assert summary == res.summary
    assert summary["protocol"] == "dpdd16-restormer-v1"
    assert summary["model"] == "test-eval-mean"
    assert summary["weights"] == "random-init"
    assert summary["clip_weights"] is None
    assert summary["data_source"]["split"] == "test" and summary["data_source"]["bit_depth"] == [16]
    assert summary["lpips"]["available"] is False and "not found" in summary["lpips"]["reason"]
    m = summary["metrics"]
    assert (m["all"]["n_images"], m["indoor"]["n_images"], m["outdoor"]["n_images"]) == (4, 2, 2)
    assert m["all"]["psnr"]["mean"] == pytest.approx(table["psnr"].mean())
    assert m["indoor"]["ssim"]["mean"] == pytest.approx(table.loc[table.category == "indoor", "ssim"].mean())
    lo, hi = m["all"]["psnr"]["ci95"]
    assert lo <= m["all"]["psnr"]["mean"] <= hi and lo < hi
    assert m["all"]["lpips"] == {"mean": None, "ci95": None}
    assert m["all"]["rmse_from_mean_psnr"] == pytest.approx(10 ** (-m["all"]["psnr"]["mean"] / 20))
    assert m["all"]["rmse"]["mean"] >= m["all"]["rmse_from_mean_psnr"]  # Jensen
    assert summary["timing_s"]["model"] > 0 and summary["timing_s"]["metrics"] > 0

    samples = sorted(p.name for p in (out / "samples").iterdir())
    assert samples == ["s00.png", "s01.png"]
    assert read_image_raw(out / "samples" / "s00.png").dtype == np.uint16
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert "MSE_rel (RMSE)" in format_summary(summary) and "n/a" in format_summary(summary)


def test_evaluate_loads_weights_and_records_hash(tiny_dataset, tmp_path, no_lpips_weights):
    model = MeanOfViews()
    with torch.no_grad():
        model.gain.fill_(0.9)
    ckpt = tmp_path / "w.pth"
    torch.save({"params": model.state_dict()}, ckpt)  # Restormer-style wrapper
    out = tmp_path / "run"
    evaluate("test-eval-mean", ckpt, tiny_dataset, "test", out,
             cfg=EvalConfig(save_samples=0, bootstrap=100, device="cpu", max_images=2), quiet=True)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["weights"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert summary["weights"]["path"] == str(ckpt.resolve())
    table = pd.read_csv(out / "per_image.csv", dtype={"scene": str})
    assert len(table) == 2 and not (out / "samples").exists()
    assert table.loc[0, "psnr"] == pytest.approx(_expected(tiny_dataset, "s00", gain=0.9)["psnr"], rel=1e-8)
    assert table.loc[0, "psnr"] != pytest.approx(_expected(tiny_dataset, "s00")["psnr"], rel=1e-6)


def test_evaluate_tiled_equals_whole_for_pixelwise_model(tiny_dataset, tmp_path, no_lpips_weights):
    cfg = EvalConfig(save_samples=0, bootstrap=50, device="cpu")
    whole = evaluate("test-eval-mean", None, tiny_dataset, "test", tmp_path / "w", cfg=cfg, quiet=True)
    tiled_cfg = EvalConfig(save_samples=0, bootstrap=50, device="cpu", tiling="tiled", tile=16, overlap=8)
    tiled = evaluate("test-eval-mean", None, tiny_dataset, "test", tmp_path / "t", cfg=tiled_cfg, quiet=True)
    assert tiled.summary["inference"] == {"mode": "tiled", "tile": 16, "overlap": 8, "registered": "whole",
                                          "official": False, "deviation": tiled.summary["inference"]["deviation"]}
    assert "tiled" in tiled.summary["inference"]["deviation"] and "whole" in tiled.summary["inference"]["deviation"]
    assert np.allclose(tiled.per_image["psnr"], whole.per_image["psnr"], atol=1e-6)


def _blurmap_dir(root, value: float, kind: str = "random"):
    for k in range(4):
        save_blurmap(root, f"s{k:02d}", np.full((4, 5), value, np.float32))  # patch grid, 10-px patches
    write_meta(root, {"estimator": "clip", "clip_model": "ViT-B-32", "weights_kind": kind, "patch_size": 10})
    return root


def test_evaluate_reads_blurmaps_and_records_clip_weights(tiny_dataset, tmp_path, no_lpips_weights):
    cfg = EvalConfig(save_samples=0, bootstrap=50, device="cpu")
    zero = evaluate("test-eval-blurmap", None, tiny_dataset, "test", tmp_path / "z",
                    blurmap_dir=_blurmap_dir(tmp_path / "maps0", 0.0), cfg=cfg, quiet=True)
    one = evaluate("test-eval-blurmap", None, tiny_dataset, "test", tmp_path / "o",
                   blurmap_dir=_blurmap_dir(tmp_path / "maps1", 1.0, "openai"), cfg=cfg, quiet=True)
    assert zero.summary["clip_weights"] == "random" and one.summary["clip_weights"] == "openai"
    assert zero.summary["blurmap"]["meta"]["clip_model"] == "ViT-B-32"
    assert zero.per_image.loc[0, "psnr"] == pytest.approx(_expected(tiny_dataset, "s00")["psnr"], rel=1e-8)
    assert one.per_image.loc[0, "psnr"] != pytest.approx(zero.per_image.loc[0, "psnr"], rel=1e-3)


def test_deblur_pair_writes_16bit_png(tiny_dataset, tmp_path):
    from ldp.blurmap import BlurMapConfig

    base = tiny_dataset / "dd_dp_dataset_canon" / "test_l" / "source"
    left, right = base / "s00_L.png", tiny_dataset / "dd_dp_dataset_canon/test_r/source/s00_R.png"
    out = tmp_path / "o" / "restored.png"
    rec = deblur_pair(left, right, out, "test-eval-mean", None, device="cpu")
    img = read_image_raw(out)
    assert img.dtype == np.uint16 and img.shape == (H, W, 3)
    want = np.clip(0.5 * (read_image(left) + read_image(right)), 0, 1)
    assert np.abs(read_image(out) - want).max() <= 1 / 65535 + 1e-6
    assert rec["weights"] == "random-init" and rec["blurmap"] is None

    grid = tmp_path / "m.npy"
    np.save(grid, np.ones((4, 5), np.float32))
    deblur_pair(left, right, out, "test-eval-blurmap", None, blurmap=grid, device="cpu",
                blurmap_cfg=BlurMapConfig(patch_size=10))
    assert np.abs(read_image(out) - np.clip(want + 0.1, 0, 1)).max() <= 1 / 65535 + 1e-6
    (tmp_path / "corrupt.npy").write_text("not numpy")
    for bad, message in ((tmp_path / "absent.npy", "absent.npy: blur map not found"),
                         (tmp_path / "corrupt.npy", r"corrupt.npy: cannot read blur map \(.npy expected\)")):
        with pytest.raises(DeblurError, match=message):
            deblur_pair(left, right, out, "test-eval-blurmap", None, blurmap=bad, device="cpu")
    rec = deblur_pair(left, right, out, "test-eval-blurmap", None, device="cpu",
                      blurmap_cfg=BlurMapConfig(estimator="classical", patch_size=10, max_disparity=2))
    assert rec["blurmap"]["source"] == "estimated" and rec["blurmap"]["estimator"] == "classical"
    with pytest.raises(DeblurError, match=r"\.png"):
        deblur_pair(left, right, tmp_path / "o.jpg", "test-eval-mean", None, device="cpu")


def test_failed_run_leaves_previous_results_untouched(tiny_dataset, tmp_path, no_lpips_weights):
    out = tmp_path / "run"
    cfg = EvalConfig(save_samples=3, bootstrap=50, device="cpu")
    evaluate("test-eval-mean", None, tiny_dataset, "test", out, cfg=cfg, quiet=True)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(EvaluationError, match="model output"):
        evaluate("test-eval-fails", None, tiny_dataset, "test", out, cfg=cfg, quiet=True)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # no half-written CSV/JSON, no partial samples, no temp leftovers


def test_evaluate_bad_inputs(tiny_dataset, tmp_path):
    cfg = EvalConfig(device="cpu", lpips=False)
    with pytest.raises(EvaluationError, match="blurmap_dir"):
        evaluate("test-eval-blurmap", None, tiny_dataset, "test", tmp_path / "a", cfg=cfg, quiet=True)
    with pytest.raises(EvaluationError, match="no rows for split 'val'"):
        evaluate("test-eval-mean", None, tiny_dataset, "val", tmp_path / "b", cfg=cfg, quiet=True)
    with pytest.raises(EvaluationError, match="unknown protocol"):
        evaluate("test-eval-mean", None, tiny_dataset, "test", tmp_path / "c",
                 cfg=EvalConfig(protocol="dpdd8-v0"), quiet=True)
    with pytest.raises(EvaluationError, match="weights file not found"):
        evaluate("test-eval-mean", tmp_path / "missing.pth", tiny_dataset, "test", tmp_path / "d", cfg=cfg,
                 quiet=True)
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in "abcd")


def test_eval_config_section():
    cfg = section({"evaluate": {"split": "val", "bootstrap": 50, "tiling": "tiled"}}, "evaluate", EvalConfig)
    assert (cfg.split, cfg.bootstrap, cfg.tiling) == ("val", 50, "tiled")
    with pytest.raises(ConfigError, match="evaluate.bootstap"):
        section({"evaluate": {"bootstap": 5}}, "evaluate", EvalConfig)
    with pytest.raises(ConfigError, match="evaluate.tiling"):
        section({"evaluate": {"tiling": "sometimes"}}, "evaluate", EvalConfig)


def test_evaluate_on_real_dp_scenes(realdp_dpdd, tmp_path, no_lpips_weights):
    """The runner on real DPDD Canon pairs (a manifest with absolute paths; no subset labels)."""
    from skimage.metrics import structural_similarity

    base = realdp_dpdd / "dd_dp_dataset_canon"
    rows = [{"scene": f"canon_{k:02d}", "split": "test", "category": "",
             "left": str(base / f"test_l/source/canon_{k:02d}_L.png"),
             "right": str(base / f"test_r/source/canon_{k:02d}_R.png"),
             "target": str(base / f"test_c/target/canon_{k:02d}.png"), "combined": "", "defocus": "",
             "height": 496, "width": 832, "bit_depth": 16} for k in range(2)]
    root = tmp_path / "real"
    root.mkdir()
    write_manifest(root, rows)
    res = evaluate("test-eval-mean", None, root, "test", tmp_path / "out",
                   cfg=EvalConfig(save_samples=1, bootstrap=100, device="cpu"), quiet=True)
    m = res.summary["metrics"]
    assert m["all"]["n_images"] == 2 and m["indoor"]["n_images"] == 0 and m["indoor"]["psnr"]["mean"] is None
    left, right = read_image(rows[0]["left"]), read_image(rows[0]["right"])
    pred = np.clip(0.5 * (left + right), 0, 1).astype(np.float64)
    want = structural_similarity(pred, read_image(rows[0]["target"]).astype(np.float64), data_range=1,
                                 channel_axis=-1)
    assert abs(res.per_image.loc[0, "ssim"] - want) < 1e-6


# ---------------------------------------------------------------------- inference modes and combined inputs (issue 12)


def test_restormer_dp_is_scored_whole_and_tiling_labels_the_row(tiny_dataset, tmp_path, no_lpips_weights):
    """The official test_dual_pixel_defocus_deblur.py runs the whole image: that is restormer-dp's registered mode,
    so the paper (and smoke) profile's ``tiling: auto`` scores it whole; ``tiled`` is a fallback that says so."""
    from ldp.registry import build_model

    model = build_model("restormer-dp", tiny=True)
    cfg = EvalConfig(save_samples=0, bootstrap=50, device="cpu", max_images=1)
    auto = evaluate("restormer-dp", None, tiny_dataset, "test", tmp_path / "auto", cfg=cfg, model=model, quiet=True)
    assert auto.summary["inference"] == {"mode": "whole", "registered": "whole", "official": True, "deviation": None}
    recorded = json.loads((tmp_path / "auto" / "metrics.json").read_text())["inference"]
    assert recorded == auto.summary["inference"]

    tiled_cfg = EvalConfig(save_samples=0, bootstrap=50, device="cpu", max_images=1, tiling="tiled", tile=16,
                           overlap=8)
    tiled = evaluate("restormer-dp", None, tiny_dataset, "test", tmp_path / "tiled", cfg=tiled_cfg, model=model,
                     quiet=True)
    record = tiled.summary["inference"]
    assert (record["mode"], record["official"], record["tile"], record["overlap"]) == ("tiled", False, 16, 8)
    assert record["deviation"] == ("scored with tiled inference (16-px tiles, 8-px blended overlap) instead of "
                                   "whole, the registered mode of restormer-dp (evaluate.tiling: tiled)")
    assert tiled.per_image["psnr"].iloc[0] != pytest.approx(auto.per_image["psnr"].iloc[0], abs=1e-9)


@pytest.mark.parametrize("name", ["deeprft", "deeprft-dp"])
def test_deeprft_rows_are_scored_with_the_official_windows(name, tiny_dataset, tmp_path, no_lpips_weights,
                                                          monkeypatch):
    """DeepRFT's test.py scores DPDD with non-overlapping 512-px windows, no blending: both DeepRFT rows register
    ``windows`` and the evaluation runs ldp.models.tiling.window_forward with the model's own window."""
    import ldp.models.tiling as tiling
    from ldp.registry import build_model

    calls = []
    real = tiling.window_forward

    def spy(model, x, window, batch_size=4):
        calls.append((tuple(x.shape[-2:]), window))
        return real(model, x, window, batch_size)

    monkeypatch.setattr(tiling, "window_forward", spy)
    model = build_model(name, tiny=True)
    assert model.inference_window == 512
    cfg = EvalConfig(save_samples=0, bootstrap=50, device="cpu", max_images=1)
    res = evaluate(name, None, tiny_dataset, "test", tmp_path / "w", cfg=cfg, model=model, quiet=True)
    assert calls == [((H, W), 512)]
    assert res.summary["inference"] == {"mode": "windows", "window": 512, "registered": "windows", "official": True,
                                        "deviation": None}

    model.inference_window = 16  # small windows on the small image: the procedure, not the whole image, is scored
    res16 = evaluate(name, None, tiny_dataset, "test", tmp_path / "w16", cfg=cfg, model=model, quiet=True)
    assert calls[-1] == ((H, W), 16) and res16.summary["inference"]["window"] == 16
    assert res16.per_image["psnr"].iloc[0] != pytest.approx(res.per_image["psnr"].iloc[0], abs=1e-9)


@pytest.fixture()
def combined_dataset(tiny_dataset, tmp_path):
    """The tiny test scenes plus a camera combined image C that differs from (L+R)/2 (it is the target here)."""
    import shutil

    root = tmp_path / "with_c"
    shutil.copytree(tiny_dataset, root, ignore=shutil.ignore_patterns(".cache"))
    table = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    rows = table.to_dict("records")
    for row in rows:
        row["combined"] = row["target"].replace("_c/target/", "_c/source/")
        write_image(root / row["combined"], read_image(root / row["target"]))
    write_manifest(root, rows)
    return root


class PassThrough(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.fixture()
def combined_model():
    register_model("test-eval-combined", input_kind="combined", inference="whole", description="test only")(
        PassThrough)
    yield "test-eval-combined"
    unregister_model("test-eval-combined")


def test_combined_input_models_get_the_camera_combined_image(combined_dataset, tiny_dataset, combined_model,
                                                            tmp_path, no_lpips_weights):
    """A combined-input model is fed DPDD's *_c/source where the data has it (the official single-image tests read
    it), (L+R)/2 only without it; metrics.json records which."""
    from ldp.models.input_baselines import FED_CAMERA_C, FED_VIEW_AVERAGE

    cfg = EvalConfig(save_samples=0, bootstrap=50, device="cpu")
    with_c = evaluate(combined_model, None, combined_dataset, "test", tmp_path / "c", cfg=cfg, quiet=True)
    assert with_c.summary["combined_input"] == {FED_CAMERA_C: 4}
    assert (with_c.per_image["psnr"] == 100.0).all()  # C is the target here: the identity scores it exactly
    without = evaluate(combined_model, None, tiny_dataset, "test", tmp_path / "lr", cfg=cfg, quiet=True)
    assert without.summary["combined_input"] == {FED_VIEW_AVERAGE: 4}
    for _, row in without.per_image.iterrows():
        assert row["psnr"] == pytest.approx(_expected(tiny_dataset, row["scene"])["psnr"], rel=1e-8)
