import json

import numpy as np
import pytest
import torch
from PIL import Image

from ldp.blurmap import (
    BlurMapConfig,
    BlurMapError,
    ClipBlurEstimator,
    ClipWeightsError,
    classical_blurmap,
    clip_preprocess,
    estimate_blurmaps,
    load_blurmap,
    load_clip,
    oracle_blurmap,
    read_blurmap,
    read_meta,
    score_blurmap,
)
from ldp.blurmap import weights as weights_mod
from ldp.blurmap.common import hard_truncate, soft_truncate, to_nchw
from ldp.blurmap.io import upsample_blurmap
from ldp.blurmap.prompts import DP_FORMATS, NO_THRESHOLDS, PROMPT_FORMATS, RELEASED_THRESHOLDS, thresholds_for
from ldp.blurmap.toy import toy_dp_scene
from ldp.config import ConfigError, section
from ldp.data.manifest import write_manifest
from ldp.imageio import write_image

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _stock_transform():
    """open_clip's (PIL) eval transform for the OpenAI models, as used by the released scripts."""
    import open_clip

    return open_clip.image_transform(224, is_train=False, mean=MEAN, std=STD, interpolation="bicubic",
                                     resize_mode="shortest")


@pytest.fixture(scope="module")
def vitb32_ckpt(tmp_path_factory):
    """A ViT-B-32 checkpoint file written by the test (seeded random init) and its in-memory source."""
    source = load_clip("ViT-B-32", "none", seed=123)
    path = tmp_path_factory.mktemp("clip") / "vitb32_seed123.pt"
    torch.save(source.model.state_dict(), path)
    return source, path


@pytest.fixture(scope="module")
def vitb32_loaded(vitb32_ckpt):
    return load_clip("ViT-B-32", str(vitb32_ckpt[1]))


def _patch_pair(defocused: bool, seed=0):
    """A 40×40 in-focus pair (L == R) or a defocused one (Gaussian blur, L/R shifted by ±2 px)."""
    from scipy.ndimage import gaussian_filter, shift

    sharp = toy_dp_scene(40, 48, block=40, seed=seed)["target"]
    if not defocused:
        return to_nchw(sharp[:, :40]), to_nchw(sharp[:, :40])
    blurred = gaussian_filter(sharp, sigma=(2, 2, 0))
    left = shift(blurred, (0, 2, 0), order=1, mode="nearest")[:, 4:44]
    right = shift(blurred, (0, -2, 0), order=1, mode="nearest")[:, 4:44]
    return to_nchw(left.astype(np.float32)), to_nchw(right.astype(np.float32))


def test_checkpoint_path_reproduces_saved_model(vitb32_ckpt, vitb32_loaded):
    source, path = vitb32_ckpt
    assert vitb32_loaded.weights_kind == "checkpoint" and vitb32_loaded.weights_source == str(path)
    a = ClipBlurEstimator(source, "ours")
    b = ClipBlurEstimator(vitb32_loaded, "ours")
    left, right = _patch_pair(defocused=True)
    torch.testing.assert_close(a.scores(left, right), b.scores(left, right), rtol=0, atol=1e-5)
    assert a.meta()["weights_kind"] == "random" and b.meta()["weights_kind"] == "checkpoint"


