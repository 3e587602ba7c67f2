"""Every registered model (core and baselines), on tiny inputs: forward, backward, no NaN, every parameter gets a
gradient. Conventions tested here are the ones in docs/adding-a-baseline.md:

- each model registers its config dataclass and a tiny config; ``build_model(name, tiny=True)`` builds the small
  CPU config, and the registry rejects unknown overrides naming the key path;
- ``UNUSED_PARAMETERS`` on the model lists (fnmatch patterns) parameters kept only for weight compatibility; they
  must get no gradient, every other trainable parameter must get a non-zero, finite one;
- ``size_multiple`` (int, default 1) is the tile multiple used by ``ldp.models.tiling.infer``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import sys
from pathlib import Path

import pytest
import torch

import ldp
import ldp.registry
from ldp.config import ConfigError
from ldp.models.input_baselines import INPUT_BASELINES
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
    assert ldp.list_models("ldp-*") == ["ldp-large", "ldp-small", "ldp-small-gr"]
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
    assert spec.inference in ("whole", "tiled", "windows")
    assert spec.description
    if name in INPUT_BASELINES:  # parameter-free: no build options, hence no config dataclass and no tiny config
        assert spec.config is None and spec.build_config() is None and spec.build_config({"tiny": True}) is None
        return
    assert dataclasses.is_dataclass(spec.config) and spec.config.__dataclass_params__.frozen
    assert spec.tiny, f"{name}: no tiny config"
    default, tiny = spec.build_config(), spec.build_config({"tiny": True})
    assert isinstance(default, spec.config) and isinstance(tiny, spec.config) and tiny != default


def test_spec_has_no_ldp_losses_flag():
    """Whether a row uses L_bwl/L_bal is the experiment's choice (params), not the network's."""
    assert "ldp_losses" not in {f.name for f in dataclasses.fields(ldp.registry.ModelSpec)}
    with pytest.raises(TypeError, match="ldp_losses"):
        ldp.register_model("test-ldp-losses", input_kind="dp", ldp_losses=True)


@pytest.mark.parametrize("name", MODELS)
def test_unknown_override_is_an_error(name):
    with pytest.raises(ConfigError, match=r"^model_overrides\.not_an_option: unknown key"):
        ldp.build_model(name, tiny=True, not_an_option=1)


def test_override_errors_name_the_key_path_and_the_closest_key():
    with pytest.raises(ConfigError, match=r"^model_overrides\.widthh: unknown key \(did you mean 'width'\?\)$"):
        ldp.build_model("nafnet-dp", widthh=16)
    with pytest.raises(ConfigError, match=r"^model_overrides\.inner\.middle_blk: unknown key"):
        ldp.build_model("ldp-small", inner={"middle_blk": 1})
    with pytest.raises(ConfigError, match=r"^model_overrides\.width: expected an integer"):
        ldp.build_model("nafnet-dp", width="16")
    with pytest.raises(ConfigError, match=r"^model_overrides\.tiny: expected true/false"):
        ldp.build_model("nafnet-dp", tiny="yes")
    where = "exp.yaml:experiments.x.train.model_overrides"  # a caller names where the overrides came from
    with pytest.raises(ConfigError, match=r"^exp\.yaml:experiments\.x\.train\.model_overrides\.widthh: unknown"):
        ldp.get_spec("nafnet-dp").build_config({"widthh": 16}, where)


def test_overrides_merge_onto_the_registered_defaults():
    """Defaults, then tiny, then the caller's overrides; a nested section merges key by key."""
    spec = ldp.get_spec("ldp-large")
    large = spec.build_config({"inner": {"middle_blk_num": 4}})
    assert (large.inner.middle_blk_num, large.inner.enc_blk_nums, large.inner.dec_blk_nums) == (4, (4, 4, 8, 8),
                                                                                                (8, 8, 4, 4))
    tiny = spec.build_config({"tiny": True, "inner": {"middle_blk_num": 2}})
    assert (tiny.inner.middle_blk_num, tiny.inner.enc_blk_nums) == (2, (1,))
    assert ldp.get_spec("nafnet-dp").build_config({"tiny": True, "width": 16}).width == 16
    with torch.device("meta"):
        assert ldp.build_model("ldp-small").config == ldp.get_spec("ldp-small").build_config()


