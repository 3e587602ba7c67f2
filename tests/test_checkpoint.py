"""ldp.checkpoint: atomic saves, weights_only loads and the published checkpoint formats."""

import pickle
from collections import OrderedDict

import pytest
import torch
from torch import nn

from ldp import build_model
from ldp.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    capture_rng_state,
    extract_state_dict,
    load_weights,
    restore_rng_state,
    safe_load,
)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(6, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))


def fresh_copy_differs(net: nn.Module) -> nn.Module:
    other = small_net()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    assert not torch.equal(other[0].weight, net[0].weight)
    return other


def assert_same(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize(
    "wrap, wrapper_key, stripped",
    [
        (lambda sd: sd, None, False),  # plain state dict
        (lambda sd: {"params": sd}, "params", False),  # Restormer / NAFNet (BasicSR)
        (lambda sd: {"params_ema": sd}, "params_ema", False),  # BasicSR EMA-only
        (lambda sd: {"state_dict": sd, "epoch": 3}, "state_dict", False),  # DeepRFT-style wrapper
        (lambda sd: {"state_dict": OrderedDict((f"module.{k}", v) for k, v in sd.items())}, "state_dict", True),
        (lambda sd: {"model": {f"_orig_mod.module.{k}": v for k, v in sd.items()}}, "model", True),
        (lambda sd: {"model": {"params": sd}}, "model/params", False),  # nested wrappers: the path
    ],
    ids=["plain", "params", "params_ema", "state_dict", "module-prefix", "compile-ddp", "nested"],
)
def test_published_formats_load_from_file(tmp_path, wrap, wrapper_key, stripped):
    source = small_net()
    path = atomic_torch_save(wrap(source.state_dict()), tmp_path / "w.pth")
    target = fresh_copy_differs(source)
    report = load_weights(target, path)
    assert report == {
        "missing": [],
        "unexpected": [],
        "shape_mismatch": [],
        "wrapper_key": wrapper_key,
        "stripped_prefix": stripped,
        "converted": False,
    }
    assert_same(source, target)


def test_params_preferred_over_params_ema_and_key_selects(tmp_path):
    a, b = small_net(), fresh_copy_differs(small_net())
    path = atomic_torch_save({"params": a.state_dict(), "params_ema": b.state_dict()}, tmp_path / "both.pth")
    net = small_net()
    load_weights(net, path)
    assert_same(net, a)
    load_weights(net, path, key="params_ema")
    assert_same(net, b)
    with pytest.raises(CheckpointError, match="no entry 'ema'"):
        load_weights(net, path, key="ema")


def test_missing_and_unexpected_keys_named_in_one_error(tmp_path):
    sd = small_net().state_dict()
    sd.pop("2.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["0.weight"] = torch.zeros(4, 6, 5, 5)
    path = atomic_torch_save({"params": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        load_weights(small_net(), path)
    msg = str(err.value)
    assert str(path) in msg
    assert "missing keys [2.bias]" in msg
    assert "unexpected keys [extra.weight]" in msg
    assert "0.weight (checkpoint (4, 6, 5, 5) vs model (4, 6, 3, 3))" in msg
    # Non-strict: loads what fits and reports the rest.
    net = fresh_copy_differs(small_net())
    report = load_weights(net, path, strict=False)
    assert report["missing"] == ["2.bias"] and report["unexpected"] == ["extra.weight"]
    assert torch.equal(net[2].weight, small_net()[2].weight)


def test_load_into_ddp_wrapped_model_and_in_memory_state():
    source = small_net()
    dp = nn.DataParallel(fresh_copy_differs(source))
    load_weights(dp, {"state_dict": source.state_dict()})
    assert_same(dp.module, source)


def test_convert_state_dict_hook_is_applied():
    class Renamed(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Conv2d(6, 3, 1)

        def convert_state_dict(self, sd):
            return {k.replace("old_head.", "head."): v for k, v in sd.items()}

    src = Renamed()
    legacy = {k.replace("head.", "old_head."): v.clone() for k, v in src.state_dict().items()}
    dst = Renamed()
    report = load_weights(dst, {"params": legacy})
    assert report["converted"] and report["wrapper_key"] == "params"
    assert torch.equal(dst.head.weight, src.head.weight)
    assert not load_weights(Renamed(), src.state_dict())["converted"]  # nothing renamed: not converted


def test_registered_model_roundtrip_with_ddp_prefix(tmp_path):
    src = build_model("nafnet-dp", tiny=True)
    path = atomic_torch_save({"params": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "n.pth")
    dst = build_model("nafnet-dp", tiny=True)
    with torch.no_grad():
        for p in dst.parameters():
            p.add_(0.5)
    load_weights(dst, path)
    assert_same(src, dst)


def test_weights_only_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / "evil.pth"

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    with path.open("wb") as fh:
        pickle.dump({"params": Payload()}, fh, protocol=2)
    with pytest.raises(CheckpointError, match="weights_only=True") as err:
        safe_load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: refused: the file holds pickled Python code (print)")
    assert "never unpickles code" in msg and "plain state dict" in msg
    assert "Re-running" not in msg and "add_safe_globals" not in msg  # torch's advice is not passed on
    with pytest.raises(CheckpointError, match="not found"):
        safe_load(tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match=r"junk.pth: .*corrupt, or not a torch checkpoint \(Unsupported operand"):
        safe_load(tmp_path / "junk.pth")


def test_refusal_of_a_pickled_module_gives_a_conversion_that_works(tmp_path):
    net = small_net()
    path = tmp_path / "whole.pth"
    torch.save(net, path)  # the whole module, pickled: refused
    with pytest.raises(CheckpointError) as err:
        load_weights(small_net(), path)
    command = str(err.value).split('python -c "')[1].split('" (for')[0]
    exec(command, {})  # the conversion the message gives, run where the file is trusted (here)
    converted = fresh_copy_differs(net)
    load_weights(converted, tmp_path / "whole.state_dict.pth")
    assert_same(converted, net)


def test_not_a_state_dict_is_a_clear_error():
    with pytest.raises(CheckpointError, match="no weights found"):
        extract_state_dict({"epoch": 3, "optimizer": {"lr": 1.0}})


def test_atomic_save_leaves_no_temp_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"a": torch.ones(2)}, path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"a": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(safe_load(path)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_rng_state_roundtrip_through_weights_only_file(tmp_path):
    import random

    import numpy as np

    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    np.random.randn()  # leaves a cached gaussian in NumPy's state
    path = atomic_torch_save({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.randn(), torch.rand(3))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_state(safe_load(path)["rng"])
    got = (random.random(), np.random.randn(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])
