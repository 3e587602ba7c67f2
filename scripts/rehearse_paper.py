"""Dress rehearsal of the paper profile on the CPU: every code path of `make paper`, at micro sizes.

    python scripts/rehearse_paper.py --work /tmp/rehearsal        (what `make rehearse-paper` runs)

It writes, under ``--work``:
- ``dpdd/``: a DPDD-layout folder (``dd_dp_dataset_canon/{train,val,test}_{c,l,r}``) made from 7 of the 10 real DPDD
  Canon scenes of ``../shared/realdp/dpdd_canon_dev_dpddlayout`` (4 test, 2 train, 1 val; centre crops of 96x144,
  16-bit), with official-style
  ``indoor_labels.npy`` / ``outdoor_labels.npy`` (1-based positions in the name-sorted test list), and
  ``dpdd-restormer/``: the same scenes in Restormer's ``{split}/DPDD/{inputL,inputR,inputC,target}`` layout. Real
  DPDD train scenes are not available here: this is a rehearsal of code paths, not a measurement.
- ``home/.cache/clip/<name>.pt``: OpenAI-format CLIP checkpoints (TorchScript archives, fp16, random weights) for
  every backbone of the grid, where open_clip's ``openai`` weights are looked up, so the blur maps and L_bal load
  them through the real ``weights: openai`` path (HOME points there, the hub is offline).
- ``repo/``: a git + DVC copy of the project whose params.yaml is profiles/rehearsal.yaml resolved (the paper profile
  with micro sizes), after a full ``dvc repro``; then ``ldp evaluate`` of an official-format Restormer checkpoint
  (``{'params': state_dict}``) on the prepared data.
- ``rehearsal.json``: per row, what the outputs record (protocol, inference mode, augmentation, precision, labels);
  the script exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import workspace  # noqa: E402
from workspace import run  # noqa: E402

SHARED_DPDD = "realdp/dpdd_canon_dev_dpddlayout/dd_dp_dataset_canon"
CROP_HW = (96, 144)
SPLIT_SCENES = {"train": range(4, 6), "val": range(6, 7), "test": range(0, 4)}
INDOOR_1BASED = [1, 3]  # written by the rehearsal: an official-style label file, not DPDD's real labels
OUTDOOR_1BASED = [2, 4]
CLIP_BACKBONES = ("ViT-B-32", "ViT-B-16", "RN50")
OFFICIAL_INFERENCE = {"restormer-dp": "whole", "deeprft-dp": "windows"}


def find_shared() -> Path | None:
    return workspace.find_shared(SHARED_DPDD)


# ------------------------------------------------------------------------------------------------ data


def _crop(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    ch, cw = CROP_HW
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[top : top + ch, left : left + cw]


def write_dpdd_layouts(shared: Path, official: Path, restormer: Path) -> list[str]:
    """Seven of the real scenes, cropped, in both layouts (4 test, 2 train, 1 val); returns the test scene names."""
    from ldp.imageio import read_image_raw, write_image

    src = shared / SHARED_DPDD
    names = sorted(p.stem for p in (src / "test_c" / "target").glob("*.png"))
    if len(names) < 7:
        raise SystemExit(f"{src}: expected the 10 DPDD Canon test scenes, found {len(names)}")
    views = {"left": ("test_l/source", "_L"), "right": ("test_r/source", "_R"), "combined": ("test_c/source", ""),
             "target": ("test_c/target", "")}
    for split, picks in SPLIT_SCENES.items():
        for i in picks:
            name = names[i]
            scene = name if split == "test" else f"{split}_{name}"
            for view, (folder, suffix) in views.items():
                img = _crop(read_image_raw(src / folder / f"{name}{suffix}.png"))
                official_folder = {"left": f"{split}_l/source", "right": f"{split}_r/source",
                                   "combined": f"{split}_c/source", "target": f"{split}_c/target"}[view]
                write_image(official / "dd_dp_dataset_canon" / official_folder / f"{scene}{suffix}.png", img, bits=16)
                restormer_folder = {"left": "inputL", "right": "inputR", "combined": "inputC", "target": "target"}[view]
                write_image(restormer / split / "DPDD" / restormer_folder / f"{scene}.png", img, bits=16)
    for base in (official / "dd_dp_dataset_canon", restormer / "test" / "DPDD"):
        np.save(base / "indoor_labels.npy", np.array(INDOOR_1BASED))
        np.save(base / "outdoor_labels.npy", np.array(OUTDOOR_1BASED))
    return [names[i] for i in SPLIT_SCENES["test"]]


# ------------------------------------------------------------------------------------------------ CLIP


class _Holder(nn.Module):
    """A TorchScript-able tree of buffers: an OpenAI CLIP archive's state_dict without its code."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def write_openai_clip(name: str, home: Path, seed: int = 0) -> Path:
    """A random-weight CLIP ``name`` saved as OpenAI's release is (TorchScript archive, fp16 weights, the
    ``input_resolution``/``context_length``/``vocab_size`` entries) where open_clip's ``openai`` lookup finds it."""
    import open_clip

    from ldp.blurmap.weights import CLIP_MODELS

    arch = CLIP_MODELS[name]
    url = open_clip.get_pretrained_cfg(arch, "openai")["url"]
    path = home / ".cache" / "clip" / os.path.basename(url)
    if path.is_file():
        return path
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(arch, pretrained=None)
    root = _Holder()
    for key, value in model.state_dict().items():
        *parents, leaf = key.split(".")
        node = root
        for part in parents:
            if part not in node._modules:
                node.add_module(part, _Holder())
            node = node._modules[part]
        node.register_buffer(leaf, value.half() if value.is_floating_point() else value)
    visual = model.visual
    size = visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size
    for key, value in (("input_resolution", size), ("context_length", model.context_length),
                       ("vocab_size", model.vocab_size)):
        root.register_buffer(key, torch.tensor(value))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    torch.jit.script(root).save(str(tmp))
    os.replace(tmp, path)
    return path


