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
from ldp.data.psf import (
    IDEAL_SPLIT_SEPARATION,
    ButterworthParams,
    DPOptics,
    ThinLens,
    dp_psfs,
    half_aperture_psfs,
    psf_centroid_separation,
    residual_psfs,
    view_gains,
)
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


# ------------------------------------------------------------------------------------ half-aperture physics

HARD = DPOptics(split_softness=0.0)


def test_ideal_split_centroid_separation_is_4_over_3pi():
    """A uniform disc split into hard halves: each half-disc's centroid is 4R/(3 pi) off centre, so the L/R
    separation is 4 c / (3 pi) = 0.424 c. Measured: 0.4248 c at c = 16, 0.4251 c at 8 (tolerance 0.01 c)."""
    assert IDEAL_SPLIT_SEPARATION == pytest.approx(0.4244, abs=1e-4)
    for coc in (8.0, 12.0, 16.0):
        k_left, k_right = half_aperture_psfs(coc, optics=HARD)
        assert psf_centroid_separation(k_left, k_right) / coc == pytest.approx(IDEAL_SPLIT_SEPARATION, abs=0.01)
    # crosstalk t scales the separation by (1 - 2 t); the soft default split loses ~1 %
    k_left, k_right = half_aperture_psfs(16.0, optics=DPOptics(split_softness=0.0, crosstalk=0.2))
    assert psf_centroid_separation(k_left, k_right) / 16 == pytest.approx(0.6 * IDEAL_SPLIT_SEPARATION, abs=0.01)
    default = SyntheticConfig()
    k_left, k_right = half_aperture_psfs(16.0, optics=DPOptics(split_softness=default.dp_split_softness,
                                                               crosstalk=default.dp_crosstalk))
    sep = psf_centroid_separation(k_left, k_right) / 16
    assert 0.2 < sep < 0.3  # the default, measured against the real Canon disparity / blur ratio (0.22)


@pytest.mark.parametrize("coc", [0.5, 2.0, 7.3, 15.0])
def test_half_aperture_sums_mirror_and_sign_flip(coc):
    k_left, k_right = half_aperture_psfs(coc)
    assert k_left.sum() == pytest.approx(1.0, abs=1e-12) and k_right.sum() == pytest.approx(1.0, abs=1e-12)
    assert (k_left >= 0).all() and k_left.shape == k_right.shape
    np.testing.assert_allclose(k_right, k_left[:, ::-1], atol=1e-15)  # on axis: mirror images
    neg_left, neg_right = half_aperture_psfs(-coc)  # across the focal plane: swapped
    np.testing.assert_allclose(neg_left, k_right, atol=1e-15)
    np.testing.assert_allclose(neg_right, k_left, atol=1e-15)
    assert psf_centroid_separation(k_left, k_right) > 0 > psf_centroid_separation(neg_left, neg_right)
    # the separation is continuous in c, also below one pixel (no collapse into a delta)
    assert psf_centroid_separation(k_left, k_right) / coc > 0.4
    assert half_aperture_psfs(0.0)[0].shape == (1, 1)


def test_vignetting_changes_the_psf_across_the_frame():
    optics = DPOptics(split_softness=0.0, vignetting=0.4)
    centre_l, centre_r = half_aperture_psfs(12.0, (0.0, 0.0), optics)
    corner_l, corner_r = half_aperture_psfs(12.0, (0.8, 0.6), optics)
    edge_l, _ = half_aperture_psfs(12.0, (1.0, 0.0), optics)
    # the cat's eye: less of the disc passes off axis, and the shape is no longer a mirror pair
    assert (corner_l > 1e-4).sum() < (centre_l > 1e-4).sum()
    assert np.abs(corner_l - centre_l).sum() > 0.1
    assert np.abs(corner_r - corner_l[:, ::-1]).sum() > 0.05
    # clipped from the +x side at the right edge: the left-leaning half keeps its width, the PSF narrows in x
    x = np.arange(edge_l.shape[1]) - edge_l.shape[1] // 2
    width = lambda k: np.sqrt((k.sum(0) * x**2).sum() - (k.sum(0) * x).sum() ** 2)  # noqa: E731
    assert width(edge_l) < width(centre_l)
    assert psf_centroid_separation(corner_l, corner_r) < psf_centroid_separation(centre_l, centre_r)
    # view gains: balanced on axis, one half brighter off axis; they add to 2
    assert view_gains((0.0, 0.0), optics) == pytest.approx((1.0, 1.0))
    g_left, g_right = view_gains((0.8, 0.6), optics)
    assert g_left + g_right == pytest.approx(2.0) and abs(g_left - g_right) > 0.05
    gained = half_aperture_psfs(12.0, (0.8, 0.6), dataclasses.replace(optics, lr_gain=True))
    assert gained[0].sum() == pytest.approx(g_left) and gained[1].sum() == pytest.approx(g_right)


