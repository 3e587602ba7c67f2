"""DeepRFT parity with INVOKERer/DeepRFT (parity fixtures: tests/fixtures/parity/deeprft, the others in
../shared/reference/parity/deeprft), folding, DP variant, checkpoint loading and the official window inference."""

from __future__ import annotations

from functools import cache

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_outputs_close, load_fixture_weights, load_parity_fixture, parity_manifest

from baselines.deeprft import (
    DeepRFT,
    DOConv2d,
    FFTResBlock,
    FoldedConv2d,
    fold_doconv_state_dict,
    has_doconv_train_keys,
    to_eval_form,
)
from ldp.checkpoint import CheckpointError, load_weights
from ldp.config import ConfigError
from ldp.models.tiling import window_forward
from ldp.registry import build_model, get_spec

MODEL_FIXTURES = ["tiny", "tiny_f64", "tiny_eval", "tiny_eval_f64"]


_fixture = cache(load_parity_fixture)


def _model_from(fx: dict) -> DeepRFT:
    return load_fixture_weights(DeepRFT(**fx["config"]), fx)


@pytest.mark.parametrize("name", MODEL_FIXTURES)
def test_tiny_fixture_outputs(name):
    fx = _fixture(f"deeprft/{name}.pt")
    model = _model_from(fx)
    assert fx["cases"]
    for case_name, case in fx["cases"].items():
        with torch.no_grad():
            assert_outputs_close(model(case["input"]), case["output"], f"{name}/{case_name}")


def _block_module(entry: dict) -> torch.nn.Module:
    cfg = entry["config"]
    if entry["cls"] == "ResBlock_do_fft_bench":
        return FFTResBlock(cfg["out_channel"], form="train")
    if entry["cls"] == "ResBlock_do_fft_bench_eval":
        return FFTResBlock(cfg["out_channel"], form="eval")
    if entry["cls"] == "ResBlock_fft_bench":
        return FFTResBlock(cfg["n_feat"], form="plain")
    if entry["cls"] == "DOConv2d":
        assert cfg["padding"] == cfg["kernel_size"] // 2 and cfg["bias"] is False
        return DOConv2d(cfg["in_channels"], cfg["out_channels"], cfg["kernel_size"], cfg["stride"])
    raise AssertionError(f"unknown block class {entry['cls']}")


@pytest.mark.parametrize("name", ["blocks", "blocks_f64"])
def test_block_fixtures(name):
    blocks = _fixture(f"deeprft/{name}.pt")
    entries = {k: v for k, v in blocks.items() if isinstance(v, dict) and "state_dict" in v}
    assert len(entries) == 6
    for key, entry in entries.items():
        module = _block_module(entry).to(entry["input"].dtype)
        module.load_state_dict(entry["state_dict"], strict=True)
        with torch.no_grad():
            assert_outputs_close(module.eval()(entry["input"]), entry["output"], f"{name}/{key}")
        if "folded_eval_weight" in entry:
            folded = fold_doconv_state_dict(module.state_dict())
            assert list(folded) == ["W"]
            assert_outputs_close(folded["W"], entry["folded_eval_weight"], f"{name}/{key}/folded W")
            cfg = entry["config"]
            conv = FoldedConv2d(cfg["in_channels"], cfg["out_channels"], cfg["kernel_size"], cfg["stride"])
            conv = conv.to(entry["input"].dtype)
            conv.load_state_dict(folded, strict=True)
            with torch.no_grad():
                assert_outputs_close(conv(entry["input"]), entry["folded_eval_output"], f"{name}/{key}/folded out")


@pytest.mark.parametrize("name", ["tiny", "tiny_f64"])
def test_folding_train_checkpoint_reproduces_full_output(name):
    fx = _fixture(f"deeprft/{name}.pt")
    train = _model_from(fx)
    eval_form = DeepRFT(num_res=fx["config"]["num_res"], inference=True).to(fx["input"].dtype)
    eval_form.load_state_dict(fold_doconv_state_dict(train.state_dict()), strict=True)
    via_helper = to_eval_form(train).eval()
    for case_name, case in fx["cases"].items():
        with torch.no_grad():
            assert_outputs_close(eval_form.eval()(case["input"]), case["output"][0], f"{name}/{case_name} folded")
            assert_outputs_close(via_helper(case["input"]), case["output"][0], f"{name}/{case_name} to_eval_form")


@pytest.mark.parametrize("form, manifest_name", [(False, "full_manifest.json"), (True, "full_manifest_eval.json")])
def test_full_config_matches_manifest(form, manifest_name):
    manifest = parity_manifest(f"deeprft/{manifest_name}")
    assert manifest["config"] == {"num_res": 8, "inference": form}
    model = build_model("deeprft", inference=form)
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(k, list(s)) for k, s in manifest["state_dict"].items()]
    assert sum(p.numel() for p in model.parameters()) == manifest["param_count"]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == manifest["trainable_param_count"]


