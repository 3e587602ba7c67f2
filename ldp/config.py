"""Typed, frozen configs loaded from ``params.yaml``.

Each module defines its own frozen dataclass; :func:`from_dict` builds it strictly: an unknown or
misspelt key is a :class:`ConfigError` naming the full key path (``params.yaml:train.lr``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """A params file or section is malformed; the message names the file and key."""


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def section(params: Mapping[str, Any], key: str, cls: type[T], where: str = "params.yaml") -> T:
    """Build ``cls`` from ``params[key]``; a missing section gives the dataclass defaults."""
    dotted = key.split(".")
    node: Any = params
    for part in dotted:
        if not isinstance(node, Mapping) or part not in node:
            node = {}
            break
        node = node[part]
    return from_dict(cls, node, f"{where}:{key}")


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Strictly convert a mapping into the frozen dataclass ``cls``."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(sorted(fields))})"
        raise ConfigError(f"{where}.{key}: unknown key{hint}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: required key is missing")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (tuple,):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        pairs = enumerate(zip(args, value, strict=False))
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in pairs)
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        if not args:
            return dict(value)
        return {k: _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def to_flat_dict(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a (nested) dataclass into dotted keys, e.g. for ``mlflow.log_params``."""
    out: dict[str, Any] = {}
    items = dataclasses.asdict(cfg).items() if dataclasses.is_dataclass(cfg) else dict(cfg).items()
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(to_flat_dict(v, key + "."))
        else:
            out[key] = v
    return out


def merge_overrides(cls: type, base: Mapping[str, Any], override: Mapping[str, Any] | None, where: str) -> dict:
    """Deep-merge ``override`` onto ``base`` for dataclass ``cls``; an unknown key raises :class:`ConfigError`.

    Nested dataclass sections merge key by key; every other value (including dicts such as
    ``model_overrides``) is replaced whole. ``where`` is the override's location, e.g.
    ``params.yaml:experiments.x.train``.
    """
    if override is None:
        return dict(base or {})
    if not isinstance(override, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(override).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    merged = dict(base or {})
    for key, value in override.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(sorted(fields))})"
            raise ConfigError(f"{where}.{key}: unknown key{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            merged[key] = merge_overrides(tp, merged.get(key) or {}, value, f"{where}.{key}")
        else:
            merged[key] = value
    return merged
