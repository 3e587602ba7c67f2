"""Parity of our NAFNet and LDP with the official code, through the parity fixtures (tests/fixtures/parity: the
manifests and the float32 tiny fixtures; the others in ../shared/reference/parity, skipped without it).

The README in ../shared/reference/parity is the spec: strict state_dict loading, outputs within 1e-5 (float32) /
1e-10 (float64) on every case, and the full configs' keys and shapes equal to the manifests, in order.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_outputs_close, load_fixture_weights, load_parity_fixture, parity_manifest

import ldp


def _run_cases(model, fx, intermediates_check=None):
    assert fx["dtype"] in ("float32", "float64"), fx["dtype"]
    model = load_fixture_weights(model, fx)
    assert len(fx["cases"]) >= 2
    with torch.no_grad():
        for name, case in fx["cases"].items():
            assert_outputs_close(model(case["input"]), case["output"], f"case {name}")
            if intermediates_check is not None and "intermediates" in case:
                intermediates_check(model, case)


def _manifest_pairs(relative):
    manifest = parity_manifest(relative)
    return manifest, [(k, tuple(v)) for k, v in manifest["state_dict"].items()]


def _state_pairs(module, prefix=""):
    return [(k[len(prefix) :], tuple(v.shape)) for k, v in module.state_dict().items() if k.startswith(prefix)]


# ---------------------------------------------------------------- NAFNet


def _nafnet_intermediates(model, case):
    """Hook the submodules the fixture captured (intro, encoders.0, middle_blks, ending) and compare."""
    captured = {}
    hooks = [
        model.get_submodule(name).register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out))
        for name in case["intermediates"]
    ]
    try:
        model(case["input"])
    finally:
        for h in hooks:
            h.remove()
    for name, ref in case["intermediates"].items():
        assert torch.allclose(captured[name], ref, rtol=1e-5, atol=1e-5), f"intermediate {name}"


@pytest.mark.parametrize("fname", ["tiny.pt", "tiny_f64.pt"])
def test_nafnet_tiny_fixture(fname):
    fx = load_parity_fixture(f"nafnet/{fname}")
    model = ldp.build_model("nafnet-gopro-w32", **fx["config"])
    assert sum(p.numel() for p in model.parameters()) == 350_259
    _run_cases(model, fx, _nafnet_intermediates)


def test_nafnet_gopro_w32_matches_manifest():
    manifest, pairs = _manifest_pairs("nafnet/full_manifest.json")
    model = ldp.build_model("nafnet-gopro-w32")
    assert _state_pairs(model) == pairs
    assert sum(p.numel() for p in model.parameters()) == manifest["param_count"] == 17_111_907


def test_ldp_inner_core_matches_manifest():
    manifest, pairs = _manifest_pairs("nafnet/ldp_core_manifest.json")
    model = ldp.build_model("ldp-small")
    assert _state_pairs(model.naf, "") == pairs
    assert sum(p.numel() for p in model.naf.parameters()) == manifest["param_count"] == 7_616_384


def test_nafnet_official_class_at_ldp_core_size():
    """The manifest's sibling count: megvii's class with img_channel=6 at LDP-core sizes (in == out == 6)."""
    manifest = parity_manifest("nafnet/full_manifest.json")
    key = next(k for k in manifest["variants_param_count"] if k.startswith("official class at LDP-core"))
    model = ldp.build_model(
        "nafnet-gopro-w32", img_channel=6, middle_blk_num=2, enc_blk_nums=[2, 2, 2, 2], dec_blk_nums=[2, 2, 2, 2]
    )
    assert sum(p.numel() for p in model.parameters()) == manifest["variants_param_count"][key]


@pytest.mark.parametrize("variant", ["GoPro-width64", "SIDD-width32"])
def test_nafnet_variant_param_counts(variant):
    manifest = parity_manifest("nafnet/full_manifest.json")
    key = next(k for k in manifest["variants_config"] if k.startswith(variant))
    with torch.device("meta"):
        model = ldp.build_model("nafnet-gopro-w32", **manifest["variants_config"][key])
    assert sum(p.numel() for p in model.parameters()) == manifest["variants_param_count"][key]


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_layernorm_is_traceable_by_fvcore():
    """Plain tensor ops, no custom autograd Function: fvcore's tracer sees no ``prim::PythonOp``."""
    from fvcore.nn import FlopCountAnalysis

    from ldp.models.nafnet import NAFBlock

    analysis = FlopCountAnalysis(NAFBlock(8), torch.rand(1, 8, 16, 16))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    assert analysis.total() > 0
    assert not any("PythonOp" in op for op in analysis.unsupported_ops()), analysis.unsupported_ops()