def test_zone_weights_partition_unity():
    zones = synthetic._Zones.make((60, 100), 5, (3, 5))
    total = np.zeros((60, 100), np.float32)
    positions = []
    for position, ys, xs, weight in zones.items():
        total[ys, xs] += weight
        positions.append(position)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert len(positions) == 15 and (0.0, 0.0) in [tuple(round(p, 9) for p in q) for q in positions]
    assert max(np.hypot(*p) for p in positions) < 1.0  # zone centres lie inside the frame


def test_in_focus_residual_makes_views_differ_without_a_shift():
    optics = DPOptics(residual_px=1.0, residual_weight=0.5)
    r_left, r_right = residual_psfs(optics)
    assert r_left.sum() == pytest.approx(1.0) and r_right.sum() == pytest.approx(1.0)
    k_left, k_right = half_aperture_psfs(0.0, optics=optics)
    assert np.abs(k_left - k_right).sum() > 0.01  # different shapes in focus
    assert abs(psf_centroid_separation(k_left, k_right)) < 0.01  # but no disparity at c = 0
    # rendered: an in-focus textured layer differs between L and R far beyond float rounding, without noise
    rng = np.random.default_rng(1)
    h, w = 48, 64
    layer = Layer(rng.random((h, w, 3), dtype=np.float32), np.ones((h, w), np.float32), 0.0, "in focus")
    plain = render_layers([layer], DPOptics())
    residual = render_layers([layer], optics)
    np.testing.assert_array_equal(plain.left, plain.right)
    inner = (slice(4, -4), slice(4, -4))
    diff = np.abs(residual.left - residual.right)[inner]
    assert diff.mean() > 5e-4  # measured 1.25e-3 on this white-noise texture (1.6e-4 on a smooth one)
    assert _shift_lr(residual.left[inner], residual.right[inner]) == 0
    np.testing.assert_array_equal(residual.defocus, 0.0)  # the map keeps the geometric CoC


def test_generated_in_focus_views_differ_beyond_noise():
    """In focus, the noisy L - R carries the residual's signal: it correlates with the noise-free L - R far beyond
    what noise alone allows (|r| ~ 1/sqrt(n)). The same seed draws the same scene and noise with the residual on or
    off. A 2-px full-weight residual is used here; the default (1 px, weight 0.5, bounded by the real in-focus
    patches' blur) is ~0.0003 std against ~0.008 of noise at this size (docs/data-synthetic.md)."""
    cfg = dataclasses.replace(TINY, height=96, width=128, subject_in_focus_prob=1.0, subject_area=(0.3, 0.4),
                              infocus_residual_px=2.0, infocus_residual_weight=1.0)
    for index in range(2):
        noisy = synthetic.render_scene(cfg, "train", index)
        off = synthetic.render_scene(dataclasses.replace(cfg, infocus_residual_weight=0.0), "train", index)
        clean_views = synthetic.render_scene(dataclasses.replace(cfg, noise_read=0.0, noise_shot=0.0), "train", index)
        np.testing.assert_array_equal(noisy.defocus, off.defocus)  # same scene
        radius = int(np.ceil(cfg.max_coc_px * (0.5 + 1 / 7))) + 4
        focus = maximum_filter(np.abs(noisy.defocus), size=2 * radius + 1) == 0
        signal = (clean_views.left - clean_views.right)[focus].ravel()
        assert signal.std() > 5e-4  # noise-free, the in-focus views differ
        r_on = np.corrcoef((noisy.left - noisy.right)[focus].ravel(), signal)[0, 1]
        r_off = np.corrcoef((off.left - off.right)[focus].ravel(), signal)[0, 1]
        n = signal.size
        assert r_on > 3 / np.sqrt(n) and abs(r_off) < 2 / np.sqrt(n), (r_on, r_off, n)  # measured 3.5 and 0.5 sigma


