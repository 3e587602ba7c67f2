from dataclasses import dataclass, field

import pytest

from ldp.config import ConfigError, from_dict, load_params, section, to_flat_dict


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    iters: int = 10
    inner: Inner = field(default_factory=Inner)
    mode: str | None = None


def test_defaults_and_nested_override():
    cfg = from_dict(Outer, {"iters": 5, "inner": {"lr": 2}}, "params.yaml:train")
    assert cfg.iters == 5 and cfg.inner.lr == 2.0 and cfg.inner.betas == (0.9, 0.999)
    with pytest.raises(AttributeError):
        cfg.iters = 3  # frozen


def test_unknown_key_names_the_path_and_suggests():
    with pytest.raises(ConfigError, match=r"params.yaml:train.inner.lrr: unknown key \(did you mean 'lr'\?\)"):
        from_dict(Outer, {"inner": {"lrr": 1}}, "params.yaml:train")


def test_wrong_types_are_errors():
    with pytest.raises(ConfigError, match="train.iters: expected an integer"):
        from_dict(Outer, {"iters": "10"}, "params.yaml:train")
    with pytest.raises(ConfigError, match=r"train.inner.betas: expected 2 items"):
        from_dict(Outer, {"inner": {"betas": [0.9]}}, "params.yaml:train")


def test_section_and_flatten(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  iters: 7\n")
    cfg = section(load_params(p), "train", Outer)
    assert cfg.iters == 7
    assert to_flat_dict(cfg)["inner.lr"] == 1e-3


def test_bad_params_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