def test_batched_tensor_path_matches_released_per_patch_pil_loop(vitb32_loaded):
    """Our batched estimator vs the released loop: per patch PIL image → stock transform → model logits."""
    preprocess = _stock_transform()
    model, tok = vitb32_loaded.model, vitb32_loaded.tokenizer
    scene = toy_dp_scene(80, 120, seed=3)
    left_u8 = (scene["left"] * 255).round().astype(np.uint8)
    right_u8 = (scene["right"] * 255).round().astype(np.uint8)
    ref = np.zeros((2, 3))
    with torch.no_grad():
        text = tok(["A symmetric image at pixel level"])
        for i in range(2):
            for j in range(3):
                pl = left_u8[i * 40:(i + 1) * 40, j * 40:(j + 1) * 40]
                pr = right_u8[i * 40:(i + 1) * 40, j * 40:(j + 1) * 40]
                img = preprocess(Image.fromarray(np.hstack([pl, np.fliplr(pr)])))[None]
                f_i = torch.nn.functional.normalize(model.encode_image(img), dim=-1)
                f_t = torch.nn.functional.normalize(model.encode_text(text), dim=-1)
                ref[i, j] = (model.logit_scale.exp() * f_i @ f_t.T).item()
    est = ClipBlurEstimator(vitb32_loaded, "ours", truncate="off")
    ours = est.scores(to_nchw(left_u8 / 255.0), to_nchw(right_u8 / 255.0))[0].numpy()
    # PIL rounds to uint8 inside the resize; the scores agree to well below the threshold band (A − B = 2.95).
    assert np.abs(ours - ref).max() < 0.05 * est.score_scale / 100 + 0.02
    expected = (-ref - (-ref).min()) / ((-ref).max() - (-ref).min())
    np.testing.assert_allclose(est.blur_map(to_nchw(left_u8 / 255.0), to_nchw(right_u8 / 255.0))[0], expected,
                               atol=0.05)


def test_dp_aware_format_of_in_focus_pair_is_mirror_symmetric_after_preprocessing(vitb32_loaded):
    """In focus (L == R) ⇒ [L | flip(R)] is mirror-symmetric, and the centre crop keeps the axis centred;
    a defocused pair is not. (Random weights cannot promise which one scores higher, so no order is asserted.)"""
    est = ClipBlurEstimator(vitb32_loaded, "ours")
    for defocused in (False, True):
        left, right = _patch_pair(defocused)
        patch, grid = est.patch_images(left, right)
        assert grid == (1, 1) and patch.shape == (1, 3, 40, 80)
        x = clip_preprocess(patch, 224, MEAN, STD)
        asym = (x - x.flip(-1)).abs().max().item()
        assert (asym < 1e-5) if not defocused else (asym > 0.05)
    # and the score of the mirrored image equals the score of the image itself for the symmetric patch
    left, right = _patch_pair(False)
    patch, _ = est.patch_images(left, right)
    s = est.score_patches(torch.cat([patch, patch.flip(-1)]))
    assert abs(s[0] - s[1]) < 1e-4


def test_in_focus_vs_defocused_map_with_truncation(vitb32_loaded):
    """Two-patch image (in focus | defocused): the map is the hard truncation of the scores then min-max, so
    the patch with the higher symmetry score is 0 and the other 1 when their scores straddle the band."""
    est = ClipBlurEstimator(vitb32_loaded, "ours", truncate="off")
    lf, rf = _patch_pair(False)
    ld, rd = _patch_pair(True)
    left, right = torch.cat([lf, ld], -1), torch.cat([rf, rd], -1)
    s = est.scores(left, right)[0, 0]
    # thresholds straddling the two scores: the estimator must then output exactly {0, 1}
    mid, half = float(s.mean()), float((s[0] - s[1]).abs()) / 4 + 1e-3
    est_t = ClipBlurEstimator(vitb32_loaded, "ours", thresholds=(mid + half, mid - half), truncate="on")
    m = est_t.blur_map(left, right)[0, 0]
    sharper = int(s.argmax())
    assert m[sharper] == 0.0 and m[1 - sharper] == 1.0
    assert est_t.meta()["thresholds"] == [mid + half, mid - half]


@pytest.mark.parametrize("model_name", ["ViT-B-32", "ViT-B-16", "RN50"])
def test_every_prompt_format_and_clip_variant_runs(model_name, vitb32_ckpt):
    loaded = vitb32_ckpt[0] if model_name == "ViT-B-32" else load_clip(model_name, "none", seed=0)
    scene = toy_dp_scene(40, 40, seed=1)  # one patch per format keeps ViT-B-16 and RN50 cheap on CPU
    left, right = to_nchw(scene["left"]), to_nchw(scene["right"])
    for name in PROMPT_FORMATS:
        est = ClipBlurEstimator(loaded, name)
        s = est.scores(left) if name == "single" else est.scores(left, right)
        m = est.map_from_scores(s)
        assert s.shape == m.shape == (1, 1, 1) and torch.isfinite(s).all() and m.item() == 0.0
        meta = est.meta()
        assert meta["weights_kind"] == "random" and meta["clip_model"] == model_name
        assert meta["truncation"].startswith("none")  # random weights: the thresholds are not applied
        pair, source = thresholds_for(name, model_name)
        assert meta["thresholds"] == (list(pair) if pair else None) and meta["thresholds_source"] == source
    assert set(DP_FORMATS) == {"ours", "diff_lr", "inconsistent", "halves"}


