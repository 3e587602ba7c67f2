"""Model registry: a plain dict of model specs, filled by explicit imports (timm style).

A model registers its build-config dataclass with the factory; the registry does the strict merge, so a factory is
one line::

    @register_model("my-net", config=MyNetConfig, tiny={"width": 8}, input_kind="dp", description="...")
    def my_net(config: MyNetConfig) -> MyNet:
        return MyNet(config)

``build_model("my-net", width=16)`` merges the overrides onto the registered defaults and checks them against
``MyNetConfig`` (an unknown key is a :class:`~ldp.config.ConfigError` naming it); ``tiny=True`` first applies the
model's small test config. Baselines in other packages register through the ``ldp.models`` entry-point group::

    [project.entry-points."ldp.models"]
    my_net = "my_package.my_module"      # importing the module registers its models
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Literal

from torch import nn

from ldp.config import ConfigError, from_dict, merge_overrides

InputKind = Literal["dp", "dp+blurmap", "combined"]
InferenceMode = Literal["whole", "tiled", "windows"]  # windows: non-overlapping, no blending (ldp.models.tiling)
ENTRY_POINT_GROUP = "ldp.models"
TINY_KEY = "tiny"  # the override that selects a model's small test config
DEFAULT_WHERE = "model_overrides"  # how errors name the overrides when the caller does not say where they came from


@dataclass(frozen=True)
class ModelSpec:
    """A registered model. ``factory(config)`` builds it from its typed config (``factory()`` when ``config`` is
    None: a model without build options)."""

    name: str
    factory: Callable[..., nn.Module]
    input_kind: InputKind
    inference: InferenceMode = "whole"
    description: str = ""
    config: type | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)  # the registered default configuration
    tiny: Mapping[str, Any] = field(default_factory=dict)  # applied on top of the defaults by ``tiny=True``

    def build_config(self, overrides: Mapping[str, Any] | None = None, where: str = DEFAULT_WHERE) -> Any:
        """The typed build config: defaults, then ``tiny`` if ``overrides`` sets ``tiny: true``, then the other
        overrides, merged key by key into nested config sections. Errors name ``where`` and the key path."""
        options = dict(overrides or {})
        tiny = options.pop(TINY_KEY, False)
        if not isinstance(tiny, bool):
            raise ConfigError(f"{where}.{TINY_KEY}: expected true/false, got {tiny!r}")
        if self.config is None:
            if options:
                raise ConfigError(f"{where}.{next(iter(options))}: unknown key (model {self.name!r} has no options)")
            return None
        registered = f"register_model({self.name!r})"
        merged = merge_overrides(self.config, self.defaults, self.tiny if tiny else {}, registered)
        return from_dict(self.config, merge_overrides(self.config, merged, options, where), where)

    def build(self, overrides: Mapping[str, Any] | None = None, where: str = DEFAULT_WHERE) -> nn.Module:
        config = self.build_config(overrides, where)
        return self.factory() if self.config is None else self.factory(config)


_MODELS: dict[str, ModelSpec] = {}
_builtins_loaded = False


def register_model(
    name: str,
    *,
    input_kind: InputKind,
    config: type | None = None,
    defaults: Mapping[str, Any] | None = None,
    tiny: Mapping[str, Any] | None = None,
    inference: InferenceMode = "whole",
    description: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers ``factory(config) -> nn.Module`` under ``name``.

    ``config``: the frozen dataclass of the build options (omit for a model with none; its factory takes no
    arguments); ``defaults``: overrides of the dataclass defaults that make the registered default configuration;
    ``tiny``: the overrides of the small test config. Both are checked here, so a bad one fails on import.
    """
    if input_kind not in typing.get_args(InputKind):
        raise ValueError(f"model {name!r}: unknown input_kind {input_kind!r}")
    if inference not in typing.get_args(InferenceMode):
        raise ValueError(f"model {name!r}: unknown inference mode {inference!r}")
    if config is None and (defaults or tiny):
        raise ValueError(f"model {name!r}: defaults and tiny need a config dataclass")
    if config is not None and TINY_KEY in {f.name for f in dataclasses.fields(config)}:
        raise ValueError(f"model {name!r}: {config.__name__} may not have a field named {TINY_KEY!r} (reserved)")

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS and _MODELS[name].factory is not factory:
            raise ValueError(f"model {name!r} is already registered by {_MODELS[name].factory.__module__}")
        spec = ModelSpec(name, factory, input_kind, inference, description, config, dict(defaults or {}),
                         dict(tiny or {}))
        for tiny_build in (False, True):  # a bad default or tiny config fails here, not in a user's run
            spec.build_config({TINY_KEY: tiny_build}, f"register_model({name!r})")
        _MODELS[name] = spec
        return factory

    return decorator


def unregister_model(name: str) -> None:
    """Remove a registered model (for tests and notebooks that register throw-away models)."""
    _MODELS.pop(name, None)


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    import_module("ldp.models")  # LDP and NAFNet live in the core
    # In-tree baselines register through the same entry-point group as external ones
    # (pyproject.toml: baselines = "baselines"), so the core never imports them by name.
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def list_models(pattern: str = "*") -> list[str]:
    _load_builtins()
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def get_spec(name: str) -> ModelSpec:
    _load_builtins()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model {name!r}.{hint} Known models: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model. With no overrides it is the model's registered default configuration: the
    official one where the paper or its code gives it, this project's choice where they do not (``ldp-large``,
    ``nafnet-dp``, ``deeprft-dp``; docs/models.md, docs/baselines.md). ``tiny=True`` builds the small test config;
    other overrides are checked strictly against the model's config dataclass."""
    return get_spec(name).build(overrides)