def write_official_restormer(path: Path, seed: int = 0) -> Path:
    """A Restormer-DP checkpoint in the official release format: ``{'params': state_dict}`` (random weights)."""
    import baselines.restormer  # noqa: F401 - registers restormer-dp
    from ldp.registry import build_model

    torch.manual_seed(seed)
    model = build_model("restormer-dp")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params": model.state_dict()}, path)
    return path


# ------------------------------------------------------------------------------------------------ repo


def write_workspace(work: Path, data_root: Path) -> Path:
    from ldp.config import load_params

    repo = work / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    workspace.sync_code(repo)
    params = dict(load_params(REPO / "profiles" / "rehearsal.yaml"))
    params["data"] = {**params["data"], "root": str(data_root)}
    workspace.write_params(repo, params, "profiles/rehearsal.yaml resolved by scripts/rehearse_paper.py")
    return repo


# ------------------------------------------------------------------------------------------------ checks


def check_layouts_agree(official: Path, restormer: Path) -> dict:
    """Both layouts index to the same scenes, splits, categories and pixels."""
    from ldp.data.sources import assign_categories, index_dpdd_layout
    from ldp.fsutil import sha256_file

    def rows(base: Path) -> dict:
        out = {}
        for r in assign_categories(index_dpdd_layout(base), base):
            out[(r["split"], r["scene"])] = (r["category"], *(sha256_file(r[c]) for c in ("left", "right",
                                                                                         "combined", "target")))
        return out

    a, b = rows(official), rows(restormer)
    if a != b:
        raise SystemExit(f"{official} and {restormer} index differently: {sorted(set(a) ^ set(b))[:5]}")
    return {"scenes": len(a), "test_indoor": sum(1 for k, v in a.items() if k[0] == "test" and v[0] == "indoor")}


