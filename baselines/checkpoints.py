"""Loading official checkpoints into the baselines: wrapper keys, ``module.`` prefixes, DO-Conv folding.

- Restormer (BasicSR) saves ``{'params': state_dict}`` (``params_ema`` too when EMA is on; upstream tests
  read ``params``).
- DeepRFT saves ``{'epoch', 'state_dict', 'optimizer'}`` from an ``nn.DataParallel`` model, so keys may start
  with ``module.``; its test script folds the train-form DO-Conv tensors into eval-form weights.

Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only, no pickled code.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

WRAPPER_KEYS = ("params", "state_dict", "model", "params_ema")  # tried in this order
DP_PREFIX = "module."
_MAX_NAMES = 12


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model; the message names the file and the keys."""


@dataclass(frozen=True)
class LoadReport:
    source: str
    wrapper_key: str | None
    stripped_prefix: bool
    folded_doconv: bool
    missing: tuple[str, ...] = field(default_factory=tuple)
    unexpected: tuple[str, ...] = field(default_factory=tuple)


def read_checkpoint(path: str | os.PathLike) -> Mapping:
    """``torch.load`` on CPU with ``weights_only=True``; a clear error names the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"{path}: cannot be read as a weights-only torch checkpoint: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict, got {type(obj).__name__}")
    return obj


def extract_state_dict(
    obj: Mapping, key: str | None = None, where: str = "checkpoint"
) -> tuple[OrderedDict[str, torch.Tensor], str | None, bool]:
    """Unwrap ``{'params': sd}`` / ``{'state_dict': sd}`` / ... or a bare state_dict; strip ``module.``.

    Returns ``(state_dict, wrapper_key_used, prefix_stripped)``.
    """
    used = None
    if key is not None:
        if key not in obj:
            raise CheckpointError(f"{where}: no key {key!r} (has: {_names(list(obj))})")
        obj, used = obj[key], key
    elif not _is_state_dict(obj):
        for candidate in WRAPPER_KEYS:
            if candidate in obj and isinstance(obj[candidate], Mapping):
                obj, used = obj[candidate], candidate
                break
        else:
            raise CheckpointError(
                f"{where}: not a state_dict and none of the keys {list(WRAPPER_KEYS)} holds one "
                f"(has: {_names(list(obj))})"
            )
    if not _is_state_dict(obj):
        bad = [k for k, v in obj.items() if not torch.is_tensor(v)]
        raise CheckpointError(f"{where}: entries that are not tensors: {_names(bad)}")
    sd, stripped = strip_prefix(obj, DP_PREFIX)
    return sd, used, stripped


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str = DP_PREFIX) -> tuple[OrderedDict, bool]:
    """Remove ``prefix`` from every key that has it (DataParallel's ``module.``)."""
    stripped = any(k.startswith(prefix) for k in sd)
    out = OrderedDict((k[len(prefix) :] if k.startswith(prefix) else k, v) for k, v in sd.items())
    return out, stripped


def has_doconv_train_keys(keys) -> bool:
    return any(k.endswith(".D_diag") or k == "D_diag" for k in keys)


def fold_doconv_state_dict(sd: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """DeepRFT train form → eval form: W_eff[o,i,m] = sum_s (D + D_diag)[i,m,s] W[o,i,s], reshaped (o,i,k,k).

    A 3-D ``W`` without ``D`` (1x1 kernels) is only reshaped; ``D`` / ``D_diag`` are dropped; every other
    tensor (transposed-conv ``.weight``) passes through. Computed in at least float32; already-folded 4-D
    ``W`` tensors pass through, so folding twice is harmless.
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, value in sd.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("D", "D_diag"):
            continue
        if leaf != "W" or value.ndim != 3:
            out[name] = value
            continue
        prefix = name[: -len("W")]
        o, i, taps = value.shape
        k = math.isqrt(taps)
        if k * k != taps:
            raise CheckpointError(f"{name}: DO-Conv W has {taps} taps, not a square kernel")
        dtype = torch.promote_types(value.dtype, torch.float32)
        if prefix + "D" in sd:
            if prefix + "D_diag" not in sd:
                raise CheckpointError(f"{name}: has {prefix}D but no {prefix}D_diag")
            d = sd[prefix + "D"].to(dtype) + sd[prefix + "D_diag"].to(dtype)
            folded = torch.einsum("ims,ois->oim", d, value.to(dtype))
        else:
            folded = value.to(dtype)
        out[name] = folded.reshape(o, i, k, k)
    return out


def load_weights(
    model: nn.Module,
    source: str | os.PathLike | Mapping,
    *,
    key: str | None = None,
    strict: bool = True,
    fold_doconv: bool | None = None,
) -> LoadReport:
    """Load an official (or our own) checkpoint into ``model``.

    ``source`` is a file path or an already-loaded dict. ``fold_doconv=None`` folds DO-Conv train-form tensors
    when the checkpoint has them and the model does not (DeepRFT eval form). With ``strict`` any missing,
    unexpected or mis-shaped key raises :class:`CheckpointError` naming the keys.
    """
    where = str(source) if isinstance(source, (str, os.PathLike)) else "checkpoint"
    obj = read_checkpoint(source) if isinstance(source, (str, os.PathLike)) else source
    sd, used, stripped = extract_state_dict(obj, key, where)
    target = model.state_dict()
    if fold_doconv is None:
        fold_doconv = has_doconv_train_keys(sd) and not has_doconv_train_keys(target)
    if fold_doconv:
        sd = fold_doconv_state_dict(sd)

    missing = tuple(k for k in target if k not in sd)
    unexpected = tuple(k for k in sd if k not in target)
    mismatched = [
        f"{k} {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in target.items()
        if k in sd and sd[k].shape != v.shape
    ]
    problems = []
    if mismatched:
        problems.append(f"shape mismatch: {_names(mismatched)}")
    if strict and missing:
        problems.append(f"missing keys ({len(missing)}): {_names(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_names(unexpected)}")
    if problems:
        raise CheckpointError(f"{where} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(sd, strict=strict)
    return LoadReport(where, used, stripped, fold_doconv, missing, unexpected)


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def _names(names) -> str:
    names = list(names)
    shown = ", ".join(map(str, names[:_MAX_NAMES]))
    return shown + (f", ... (+{len(names) - _MAX_NAMES} more)" if len(names) > _MAX_NAMES else "")