# ---------------------------------------------------------------- LDP


def _ldp_from_fixture(fx):
    cfg = fx["config"]
    return ldp.build_model("ldp-small", **cfg["LDP_kwargs"], inner=cfg["naf_override"])


def _ldp_intermediates(model, case):
    captured = {}
    hooks = [
        model.ca.register_forward_hook(lambda _m, _i, out: captured.__setitem__("ca", out)),
        model.naf.register_forward_hook(lambda _m, _i, out: captured.__setitem__("naf", out)),
    ]
    try:
        model(case["input"])
    finally:
        for h in hooks:
            h.remove()
    for name, ref in case["intermediates"].items():
        assert torch.allclose(captured[name], ref, rtol=1e-5, atol=1e-5), f"intermediate {name}"


@pytest.mark.parametrize("fname", ["tiny.pt", "tiny_f64.pt"])
def test_ldp_tiny_fixture(fname):
    fx = load_parity_fixture(f"ldp/{fname}")
    model = _ldp_from_fixture(fx)
    assert sum(p.numel() for p in model.parameters()) == 367_681
    _run_cases(model, fx, _ldp_intermediates)


def test_ldp_reads_only_the_last_channel():
    fx = load_parity_fixture("ldp/tiny.pt")
    model = _ldp_from_fixture(fx)
    model.load_state_dict(fx["state_dict"], strict=True)
    model.eval()
    x = fx["cases"]["main"]["input"]
    with torch.no_grad():
        ref = model(x)
        other = x.clone()
        other[:, 6:8] = torch.rand_like(other[:, 6:8])
        assert torch.equal(model(other), ref)
        flipped = x.clone()
        flipped[:, 8] = 1 - flipped[:, 8]
        assert (model(flipped) - ref).abs().max() > 0.1


def _recipe_state_dict(manifest_sd):
    g = torch.Generator().manual_seed(2024)
    sd = {}
    for key, shape in manifest_sd.items():
        draw = torch.randn(shape, generator=g, dtype=torch.float32)
        base = 1.0 if key.endswith(("norm1.weight", "norm2.weight", "temperature")) else 0.0
        scale = 0.5 if key.endswith((".beta", ".gamma")) else 0.05
        sd[key] = (base + scale * draw).half().float()
    return sd


def test_ldp_small_full_recipe():
    manifest, pairs = _manifest_pairs("ldp/full_manifest.json")
    fx = load_parity_fixture("ldp/full_recipe.pt")
    model = ldp.build_model("ldp-small")
    assert _state_pairs(model) == pairs
    assert sum(p.numel() for p in model.parameters()) == manifest["param_count"] == 7_624_961

    sd = _recipe_state_dict(manifest["state_dict"])
    for key, (ref_sum, ref_abs) in fx["per_key_sum_and_abssum"].items():
        got_sum, got_abs = sd[key].double().sum().item(), sd[key].double().abs().sum().item()
        assert abs(got_sum - ref_sum) <= 1e-6 * max(1.0, ref_abs), f"{key}: torch.randn stream differs"
        assert abs(got_abs - ref_abs) <= 1e-6 * max(1.0, ref_abs), f"{key}: torch.randn stream differs"
    model.load_state_dict(sd, strict=True)
    model.eval()
    with torch.no_grad():
        out = model(fx["input"])
        assert torch.allclose(out, fx["output"], rtol=1e-5, atol=1e-5)
        out64 = model.double()(fx["input_f64"])
        assert torch.allclose(out64, fx["output_f64"], rtol=1e-10, atol=1e-10)