def test_baseline_formats_join_without_flip_and_have_blur_high_polarity(vitb32_loaded):
    left, right = _patch_pair(True)
    ours = ClipBlurEstimator(vitb32_loaded, "ours").patch_images(left, right)[0]
    base = ClipBlurEstimator(vitb32_loaded, "halves").patch_images(left, right)[0]
    torch.testing.assert_close(ours[..., 40:], right.flip(-1))
    torch.testing.assert_close(base[..., 40:], right)
    scores = torch.tensor([[[1.0, 2.0, 3.0]]])
    assert ClipBlurEstimator(vitb32_loaded, "halves").map_from_scores(scores).flatten().tolist() == [0, 0.5, 1]
    assert ClipBlurEstimator(vitb32_loaded, "ours", truncate="off").map_from_scores(scores).flatten().tolist() == [
        1, 0.5, 0]


def test_preprocess_matches_open_clip_pil_transform():
    preprocess = _stock_transform()
    rng = np.random.default_rng(0)
    for shape in [(40, 80, 3), (40, 40, 3), (300, 200, 3)]:
        img = (rng.random(shape) * 255).astype(np.uint8)
        ref = preprocess(Image.fromarray(img))
        ours = clip_preprocess(torch.from_numpy(img).permute(2, 0, 1)[None] / 255.0, 224, MEAN, STD)[0]
        assert ours.shape == ref.shape
        assert (ours - ref).abs().mean() < 0.01 and (ours - ref).abs().max() < 0.05  # uint8 rounding only


def test_truncation_hard_and_soft():
    s = torch.tensor([30.0, 29.0, 27.525, 26.05, 20.0])
    np.testing.assert_allclose(hard_truncate(s, (29, 26.05), "sharp"), [0, 0, 0.5, 1, 1], atol=1e-6)
    np.testing.assert_allclose(hard_truncate(s, (29, 26.05), "blur"), [1, 1, 0.5, 0, 0], atol=1e-6)
    np.testing.assert_allclose(soft_truncate(s, (29, 26.05), "sharp", 500.0), [0, 0, 0.5, 1, 1], atol=2e-3)
    x = s.clone().requires_grad_(True)
    soft_truncate(x, (29, 26.05), "sharp", 4.0).sum().backward()
    assert (x.grad < 0).all()  # higher symmetry score → lower blur, everywhere (no dead zone)
    with pytest.raises(BlurMapError):
        hard_truncate(s, (26.05, 29), "sharp")


def test_accuracy_oracle_perfect_constant_not_classical_good():
    scene = toy_dp_scene(240, 360, seed=0)
    oracle = oracle_blurmap(scene["defocus"])[0]
    perfect = score_blurmap(oracle, scene["defocus"])
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["mae"] < 1e-5
    flat = score_blurmap(np.full(oracle.shape, 0.3), scene["defocus"])
    assert flat["constant"] and flat["spearman"] == 0.0 and flat["mae"] > 0.2
    noisy = score_blurmap(np.random.default_rng(0).random(oracle.shape), scene["defocus"])
    assert abs(noisy["spearman"]) < 0.5
    classical = classical_blurmap(to_nchw(scene["left"]), to_nchw(scene["right"]))[0]
    assert score_blurmap(classical, scene["defocus"])["spearman"] > 0.8
    # full-resolution prediction against full-resolution ground truth also works
    assert score_blurmap(np.abs(scene["defocus"]), scene["defocus"])["spearman"] == pytest.approx(1.0)
    with pytest.raises(BlurMapError):
        score_blurmap(np.full((2, 2), np.nan), scene["defocus"])