def test_registration_checks_its_configs(monkeypatch):
    """A bad default or tiny config fails when the model file is imported, naming the model."""
    monkeypatch.setattr(ldp.registry, "_MODELS", dict(ldp.registry._MODELS))

    @dataclasses.dataclass(frozen=True)
    class Opts:
        width: int = 4

    def factory(config: Opts) -> torch.nn.Module:
        return torch.nn.Conv2d(6, 3, 1)

    with pytest.raises(ConfigError, match=r"^register_model\('test-bad-tiny'\)\.widht: unknown key"):
        ldp.register_model("test-bad-tiny", config=Opts, tiny={"widht": 1}, input_kind="dp")(factory)
    with pytest.raises(ConfigError, match=r"^register_model\('test-bad-default'\)\.width: expected an integer"):
        ldp.register_model("test-bad-default", config=Opts, defaults={"width": 0.5}, input_kind="dp")(factory)
    with pytest.raises(ValueError, match="need a config dataclass"):
        ldp.register_model("test-no-config", tiny={"width": 1}, input_kind="dp")(factory)
    assert not {"test-bad-tiny", "test-bad-default", "test-no-config"} & set(ldp.list_models())


def test_model_without_options_takes_no_overrides(monkeypatch):
    monkeypatch.setattr(ldp.registry, "_MODELS", dict(ldp.registry._MODELS))
    ldp.register_model("test-no-options", input_kind="dp")(lambda: torch.nn.Conv2d(6, 3, 1))
    assert isinstance(ldp.build_model("test-no-options", tiny=True), torch.nn.Conv2d)
    with pytest.raises(ConfigError, match=r"^model_overrides\.width: unknown key \(model 'test-no-options'"):
        ldp.build_model("test-no-options", width=3)


def test_every_baseline_module_is_imported_by_the_package():
    """baselines/__init__.py is the one place a new baseline is added; a module missing there registers nothing."""
    import baselines

    folder = Path(baselines.__file__).parent
    modules = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    assert modules, folder
    missing = [m for m in modules if f"baselines.{m}" not in sys.modules]
    assert not missing, f"add {missing} to the import in baselines/__init__.py"


@pytest.mark.parametrize("name", MODELS)
def test_tiny_forward_backward(name):
    spec = ldp.get_spec(name)
    torch.manual_seed(0)
    model = ldp.build_model(name, tiny=True)
    if name in INPUT_BASELINES:  # no parameters, so no gradient to check: the output is the input, exactly
        x = _inputs(spec.input_kind)
        assert not list(model.parameters()) and torch.equal(model(x), x)
        return
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


def test_ldp_small_gr_is_ldp_small_plus_the_view_average():
    """Our variant: the released weights layout, and with the output conv zeroed it returns exactly (L+R)/2 (whole
    image and through the tiled stem/body split); ldp-small itself keeps no residual."""
    from ldp.models.tiling import infer

    torch.manual_seed(0)
    gr = ldp.build_model("ldp-small-gr", tiny=True).eval()
    released = ldp.build_model("ldp-small", tiny=True).eval()
    assert gr.state_dict().keys() == released.state_dict().keys()
    assert released.config.global_residual == "none" and "OURS" in ldp.get_spec("ldp-small-gr").description
    x = _inputs("dp+blurmap")
    with torch.no_grad():
        gr.output.weight.zero_()
        released.load_state_dict(gr.state_dict())
        average = 0.5 * (x[:, :3] + x[:, 3:6])
        torch.testing.assert_close(gr(x), average)
        torch.testing.assert_close(infer(gr, x, "tiled", tile=16, overlap=4), average)
        assert released(x).abs().max() == 0


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
