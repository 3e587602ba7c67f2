import math

import pytest
import torch

from ldp.blurmap import ClipBlurEstimator, load_clip
from ldp.config import ConfigError, section
from ldp.losses import (
    LossConfig,
    LossError,
    blur_weighted_loss,
    build_loss,
    charbonnier,
    edge_loss,
    fft_l1,
    psnr_loss,
)


def _pair(seed=0, shape=(2, 3, 48, 64)):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=g)
    pred = (target + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
    return pred, target


def test_bwl_reduces_to_charbonnier_when_map_is_zero():
    pred, target = _pair()
    zero = torch.zeros(2, 1, 48, 64)
    assert blur_weighted_loss(pred, target, zero, lam=3.0) == charbonnier(pred, target)
    loss = build_loss(LossConfig(charbonnier=0.0, bwl=1.0, bwl_lambda=2.0))
    total, terms = loss(pred, target, blurmap=zero)
    assert torch.equal(total, charbonnier(pred, target)) and set(terms) == {"bwl", "total"}


def test_bwl_penalises_blurred_regions_more():
    pred, target = _pair()
    m = torch.zeros(2, 1, 48, 64)
    m[..., :, 32:] = 1.0  # right half blurred
    p = pred.clone().requires_grad_(True)
    blur_weighted_loss(p, target, m, lam=4.0).backward()
    g = p.grad.abs()
    assert g[..., 32:].mean() > 4 * g[..., :32].mean()
    assert blur_weighted_loss(pred, target, m, 4.0) > charbonnier(pred, target)
    # patch-grid and 3-channel (M, M, M) maps are accepted and resized to the prediction
    loss = build_loss(LossConfig(charbonnier=0.0, bwl=1.0))
    grid = torch.rand(2, 1, 3, 4)
    assert torch.isfinite(loss(pred, target, blurmap=grid)[0])
    assert torch.isfinite(loss(pred, target, blurmap=torch.rand(2, 3, 48, 64))[0])


@pytest.fixture(scope="module")
def bal_cfg():
    """Random-init CLIP: its scores sit far from the released (26, 23.3), so centre the band on them to test
    the gradient path (with OpenAI weights the released thresholds are used)."""
    est = ClipBlurEstimator(load_clip("ViT-B-32", "none", seed=0), "single")
    s = est.scores(_pair(1, (1, 3, 80, 80))[0]).mean().item()
    return LossConfig(charbonnier=0.0, bal=1.0, bal_thresholds=(s + 1.0, s - 1.0), bal_max_patches=3)


def test_bal_gradient_reaches_the_image(bal_cfg):
    loss = build_loss(bal_cfg)
    assert not list(loss.parameters()) and not any("clip" in k or "visual" in k for k in loss.state_dict())
    pred, target = _pair(1, (1, 3, 80, 80))
    image = pred.clone().requires_grad_(True)
    total, terms = loss(image, target)
    assert 0 < terms["bal"] < 1
    total.backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    assert loss.bal.weights_kind == "random"


def test_losses_finite_on_flat_images(bal_cfg):
    flat = torch.full((1, 3, 80, 80), 0.5)
    cfg = LossConfig(charbonnier=1.0, l1=1.0, psnr=1.0, fft=0.01, edge=0.05, bwl=1.0, bal=1.0,
                     bal_thresholds=bal_cfg.bal_thresholds, bal_max_patches=2)
    loss = build_loss(cfg)
    pred = flat.clone().requires_grad_(True)
    total, terms = loss(pred, flat.clone(), blurmap=torch.zeros(1, 1, 80, 80))
    assert all(torch.isfinite(v) for v in terms.values())
    assert terms["charbonnier"] == pytest.approx(1e-3) and terms["bwl"] == pytest.approx(1e-3)
    total.backward()
    assert torch.isfinite(pred.grad).all()


def test_psnr_loss_is_negative_psnr():
    target = torch.zeros(2, 3, 8, 8)
    pred = torch.full_like(target, 0.1)  # MSE 0.01 → PSNR 20 dB
    assert psnr_loss(pred, target).item() == pytest.approx(-20.0, abs=1e-4)


def test_deeprft_terms_and_multiscale_outputs():
    pred, target = _pair()
    assert fft_l1(target, target) == 0 and edge_loss(target, target) == pytest.approx(1e-3)
    cfg = LossConfig(charbonnier=1.0, fft=0.01, edge=0.05)
    loss = build_loss(cfg)
    half = torch.nn.functional.interpolate(pred, scale_factor=0.5, mode="bilinear")
    quarter = torch.nn.functional.interpolate(pred, scale_factor=0.25, mode="bilinear")
    total_ms, terms_ms = loss([pred, half, quarter], target)
    total_1, terms_1 = loss(pred, target)
    assert terms_ms["charbonnier"] > terms_1["charbonnier"] and total_ms > total_1
    expected = terms_1["charbonnier"] + 0.01 * terms_1["fft"] + 0.05 * terms_1["edge"]
    assert total_1.item() == pytest.approx(expected.item(), rel=1e-6)
    first_only = build_loss(LossConfig(charbonnier=1.0, multiscale="first"))
    assert first_only([pred, half], target)[0] == charbonnier(pred, target)


def test_loss_config_and_input_errors():
    with pytest.raises(LossError, match="blur map"):
        build_loss(LossConfig(bwl=1.0))(*_pair())
    with pytest.raises(LossError, match="every term"):
        build_loss(LossConfig(charbonnier=0.0))
    with pytest.raises(LossError, match="loss.l1"):
        build_loss(LossConfig(l1=-1.0))
    with pytest.raises(LossError, match="differ in shape"):
        build_loss()(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    cfg = section({"loss": {"charbonnier": 0, "bwl": 1, "bwl_lambda": 2}}, "loss", LossConfig)
    assert cfg.bwl == 1.0 and cfg.bwl_lambda == 2.0 and cfg.charbonnier == 0.0
    with pytest.raises(ConfigError, match="bwl_lamda"):
        section({"loss": {"bwl_lamda": 2}}, "loss", LossConfig)
    assert math.isclose(LossConfig().charbonnier_eps, 1e-3)


# ------------------------------------------------------------------ L_bal follows the row's blur-map backbone (Tab. 2)


@pytest.mark.parametrize("profile", ["params.yaml", "profiles/paper.yaml"])
def test_bal_follows_the_rows_blurmap_backbone(profile):
    """Tab. 2's CLIP-variant rows change the blur-map estimator, so L_bal scores the restoration with the same backbone
    (and that backbone's single-image thresholds); resolve() records where both came from."""
    from pathlib import Path

    from ldp.blurmap.prompts import thresholds_for
    from ldp.config import load_params
    from ldp.experiments import resolve

    params = load_params(Path(__file__).parents[1] / profile)
    for name, backbone in [("ldp-small", "ViT-B-32"), ("ldp-small-vitb16", "ViT-B-16"), ("ldp-small-rn50", "RN50")]:
        exp = resolve(params, name)
        loss = exp.train.loss
        assert loss.bal > 0 and loss.bal_clip_model == exp.blurmap_config.clip_model == backbone
        assert exp.sources["loss.bal_clip_model"].endswith(f"blurmaps.{exp.blurmap}.clip_model")
        assert loss.bal_thresholds == thresholds_for("single", backbone)[0]
        assert thresholds_for("single", backbone)[1] in exp.sources["loss.bal_thresholds"]
    nomap = resolve(params, "ldp-small-nomap").train.loss  # no CLIP map to follow: the default backbone
    assert (nomap.bal_clip_model, nomap.bal_thresholds) == ("ViT-B-32", (26.0, 23.3))
    plain = resolve(params, "restormer-dp")  # no L_bal: nothing set
    assert plain.train.loss.bal == 0 and "loss.bal_clip_model" not in plain.sources


def test_bal_backbone_set_by_the_experiment_wins(tmp_path):
    from pathlib import Path

    from ldp.config import load_params
    from ldp.experiments import resolve

    repo_params = Path(__file__).parents[1] / "params.yaml"
    variant = tmp_path / "variant.yaml"
    variant.write_text(f"extends: {repo_params}\nexperiments:\n  ldp-small-rn50:\n    train:\n"
                       "      loss: {bal_clip_model: ViT-B-16, bal_thresholds: [27.0, 24.0]}\n")
    exp = resolve(load_params(variant), "ldp-small-rn50")
    assert (exp.train.loss.bal_clip_model, exp.train.loss.bal_thresholds) == ("ViT-B-16", (27.0, 24.0))
    assert exp.sources["loss.bal_clip_model"] == f"{variant}:experiments.ldp-small-rn50.train.loss.bal_clip_model"


def test_bal_thresholds_default_to_the_backbones_single_image_pair():
    loss = build_loss(LossConfig(charbonnier=0.0, bal=1.0, bal_clip_model="RN50"))
    est = loss.bal.estimator
    assert est.model_name == "RN50" and est.thresholds == (26.0, 23.3)
    assert est.thresholds_source.startswith("our choice:") and "single_image.py:33" in est.thresholds_source
