"""The experiment grid: one entry per trained-and-evaluated row of the paper's tables (params.yaml ``experiments``).

An entry names a registered model, the blur map it uses, whether the LDP losses are on, overrides of the training
defaults, and the tables it appears in (with the paper row it is compared against).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from ldp.config import ConfigError, from_dict
from ldp.paper_results import PAPER_ROWS

# Table id → MLflow experiment name and title.
TABLES: dict[str, str] = {
    "main": "Main table: DPD-blur (LDP Fig. 1 / main paper)",
    "prompts": "Tab. 1: prompt formats for the CLIP blur map",
    "clip-variants": "Tab. 2: CLIP backbones for the blur map",
    "losses": "Tab. 3: the LDP losses on other networks",
    "blurmap-sources": "Ours, beyond the paper: where the blur map comes from",
}


@dataclass(frozen=True)
class ExperimentConfig:
    model: str
    blurmap: str  # id under params `blurmaps`; "none" = no blur map (dvc.yaml needs it in every entry)
    recipe: str  # id under params `recipes`: the model's training recipe (dvc.yaml needs it too)
    label: str = ""
    tables: dict[str, str | None] = field(default_factory=lambda: {"main": None})
    ldp_losses: bool = False  # add L_bwl + L_bal with the weights of params `ldp_losses`
    train: dict[str, Any] = field(default_factory=dict)  # last-word overrides of the training config
    module: str | None = None  # a user baseline's module to import (it registers the model)

    def primary_table(self) -> str:
        return next(iter(self.tables))


def load_experiments(params: dict, where: str = "params.yaml") -> dict[str, ExperimentConfig]:
    raw = params.get("experiments") or {}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}:experiments: expected a non-empty mapping of experiment name → entry")
    blurmaps = params.get("blurmaps") or {}
    out = {}
    for name, entry in raw.items():
        key = f"{where}:experiments.{name}"
        exp = from_dict(ExperimentConfig, entry, key)
        for table, row in exp.tables.items():
            if table not in TABLES:
                raise ConfigError(f"{key}.tables.{table}: unknown table (known: {', '.join(TABLES)})")
            if row is not None and row not in PAPER_ROWS:
                raise ConfigError(f"{key}.tables.{table}: unknown paper row {row!r}")
        if exp.blurmap not in blurmaps:
            raise ConfigError(f"{key}.blurmap: {exp.blurmap!r} is not defined under blurmaps")
        if exp.recipe not in (params.get("recipes") or {}):
            raise ConfigError(f"{key}.recipe: {exp.recipe!r} is not defined under recipes")
        out[name] = exp
    return out


def train_overrides(params: dict, exp: ExperimentConfig) -> dict[str, Any]:
    """The experiment's overrides of params `train`: recipe, then the LDP losses if on, then its own `train`."""
    merged: dict[str, Any] = {}
    _deep_update(merged, params["recipes"][exp.recipe])
    if exp.ldp_losses:
        _deep_update(merged, {"loss": dict(params.get("ldp_losses") or {})})
    _deep_update(merged, exp.train)
    return merged


def _deep_update(base: dict, new: dict) -> dict:
    for k, v in (new or {}).items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
    return base


def import_model_module(exp: ExperimentConfig) -> None:
    """Import a user baseline's module (it registers its model) when the entry names one."""
    if exp.module:
        import_module(exp.module)


def clip_weights_kinds(params: dict, exp: ExperimentConfig) -> list[str]:
    """Kinds of CLIP weights a row depends on: its blur map's and L_bal's (``openai``, ``checkpoint``, ``random``)."""
    kinds = set()
    bm = (params.get("blurmaps") or {}).get(exp.blurmap) or {}
    if bm.get("estimator", "clip") == "clip":
        kinds.add(_kind(bm.get("weights", "none")))
    if exp.ldp_losses and float((params.get("ldp_losses") or {}).get("bal", 0) or 0) > 0:
        kinds.add(_kind((params.get("ldp_losses") or {}).get("bal_weights", "none")))
    return sorted(kinds)


def _kind(weights: str) -> str:
    return {"none": "random", "openai": "openai"}.get(str(weights), "checkpoint")
