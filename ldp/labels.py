"""What a reader must know before quoting a result, derived from what was run (never from a profile's name).

Each label states one fact: the data (is it the DPDD test set: 76 images of 1680x1120?), the CLIP weights, the
schedule (iterations done against the recipe's reference length, ``ldp.paper_results.REFERENCE_SCHEDULES``), the
inference mode, the training precision and the combined input. A label may carry a caveat (printed in the tables'
Labels column); some caveats make a row not comparable with the paper, and the tables print no Δ for it.

One place computes them: :func:`evaluation_labels` for ``metrics.json`` (evaluation writes them there and into
``scores.json``; the tables read them back) and :func:`training_labels` for a resolved experiment (train_summary.json,
the training scores.json and the figures). docs/metrics.md, "Table labels", lists every caveat.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ldp.paper_results import DPDD_TEST_IMAGES, DPDD_TEST_SIZE_WXH, REFERENCE_SCHEDULES

COMPARABLE = "comparable_with_paper"
CAVEATS = "caveats"
NOT_COMPARABLE = "not_comparable_because"
_FULL_PRECISION = ("fp32", "auto")  # auto: a run recorded before config.json resolved it (CPU runs are fp32)


@dataclass(frozen=True)
class Label:
    value: str  # the fact, short (what scores.json shows)
    caveat: str | None = None  # what the tables print; None: nothing to say
    comparable: bool = True  # False: the row's numbers cannot be set beside the paper's


def data_label(source: str, split: str, sizes_wxh: Mapping[str, int]) -> Label:
    """The DPDD test set is 76 images, all 1680x1120 (a portrait frame, 1120x1680, counts too), from the ``dpdd``
    source's test split."""
    n = sum(sizes_wxh.values())
    sizes = ", ".join(f"{count} at {size}" for size, count in sorted(sizes_wxh.items())) or "no images"
    what = f"{source or 'unknown source'}, {split} split, {n} images ({sizes})"
    width, height = DPDD_TEST_SIZE_WXH.split("x")
    dpdd_sized = set(sizes_wxh) <= {DPDD_TEST_SIZE_WXH, f"{height}x{width}"}
    if source == "dpdd" and split == "test" and n == DPDD_TEST_IMAGES and dpdd_sized:
        return Label(f"DPDD test set ({DPDD_TEST_IMAGES} images at {DPDD_TEST_SIZE_WXH})")
    return Label(f"not the DPDD test set: {what}",
                 f"not the DPDD test set ({what}; the paper's is {DPDD_TEST_IMAGES} images at {DPDD_TEST_SIZE_WXH})",
                 comparable=False)


def clip_label(kinds: Iterable[str | None]) -> Label:
    """The CLIP weights behind the blur maps and L_bal: ``openai``, ``random`` or ``checkpoint`` (a file)."""
    known = sorted({k for k in kinds if k and k != "n/a"})
    value = ",".join(known) or "n/a"
    if "random" in known:
        return Label(value, "random CLIP weights", comparable=False)
    if "checkpoint" in known:
        return Label(value, "CLIP weights from a checkpoint file (not OpenAI's release)", comparable=False)
    return Label(value)


def schedule_label(recipe: str, iters: int) -> Label:
    """``iters`` done against the reference length of ``recipe``; shorter is a short schedule."""
    ref = REFERENCE_SCHEDULES.get(recipe)
    if ref is None:
        return Label(f"{iters} iterations", f"{iters} iterations of recipe {recipe!r}, which has no reference "
                                            "schedule length", comparable=False)
    if iters < ref.iters:
        return Label(f"short schedule ({iters} of {ref.iters} iterations)",
                     f"short schedule ({iters} of {ref.iters} iterations)", comparable=False)
    value = f"full schedule ({iters} of {ref.iters} iterations)"
    return Label(value, None if ref.official else f"schedule is our choice ({iters} iterations; the paper gives "
                                                  "none)")


def precision_label(precision: str) -> Label:
    if precision in _FULL_PRECISION:
        return Label(precision)
    return Label(precision, f"{precision} training (the official recipes train in fp32)")


def inference_label(record: Mapping[str, Any] | None) -> Label:
    """The evaluation's ``inference`` record: a mode other than the model's registered (official) one computes
    something else than the official test."""
    if not record:
        return Label("not recorded", "inference mode not recorded", comparable=False)
    if record.get("official"):
        return Label(f"{record['mode']} (official)")
    return Label(f"{record['mode']} (not the official {record.get('registered')})",
                 f"{record['mode']} inference, not the official {record.get('registered')}", comparable=False)


def combined_input_label(model: str, fed: Mapping[str, int] | None) -> Label:
    """A combined-input model fed (L+R)/2 where the official tests read the camera image C."""
    from ldp.models.input_baselines import FED_VIEW_AVERAGE, INPUT_AVERAGE

    if not fed:
        return Label("n/a")
    averaged = fed.get(FED_VIEW_AVERAGE, 0)
    if model == INPUT_AVERAGE or not averaged:
        return Label("; ".join(f"{image}: {n}" for image, n in sorted(fed.items())))
    n = sum(fed.values())
    return Label(f"(L+R)/2 on {averaged} of {n} images",
                 f"combined input (L+R)/2 on {averaged} of {n} images (no camera image C)")