def _toy_dataset(root, n=2, with_defocus=True):
    rows = []
    for i in range(n):
        s = toy_dp_scene(80, 120, seed=10 + i)
        name = f"toy{i}"
        paths = {
            "left": f"dd_dp_dataset_canon/test_l/source/{name}_L.png",
            "right": f"dd_dp_dataset_canon/test_r/source/{name}_R.png",
            "combined": f"dd_dp_dataset_canon/test_c/source/{name}.png",
            "target": f"dd_dp_dataset_canon/test_c/target/{name}.png",
        }
        for key, rel in paths.items():
            write_image(root / rel, s[key])
        row = {"scene": name, "split": "test", "category": "", **paths, "height": 80, "width": 120, "bit_depth": 16}
        if with_defocus:
            row["defocus"] = f"dd_dp_dataset_canon/test_c/defocus/{name}.npy"
            (root / row["defocus"]).parent.mkdir(parents=True, exist_ok=True)
            np.save(root / row["defocus"], s["defocus"])
        rows.append(row)
    write_manifest(root, rows)
    return root


@pytest.mark.parametrize("estimator", ["oracle", "classical", "none", "clip"])
def test_estimate_blurmaps_writes_maps_and_meta(tmp_path, estimator):
    root = _toy_dataset(tmp_path / "data")
    out = tmp_path / "maps" / estimator
    cfg = BlurMapConfig(estimator=estimator, weights="none", batch_size=8)
    assert estimate_blurmaps(cfg, root, out, progress=False) == out
    meta = read_meta(out)
    assert meta["estimator"] == estimator and meta["patch_size"] == 40 and set(meta["scenes"]) == {"toy0", "toy1"}
    assert meta["weights_kind"] == ("random" if estimator == "clip" else "n/a")
    grid = read_blurmap(out, "toy0")
    assert grid.shape == (2, 3) and grid.dtype == np.float32 and 0 <= grid.min() and grid.max() <= 1
    full = load_blurmap(out, "toy0", (80, 120))
    assert full.shape == (80, 120) and full.dtype == np.float32
    if estimator == "oracle":
        assert score_blurmap(grid, np.load(root / "dd_dp_dataset_canon/test_c/defocus/toy0.npy"))["mae"] < 1e-5
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left
    json.dumps(meta)


def test_estimate_blurmaps_failure_leaves_no_output(tmp_path):
    root = _toy_dataset(tmp_path / "data", with_defocus=False)
    out = tmp_path / "maps" / "oracle"
    with pytest.raises(BlurMapError, match="defocus"):
        estimate_blurmaps(BlurMapConfig(estimator="oracle"), root, out, progress=False)
    assert not out.exists() and not list((tmp_path / "maps").iterdir())


def test_load_blurmap_errors_and_upsampling(tmp_path):
    with pytest.raises(BlurMapError, match="meta.json"):
        load_blurmap(tmp_path, "x", (80, 120))
    grid = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    up = upsample_blurmap(grid, (90, 85), patch_size=40)  # 2×2 grid of a 90×85 image, remainder padded
    assert up.shape == (90, 85) and up[0, 0] == 0.0 and up[85, 84] == up[79, 79]


def test_openai_weights_offline_fail_fast(monkeypatch):
    monkeypatch.setattr(weights_mod, "_hub_cached_file", lambda *a: None)
    monkeypatch.setattr(weights_mod, "_url_cached_file", lambda *a: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("offline: the hub must not be probed")

    monkeypatch.setattr(weights_mod.urllib.request, "urlopen", no_network)  # fails fast: no probe, no download
    with pytest.raises(ClipWeightsError) as err:
        load_clip("ViT-B-32", "openai")
    msg = str(err.value)
    assert "weights: none" in msg and "weights: /path/to/file" in msg and "Traceback" not in msg
    with pytest.raises(ClipWeightsError, match="not found"):
        load_clip("ViT-B-32", "/nonexistent/clip.pt")
    with pytest.raises(ClipWeightsError, match="unknown CLIP model"):
        load_clip("ViT-L-14", "none")


def test_blurmap_config_section_is_strict():
    cfg = section({"blurmap": {"estimator": "classical", "thresholds": [29, 26.05]}}, "blurmap", BlurMapConfig)
    assert cfg.estimator == "classical" and cfg.thresholds == (29.0, 26.05)
    with pytest.raises(ConfigError, match="prompt_formt"):
        section({"blurmap": {"prompt_formt": "ours"}}, "blurmap", BlurMapConfig)
    with pytest.raises(ConfigError):
        section({"blurmap": {"prompt_format": "fancy"}}, "blurmap", BlurMapConfig)


def test_image_smaller_than_a_patch_is_a_clear_error():
    with pytest.raises(BlurMapError, match="smaller than one"):
        classical_blurmap(torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20))


