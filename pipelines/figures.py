"""Stage `figures`: the data behind the paper's figures → results/figures/ (the notebooks only plot it).

- blurmaps.npz: one test scene's blur map per prompt format / estimator, beside the ground-truth |defocus| (Fig. 3);
- bpa_features.npz: the BPA block's output with the blur map against the same block without it (Fig. 4);
- qualitative/: crops of restorations (Figs. 5-7) on the test set, and on DPD-disp and a user folder when given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ldp.blurmap.accuracy import score_blurmap
from ldp.blurmap.estimate import BlurMapConfig, BlurMapper
from ldp.blurmap.io import load_blurmap, read_meta
from ldp.config import section
from ldp.data.manifest import load_manifest, load_scene
from ldp.experiments import load_experiments
from ldp.fsutil import atomic_dir
from ldp.imageio import read_image, write_image
from ldp.models.inputs import make_input, primary_output
from ldp.runs import load_trained_model
from pipelines.common import BLURMAPS, DATASET, RESULTS, run_stage


@dataclass(frozen=True)
class FiguresConfig:
    scene_index: int = 0  # test scene shown (must be < evaluate.save_samples for the qualitative crops)
    blurmaps: tuple[str, ...] = ("clip-vitb32-ours", "clip-vitb32-diff_lr", "clip-vitb32-inconsistent",
                                 "clip-vitb32-halves", "classical", "oracle")
    bpa_experiment: str = "ldp-small"
    qualitative: tuple[str, ...] = ("ldp-small", "ldp-large", "nafnet-dp", "restormer-dp", "deeprft-dp")
    crop: int = 96
    dpd_disp_root: str = ""  # a dataset root prepared with data.source: dpd_disp (Fig. 6); empty: not shown
    user_folder_root: str = ""  # a dataset root prepared with data.source: folder (Fig. 7); empty: not shown


def _view(scene: dict) -> np.ndarray:
    return scene["combined"] if "combined" in scene else (scene["left"] + scene["right"]) / 2


def _blurmap_figure(cfg: FiguresConfig, table, row, scene: dict, out: Path, labels: set[str]) -> dict:
    arrays = {"image": _view(scene)}
    if "defocus" in scene:
        arrays["gt_abs_defocus"] = np.abs(scene["defocus"])
    accuracy = {}
    for map_id in cfg.blurmaps:
        map_dir = BLURMAPS / map_id
        arrays[map_id] = np.load(map_dir / f"{row['scene']}.npy")
        if read_meta(map_dir).get("weights_kind") == "random":
            labels.add(f"{map_id}: random CLIP weights")
        if "defocus" in scene:
            scores = [score_blurmap(np.load(map_dir / f"{r['scene']}.npy"), np.abs(load_scene(DATASET, r)["defocus"]))
                      for r in table.to_dict("records")]
            accuracy[map_id] = {k: float(np.mean([s[k] for s in scores])) for k in ("spearman", "mae")}
    np.savez_compressed(out / "blurmaps.npz", **arrays)
    return accuracy


@torch.no_grad()
def _bpa_figure(cfg: FiguresConfig, params: dict, row, scene: dict, out: Path) -> None:
    exp = load_experiments(params)[cfg.bpa_experiment]
    model = load_trained_model(params, cfg.bpa_experiment).eval()
    h, w = scene["left"].shape[:2]
    blur = torch.from_numpy(load_blurmap(BLURMAPS / exp.blurmap, row["scene"], (h, w)))[None, None]
    image = torch.cat([torch.from_numpy(scene[k]).permute(2, 0, 1)[None] for k in ("left", "right")], 1)
    stem = model.patch_embed(image)
    feats = {"bpa": model.ca(stem, blur), "plain_attention": model.ca(stem, torch.zeros_like(blur))}
    np.savez_compressed(out / "bpa_features.npz", image=_view(scene), blurmap=blur[0, 0].numpy(),
                        **{k: v[0].abs().mean(0).numpy() for k, v in feats.items()})


def _crop_box(scene: dict, size: int) -> tuple[int, int]:
    """Top-left of the crop centred on the most defocused region (or the image centre)."""
    h, w = scene["left"].shape[:2] if "left" in scene else scene["target"].shape[:2]
    size = min(size, h, w)
    if "defocus" in scene:
        d = torch.from_numpy(np.abs(scene["defocus"]))[None, None]
        pooled = torch.nn.functional.avg_pool2d(d, size, stride=max(size // 4, 1))[0, 0]
        iy, ix = np.unravel_index(int(pooled.argmax()), pooled.shape)
        return int(iy * max(size // 4, 1)), int(ix * max(size // 4, 1))
    return (h - size) // 2, (w - size) // 2


def _save_crop(img: np.ndarray, box: tuple[int, int], size: int, path: Path) -> str:
    y, x = box
    write_image(path, np.clip(img[y: y + size, x: x + size], 0, 1), bits=8)
    return str(path.relative_to(path.parents[2]))


def _qualitative_testset(cfg: FiguresConfig, params: dict, row, scene: dict, out: Path) -> dict:
    box = _crop_box(scene, cfg.crop)
    qdir = out / "qualitative" / "test"
    images = [("input (left view)", _save_crop(scene["left"], box, cfg.crop, qdir / "input_left.png")),
              ("target", _save_crop(scene["target"], box, cfg.crop, qdir / "target.png"))]
    for name in cfg.qualitative:
        sample = RESULTS / "eval" / name / "samples" / f"{row['scene']}.png"
        if not sample.is_file():
            raise FileNotFoundError(f"{sample}: no saved restoration (figures.scene_index must be below "
                                    "evaluate.save_samples)")
        label = load_experiments(params)[name].label or name
        images.append((label, _save_crop(read_image(sample), box, cfg.crop, qdir / f"{name}.png")))
    source = (params.get("data") or {}).get("source", "")
    title = "DPD-blur test set" if source == "dpdd" else f"{source} test set (stands in for DPD-blur)"
    return {"title": title, "panels": [{"scene": row["scene"], "images": images}]}


@torch.no_grad()
def _qualitative_folder(cfg: FiguresConfig, params: dict, root: str, key: str, title: str, out: Path) -> dict:
    if not root:
        return {"title": title, "missing": f"Not shown: set figures.{key}_root to a prepared dataset root "
                                          "(see docs/data.md); no such data ships with the suite."}
    exp = load_experiments(params)[cfg.bpa_experiment]
    model = load_trained_model(params, cfg.bpa_experiment).eval()
    mapper = BlurMapper(section(params, f"blurmaps.{exp.blurmap}", BlurMapConfig))
    row = load_manifest(root).iloc[0]
    scene = load_scene(root, row)
    h, w = scene["left"].shape[:2]
    grid = mapper(scene, row["scene"])
    blur = torch.nn.functional.interpolate(torch.from_numpy(grid)[None, None], size=(h, w), mode="bilinear",
                                           align_corners=False)
    to_t = {k: torch.from_numpy(scene[k]).permute(2, 0, 1)[None] for k in ("left", "right")}
    pred = primary_output(model(make_input("dp+blurmap", to_t["left"], to_t["right"], blur)))
    restored = pred[0].clamp(0, 1).permute(1, 2, 0).numpy()
    box = _crop_box(scene, cfg.crop)
    qdir = out / "qualitative" / key
    images = [("input (left view)", _save_crop(scene["left"], box, cfg.crop, qdir / "input_left.png")),
              (exp.label or cfg.bpa_experiment, _save_crop(restored, box, cfg.crop, qdir / "restored.png"))]
    return {"title": title, "panels": [{"scene": row["scene"], "images": images}]}


def main(params: dict, argv: list[str]) -> None:
    cfg = section(params, "figures", FiguresConfig)
    table = load_manifest(DATASET, "test")
    if not 0 <= cfg.scene_index < len(table):
        raise ValueError(f"params.yaml:figures.scene_index: {cfg.scene_index} outside the {len(table)} test scenes")
    row = table.iloc[cfg.scene_index]
    scene = load_scene(DATASET, row)
    final = RESULTS / "figures"
    with atomic_dir(final) as tmp:
        labels: set[str] = set()
        accuracy = _blurmap_figure(cfg, table, row, scene, tmp, labels)
        _bpa_figure(cfg, params, row, scene, tmp)
        qualitative = [
            _qualitative_testset(cfg, params, row, scene, tmp),
            _qualitative_folder(cfg, params, cfg.dpd_disp_root, "dpd_disp", "DPD-disp (Fig. 6)", tmp),
            _qualitative_folder(cfg, params, cfg.user_folder_root, "user_folder", "Your DP captures (Fig. 7)", tmp),
        ]
        if (params.get("tables") or {}).get("profile", "smoke") != "paper":
            labels.add("smoke schedule: trained for a few iterations only")
        index = {"scene": row["scene"], "blurmap_accuracy": accuracy, "qualitative": qualitative,
                 "labels": sorted(labels)}
        (tmp / "index.json").write_text(json.dumps(index, indent=2) + "\n")


if __name__ == "__main__":
    run_stage(main)
