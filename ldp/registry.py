"""Model registry: a plain dict of factory functions, filled by explicit imports (timm style).

Baselines in other packages register through the ``ldp.models`` entry-point group::

    [project.entry-points."ldp.models"]
    my_net = "my_package.my_module"      # importing the module registers its models
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Literal

from torch import nn

InputKind = Literal["dp", "dp+blurmap", "combined"]
InferenceMode = Literal["whole", "tiled"]
ENTRY_POINT_GROUP = "ldp.models"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[..., nn.Module]
    input_kind: InputKind
    inference: InferenceMode
    ldp_losses: bool
    description: str = ""


_MODELS: dict[str, ModelSpec] = {}
_builtins_loaded = False


def register_model(
    name: str,
    *,
    input_kind: InputKind,
    inference: InferenceMode = "whole",
    ldp_losses: bool = True,
    description: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers ``factory(**overrides) -> nn.Module`` under ``name``."""
    if input_kind not in ("dp", "dp+blurmap", "combined"):
        raise ValueError(f"model {name!r}: unknown input_kind {input_kind!r}")
    if inference not in ("whole", "tiled"):
        raise ValueError(f"model {name!r}: unknown inference mode {inference!r}")

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS and _MODELS[name].factory is not factory:
            raise ValueError(f"model {name!r} is already registered by {_MODELS[name].factory.__module__}")
        _MODELS[name] = ModelSpec(name, factory, input_kind, inference, ldp_losses, description)
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


def build_model(name: str, **overrides) -> nn.Module:
    """Build a registered model; with no overrides it is the paper's full configuration."""
    return get_spec(name).factory(**overrides)