def test_small_and_plus_param_counts():
    counts = parity_manifest("deeprft/full_manifest.json")["variants_param_count"]
    for label, num_res, form in [
        ("DeepRFT_Small(num_res=4, inference=False)", 4, False),
        ("DeepRFT_Small(num_res=4, inference=True)", 4, True),
        ("DeepRFTPLUS(num_res=20, inference=False)", 20, False),
        ("DeepRFTPLUS(num_res=20, inference=True)", 20, True),
    ]:
        model = build_model("deeprft", num_res=num_res, inference=form)
        assert sum(p.numel() for p in model.parameters()) == counts[label]["param_count"], label
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert trainable == counts[label]["trainable_param_count"], label


def test_official_checkpoint_file_loads_into_both_forms(tmp_path):
    """DeepRFT's train.py saves ``{'epoch', 'state_dict', 'optimizer'}`` from a DataParallel model."""
    fx = _fixture("deeprft/tiny.pt")
    path = tmp_path / "model_DPDD.pth"
    wrapped = {f"module.{k}": v for k, v in fx["state_dict"].items()}
    torch.save({"epoch": 3000, "state_dict": wrapped, "optimizer": {"lr": 1e-6}}, path)

    train = DeepRFT(num_res=0, inference=False)
    report = load_weights(train, path)
    assert report["stripped_prefix"] and not report["converted"] and report["wrapper_key"] == "state_dict"
    eval_form = DeepRFT(num_res=0, inference=True)
    report = load_weights(eval_form, path)
    assert report["converted"] and report["wrapper_key"] == "state_dict" and report["stripped_prefix"]
    with torch.no_grad():
        assert_outputs_close(train.eval()(fx["input"]), fx["output"], "train form from file")
        assert_outputs_close(eval_form.eval()(fx["input"]), fx["output"][0], "eval form from file (folded)")


# ---- no fixture files needed below ----


def test_load_reports_missing_and_unexpected_names():
    sd = DeepRFT(num_res=0, inference=False).state_dict()
    del sd["SCM1.conv.main.0.W"]
    sd["head.W"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_weights(DeepRFT(num_res=0, inference=False), {"state_dict": sd})
    assert "SCM1.conv.main.0.W" in str(err.value) and "head.W" in str(err.value)


def test_convert_state_dict_folds_only_train_form_into_eval_form():
    torch.manual_seed(0)
    train = DeepRFT(num_res=0, inference=False)
    with torch.no_grad():
        for name, p in train.named_parameters():
            if name.endswith(".D"):
                p.normal_(std=0.1)  # a non-trivial fold
    train_sd = train.state_dict()
    assert has_doconv_train_keys(train_sd) and not has_doconv_train_keys(to_eval_form(train).state_dict())
    assert train.convert_state_dict(train_sd) is train_sd  # train form: returned as is

    eval_form = DeepRFT(num_res=0, inference=True)
    report = load_weights(eval_form, {"params": train_sd})
    assert report["converted"] and report["wrapper_key"] == "params" and not report["stripped_prefix"]
    expected = to_eval_form(train).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in eval_form.state_dict().items())

    folded_sd = eval_form.state_dict()
    assert eval_form.convert_state_dict(folded_sd) is folded_sd  # already eval form: returned as is
    report = load_weights(DeepRFT(num_res=0, inference=True), folded_sd)
    assert not report["converted"] and report["wrapper_key"] is None


def test_malformed_train_checkpoint_error_names_file_and_tensor(tmp_path):
    sd = DeepRFT(num_res=0, inference=False).state_dict()
    sd["SCM1.conv.main.0.W"] = torch.zeros(128, 128, 5)  # 5 taps: not a square kernel
    path = tmp_path / "broken_deeprft.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError, match=r"broken_deeprft\.pth: SCM1\.conv\.main\.0\.W: DO-Conv W has 5 taps"):
        load_weights(DeepRFT(num_res=0, inference=True), path)


def test_fold_is_exact_and_idempotent_in_float64():
    torch.manual_seed(0)
    conv = DOConv2d(5, 7, 3, stride=2).double()
    with torch.no_grad():
        conv.D.normal_()
        conv.D_diag.add_(0.1)
    folded = fold_doconv_state_dict(conv.state_dict())
    assert torch.equal(fold_doconv_state_dict(folded)["W"], folded["W"])
    x = torch.rand(1, 5, 11, 13, dtype=torch.float64)
    ref = F.conv2d(x, folded["W"], stride=2, padding=1)
    assert torch.allclose(conv(x), ref, rtol=0, atol=1e-12)


