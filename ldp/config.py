"""Typed, frozen configs loaded from ``params.yaml``.

Each module defines its own frozen dataclass; :func:`from_dict` builds it strictly: an unknown or
misspelt key is a :class:`ConfigError` naming the full key path (``params.yaml:train.lr``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

DEFAULT_PARAMS = Path("params.yaml")
# Every top-level section a params file may have (each is read by the stages that declare it in dvc.yaml).
TOP_LEVEL_KEYS = ("extends", "paths", "data", "blurmaps", "train", "ldp_losses", "recipes", "experiments",
                  "evaluate", "complexity", "mlflow", "figures", "tables", "report", "real_sets",
                  "not_runnable")
# The section whose values are file locations: each relative one resolves against the folder of the params file that
# set it (ldp.runs.layout_of), so load_params records which file of an ``extends`` chain set each of its keys.
PATHS_SECTION = "paths"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-06`` as a float as YAML 1.2 does (PyYAML wants ``1.0e-06``; DVC's
    ``exp run -S`` writes the short form)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


class ConfigError(ValueError):
    """A params file or section is malformed; the message names the file and key."""


class Params(dict):
    """A loaded params file: a plain dict that remembers its file, so that every error names the file given."""

    def __init__(self, data: Mapping[str, Any] | None = None, source: str | Path = DEFAULT_PARAMS,
                 origins: Mapping[str, str] | None = None):
        super().__init__(data or {})
        self.source = str(source)
        # ``paths.<key>`` -> the file of the extends chain that set it (only keys of PATHS_SECTION are recorded).
        self.origins = dict(origins or {})


def where_of(params: Mapping[str, Any], key: str | None = None) -> str:
    """The params file behind ``params`` (``params.yaml`` for a plain dict); with ``key`` (``paths.dataset``), the
    file of its ``extends`` chain that set that key, where it was recorded (keys of ``paths``)."""
    origins = getattr(params, "origins", None) or {}
    if key is not None and key in origins:
        return origins[key]
    return getattr(params, "source", str(DEFAULT_PARAMS))


def _path_origins(data: Mapping[str, Any], path: Path, inherited: Mapping[str, str]) -> dict[str, str]:
    """Which file set each ``paths.<key>``: ``path`` for the keys it sets, the base's record for the others (a
    ``null`` deletes, as in :func:`overlay`)."""
    origins = dict(inherited)
    own = data.get(PATHS_SECTION, {})
    if own is None:
        return {k: v for k, v in origins.items() if not k.startswith(PATHS_SECTION + ".")}
    if isinstance(own, Mapping):
        for key, value in own.items():
            dotted = f"{PATHS_SECTION}.{key}"
            if value is None:
                origins.pop(dotted, None)
            else:
                origins[dotted] = os.path.normpath(path)  # profiles/../params.yaml -> params.yaml
    return origins


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
    if unknown:
        key = str(unknown[0])
        close = difflib.get_close_matches(key, TOP_LEVEL_KEYS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(TOP_LEVEL_KEYS)})"
        raise ConfigError(f"{path}:{key}: unknown top-level key{hint}")
    inherited: Mapping[str, str] = {}
    own = dict(data)
    if "extends" in data:
        base = path.parent / str(data.pop("extends"))
        if base.resolve() == path.resolve():
            raise ConfigError(f"{path}:extends: a params file cannot extend itself")
        loaded = load_params(base)
        inherited = loaded.origins
        data = overlay(dict(loaded), data)
    return Params(data, path, _path_origins(own, path, inherited))


def overlay(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` deep-merged on: mappings merge key by key, other values replace, ``null`` deletes."""
    out = dict(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = overlay(out[key], value)
        else:
            out[key] = value
    return out


def profile_overrides(profile: str | Path) -> list[str]:
    """The Hydra-style ``-S`` arguments of ``dvc exp run`` that turn the profile's base file into the profile.

    A profile (``profiles/paper.yaml``) holds only what differs from the file it ``extends``; ``make paper`` runs the
    paper profile as a DVC experiment with these overrides, so the tracked ``params.yaml`` is never rewritten.
    """
    path = Path(profile)
    raw = yaml.load(path.read_text(), Loader=_Loader) if path.is_file() else None
    if not isinstance(raw, dict) or "extends" not in raw:
        raise ConfigError(f"{path}: not a profile (a params file with an `extends:` key)")
    base = dict(load_params(path.parent / str(raw.pop("extends"))))
    args: list[str] = []

    def walk(node: Mapping[str, Any], old: Any, prefix: str) -> None:
        for key, value in node.items():
            dotted, before = f"{prefix}{key}", old.get(key) if isinstance(old, Mapping) else None
            exists = isinstance(old, Mapping) and key in old
            if value is None:
                if exists:
                    args.extend(["-S", f"~{dotted}"])
            elif isinstance(value, Mapping) and isinstance(before, Mapping):
                walk(value, before, dotted + ".")
            elif value != before or not exists:
                args.extend(["-S", f"{'' if exists else '+'}{dotted}={_hydra_value(value)}"])

    walk(raw, base, "")
    return args


def _hydra_value(value: Any) -> str:
    """``value`` in Hydra's override grammar (what ``dvc exp run -S`` parses)."""
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return "null" if value is None else json.dumps(value)


def subsection(params: Mapping[str, Any], key: str, required: bool = False) -> Mapping[str, Any]:
    """The mapping at dotted ``key`` of a params file (``{}`` when absent, or an error naming it when required)."""
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if required:
                raise ConfigError(f"{where_of(params)}:{key}: not defined")
            return {}
        node = node[part]
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise ConfigError(f"{where_of(params)}:{key}: expected a mapping, got {type(node).__name__}")
    return node


def section(params: Mapping[str, Any], key: str, cls: type[T], where: str | None = None) -> T:
    """Build ``cls`` from ``params[key]``; a missing section gives the dataclass defaults."""
    return from_dict(cls, subsection(params, key), f"{where or where_of(params)}:{key}")


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
