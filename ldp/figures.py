"""The data behind the paper's figures (the notebooks only plot it), written to one folder:

- ``blurmaps.npz``: one test scene's blur map per prompt format / estimator, beside the ground-truth |defocus| (Fig. 3);
- ``bpa_features.npz``: the BPA block's output with the blur map against the same block without it (Fig. 4);
- ``qualitative/``: crops of restorations (Figs. 5-7) on the test set, and on DPD-disp and a user folder when given;
- ``index.json``: the scene, the blur-map accuracies, the qualitative panels and the labels a reader must see.

Trained networks come from a loader (``ldp.runs.load_trained`` in the stage), never from params; the labels come
from the loaded runs' resolved experiments (``ldp.labels.training_labels``), the test set's manifest (is it the DPDD
test set?) and the blur maps' ``meta.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ldp.blurmap.accuracy import score_blurmap
from ldp.blurmap.io import load_blurmap, read_blurmap, read_meta
from ldp.data.manifest import load_manifest, load_scene
from ldp.fsutil import atomic_dir
from ldp.imageio import read_image, write_image
from ldp.models.inputs import make_input, primary_output

if TYPE_CHECKING:
    from ldp.runs import TrainedRun

INDEX_JSON = "index.json"


@dataclass(frozen=True)
class FiguresConfig:
    """params.yaml section ``figures``."""

    scene_index: int = 0  # test scene shown (must be < evaluate.save_samples for the qualitative crops)
    blurmaps: tuple[str, ...] = ("clip-vitb32-ours", "clip-vitb32-diff_lr", "clip-vitb32-inconsistent",
                                 "clip-vitb32-halves", "classical", "oracle")
    bpa_experiment: str = "ldp-small"
    qualitative: tuple[str, ...] = ("ldp-small", "ldp-large", "nafnet-dp", "restormer-dp", "deeprft-dp")
    crop: int = 96
    dpd_disp_root: str = ""  # a dataset root prepared with data.source: dpd_disp (Fig. 6); empty: not shown
    user_folder_root: str = ""  # a dataset root prepared with data.source: folder (Fig. 7); empty: not shown


@dataclass(frozen=True)
class FigureSources:
    """Where the figures read: the dataset, the blur-map sets, the evaluations (their saved restorations)."""

    dataset: Path
    blurmaps: Path
    evals: Path

    def sample(self, experiment: str, scene: str) -> Path:
        return self.evals / experiment / "samples" / f"{scene}.png"


def check_figures_config(cfg: FiguresConfig, where: str) -> None:
    """The values of ``cfg`` alone (``where``: the params file, for the messages)."""
    if cfg.scene_index < 0:
        raise ValueError(f"{where}:figures.scene_index: must be >= 0, got {cfg.scene_index}")
    if cfg.crop <= 0:
        raise ValueError(f"{where}:figures.crop: must be positive, got {cfg.crop}")


def check_figure_inputs(cfg: FiguresConfig, sources: FigureSources, has_run: Callable[[str], bool]) -> None:
    """Every input named by ``cfg`` exists (paths only): run before anything is written."""
    for i, map_id in enumerate(cfg.blurmaps):
        if not (sources.blurmaps / map_id).is_dir():
            raise FileNotFoundError(f"figures.blurmaps[{i}]: {sources.blurmaps / map_id} not found (no such blur-map "
                                    "set was built)")
    if not has_run(cfg.bpa_experiment):
        raise FileNotFoundError(f"figures.bpa_experiment: {cfg.bpa_experiment!r} has no finished training run")
    for i, name in enumerate(cfg.qualitative):
        if not has_run(name):
            raise FileNotFoundError(f"figures.qualitative[{i}]: {name!r} has no finished training run")
        if not (sources.evals / name / "samples").is_dir():
            raise FileNotFoundError(f"figures.qualitative[{i}]: {sources.evals / name / 'samples'} not found "
                                    "(evaluate it with evaluate.save_samples > 0)")
    for field in ("dpd_disp_root", "user_folder_root"):
        root = getattr(cfg, field)
        if root and not (Path(root) / "manifest.csv").is_file():
            raise FileNotFoundError(f"figures.{field}: {Path(root) / 'manifest.csv'} not found (prepare the dataset "
                                    "first; docs/data.md)")


def _view(scene: dict) -> np.ndarray:
    return scene["combined"] if "combined" in scene else (scene["left"] + scene["right"]) / 2


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]


def run_labels(experiments: list[Any]) -> list[str]:
    """What a reader must know about the networks shown: the caveats of their training labels
    (:func:`ldp.labels.training_labels`: data, CLIP weights, schedule, precision), each once with the runs it
    applies to."""
    from ldp.labels import CAVEATS, training_labels

    runs_by_caveat: dict[str, set[str]] = {}
    for exp in experiments:
        for caveat in training_labels(exp)[CAVEATS]:
            runs_by_caveat.setdefault(caveat, set()).add(exp.name)
    return sorted(f"{', '.join(sorted(names))}: {caveat}" for caveat, names in runs_by_caveat.items())


def blurmap_figure(cfg: FiguresConfig, sources: FigureSources, table, row, scene: dict, out: Path) -> tuple[dict, list]:
    """``blurmaps.npz`` for one scene; the mean accuracy of each map over the test set (synthetic data only)."""
    arrays = {"image": _view(scene)}
    accuracy, labels = {}, []
    if "defocus" in scene:
        arrays["gt_abs_defocus"] = np.abs(scene["defocus"])
        truths = {r["scene"]: np.abs(load_scene(sources.dataset, r)["defocus"]) for r in table.to_dict("records")}
    for map_id in cfg.blurmaps:
        map_dir = sources.blurmaps / map_id
        arrays[map_id] = read_blurmap(map_dir, row["scene"])
        if read_meta(map_dir).get("weights_kind") == "random":
            labels.append(f"{map_id}: random CLIP weights")
        if "defocus" in scene:
            scores = [score_blurmap(read_blurmap(map_dir, name), truth) for name, truth in truths.items()]
            accuracy[map_id] = {k: float(np.mean([s[k] for s in scores])) for k in ("spearman", "mae")}
    np.savez_compressed(out / "blurmaps.npz", **arrays)
    return accuracy, labels


@torch.no_grad()
def bpa_figure(run: TrainedRun, sources: FigureSources, row, scene: dict, out: Path) -> None:
    """``bpa_features.npz``: the mean |feature| of the BPA block with the scene's blur map and with a zero map."""
    model, exp = run.model, run.experiment
    if not (hasattr(model, "patch_embed") and hasattr(model, "ca")):
        raise ValueError(f"figures.bpa_experiment: {exp.name!r} ({exp.model}) has no BPA block (use an LDP model)")
    h, w = scene["left"].shape[:2]
    blur = torch.from_numpy(load_blurmap(sources.blurmaps / exp.blurmap, row["scene"], (h, w)))[None, None]
    stem = model.patch_embed(torch.cat([_to_tensor(scene["left"]), _to_tensor(scene["right"])], 1))
    feats = {"bpa": model.ca(stem, blur), "plain_attention": model.ca(stem, torch.zeros_like(blur))}
    np.savez_compressed(out / "bpa_features.npz", image=_view(scene), blurmap=blur[0, 0].numpy(),
                        **{k: v[0].abs().mean(0).numpy() for k, v in feats.items()})