def test_thresholds_are_per_backbone_with_their_source():
    """The released scripts pair one prompt with one backbone: dp_image.py ViT-B/16 with (29, 26.05), single_image.py
    ViT-B/32 with (26, 23.3). Every other pairing is our choice and says so; the baseline prompts have none."""
    assert thresholds_for("ours", "ViT-B-16") == ((29.0, 26.05), RELEASED_THRESHOLDS["ours"][2])
    assert "dp_image.py:39" in RELEASED_THRESHOLDS["ours"][2] and ":12" in RELEASED_THRESHOLDS["ours"][2]
    assert thresholds_for("single", "ViT-B-32") == ((26.0, 23.3), RELEASED_THRESHOLDS["single"][2])
    assert "single_image.py:33" in RELEASED_THRESHOLDS["single"][2]
    for fmt, model in [("ours", "ViT-B-32"), ("ours", "RN50"), ("single", "ViT-B-16"), ("single", "RN50")]:
        pair, source = thresholds_for(fmt, model)
        assert pair == RELEASED_THRESHOLDS[fmt][1] and source.startswith("our choice:") and model in source
    for fmt in ("diff_lr", "inconsistent", "halves"):
        assert thresholds_for(fmt, "ViT-B-32") == (None, NO_THRESHOLDS)
    with pytest.raises(KeyError, match="bogus"):
        thresholds_for("bogus", "ViT-B-32")


def test_blurmap_meta_records_thresholds_and_their_source(vitb32_loaded, tmp_path):
    """meta.json of a map set names the (A, B) of its format on its backbone and where they come from; thresholds
    given in the config are recorded as ours."""
    est = ClipBlurEstimator(vitb32_loaded, "ours", truncate="on")
    assert est.thresholds == (29.0, 26.05) and est.truncation_on
    meta = est.meta()
    assert meta["thresholds"] == [29.0, 26.05] and meta["thresholds_source"].startswith("our choice:")
    assert "ViT-B-32" in meta["thresholds_source"] and meta["truncation"] == "hard"
    single = ClipBlurEstimator(vitb32_loaded, "single", truncate="on").meta()
    assert single["thresholds"] == [26.0, 23.3] and "single_image.py:33" in single["thresholds_source"]
    given = ClipBlurEstimator(vitb32_loaded, "ours", thresholds=(30.0, 27.0), truncate="on").meta()
    assert given["thresholds"] == [30.0, 27.0] and given["thresholds_source"].startswith("our choice: set in")


def test_openai_weights_are_checked_against_the_release_sha256(tmp_path, monkeypatch):
    """A file in OpenAI's cache slot loads, but is labelled a checkpoint unless its SHA-256 is the release's (the
    hash OpenAI's URLs carry); a matching file is the release."""
    import hashlib

    import open_clip

    ref = load_clip("RN50", "none", seed=3)
    path = tmp_path / "RN50.pt"
    torch.save(ref.model.state_dict(), path)
    monkeypatch.setattr(weights_mod, "_hub_cached_file", lambda *a: None)
    monkeypatch.setattr(weights_mod, "_url_cached_file", lambda *a: str(path))
    with pytest.warns(UserWarning, match="not OpenAI's release"):
        wrong = load_clip("RN50", "openai")
    assert wrong.weights_kind == "checkpoint" and "is not the release's" in wrong.weights_source
    assert torch.equal(wrong.model.visual.conv1.weight, ref.model.visual.conv1.weight)

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cfg = {**open_clip.get_pretrained_cfg("RN50-quickgelu", "openai"),
           "url": f"https://openaipublic.azureedge.net/clip/models/{digest}/RN50.pt"}
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda *a: cfg)
    right = load_clip("RN50", "openai")
    assert right.weights_kind == "openai" and right.weights_source == "openai"
    assert weights_mod.release_sha256(cfg["url"]) == digest
