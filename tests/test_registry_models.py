"""Every registered model (core and baselines), on tiny inputs: forward, backward, no NaN, every parameter gets a
gradient. Conventions tested here are the ones in docs/adding-a-baseline.md:

- the factory accepts ``tiny=True`` (a small config for CPU tests) and rejects unknown overrides;
- ``UNUSED_PARAMETERS`` on the model lists (fnmatch patterns) parameters kept only for weight compatibility; they
  must get no gradient, every other trainable parameter must get a non-zero, finite one;
- ``size_multiple`` (int, default 1) is the tile multiple used by ``ldp.models.tiling.infer``.
"""

from __future__ import annotations

import fnmatch

import pytest
import torch

import ldp
from ldp.models.inputs import INPUT_CHANNELS, make_input, primary_output
from ldp.models.tiling import infer

MODELS = ldp.list_models()
N, H, W = 2, 32, 48
TINY_MAX_PARAMS = 2_000_000


def _inputs(kind: str, seed: int = 0, h: int = H, w: int = W) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    left = torch.rand(N, 3, h, w, generator=g)
    right = torch.rand(N, 3, h, w, generator=g)
    blur = torch.rand(N, 1, h, w, generator=g)
    return make_input(kind, left, right, blur)


def _unused_patterns(model) -> tuple[str, ...]:
    patterns = getattr(model, "UNUSED_PARAMETERS", ())
    assert isinstance(patterns, tuple) and all(isinstance(p, str) for p in patterns), patterns
    return patterns


def test_core_models_registered():
    assert {"ldp-small", "ldp-large", "nafnet-gopro-w32", "nafnet-dp"} <= set(MODELS)


def test_list_models_pattern():
    assert ldp.list_models("ldp-*") == ["ldp-large", "ldp-small"]
    assert set(ldp.list_models("nafnet*")) >= {"nafnet-dp", "nafnet-gopro-w32"}
    assert ldp.list_models("no-such-*") == []
    assert ldp.list_models() == sorted(ldp.list_models())


def test_unknown_name_suggests_close_names():
    with pytest.raises(KeyError, match="Did you mean: ldp-small"):
        ldp.build_model("ldp-smal")
    with pytest.raises(KeyError, match="nafnet-dp"):
        ldp.get_spec("nafnet_dp")


@pytest.mark.parametrize("name", MODELS)
def test_spec_is_complete(name):
    spec = ldp.get_spec(name)
    assert spec.input_kind in INPUT_CHANNELS
    assert spec.inference in ("whole", "tiled")
    assert isinstance(spec.ldp_losses, bool)
    assert spec.description


@pytest.mark.parametrize("name", MODELS)
def test_unknown_override_is_an_error(name):
    with pytest.raises((ValueError, TypeError), match="not_an_option"):
        ldp.build_model(name, tiny=True, not_an_option=1)


@pytest.mark.parametrize("name", MODELS)
def test_tiny_forward_backward(name):
    spec = ldp.get_spec(name)
    torch.manual_seed(0)
    model = ldp.build_model(name, tiny=True)
    n_params = sum(p.numel() for p in model.parameters())
    assert 0 < n_params <= TINY_MAX_PARAMS, f"{name}: tiny config has {n_params} params"
    # Nudge every parameter so zero-initialised scales (NAFNet beta/gamma, ...) do not hide dead branches.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    model.train()
    x = _inputs(spec.input_kind)
    assert x.shape[1] == INPUT_CHANNELS[spec.input_kind]
    out = model(x)
    pred = primary_output(out)
    assert pred.shape == (N, 3, H, W), f"{name}: output {tuple(pred.shape)}"
    items = [out] if isinstance(out, torch.Tensor) else list(out)
    assert all(torch.isfinite(t).all() for t in items), f"{name}: non-finite output"
    loss = sum(t.square().mean() for t in items)  # every output head, so auxiliary heads get gradients too
    loss.backward()

    unused = _unused_patterns(model)
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if any(fnmatch.fnmatch(pname, pat) for pat in unused):
            assert p.grad is None or not p.grad.any(), f"{name}: {pname} is listed as unused but gets a gradient"
            continue
        assert p.grad is not None, f"{name}: {pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
        assert p.grad.any(), f"{name}: {pname} gets an all-zero gradient"
    for pat in unused:
        assert any(fnmatch.fnmatch(pname, pat) for pname, _ in model.named_parameters()), (
            f"{name}: {pat} matches nothing"
        )