def test_registry_entries_and_overrides():
    assert (get_spec("deeprft").input_kind, get_spec("deeprft").inference) == ("combined", "windows")
    assert (get_spec("deeprft-dp").input_kind, get_spec("deeprft-dp").inference) == ("dp", "windows")
    with pytest.raises(ConfigError, match=r"model_overrides\.num_resblocks: unknown key"):
        build_model("deeprft", num_resblocks=4)
    # D_diag is frozen (requires_grad=False), not unused
    assert build_model("deeprft", tiny=True).UNUSED_PARAMETERS == ()
    assert DeepRFT(num_res=0, inference=True).UNUSED_PARAMETERS == ("ConvsOut.*",)


def test_dp_variant_residual_is_mean_of_left_and_right():
    """With the last convs zeroed, every scale's output is the (nearest-downsampled) mean of L and R."""
    torch.manual_seed(0)
    model = build_model("deeprft-dp", num_res=0)
    assert model.feat_extract[0].main[0].W.shape[1] == 6 and model.SCM1.main[0].main[0].W.shape[1] == 6
    with torch.no_grad():
        for conv in (model.feat_extract[5], *model.ConvsOut):
            conv.main[0].W.zero_()
        left, right = torch.rand(2, 3, 32, 40), torch.rand(2, 3, 32, 40)
        full, half, quarter = model(torch.cat([left, right], 1))
    mean = (left + right) / 2
    assert torch.allclose(full, mean, atol=1e-6)
    assert torch.allclose(half, mean[..., ::2, ::2], atol=1e-6)
    assert torch.allclose(quarter, mean[..., ::4, ::4], atol=1e-6)


def test_tiny_backward_every_trainable_parameter_gets_gradient():
    for name in ("deeprft", "deeprft-dp"):
        torch.manual_seed(0)
        model = build_model(name, tiny=True)
        channels = 3 if name == "deeprft" else 6
        outs = model(torch.rand(1, channels, 16, 20))
        sum(o.square().mean() for o in outs).backward()
        for pname, p in model.named_parameters():
            if pname.endswith("D_diag"):
                assert not p.requires_grad and p.grad is None
            else:
                assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: {pname}"
    eval_form = build_model("deeprft", tiny=True, inference=True)
    eval_form(torch.rand(1, 3, 16, 20)).square().mean().backward()
    for pname, p in eval_form.named_parameters():
        if pname.startswith("ConvsOut."):
            assert p.grad is None, pname  # listed in UNUSED_PARAMETERS
        else:
            assert p.grad is not None and p.grad.any(), pname


def test_any_size_input_and_bad_channels():
    model = DeepRFT(num_res=0, inference=False).eval()
    with torch.no_grad():
        full, half, quarter = model(torch.rand(1, 3, 18, 23))
    assert (full.shape[-2:], half.shape[-2:], quarter.shape[-2:]) == ((18, 23), (9, 11), (4, 5))
    with pytest.raises(ValueError, match="3"):
        model(torch.rand(1, 6, 16, 16))


def test_official_window_inference_tiles():
    """Upstream's scheme at a scale model of 1120x1680/512: a 2x3 main grid plus border-flush edge tiles."""
    h, w, win = 70, 105, 32
    rows = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1).expand(1, 1, h, w)
    cols = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w).expand(1, 1, h, w)
    calls = []

    def tile_origin(t):  # each output pixel says which tile (its top-left corner) produced it
        calls.append(t.shape[0])
        return t[:, :, :1, :1].expand(-1, -1, *t.shape[-2:])

    out = window_forward(tile_origin, torch.cat([rows, cols], 1), window=win, batch_size=1)
    assert len(calls) == 12  # rows {0, 32, 38} x cols {0, 32, 64, 73}
    origin = lambda r, c: tuple(out[0, :, r, c].tolist())  # noqa: E731
    assert origin(10, 10) == (0, 0) and origin(40, 40) == (32, 32) and origin(63, 95) == (32, 64)
    assert origin(66, 10) == (38, 0) and origin(10, 100) == (0, 73) and origin(69, 104) == (38, 73)

    model = DeepRFT(num_res=0, inference=True).eval()
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        assert torch.equal(window_forward(model, x, window=64), model(x))  # one tile = whole image
        tiled = window_forward(model, x, window=16, batch_size=3)
        assert tiled.shape == x.shape
        assert torch.allclose(tiled[..., :16, :16], model(x[..., :16, :16]), atol=1e-6)