def crop_box(scene: dict, size: int) -> tuple[int, int]:
    """Top-left of the crop centred on the most defocused region (or the image centre)."""
    h, w = scene["left"].shape[:2] if "left" in scene else scene["target"].shape[:2]
    size = min(size, h, w)
    if "defocus" in scene:
        stride = max(size // 4, 1)
        pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(np.abs(scene["defocus"]))[None, None], size,
                                                stride=stride)[0, 0]
        iy, ix = np.unravel_index(int(pooled.argmax()), pooled.shape)
        return int(iy * stride), int(ix * stride)
    return (h - size) // 2, (w - size) // 2


def _save_crop(img: np.ndarray, box: tuple[int, int], size: int, path: Path) -> str:
    """Write the crop as an 8-bit PNG; returns its path relative to the figures folder."""
    y, x = box
    write_image(path, np.clip(img[y: y + size, x: x + size], 0, 1), bits=8)
    return str(path.relative_to(path.parents[2]))


def _panel(cfg: FiguresConfig, scene: dict, scene_name: str, qdir: Path, restored: list[tuple[str, str, np.ndarray]]):
    """One row of crops: the input's left view, then ``(title, file stem, image)`` for each restoration."""
    box = crop_box(scene, cfg.crop)
    images = [["input (left view)", _save_crop(scene["left"], box, cfg.crop, qdir / "input_left.png")]]
    images += [[title, _save_crop(img, box, cfg.crop, qdir / f"{stem}.png")] for title, stem, img in restored]
    return {"scene": scene_name, "images": images}


