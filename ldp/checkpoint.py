"""Checkpoints: atomic saves, safe loads (``weights_only=True``) and tolerant weight loading.

``load_weights`` accepts the formats in which official checkpoints are published:

* a plain ``state_dict``;
* BasicSR / Restormer / NAFNet: ``{"params": sd}`` or ``{"params_ema": sd}`` (``params`` preferred, as in
  Restormer's test script; pass ``key="params_ema"`` for the EMA weights);
* wrappers: ``{"state_dict": sd}``, ``{"model": sd}``, ``{"net": sd}``, ``{"model_state": sd}``;
* ``module.`` prefixes from DistributedDataParallel / DataParallel and ``_orig_mod.`` from ``torch.compile``;
* our own ``last.pt`` training checkpoints (``{"model": sd, "ema": sd | None, ...}``).

Model-specific conversions (e.g. DeepRFT's weight folding) stay with the model: if the module defines
``convert_state_dict(state_dict) -> state_dict`` it is applied before the keys are matched, so the core never
imports a baseline. It returns its argument unchanged when there is nothing to convert.

This is the project's only weight loader; the baselines use it too.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ldp.fsutil import atomic_write

# Keys under which published checkpoints nest their weights, in order of preference.
WRAPPER_KEYS = ("params", "params_ema", "state_dict", "model_state_dict", "model_state", "model", "net", "network")
STRIP_PREFIXES = ("module.", "_orig_mod.")
MAX_LISTED = 40
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*(\S[^\n]*)")


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model; the message names the file and the keys."""


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace`` (never half-written)."""
    return atomic_write(path, lambda fh: torch.save(obj, fh), "wb", fsync=True)


def safe_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # pickled Python objects, or not a pickle at all
        raise CheckpointError(_refusal(path, str(exc))) from exc
    except Exception as exc:  # truncated zip container, empty file, ...
        raise CheckpointError(
            f"{path}: cannot load with torch.load(weights_only=True) (truncated, or not a torch checkpoint): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _refusal(path: Path, torch_message: str) -> str:
    """The error for a file ``weights_only=True`` refused, without torch's advice to unpickle it anyway."""
    found = _UNSUPPORTED_GLOBAL.search(torch_message)
    if found is None:
        detail = _UNPICKLER_DETAIL.search(torch_message)
        reason = detail.group(1).strip() if detail else torch_message.strip().splitlines()[0]
        return f"{path}: cannot load with torch.load(weights_only=True): corrupt, or not a torch checkpoint ({reason})"
    plain = path.with_name(f"{path.stem}.state_dict.pth")
    return (
        f"{path}: refused: the file holds pickled Python code ({found.group(1)}), and ldp-bench loads checkpoints "
        "with torch.load(weights_only=True) only: it never unpickles code. If you trust the file, convert it once "
        "into a plain state dict (tensors only) and pass that instead: python -c \"import torch; "
        f"obj = torch.load('{path}', map_location='cpu', weights_only=False); "
        "sd = obj.state_dict() if isinstance(obj, torch.nn.Module) else obj['state_dict']; "
        f"torch.save({{k: v for k, v in sd.items() if torch.is_tensor(v)}}, '{plain}')\" (for a dict whose "
        "weights sit under another key, use that key)"
    )


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def extract_state_dict(obj: Any, key: str | None = None, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap a published checkpoint into a flat ``{name: tensor}`` dict with DDP/compile prefixes removed."""
    return _unwrap(obj, key, where)[0]


def _unwrap(obj: Any, key: str | None, where: str) -> tuple[dict[str, torch.Tensor], str | None, bool]:
    """``(state_dict, wrapper_key, prefix_stripped)``; nested wrappers give a path such as ``"model/params"``."""
    path: list[str] = []
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            found = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"{where}: no entry {key!r} in the checkpoint (found: {found})")
        obj = obj[key]
        path.append(key)
    depth = 0
    while not _is_state_dict(obj):
        if not isinstance(obj, Mapping) or depth > 3:
            raise CheckpointError(f"{where}: not a state dict or a known checkpoint wrapper")
        inner = next((k for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            raise CheckpointError(
                f"{where}: no weights found; expected a state dict or one of the keys {list(WRAPPER_KEYS)}, "
                f"found {sorted(map(str, obj))[:MAX_LISTED]}"
            )
        obj = obj[inner]
        path.append(inner)
        depth += 1
    out = {}
    any_stripped = False
    for name, tensor in obj.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in STRIP_PREFIXES:
                if name.startswith(prefix):
                    name = name[len(prefix):]
                    stripped = any_stripped = True
        out[name] = tensor
    return out, "/".join(path) or None, any_stripped


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    more = f", ... ({len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
    return f"[{shown}{more}]"


def load_weights(
    model: nn.Module,
    path_or_state: str | Path | Mapping[str, Any],
    strict: bool = True,
    key: str | None = None,
) -> dict[str, Any]:
    """Load weights into ``model`` from a file or an in-memory checkpoint; returns a report (a plain dict).

    With ``strict=True`` any missing, unexpected or mis-shaped key raises one :class:`CheckpointError` that
    lists them all by name. With ``strict=False`` the matching tensors are loaded and the lists are returned.

    Report keys: ``missing``, ``unexpected``, ``shape_mismatch`` (sorted name lists); ``wrapper_key`` (the
    wrapper entry that held the state dict, e.g. ``"params"``, a ``"/"``-joined path when nested, or None for a
    bare state dict); ``stripped_prefix`` (a ``module.`` / ``_orig_mod.`` prefix was removed); ``converted``
    (the model's ``convert_state_dict`` changed the state dict's keys or tensors).
    """
    if isinstance(path_or_state, (str, Path)):
        where = str(path_or_state)
        obj = safe_load(path_or_state)
    else:
        where = "in-memory checkpoint"
        obj = path_or_state
    state, wrapper_key, stripped_prefix = _unwrap(obj, key, where)
    target = unwrap_model(model)
    convert = getattr(target, "convert_state_dict", None)
    converted = False
    if callable(convert):
        try:
            new_state = dict(convert(state))
        except CheckpointError as exc:  # name the file: the model's converter does not know it
            raise CheckpointError(f"{where}: {exc}") from exc
        converted = new_state.keys() != state.keys() or any(new_state[k] is not v for k, v in state.items())
        state = new_state
    own = target.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(
        f"{k} (checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    )
    report = {
        "missing": missing,
        "unexpected": unexpected,
        "shape_mismatch": mismatched,
        "wrapper_key": wrapper_key,
        "stripped_prefix": stripped_prefix,
        "converted": converted,
    }
    problems = []
    if missing:
        problems.append(f"missing keys {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch {_listing(mismatched)}")
    if strict and problems:
        raise CheckpointError(
            f"{where}: weights do not fit {type(target).__name__}: " + "; ".join(problems)
        )
    bad = {k.split(" ")[0] for k in mismatched}
    loadable = {k: v for k, v in state.items() if k in own and k not in bad}
    target.load_state_dict(loadable, strict=False)
    return report


# ---------------------------------------------------------------------------------------------------------------
# RNG state, stored in plain containers so that training checkpoints load with weights_only=True.


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (CPU) and CUDA generator states."""
    import random

    import numpy as np

    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    import random

    import numpy as np

    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    nps = state["numpy"]
    keys = nps["keys"].numpy().astype(np.uint32)
    np.random.set_state((nps["name"], keys, nps["pos"], nps["has_gauss"], nps["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        else:  # a different GPU count: restore what fits
            for i, s in enumerate(cuda[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(s.cpu(), i)