def test_linear_noise_grows_with_signal_before_the_tone_curve(monkeypatch):
    """Poisson-Gaussian noise in linear light: var = read^2 + shot * x; after the tone curve the display sigma
    is sigma_lin * (1 / 2.2) x^(1/2.2 - 1)."""
    rng = np.random.default_rng(0)
    levels = np.array([0.02, 0.1, 0.4, 0.8], np.float32)
    read, shot = 0.002, 0.0004
    for x in levels:
        noisy = synthetic.add_noise(np.full((200, 200, 3), x, np.float32), rng, read, shot)
        assert noisy.var() == pytest.approx(read**2 + shot * x, rel=0.05)

    def flat_scene(cfg, rng):
        h, w = cfg.height, cfg.width
        grey = np.repeat(np.linspace(0.2, 0.9, 4, dtype=np.float32), w // 4)[None, :, None]
        rgb = np.broadcast_to(grey, (h, w, 3)).copy()
        return [Layer(rgb, np.ones((h, w), np.float32), 0.0, "flat")], DPOptics(), 0, {"coc_scale_px": 1.0}

    monkeypatch.setattr(synthetic, "sample_scene", flat_scene)
    cfg = dataclasses.replace(TINY, height=200, width=400, noise_read=read, noise_shot=shot)
    scene = synthetic.render_scene(cfg, "train", 0)
    lin_var, disp_sd = [], []
    for j, display in enumerate(np.linspace(0.2, 0.9, 4)):
        block = scene.left[:, j * 100 + 5 : (j + 1) * 100 - 5]
        lin = float(display) ** 2.2
        lin_var.append(np.var(block.astype(np.float64) ** 2.2))
        disp_sd.append(block.std())
        expected = np.sqrt(read**2 + shot * lin) / 2.2 * lin ** (1 / 2.2 - 1)
        assert block.std() == pytest.approx(expected, rel=0.1)
    assert np.all(np.diff(lin_var) > 0)  # signal-dependent in linear space
    legacy = synthetic.render_scene(dataclasses.replace(cfg, noise_model="display"), "train", 0)
    sd_legacy = [legacy.left[:, j * 100 + 5 : (j + 1) * 100 - 5].std() for j in range(4)]
    assert sd_legacy[-1] > sd_legacy[0]  # the legacy model grows in display space instead
    assert disp_sd[-1] < disp_sd[0]  # shot noise through gamma 2.2 falls slightly with brightness


def test_chromatic_focus_shift_blurs_channels_apart():
    rng = np.random.default_rng(2)
    h, w = 48, 64
    layer = Layer(_texture(rng, h, w), np.ones((h, w), np.float32), 0.0, "in focus")
    scene = render_layers([layer], DPOptics(), chromatic_px=(3.0, 0.0, -3.0))
    inner = (slice(6, -6), slice(6, -6))
    np.testing.assert_array_equal(scene.left[..., 1][inner], scene.target[..., 1][inner])  # green in focus
    for ch in (0, 2):
        assert np.abs(scene.left[..., ch] - scene.target[..., ch])[inner].mean() > 0.01
    # red behind, blue in front of the focal plane: their L/R shifts have opposite signs
    red = _shift_lr(scene.left[..., :1][inner], scene.right[..., :1][inner], max_shift=3)
    blue = _shift_lr(scene.left[..., 2:][inner], scene.right[..., 2:][inner], max_shift=3)
    assert red > 0 > blue


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

    # RDPD's kernel (~0.36 x CoC) and the physical hard split (0.42 x CoC), also vignetted across the frame
    for params, grid in ((ButterworthParams(), (1, 1)), (HARD, (1, 1)),
                         (dataclasses.replace(HARD, vignetting=0.3), (3, 5))):
        scene = render_layers([far, sharp, near], params, psf_grid=grid)
        shift_far = _shift_lr(scene.left[:, 6:58], scene.right[:, 6:58])
        shift_near = _shift_lr(scene.left[:, 160:], scene.right[:, 160:])
        shift_focus = _shift_lr(scene.left[10:86, 72:120], scene.right[10:86, 72:120])
        assert shift_far > 0 > shift_near  # the sign flips across the focal plane
        assert shift_focus == 0
        assert min(shift_far, -shift_near) >= (2 if isinstance(params, ButterworthParams) else 4)
        np.testing.assert_array_equal(scene.left[10:86, 72:120], scene.target[10:86, 72:120])


def test_generated_in_focus_pixels_match_target():
    """End to end, no noise: where nothing within the largest blur radius is defocused, L == R == target."""
    cfg = dataclasses.replace(
        TINY,
        height=96,
        width=128,
        noise_read=0.0,
        noise_shot=0.0,
        infocus_residual_weight=0.0,
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
    # the combined view is the full pixel: the mean of the two (noisy) views in linear light, then the tone curve
    lin = 0.5 * (scene["left"] ** 2.2 + scene["right"] ** 2.2)
    bright = lin > 0.01  # 16-bit rounding is amplified by the inverse tone curve in the darkest values
    np.testing.assert_allclose(scene["combined"][bright], (lin ** (1 / 2.2))[bright], atol=2e-4)
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
    with pytest.raises(ConfigError, match="data.synthetic.noise_target"):  # the old key, replaced by a scale
        section({"data": {"synthetic": {"noise_target": 0.01}}}, "data.synthetic", SyntheticConfig)
    cfg = section({"data": {"synthetic": {"psf_grid": [2, 3], "chromatic_focus_shift": [0.02, 0, -0.02]}}},
                  "data.synthetic", SyntheticConfig)
    assert cfg.psf_grid == (2, 3) and cfg.chromatic_focus_shift == (0.02, 0.0, -0.02)
    for bad, key in (
        ({"psf_model": "gauss"}, "psf_model"),
        ({"noise_model": "raw"}, "noise_model"),
        ({"psf_grid": (0, 3)}, "psf_grid"),
        ({"chromatic_focus_shift": (0.1, 0.0)}, "chromatic_focus_shift"),
        ({"dp_crosstalk": 0.5}, "dp_crosstalk"),
        ({"vignetting": -0.1}, "vignetting"),
        ({"infocus_residual_weight": 2.0}, "infocus_residual_weight"),
    ):
        with pytest.raises(SyntheticDataError, match=key):
            SyntheticConfig(**bad)
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


def test_realism_distributions_report(tmp_path, realdp_dpdd):
    """The distribution comparison renders a few scenes, writes realism.{md,json,png} with finite distances."""
    check = _load_check_realism()
    out = tmp_path / "report"
    assert check.main(["--render", "2", "--set", "height=96", "--set", "width=160", "--distributions",
                       "--real", str(realdp_dpdd), "--out", str(out)]) == 0
    import json

    data = json.loads((out / "realism.json").read_text())
    (variant,) = data["variants"]
    assert variant["width"] == 160
    for key in check.DISTRIBUTIONS:
        value = variant["distances"][key]["wasserstein"]
        assert value is None or (np.isfinite(value) and value >= 0)
    assert variant["distances"]["disparity_px"]["wasserstein"] is not None
    assert data["real"]["summaries"]["disparity_per_blur"]["n"] > 20
    assert (out / "realism.png").stat().st_size > 1000 and "| rendered |" in (out / "realism.md").read_text()
    assert check.main(["--render", "1", "--set", "noise_reed=1", "--real", str(realdp_dpdd)]) == 2


def test_realism_estimators_on_known_inputs():
    """Disparity and blur-size estimators recover a known shift and a known disc blur."""
    import cv2

    check = _load_check_realism()
    rng = np.random.default_rng(0)
    base = _texture(rng, 96, 160)
    left, right = base, np.roll(base, 3, axis=1)  # the right view moved right by 3 px
    shift, texture, valid = check.patch_disparity(left, right)
    assert valid.any() and np.median(shift[valid]) == pytest.approx(3.0, abs=0.1)
    blurred = cv2.filter2D(base, -1, check._disc(6.0).astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
    sizes = check.patch_blur_size(blurred, base)
    assert np.median(sizes) == pytest.approx(6.0, abs=0.5)


def test_synthetic_to_real_script_smoke(tmp_path, realdp_dpdd):
    """A few iterations on two rendered scenes: scores on the 10 real scenes with a paired CI, and compares runs."""
    import json

    spec = importlib.util.spec_from_file_location("s2r", REPO / "scripts" / "synthetic_to_real.py")
    s2r = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(s2r)
    common = ["--scenes", "2", "--set", "height=64", "--set", "width=96", "--max-iters", "3", "--batch", "2",
              "--patch", "32", "--real", str(realdp_dpdd)]
    assert s2r.main([*common, "--out", str(tmp_path / "a")]) == 0
    import shutil

    shutil.copytree(tmp_path / "a", tmp_path / "b")  # a second run (the same one: its paired difference is 0)
    summary = json.loads((tmp_path / "a" / "s2r.json").read_text())
    assert summary["iters"] == 3 and summary["train_scenes"] == 2 and summary["schedule"].startswith("SHORT")
    assert summary["gain_vs_input"]["n_images"] == 10
    assert summary["gain_vs_input"]["mean_diff"] == pytest.approx(
        summary["psnr_model_mean"] - summary["psnr_input_mean"], abs=1e-9)
    assert s2r.main(["--compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path)]) == 0
    assert "vs first run" in (tmp_path / "s2r_compare.md").read_text()
    compared = json.loads((tmp_path / "s2r_compare.json").read_text())["runs"]
    assert compared[1]["vs_first"]["mean_diff"] == 0.0
    assert s2r.main(["--compare", str(tmp_path / "missing")]) == 2