def shown_data_label(table, data_source: str):
    """Whether the figures' test set is the DPDD test set (:func:`ldp.labels.data_label` on its manifest rows)."""
    from ldp.labels import data_label

    sizes = [f"{w}x{h}" for w, h in zip(table["width"], table["height"], strict=True)]
    return data_label(data_source, "test", {size: sizes.count(size) for size in set(sizes)})


def qualitative_testset(cfg: FiguresConfig, sources: FigureSources, load: Callable[[str], TrainedRun], row,
                        scene: dict, out: Path, data: Any) -> dict:
    """Crops of each evaluation's saved restoration of the scene, beside the input and the target."""
    restored = [("target", "target", scene["target"])]
    for name in cfg.qualitative:
        sample = sources.sample(name, row["scene"])
        if not sample.is_file():
            raise FileNotFoundError(f"{sample}: no saved restoration (figures.scene_index must be below "
                                    "evaluate.save_samples)")
        restored.append((load(name).experiment.label, name, read_image(sample)))
    title = "DPD-blur test set" if data.comparable else f"{data.value} (stands in for DPD-blur)"
    return {"title": title, "panels": [_panel(cfg, scene, row["scene"], out / "qualitative" / "test", restored)]}


@torch.no_grad()
def qualitative_folder(cfg: FiguresConfig, run: TrainedRun, root: str, key: str, title: str, out: Path) -> dict:
    """The first scene of a prepared dataset root restored by ``run`` (its blur map estimated as in its config)."""
    from ldp.blurmap.estimate import BlurMapper

    if not root:
        return {"title": title, "missing": f"Not shown: set figures.{key}_root to a prepared dataset root "
                                          "(see docs/data.md); no such data ships with the suite."}
    exp = run.experiment
    row = load_manifest(root).iloc[0]
    scene = load_scene(root, row)
    h, w = scene["left"].shape[:2]
    grid = BlurMapper(exp.blurmap_config)(scene, row["scene"])
    blur = torch.nn.functional.interpolate(torch.from_numpy(grid)[None, None], size=(h, w), mode="bilinear",
                                           align_corners=False)
    x = make_input(exp.input_kind, _to_tensor(scene["left"]), _to_tensor(scene["right"]), blur)
    restored = primary_output(run.model(x))[0].clamp(0, 1).permute(1, 2, 0).numpy()
    panel = _panel(cfg, scene, row["scene"], out / "qualitative" / key, [(exp.label, "restored", restored)])
    return {"title": title, "panels": [panel]}


def make_figures(cfg: FiguresConfig, sources: FigureSources, load: Callable[[str], TrainedRun],
                 out_dir: Path) -> dict:
    """Write every figure's data to ``out_dir`` (a temp folder swapped in when all are done); returns the index.

    ``load(experiment)`` gives a finished training run (network in eval mode, resolved experiment).
    """
    load = cache(load)
    table = load_manifest(sources.dataset, "test")
    if cfg.scene_index >= len(table):
        raise ValueError(f"figures.scene_index: {cfg.scene_index} outside the {len(table)} test scenes of "
                         f"{sources.dataset / 'manifest.csv'}")
    row = table.iloc[cfg.scene_index]
    scene = load_scene(sources.dataset, row)
    bpa_run = load(cfg.bpa_experiment)
    data = shown_data_label(table, bpa_run.experiment.data_source)
    with atomic_dir(out_dir) as tmp:
        accuracy, labels = blurmap_figure(cfg, sources, table, row, scene, tmp)
        bpa_figure(bpa_run, sources, row, scene, tmp)
        qualitative = [
            qualitative_testset(cfg, sources, load, row, scene, tmp, data),
            qualitative_folder(cfg, bpa_run, cfg.dpd_disp_root, "dpd_disp", "DPD-disp (Fig. 6)", tmp),
            qualitative_folder(cfg, bpa_run, cfg.user_folder_root, "user_folder", "Your DP captures (Fig. 7)", tmp),
        ]
        shown = [load(name).experiment for name in dict.fromkeys((cfg.bpa_experiment, *cfg.qualitative))]
        index = {"scene": row["scene"], "blurmap_accuracy": accuracy, "qualitative": qualitative,
                 "labels": sorted({*labels, *run_labels(shown), *([data.caveat] if data.caveat else [])})}
        (tmp / INDEX_JSON).write_text(json.dumps(index, indent=2) + "\n")
    return index
