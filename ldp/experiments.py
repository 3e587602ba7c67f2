"""The experiment grid (params ``experiments``) and its resolution into one :class:`ResolvedExperiment` per row.

An entry names a registered model, its training recipe, the blur map it uses, whether the LDP losses are on,
overrides of the training defaults, and the tables it appears in. :func:`resolve` merges the five training layers
(``TrainConfig`` defaults → ``train`` → ``recipes.<r>`` → ``ldp_losses`` → ``experiments.<x>.train``) once, checks
every value against the layer it came from, and records which layer set each value. The result is written as
``config.json`` beside the weights; evaluation, figures and ``ldp deblur --weights`` rebuild the network from it.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from ldp.config import ConfigError, from_dict, merge_overrides, section, subsection, to_flat_dict, where_of
from ldp.paper_results import PAPER_ROWS

RESOLVED_FORMAT = "ldp-resolved-experiment-v1"
CONFIG_JSON = "config.json"

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


def load_experiments(params: Mapping[str, Any]) -> dict[str, ExperimentConfig]:
    """Every entry of ``experiments``, each checked (tables, paper rows)."""
    raw = subsection(params, "experiments")
    if not raw:
        raise ConfigError(f"{where_of(params)}:experiments: expected a non-empty mapping of experiment name → entry")
    return {name: experiment_entry(params, name) for name in raw}


def experiment_entry(params: Mapping[str, Any], name: str) -> ExperimentConfig:
    """One entry of ``experiments``, reading only that entry (a stage declares ``experiments.<name>``)."""
    where = where_of(params)
    raw = subsection(params, "experiments")
    if name not in raw:
        raise ConfigError(f"{where}:experiments.{name}: no such experiment (known: {', '.join(raw) or 'none'})")
    key = f"{where}:experiments.{name}"
    exp = from_dict(ExperimentConfig, raw[name], key)
    for table, row in exp.tables.items():
        if table not in TABLES:
            raise ConfigError(f"{key}.tables.{table}: unknown table (known: {', '.join(TABLES)})")
        if row is not None and row not in PAPER_ROWS:
            raise ConfigError(f"{key}.tables.{table}: unknown paper row {row!r}")
    return exp


@dataclass(frozen=True)
class ResolvedExperiment:
    """Everything one row of the grid runs with, resolved once from the params file (see the module docstring)."""

    name: str
    model: str
    label: str
    recipe: str
    tables: dict[str, str | None]
    module: str | None
    train: Any  # ldp.train.TrainConfig, model build overrides in train.model_overrides
    input_kind: str
    blurmap: str
    blurmap_config: Any  # ldp.blurmap.estimate.BlurMapConfig
    ldp_losses: bool
    clip_weights_kinds: tuple[str, ...]
    params_file: str
    keys_read: tuple[str, ...]  # the params keys resolution read, dotted
    sources: dict[str, str] = field(default_factory=dict)  # flat train key → "file:section.key" that set it
    data_source: str = ""  # the dataset's source stamp (synthetic, dpdd, ...) at training time
    # Completed by the evaluation (its stage reads params `evaluate`, the training stage does not):
    evaluate: Any = None  # ldp.evaluate.EvalConfig
    inference: str | None = None  # whole | tiled | windows: evaluate.tiling resolved against the registered mode

    @property
    def model_overrides(self) -> dict[str, Any]:
        return dict(self.train.model_overrides)

    def primary_table(self) -> str:
        return next(iter(self.tables))

    def key_path(self, train_key: str) -> str:
        """Where the training value ``train_key`` (``optim.lr``, ``progressive[1]``...) is set, with its file."""
        base = train_key.split("[")[0]
        source = self.sources.get(base) or f"{self.params_file}:train.{base}"
        return source + train_key[len(base):]

    def for_evaluation(self, cfg: Any) -> ResolvedExperiment:
        """This experiment completed with an evaluation config (and the inference mode it gives this model)."""
        from ldp.registry import get_spec

        mode = get_spec(self.model).inference if cfg.tiling == "auto" else cfg.tiling
        return dataclasses.replace(self, evaluate=cfg, inference=mode)

    @property
    def labels(self) -> dict[str, Any]:
        """What a reader must know before quoting this row's numbers, as trained (:func:`ldp.labels.training_labels`:
        data, CLIP weights, schedule, precision (the one used once config.json is written), augmentation)."""
        from ldp.labels import training_labels

        return training_labels(self)

    def to_json(self) -> dict[str, Any]:
        out = {"format": RESOLVED_FORMAT}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        return json.loads(json.dumps(out, default=list))

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> ResolvedExperiment:
        """Rebuild from ``config.json`` (strictly: a file of another format or shape is an error naming it)."""
        from ldp.blurmap.estimate import BlurMapConfig
        from ldp.evaluate import EvalConfig
        from ldp.train import TrainConfig

        if not isinstance(data, Mapping) or data.get("format") != RESOLVED_FORMAT:
            raise ConfigError(f"{where}: not a resolved experiment ({RESOLVED_FORMAT})")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(data))
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}")
        values = {k: data[k] for k in names}
        values["train"] = from_dict(TrainConfig, data["train"], f"{where}:train")
        if data["evaluate"] is not None:
            values["evaluate"] = from_dict(EvalConfig, data["evaluate"], f"{where}:evaluate")
        values["blurmap_config"] = from_dict(BlurMapConfig, data["blurmap_config"], f"{where}:blurmap_config")
        values["clip_weights_kinds"] = tuple(data["clip_weights_kinds"])
        values["keys_read"] = tuple(data["keys_read"])
        return cls(**values)

    def describe(self) -> str:
        """Each resolved value with the layer it came from (``ldp show-config``)."""
        lines = [f"experiment {self.name}  ({self.params_file})",
                 f"  model            {self.model}  [{self.input_kind}]  ({self.params_file}:experiments.{self.name})",
                 f"  label            {self.label}",
                 f"  recipe           {self.recipe}",
                 f"  blurmap          {self.blurmap}  ({self.params_file}:blurmaps.{self.blurmap})",
                 f"  ldp_losses       {self.ldp_losses}",
                 f"  clip weights     {', '.join(self.clip_weights_kinds) or 'n/a'}",
                 f"  data source      {self.data_source or 'unknown'}",
                 "train:"]
        for key, value in to_flat_dict(self.train).items():
            lines.append(f"  {key:28s} {value!r:28s} {self.sources.get(key, 'default')}")
        lines.append("blurmap_config:")
        lines += [f"  {k:28s} {v!r}" for k, v in to_flat_dict(self.blurmap_config).items()]
        if self.evaluate is not None:
            lines.append(f"evaluate:  (inference {self.inference})")
            lines += [f"  {k:28s} {v!r}" for k, v in to_flat_dict(self.evaluate).items()]
        return "\n".join(lines) + "\n"


def _flat(cls: type, mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a layer for config class ``cls``: nested config sections are walked, any other value (a list,
    or a dict such as ``model_overrides``, which a layer replaces whole) is one key."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for k, v in mapping.items():
        tp = hints.get(k)
        if isinstance(v, Mapping) and tp is not None and dataclasses.is_dataclass(tp):
            out.update(_flat(tp, v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resolve(params: Mapping[str, Any], name: str, data_source: str = "") -> ResolvedExperiment:
    """Resolve experiment ``name`` of ``params`` (a loaded params file) for training; errors name the file and key.

    It reads ``experiments.<name>``, ``train``, ``recipes.<recipe>``, ``ldp_losses`` and ``blurmaps.<id>``: the
    params the training stage declares. :meth:`ResolvedExperiment.for_evaluation` adds the evaluation config.
    """
    from ldp.blurmap.estimate import BlurMapConfig
    from ldp.blurmap.weights import weights_kind_of
    from ldp.losses import LossConfig
    from ldp.models.input_baselines import is_input_baseline
    from ldp.registry import get_spec
    from ldp.train import TrainConfig

    where = where_of(params)
    exp = experiment_entry(params, name)
    exp_key = f"experiments.{name}"
    if exp.module:
        try:
            import_module(exp.module)
        except ImportError as exc:
            raise ConfigError(f"{where}:{exp_key}.module: cannot import {exp.module!r}: {exc}") from exc
    try:
        spec = get_spec(exp.model)
    except KeyError as exc:
        raise ConfigError(f"{where}:{exp_key}.model: {exc.args[0]}") from None
    if is_input_baseline(exp.model):
        raise ConfigError(f"{where}:{exp_key}.model: {exp.model!r} is an input baseline: it has nothing to train; "
                          f"the `inputs` stage scores it (ldp evaluate --model {exp.model} --data ROOT)")

    # The five layers, each checked on its own so that an error names the layer that holds the bad key.
    layers: list[tuple[str, Mapping[str, Any]]] = [
        ("train", subsection(params, "train")),
        (f"recipes.{exp.recipe}", subsection(params, f"recipes.{exp.recipe}", required=True)),
    ]
    losses = subsection(params, "ldp_losses")
    from_dict(LossConfig, losses, f"{where}:ldp_losses")
    if exp.ldp_losses:
        if not losses:
            raise ConfigError(f"{where}:{exp_key}.ldp_losses: true, but {where} has no ldp_losses section "
                              "(the weights of L_bwl and L_bal; docs/losses.md)")
        layers.append(("ldp_losses", {"loss": losses}))
    layers.append((f"{exp_key}.train", exp.train))

    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer, values in layers:
        shown = f"{where}:{layer}"
        from_dict(TrainConfig, merge_overrides(TrainConfig, {}, values, shown), shown)  # keys and types, this layer
        merged = merge_overrides(TrainConfig, merged, values, shown)
        for key in _flat(TrainConfig, values):
            shown_key = key.removeprefix("loss.") if layer == "ldp_losses" else key
            sources[key] = f"{shown}.{shown_key}"
    blurmap_key = f"blurmaps.{exp.blurmap}"
    if exp.blurmap not in subsection(params, "blurmaps"):
        raise ConfigError(f"{where}:{exp_key}.blurmap: {exp.blurmap!r} is not defined under blurmaps")
    blurmap_config = section(params, blurmap_key, BlurMapConfig)
    merged = _bal_follows_blurmap(merged, sources, blurmap_config, f"{where}:{blurmap_key}")

    train = from_dict(TrainConfig, merged, f"{where}:{exp_key}")
    overrides_at = sources.get("model_overrides", f"{where}:train.model_overrides")
    spec.build_config(train.model_overrides, where=overrides_at)  # unknown build keys, before anything runs

    kinds = set()
    if blurmap_config.estimator == "clip":
        kinds.add(weights_kind_of(blurmap_config.weights))
    if train.loss.bal > 0:
        kinds.add(weights_kind_of(train.loss.bal_weights))
    keys_read = (exp_key, blurmap_key, "ldp_losses", f"recipes.{exp.recipe}", "train")
    return ResolvedExperiment(
        name=name, model=exp.model, label=exp.label or name, recipe=exp.recipe, tables=dict(exp.tables),
        module=exp.module, train=train, input_kind=spec.input_kind, blurmap=exp.blurmap,
        blurmap_config=blurmap_config, ldp_losses=exp.ldp_losses, clip_weights_kinds=tuple(sorted(kinds)),
        params_file=where, keys_read=keys_read, sources=sources, data_source=data_source,
    )


def _bal_follows_blurmap(merged: dict[str, Any], sources: dict[str, str], blurmap_config: Any,
                         blurmap_at: str) -> dict[str, Any]:
    """L_bal scores the restoration with the row's blur-map backbone (Tab. 2 changes the estimator, not just the
    input map), and with that backbone's single-image thresholds, unless a layer sets them itself."""
    from ldp.blurmap.prompts import thresholds_for
    from ldp.losses import LossConfig
    from ldp.train import TrainConfig

    loss = merged.get("loss") or {}
    if not loss.get("bal"):
        return merged
    follow: dict[str, Any] = {}
    if "loss.bal_clip_model" not in sources and blurmap_config.estimator == "clip":
        follow["bal_clip_model"] = blurmap_config.clip_model
        sources["loss.bal_clip_model"] = f"{blurmap_at}.clip_model"
    if "loss.bal_thresholds" not in sources:
        clip_model = follow.get("bal_clip_model", loss.get("bal_clip_model", LossConfig.bal_clip_model))
        follow["bal_thresholds"], released = thresholds_for("single", clip_model)
        sources["loss.bal_thresholds"] = f"ldp.blurmap.prompts.thresholds_for('single', {clip_model!r}): {released}"
    return merge_overrides(TrainConfig, merged, {"loss": follow}, blurmap_at)


def read_resolved(folder: str | Path) -> ResolvedExperiment:
    """The resolved experiment a training run wrote as ``folder/config.json``."""
    path = Path(folder) / CONFIG_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no resolved experiment (written when a training run finishes)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable JSON: {exc}") from exc
    exp = ResolvedExperiment.from_json(data, str(path))
    if exp.module:
        import_module(exp.module)
    return exp