def subsets_label(origin: str, metrics: Mapping[str, Any] | None) -> Label:
    """Where the indoor/outdoor numbers' categories came from: DPDD's official label npys, or the committed lists
    that no official file has confirmed (``ldp/data/splits``)."""
    from ldp.data.manifest import UNVERIFIED_LISTS

    n = sum(int((metrics or {}).get(subset, {}).get("n_images") or 0) for subset in ("indoor", "outdoor"))
    if not n:
        return Label("n/a")
    if origin == UNVERIFIED_LISTS:
        return Label(f"indoor/outdoor: {origin}", "indoor/outdoor numbers use UNVERIFIED scene lists "
                                                  "(ldp/data/splits), not DPDD's official label files")
    if not origin:
        return Label("indoor/outdoor: origin not recorded", "indoor/outdoor scene lists of unrecorded origin")
    return Label(f"indoor/outdoor: {origin}")


def _entry(labels: Mapping[str, Label]) -> dict[str, Any]:
    """The JSON form: each fact, whether the row is comparable with the paper, and the caveats (in key order)."""
    out: dict[str, Any] = {key: label.value for key, label in labels.items()}
    out[COMPARABLE] = "yes" if all(label.comparable for label in labels.values()) else "no"
    out[CAVEATS] = [label.caveat for label in labels.values() if label.caveat]
    out[NOT_COMPARABLE] = [label.caveat for label in labels.values() if label.caveat and not label.comparable]
    return out


def training_labels(exp: Any) -> dict[str, Any]:
    """Labels of a resolved experiment (``ldp.experiments.ResolvedExperiment``) as trained: its data source (the
    test-set check needs the evaluation), CLIP weights, schedule, precision and augmentation."""
    source = exp.data_source or "unknown"
    data = Label(source, None if source == "dpdd" else f"trained on {source} data, not DPDD",
                 comparable=source == "dpdd")
    return _entry({"data": data, "clip_weights": clip_label(exp.clip_weights_kinds),
                   "schedule": schedule_label(exp.recipe, exp.train.iters),
                   "precision": precision_label(exp.train.precision), "augment": Label(exp.train.augment)})


def evaluation_labels(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Labels of an evaluation from its ``metrics.json`` content (before ``labels`` is added)."""
    from ldp.evaluate import RANDOM_INIT
    from ldp.models.input_baselines import NO_WEIGHTS

    source = summary.get("data_source") or {}
    experiment = summary.get("experiment")
    weights = summary.get("weights")
    labels = {"data": data_label(source.get("name", ""), source.get("split", ""),
                                 source.get("image_sizes_wxh") or {})}
    if weights == NO_WEIGHTS:
        labels["schedule"] = Label("n/a (input baseline)")
    elif weights == RANDOM_INIT:
        labels["schedule"] = Label("untrained (random init)", "untrained (random init)", comparable=False)
    elif experiment is None:
        labels["schedule"] = Label("not recorded", "weights without a training record (schedule unknown)",
                                   comparable=False)
    else:
        labels["schedule"] = schedule_label(experiment["recipe"], experiment["train"]["iters"])
    kinds = [summary.get("clip_weights"), *(experiment or {}).get("clip_weights_kinds", [])]
    labels["clip_weights"] = clip_label(kinds)
    labels["inference"] = inference_label(summary.get("inference"))
    train = (experiment or {}).get("train") or {}
    labels["precision"] = precision_label(train["precision"]) if train else Label("n/a")
    labels["augment"] = Label(train.get("augment", "n/a"))
    labels["combined_input"] = combined_input_label(summary.get("model", ""), summary.get("combined_input"))
    labels["subsets"] = subsets_label(source.get("categories", ""), summary.get("metrics"))
    return _entry(labels)


def flat_labels(entry: Mapping[str, Any]) -> dict[str, str]:
    """The string facts of a labels entry (what ``scores.json`` carries: DVC drops lists from its tables)."""
    return {key: value for key, value in entry.items() if isinstance(value, str)}


def restoration_labels(summary: Mapping[str, Any], restorations_dir: Any) -> dict[str, Any]:
    """Labels of a restorations-folder evaluation (``ldp evaluate --restorations``): the data and subsets labels as
    for a model, and facts that say no model ran here (how the images were made is not recorded)."""
    source = summary.get("data_source") or {}
    name = getattr(restorations_dir, "name", str(restorations_dir))
    not_here = f"n/a (restorations from {restorations_dir})"
    return _entry({
        "data": data_label(source.get("name", ""), source.get("split", ""), source.get("image_sizes_wxh") or {}),
        "schedule": Label(not_here, f"restorations from {name}: how they were made is not recorded here"),
        "clip_weights": Label("n/a"), "inference": Label(not_here), "precision": Label("n/a"),
        "augment": Label("n/a"), "combined_input": Label("n/a"),
        "subsets": subsets_label(source.get("categories", ""), summary.get("metrics")),
    })