@pytest.mark.parametrize("name", MODELS)
def test_tiled_path_runs(name):
    """Every model goes through ``infer`` both ways; one tile covering the image is the whole-image result."""
    spec = ldp.get_spec(name)
    torch.manual_seed(0)
    model = ldp.build_model(name, tiny=True).eval()
    multiple = int(getattr(model, "size_multiple", 1))
    assert multiple >= 1
    tile = max(multiple, 32 // multiple * multiple)
    x = _inputs(spec.input_kind, h=2 * tile, w=3 * tile)
    whole = infer(model, x, "whole")
    single = infer(model, x, "tiled", tile=4 * tile, overlap=tile)
    assert torch.allclose(single, whole, atol=1e-6)
    tiled = infer(model, x, "tiled", tile=tile, overlap=tile // 2)
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()


@pytest.mark.parametrize(("middle", "expected"), [(4, 18_518_145), (5, 20_370_049)])
def test_ldp_large_candidates(middle, expected):
    """Paper: 19.6 M with encoder [4,4,8,8], decoder [8,8,4,4]; middle 5 (the default) is the closest integer."""
    with torch.device("meta"):
        model = ldp.build_model("ldp-large", inner={"middle_blk_num": middle})
    assert sum(p.numel() for p in model.parameters()) == expected
    with torch.device("meta"):
        default = ldp.build_model("ldp-large")
    assert default.config.inner.middle_blk_num == 5


def test_ldp_multilevel_bpa_option():
    """Off by default (state_dict unchanged); when on, the extra BPA blocks are used and trained."""
    torch.manual_seed(0)
    plain = ldp.build_model("ldp-small", tiny=True)
    multi = ldp.build_model("ldp-small", tiny=True, inner={"enc_blk_nums": (1, 1), "dec_blk_nums": (1, 1)},
                            bpa_levels=(0, 1))  # fmt: skip
    assert not any(k.startswith("level_bpa") for k in plain.state_dict())
    extra = [k for k in multi.state_dict() if k.startswith("level_bpa")]
    assert {k.split(".")[1] for k in extra} == {"0", "1"}
    multi(_inputs("dp+blurmap")).square().mean().backward()
    for name, p in multi.named_parameters():
        if name.startswith("level_bpa"):
            assert p.grad is not None and p.grad.any(), name
    with pytest.raises(ValueError, match="bpa_levels"):
        ldp.build_model("ldp-small", tiny=True, bpa_levels=(3,))


def test_template_baseline_follows_the_conventions(monkeypatch):
    """baselines/_template/my_net.py registers a working toy model (into a throw-away copy of the registry)."""
    import importlib.util
    import sys
    from pathlib import Path

    import ldp.registry

    path = Path(__file__).resolve().parents[1] / "baselines" / "_template" / "my_net.py"
    ldp.list_models()  # load the real registry first, then shadow it
    monkeypatch.setattr(ldp.registry, "_MODELS", dict(ldp.registry._MODELS))
    spec = importlib.util.spec_from_file_location("_ldp_template_my_net", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    assert "my-net" in ldp.list_models()
    model = ldp.build_model("my-net", tiny=True)
    out = model(_inputs(ldp.get_spec("my-net").input_kind))
    assert out.shape == (N, 3, H, W)
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.any() for p in model.parameters())
    with pytest.raises(ValueError, match="widht"):
        ldp.build_model("my-net", widht=3)
