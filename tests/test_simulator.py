"""Physics and I/O tests of the synthetic DP defocus simulator (ldp.data.psf, ldp.data.synthetic)."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import maximum_filter

from ldp.config import ConfigError, section
from ldp.data import synthetic
from ldp.data.manifest import load_manifest, load_scene
from ldp.data.psf import ButterworthParams, ThinLens, dp_psfs
from ldp.data.synthetic import Layer, SyntheticConfig, SyntheticDataError, generate_synthetic, render_layers
from ldp.imageio import read_image_raw

REPO = Path(__file__).resolve().parents[1]
TINY = SyntheticConfig(height=48, width=64, train=2, val=1, test=1)
PSF_GRID = [
    ButterworthParams(n, cf, beta, ramp_floor=floor)
    for n in (3.0, 9.0)
    for cf in (2.5, 2.0)
    for beta in (0.1, 0.2)
    for floor in (0.0, 0.2)
]


def _load_check_realism():
    spec = importlib.util.spec_from_file_location("check_realism", REPO / "scripts" / "check_realism.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------ optics


def test_thin_lens_coc_sign_and_magnitude():
    lens = ThinLens(focal_length_mm=50.0, f_number=2.0, focus_distance_mm=2000.0, pixel_pitch_mm=0.01)
    assert lens.coc_px(2000.0) == 0.0
    far, near = lens.coc_px(8000.0), lens.coc_px(1000.0)
    assert far > 0 > near
    # textbook blur-disc diameter f^2 |d - d_f| / (N d (d_f - f)), in pixels
    expected = 50.0**2 * 6000.0 / (2.0 * 8000.0 * 1950.0) / 0.01
    assert far == pytest.approx(expected, rel=1e-12)
    assert lens.depth_for_coc(far) == pytest.approx(8000.0)
    assert lens.depth_for_coc(near) == pytest.approx(1000.0)
    with pytest.raises(ValueError):
        ThinLens(50.0, 2.0, 40.0, 0.01)


@pytest.mark.parametrize("coc", [0.0, 0.4, 1.0, 1.5, 2.0, 3.7, 8.0, 15.3])
def test_psfs_sum_to_one_mirror_and_swap(coc):
    for params in PSF_GRID:
        k_left, k_right = dp_psfs(coc, params)
        assert k_left.sum() == pytest.approx(1.0, abs=1e-12)
        assert k_right.sum() == pytest.approx(1.0, abs=1e-12)
        assert (k_left >= 0).all()
        np.testing.assert_array_equal(k_right, k_left[:, ::-1])  # mirror images
        np.testing.assert_allclose(k_left, k_left[::-1, :], atol=1e-15)  # symmetric in y
        neg_left, neg_right = dp_psfs(-coc, params)  # the other side of the focal plane swaps them
        np.testing.assert_array_equal(neg_left, k_right)
        np.testing.assert_array_equal(neg_right, k_left)


def test_psf_support_and_in_focus_delta():
    k_left, k_right = dp_psfs(0.0)
    assert k_left.shape == (1, 1) and k_left[0, 0] == 1.0 and k_right[0, 0] == 1.0
    small, _ = dp_psfs(4.0)
    large, _ = dp_psfs(12.0)
    assert large.shape[0] > small.shape[0]
    # far side: the left PSF leans to -x (content moves left in the left view, as in the Canon DPDD scenes)
    x = np.arange(large.shape[1]) - large.shape[1] // 2
    assert (large.sum(axis=0) * x).sum() < 0


# ------------------------------------------------------------------------------------------------ rendering


def _texture(rng, height, width):
    from scipy.ndimage import gaussian_filter

    tex = rng.random((height, width, 3)).astype(np.float32)
    return np.clip(0.5 + 2.0 * (gaussian_filter(tex, (1.0, 1.0, 0)) - 0.5), 0, 1).astype(np.float32)


def _box(height, width, y0, y1, x0, x1):
    mask = np.zeros((height, width), np.float32)
    mask[y0:y1, x0:x1] = 1.0
    return mask


def _shift_lr(left, right, max_shift=6):
    """Integer s maximising the correlation of left(x) with right(x + s) (s > 0: right view moved right)."""
    a = left.mean(axis=2)
    b = right.mean(axis=2)
    scores = {}
    for s in range(-max_shift, max_shift + 1):
        aa = a[:, max_shift:-max_shift]
        bb = np.roll(b, -s, axis=1)[:, max_shift:-max_shift]
        aa, bb = aa - aa.mean(), bb - bb.mean()
        scores[s] = float((aa * bb).sum() / np.sqrt((aa**2).sum() * (bb**2).sum()))
    return max(scores, key=scores.get)


def test_in_focus_layer_identical_and_disparity_flips():
    rng = np.random.default_rng(0)
    h, w = 96, 192
    far = Layer(_texture(rng, h, w), np.ones((h, w), np.float32), 10.0, "far")
    sharp = Layer(_texture(rng, h, w), _box(h, w, 8, 88, 70, 122), 0.0, "in focus")
    near = Layer(_texture(rng, h, w), _box(h, w, 0, h, 150, w), -10.0, "near")
    for linear in (False, True):
        scene = render_layers([far, sharp, near], ButterworthParams(), linear_light=linear)
        inner = (slice(10, 86), slice(72, 120))  # the in-focus box, away from the near layer's blur
        np.testing.assert_array_equal(scene.left[inner], scene.target[inner])
        np.testing.assert_array_equal(scene.right[inner], scene.target[inner])
        np.testing.assert_array_equal(scene.combined[inner], scene.target[inner])
        assert not np.array_equal(scene.left[:, :50], scene.target[:, :50])  # the far plane is blurred
        np.testing.assert_array_equal(scene.defocus[inner], 0.0)
        assert (scene.defocus[:, :60] == 10.0).all() and (scene.defocus[:, 155:] == -10.0).all()

    scene = render_layers([far, sharp, near], ButterworthParams())
    shift_far = _shift_lr(scene.left[:, 6:58], scene.right[:, 6:58])
    shift_near = _shift_lr(scene.left[:, 160:], scene.right[:, 160:])
    shift_focus = _shift_lr(scene.left[10:86, 72:120], scene.right[10:86, 72:120])
    assert shift_far > 0 > shift_near  # the sign flips across the focal plane
    assert shift_focus == 0
    assert min(shift_far, -shift_near) >= 2  # ~0.36 x CoC for the RDPD kernel


def test_generated_in_focus_pixels_match_target():
    """End to end, no noise: where nothing within the largest blur radius is defocused, L == R == target."""
    cfg = dataclasses.replace(
        TINY,
        height=96,
        width=128,
        noise_read=0.0,
        noise_shot=0.0,
        noise_target=0.0,
        subject_in_focus_prob=1.0,
        subject_area=(0.3, 0.4),
    )
    checked = 0
    for index in range(3):
        scene = synthetic.render_scene(cfg, "train", index)
        radius = int(np.ceil(cfg.max_coc_px * (0.5 + 1 / 7))) + 2
        clean = maximum_filter(np.abs(scene.defocus), size=2 * radius + 1) == 0
        checked += int(clean.sum())
        np.testing.assert_array_equal(scene.left[clean], scene.target[clean])
        np.testing.assert_array_equal(scene.right[clean], scene.target[clean])
        assert np.abs(scene.left - scene.target).max() > 0.05  # and elsewhere defocus blur exists
    assert checked > 500


# ------------------------------------------------------------------------------------------------ dataset


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files(tmp_path):
    first = generate_synthetic(TINY, tmp_path / "a", progress=False)
    second = generate_synthetic(TINY, tmp_path / "b", progress=False)
    files_a, files_b = _tree(first), _tree(second)
    assert len(files_a) == 4 * 5 + 2  # 4 scenes x (L, R, C, target, defocus) + manifest + config
    assert files_a == files_b
    other = generate_synthetic(dataclasses.replace(TINY, seed=1), tmp_path / "c", progress=False)
    files_c = _tree(other)
    assert files_c.keys() == files_a.keys()
    assert (
        files_c["dd_dp_dataset_canon/test_c/target/test_0000.png"]
        != files_a["dd_dp_dataset_canon/test_c/target/test_0000.png"]
    )


def test_layout_manifest_and_formats(tmp_path):
    root = generate_synthetic(TINY, tmp_path / "syn", progress=False)
    table = load_manifest(root)
    assert list(table["split"]) == ["train", "train", "val", "test"]
    assert table["scene"].is_unique
    row = table.iloc[3]
    assert row["combined"] == "dd_dp_dataset_canon/test_c/source/test_0000.png"
    assert row["left"] == "dd_dp_dataset_canon/test_l/source/test_0000_L.png"
    assert row["right"] == "dd_dp_dataset_canon/test_r/source/test_0000_R.png"
    assert row["target"] == "dd_dp_dataset_canon/test_c/target/test_0000.png"
    assert (row["height"], row["width"], row["bit_depth"]) == (48, 64, 16)
    raw = read_image_raw(root / row["left"])
    assert raw.dtype == np.uint16 and raw.shape == (48, 64, 3)
    scene = load_scene(root, row)
    assert scene["defocus"].dtype == np.float32 and scene["defocus"].shape == (48, 64)
    assert np.abs(scene["defocus"]).max() <= TINY.max_coc_px
    # the combined view is the mean of the two (noisy) views, up to 16-bit rounding
    np.testing.assert_allclose(scene["combined"], 0.5 * (scene["left"] + scene["right"]), atol=2 / 65535)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp folder left behind


def test_failed_build_leaves_no_partial_output(tmp_path, monkeypatch):
    root = generate_synthetic(TINY, tmp_path / "syn", progress=False)
    before = _tree(root)
    calls = {"n": 0}
    real_render = synthetic.render_scene

    def flaky(cfg, split, index):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk on fire")
        return real_render(cfg, split, index)

    monkeypatch.setattr(synthetic, "render_scene", flaky)
    with pytest.raises(RuntimeError):
        generate_synthetic(dataclasses.replace(TINY, seed=5), root, progress=False)
    assert _tree(root) == before  # the old dataset is untouched
    with pytest.raises(RuntimeError):
        calls["n"] = 0
        generate_synthetic(TINY, tmp_path / "fresh", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]


def test_config_section_strict_and_validated():
    cfg = section(
        {"data": {"synthetic": {"seed": 3, "f_number": [2.0, 2.8]}}}, "data.synthetic", SyntheticConfig
    )
    assert cfg.seed == 3 and cfg.f_number == (2.0, 2.8)
    with pytest.raises(ConfigError, match="data.synthetic.noise_reed"):
        section({"data": {"synthetic": {"noise_reed": 0.1}}}, "data.synthetic", SyntheticConfig)
    with pytest.raises(SyntheticDataError, match="f_number"):
        SyntheticConfig(f_number=(4.0, 2.0))
    with pytest.raises(SyntheticDataError, match="photo_prob"):
        SyntheticConfig(photo_prob=1.5)


# ------------------------------------------------------------------------------------------------ realism


def test_realism_of_default_test_split(tmp_path, realdp_dpdd):
    """The default settings' test split (independent of the other split sizes) passes the realism check."""
    check = _load_check_realism()
    cfg = dataclasses.replace(SyntheticConfig(), train=0, val=0)
    root = generate_synthetic(cfg, tmp_path / "syn", progress=False)
    real = check.realism_stats(realdp_dpdd)
    assert real["scenes"] == 10
    assert real["psnr_combined_target"] == pytest.approx(24.49, abs=0.05)
    assert real["ssim_combined_target"] == pytest.approx(0.666, abs=0.005)
    assert real["psnr_left_right"] == pytest.approx(28.79, abs=0.05)
    result = check.compare(check.realism_stats(root), real)
    assert all(row["ok"] for row in result.values()), check.format_table(result, cfg.test, 10)
    assert check.main(["--synthetic", str(root), "--real", str(realdp_dpdd)]) == 0


def test_realism_script_rejects_bad_root(tmp_path, capsys):
    check = _load_check_realism()
    assert check.main(["--synthetic", str(tmp_path / "missing"), "--real", str(tmp_path)]) == 2
    assert "missing" in capsys.readouterr().err
