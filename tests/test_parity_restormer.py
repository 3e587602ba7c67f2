"""Restormer parity with swz30/Restormer (parity fixtures: tests/fixtures/parity/restormer, the others in
../shared/reference/parity/restormer) and checkpoint loading."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict
from functools import cache

import pytest
import torch
from conftest import assert_outputs_close, load_fixture_weights, load_parity_fixture, parity_manifest

from baselines.restormer import Restormer, RestormerConfig
from ldp.checkpoint import CheckpointError, load_weights
from ldp.config import ConfigError
from ldp.registry import build_model, get_spec

FIXTURES = ["tiny", "tiny_f64", "tiny_variant", "tiny_variant_f64"]


_fixture = cache(load_parity_fixture)


def _built_from(fx: dict) -> Restormer:
    return load_fixture_weights(Restormer(**fx["config"]), fx)


@pytest.mark.parametrize("name", FIXTURES)
def test_tiny_fixture_outputs(name):
    fx = _fixture(f"restormer/{name}.pt")
    model = _built_from(fx)
    assert fx["cases"], "fixture has no cases"
    for case_name, case in fx["cases"].items():
        with torch.no_grad():
            out = model(case["input"])
        assert_outputs_close(out, case["output"], f"{name}/{case_name}")


def test_variant_has_no_patch_embed_bias():
    sd = _fixture("restormer/tiny_variant.pt")["state_dict"]
    model = Restormer(**_fixture("restormer/tiny_variant.pt")["config"])
    assert "patch_embed.proj.bias" not in sd and "patch_embed.proj.bias" not in model.state_dict()
    assert "output.bias" in model.state_dict() and "skip_conv.weight" not in model.state_dict()


def test_full_config_matches_manifest():
    manifest = parity_manifest("restormer/full_manifest.json")
    model = build_model("restormer-dp")  # the registered default = the official dual-pixel configuration
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    theirs = [(k, list(shape)) for k, shape in manifest["state_dict"].items()]
    assert ours == theirs
    assert sum(p.numel() for p in model.parameters()) == manifest["param_count"] == 26_132_548
    ours_config = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(RestormerConfig()).items()}
    assert ours_config == manifest["config"]


def test_official_style_checkpoint_loads_strictly_into_full_model(tmp_path):
    """A ``{'params': sd}`` file with the manifest's keys and shapes loads strictly (stride-0 tensors keep it tiny)."""
    manifest = parity_manifest("restormer/full_manifest.json")
    sd = OrderedDict((k, torch.full((), 0.01).expand(*shape)) for k, shape in manifest["state_dict"].items())
    path = tmp_path / "restormer_dp_official_layout.pth"
    torch.save({"params": sd}, path)
    model = build_model("restormer-dp")
    report = load_weights(model, path)
    assert report["wrapper_key"] == "params" and not report["stripped_prefix"] and not report["converted"]
    assert not report["missing"] and not report["unexpected"] and not report["shape_mismatch"]
    assert torch.all(model.output.weight == 0.01)


def test_fixture_via_checkpoint_file(tmp_path):
    fx = _fixture("restormer/tiny.pt")
    path = tmp_path / "net_g_latest.pth"
    torch.save({"params": fx["state_dict"], "params_ema": {}}, path)
    model = Restormer(**fx["config"])
    load_weights(model, path)
    with torch.no_grad():
        out = model.eval()(fx["input"])
    assert torch.allclose(out, fx["output"], rtol=1e-5, atol=1e-5)


# ---- no fixture files needed below ----


def _tiny(seed: int = 0) -> Restormer:
    torch.manual_seed(seed)
    return build_model("restormer-dp", tiny=True)


def test_state_dict_wrapper_with_module_prefix(tmp_path):
    src, dst = _tiny(0), _tiny(1)
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    report = load_weights(dst, path)
    assert report["wrapper_key"] == "state_dict" and report["stripped_prefix"] and not report["converted"]
    x = torch.rand(1, 6, 16, 24)
    with torch.no_grad():
        assert torch.equal(src.eval()(x), dst.eval()(x))


def test_missing_and_unexpected_keys_are_named(tmp_path):
    sd = _tiny().state_dict()
    sd.pop("skip_conv.weight")
    sd["extra.head.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save({"params": sd}, path)
    with pytest.raises(CheckpointError) as err:
        load_weights(_tiny(), path)
    msg = str(err.value)
    assert "bad.pth" in msg and "skip_conv.weight" in msg and "extra.head.weight" in msg
    sd2 = _tiny().state_dict()
    sd2["output.weight"] = torch.zeros(3, 16, 1, 1)
    with pytest.raises(CheckpointError, match=r"shape mismatch \[output\.weight \(checkpoint \(3, 16, 1, 1\)"):
        load_weights(_tiny(), {"params": sd2})


def test_unreadable_checkpoint_names_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(_tiny(), tmp_path / "nope.pth")
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        load_weights(_tiny(), bad)


def test_registry_entry_and_overrides():
    spec = get_spec("restormer-dp")
    assert (spec.input_kind, spec.inference) == ("dp", "whole")
    with pytest.raises(ConfigError, match=r"model_overrides\.num_block: unknown key \(did you mean 'num_blocks'\?\)"):
        build_model("restormer-dp", num_block=(1, 1, 1, 1))
    assert build_model("restormer-dp", tiny=True).UNUSED_PARAMETERS == ()


def test_any_size_input_and_bad_channels():
    model = _tiny().eval()
    with torch.no_grad():
        assert model(torch.rand(1, 6, 30, 42)).shape == (1, 3, 30, 42)  # padded to 32x48 internally, cropped
    with pytest.raises(ValueError, match="6"):
        model(torch.rand(1, 3, 32, 32))


def test_tiny_backward_every_parameter_gets_gradient():
    model = _tiny()
    model(torch.rand(2, 6, 16, 16)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