def summarize_rows(repo: Path) -> dict:
    """What each evaluated row records; raises when a record is missing or off-protocol."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    out, problems = {}, []
    for name, entry in params["experiments"].items():
        metrics_path = repo / "results" / "eval" / name / "metrics.json"
        if not metrics_path.is_file():
            problems.append(f"{name}: no {metrics_path}")
            continue
        m = json.loads(metrics_path.read_text())
        train = m["experiment"]["train"]
        row = {"model": entry["model"], "protocol": m["protocol"], "inference": m["inference"]["mode"],
               "inference_official": m["inference"]["official"], "augment": train["augment"],
               "precision": train["precision"], "iters": train["iters"], "clip_weights": m["labels"]["clip_weights"],
               "images_per_subset": {k: v["n_images"] for k, v in m["metrics"].items()},
               "subsets": m["labels"].get("subsets"),
               "psnr": m["metrics"]["all"]["psnr"]["mean"], "comparable": m["labels"]["comparable_with_paper"]}
        if entry["model"] in OFFICIAL_INFERENCE and row["inference"] != OFFICIAL_INFERENCE[entry["model"]]:
            problems.append(f"{name}: inference {row['inference']}, official {OFFICIAL_INFERENCE[entry['model']]}")
        if not row["inference_official"]:
            problems.append(f"{name}: inference {row['inference']} is not the model's official mode")
        if entry["recipe"] in ("restormer", "deeprft", "nafnet") and row["precision"] != "fp32":
            problems.append(f"{name}: precision {row['precision']}, the official recipe trains in fp32")
        if m["experiment"]["blurmap_config"]["estimator"] == "clip":  # the input map's CLIP, or L_bal's
            if row["clip_weights"] != "checkpoint":
                problems.append(f"{name}: CLIP weights labelled {row['clip_weights']!r}; the rehearsal's files in "
                                "the openai slot are not OpenAI's release and must be labelled 'checkpoint'")
            fed_map = m.get("blurmap")  # None: a network without a blur-map input (its CLIP is L_bal's)
            if fed_map and "is not the release's" not in fed_map["meta"].get("weights_source", ""):
                problems.append(f"{name}: its blur map's meta.json does not say the CLIP file is not the release")
        out[name] = row
    if problems:
        raise SystemExit("rehearsal checks failed:\n  " + "\n  ".join(problems))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (created; reused data and CLIP files)")
    args = ap.parse_args(argv)
    shared = find_shared()
    if shared is None:
        print(f"skipped: ../shared/{SHARED_DPDD} not found (set LDP_SHARED to the shared folder)")
        return 0
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "rehearsal.log"
    log.write_text("")
    t0 = time.perf_counter()
    timings = {}

    official, restormer = work / "dpdd", work / "dpdd-restormer"
    for folder in (official, restormer):
        shutil.rmtree(folder, ignore_errors=True)
    write_dpdd_layouts(shared, official, restormer)
    layouts = check_layouts_agree(official, restormer)
    for name in CLIP_BACKBONES:
        write_openai_clip(name, work / "home")
    checkpoint = write_official_restormer(work / "official" / "dual_pixel_defocus_deblurring.pth")
    timings["setup_s"] = time.perf_counter() - t0

    repo = write_workspace(work, official)
    env = workspace.workspace_env(repo, home=work / "home")
    dvc = str(workspace.BIN / "dvc")
    workspace.init_repo(repo, env, log, "rehearsal")
    t1 = time.perf_counter()
    run([dvc, "repro"], repo, env, log)
    timings["dvc_repro_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    ldp = str(Path(sys.executable).parent / "ldp")
    run([ldp, "evaluate", "--model", "restormer-dp", "--weights", str(checkpoint), "--data", "data/dataset",
         "--out", "results/eval/official-restormer"], repo, env, log)
    timings["official_checkpoint_eval_s"] = time.perf_counter() - t2
    official_eval = json.loads((repo / "results/eval/official-restormer/metrics.json").read_text())

    summary = {
        "layouts": layouts,
        "rows": summarize_rows(repo),
        "official_restormer_checkpoint": {"weights": official_eval["weights"],
                                          "inference": official_eval["inference"]["mode"],
                                          "psnr": official_eval["metrics"]["all"]["psnr"]["mean"]},
        "timings_s": {**timings, "total_s": time.perf_counter() - t0},
    }
    (work / "rehearsal.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(json.dumps(summary["timings_s"], indent=2))
    print(f"rehearsal passed: {len(summary['rows'])} rows; {work / 'rehearsal.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
