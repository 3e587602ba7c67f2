"""ldp.figures and the figures stage on a hand-written dataset, blur maps and saved restorations, with a fake loader
of trained runs (the stage's loader, ldp.runs.load_trained, rebuilds networks from checkpoints/<exp>/config.json)."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ldp.blurmap.accuracy import score_blurmap
from ldp.blurmap.estimate import BlurMapConfig
from ldp.blurmap.io import save_blurmap, write_meta
from ldp.config import ConfigError, Params
from ldp.data.manifest import write_manifest
from ldp.figures import FiguresConfig, FigureSources, crop_box, make_figures, run_labels, shown_data_label
from ldp.imageio import read_image, write_image
from pipelines import figures as figures_stage

H, W, PATCH = 32, 48, 8
SCENES = ("s0", "s1")
MAPS = ("clip-like", "classical")
QUALITATIVE = ("ldp-small", "nafnet-dp")


class FakeBPA(nn.Module):
    """An LDP-shaped net: a stem (patch_embed), a blur-aware block (ca) and a forward that averages the views."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(6, 2, 1, bias=False)
        nn.init.constant_(self.patch_embed.weight, 0.5)

    def ca(self, stem: torch.Tensor, blur: torch.Tensor) -> torch.Tensor:
        return stem * (1 + blur)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x[:, :3] + x[:, 3:6])


def _experiment(name, label, iters=8, clip=("random",), source="synthetic", recipe="ldp"):
    return SimpleNamespace(name=name, label=label, model="ldp-small", blurmap=MAPS[0], input_kind="dp+blurmap",
                           blurmap_config=BlurMapConfig(estimator="none", patch_size=PATCH), data_source=source,
                           clip_weights_kinds=clip, recipe=recipe,
                           train=SimpleNamespace(iters=iters, precision="fp32", augment="dp_flips"))


RUNS = {"ldp-small": _experiment("ldp-small", "LDP-Small"),
        "nafnet-dp": _experiment("nafnet-dp", "NAFNet-DP", iters=16, clip=(), recipe="nafnet")}


@pytest.fixture
def world(tmp_path):
    """dataset (2 test scenes with defocus), 2 blur-map sets, saved restorations of both qualitative rows."""
    rng = np.random.default_rng(0)
    data, rows = tmp_path / "data" / "dataset", []
    for k, scene in enumerate(SCENES):
        defocus = np.zeros((H, W), np.float32)
        defocus[:16, 32:] = 5.0 + k  # the most defocused corner: top right
        paths = {"target": f"t/{scene}.png", "left": f"l/{scene}_L.png", "right": f"r/{scene}_R.png",
                 "defocus": f"d/{scene}.npy"}
        for view in ("target", "left", "right"):
            write_image(data / paths[view], rng.random((H, W, 3)).astype(np.float32))
        (data / "d").mkdir(exist_ok=True)
        np.save(data / paths["defocus"], defocus)
        rows.append({"scene": scene, "split": "test", "category": "", **paths, "combined": "", "height": H,
                     "width": W, "bit_depth": 16})
    write_manifest(data, rows)
    for i, map_id in enumerate(MAPS):
        for scene in SCENES:
            save_blurmap(tmp_path / "data" / "blurmaps" / map_id, scene, rng.random((H // PATCH, W // PATCH)))
        write_meta(tmp_path / "data" / "blurmaps" / map_id, {"weights_kind": "random" if i == 0 else "n/a"})
    for name in QUALITATIVE:
        for scene in SCENES:
            write_image(tmp_path / "results" / "eval" / name / "samples" / f"{scene}.png",
                        rng.random((H, W, 3)).astype(np.float32))
    return tmp_path


def _sources(root):
    return FigureSources(root / "data" / "dataset", root / "data" / "blurmaps", root / "results" / "eval")


def _loader(calls):
    def load(name):
        calls.append(name)
        return SimpleNamespace(model=FakeBPA().eval(), experiment=RUNS[name])
    return load


CFG = FiguresConfig(scene_index=1, blurmaps=MAPS, bpa_experiment="ldp-small", qualitative=QUALITATIVE, crop=16)


def test_figures_data_index_and_labels(world):
    calls = []
    out = world / "results" / "figures"
    index = make_figures(CFG, _sources(world), _loader(calls), out)
    assert sorted(calls) == ["ldp-small", "nafnet-dp"]  # each run loaded once
    assert index == json.loads((out / "index.json").read_text())
    assert index["scene"] == "s1"
    assert index["labels"] == ["clip-like: random CLIP weights",
                               "ldp-small, nafnet-dp: trained on synthetic data, not DPDD",
                               "ldp-small: random CLIP weights", "ldp-small: short schedule (8 of 200000 iterations)",
                               "nafnet-dp: short schedule (16 of 200000 iterations)", not_dpdd("synthetic")]
    test_panel, dpd_disp, user = index["qualitative"]
    assert test_panel["title"] == ("not the DPDD test set: synthetic, test split, 2 images (2 at 48x32) (stands in "
                                   "for DPD-blur)")
    assert [t for t, _ in test_panel["panels"][0]["images"]] == ["input (left view)", "target", "LDP-Small",
                                                                  "NAFNet-DP"]
    assert dpd_disp == {"title": "DPD-disp (Fig. 6)", "missing": "Not shown: set figures.dpd_disp_root to a prepared "
                        "dataset root (see docs/data.md); no such data ships with the suite."}
    assert user["missing"].startswith("Not shown: set figures.user_folder_root")


def test_blurmap_and_bpa_arrays(world):
    out = world / "results" / "figures"
    index = make_figures(CFG, _sources(world), _loader([]), out)
    blurmaps = np.load(out / "blurmaps.npz")
    assert sorted(blurmaps.files) == ["classical", "clip-like", "gt_abs_defocus", "image"]
    grid = np.load(world / "data" / "blurmaps" / "clip-like" / "s1.npy")
    assert np.array_equal(blurmaps["clip-like"], grid)
    assert blurmaps["gt_abs_defocus"].max() == 6.0 and blurmaps["gt_abs_defocus"][0, 0] == 0.0
    left = read_image(world / "data" / "dataset" / "l" / "s1_L.png")
    right = read_image(world / "data" / "dataset" / "r" / "s1_R.png")
    assert np.allclose(blurmaps["image"], (left + right) / 2)
    for map_id in MAPS:  # mean accuracy over both test scenes against |defocus|
        scores = [score_blurmap(np.load(world / "data" / "blurmaps" / map_id / f"{s}.npy"),
                                np.abs(np.load(world / "data" / "dataset" / "d" / f"{s}.npy"))) for s in SCENES]
        assert index["blurmap_accuracy"][map_id] == pytest.approx(
            {k: np.mean([s[k] for s in scores]) for k in ("spearman", "mae")})
    bpa = np.load(out / "bpa_features.npz")
    stem = 0.5 * (left.sum(-1) + right.sum(-1))  # the 1x1 stem of weight 0.5 on 6 channels, each output channel
    assert np.allclose(bpa["plain_attention"], stem, atol=1e-5)
    assert np.allclose(bpa["bpa"], stem * (1 + bpa["blurmap"]), atol=1e-5)
    assert bpa["blurmap"].shape == (H, W) and bpa["blurmap"].std() > 0


def test_qualitative_crops_centre_on_the_most_defocused_region(world):
    out = world / "results" / "figures"
    make_figures(CFG, _sources(world), _loader([]), out)
    scene = {"left": np.zeros((H, W, 3)), "defocus": np.load(world / "data" / "dataset" / "d" / "s1.npy")}
    y, x = crop_box(scene, 16)
    assert (y, x) == (0, 32)  # the top-right corner of defocus 6
    sample = read_image(world / "results" / "eval" / "nafnet-dp" / "samples" / "s1.png")
    crop = read_image(out / "qualitative" / "test" / "nafnet-dp.png")
    assert crop.shape == (16, 16, 3)
    assert np.abs(crop - sample[y: y + 16, x: x + 16]).max() <= 0.5 / 255 + 1e-6  # 8-bit crop of the sample
    assert crop_box({"target": np.zeros((H, W, 3))}, 16) == ((H - 16) // 2, (W - 16) // 2)  # no defocus: centre


def test_user_folder_is_restored_by_the_bpa_run(world):
    cfg = FiguresConfig(**{**CFG.__dict__, "user_folder_root": str(world / "data" / "dataset")})
    index = make_figures(cfg, _sources(world), _loader([]), world / "results" / "figures")
    user = index["qualitative"][2]
    assert user["title"] == "Your DP captures (Fig. 7)"
    assert [t for t, _ in user["panels"][0]["images"]] == ["input (left view)", "LDP-Small"]
    assert user["panels"][0]["scene"] == "s0"
    left = read_image(world / "data" / "dataset" / "l" / "s0_L.png")
    right = read_image(world / "data" / "dataset" / "r" / "s0_R.png")
    y, x = 0, 32
    crop = read_image(world / "results" / "figures" / "qualitative" / "user_folder" / "restored.png")
    assert np.abs(crop - ((left + right) / 2)[y: y + 16, x: x + 16]).max() <= 0.5 / 255 + 1e-6


def not_dpdd(source: str) -> str:
    return f"not the DPDD test set ({source}, test split, 2 images (2 at 48x32); the paper's is 76 images at 1680x1120)"


def test_the_dpdd_title_needs_the_dpdd_test_set_not_just_its_source():
    """The title and the data label come from the test set's facts (76 images at 1680x1120), not the source name."""
    dpdd = pd.DataFrame({"width": [1680] * 76, "height": [1120] * 76})
    assert shown_data_label(dpdd, "dpdd").comparable and not shown_data_label(dpdd.iloc[:6], "dpdd").comparable
    assert not shown_data_label(dpdd, "synthetic").comparable


def test_dpdd_runs_on_two_small_scenes_are_labelled_not_the_dpdd_test_set(world, monkeypatch):
    monkeypatch.setitem(RUNS, "ldp-small", _experiment("ldp-small", "LDP-Small", clip=("openai",), source="dpdd"))
    monkeypatch.setitem(RUNS, "nafnet-dp", _experiment("nafnet-dp", "NAFNet-DP", clip=(), source="dpdd",
                                                       recipe="nafnet"))
    index = make_figures(CFG, _sources(world), _loader([]), world / "results" / "figures")
    assert index["qualitative"][0]["title"] == ("not the DPDD test set: dpdd, test split, 2 images (2 at 48x32) "
                                                "(stands in for DPD-blur)")
    assert index["labels"] == ["clip-like: random CLIP weights",
                               "ldp-small, nafnet-dp: short schedule (8 of 200000 iterations)", not_dpdd("dpdd")]


def test_run_labels_are_the_training_labels_caveats_each_once_with_its_runs():
    exps = [_experiment("a", "A", iters=8), _experiment("b", "B", iters=8, clip=()), _experiment("c", "C", 600000)]
    assert run_labels(exps) == ["a, b, c: trained on synthetic data, not DPDD",
                                "a, b: short schedule (8 of 200000 iterations)", "a, c: random CLIP weights",
                                "c: schedule is our choice (600000 iterations; the paper gives none)"]


def test_a_failure_keeps_the_previous_figures(world):
    out = world / "results" / "figures"
    make_figures(CFG, _sources(world), _loader([]), out)
    before = (out / "index.json").read_text()
    (world / "results" / "eval" / "nafnet-dp" / "samples" / "s1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"nafnet-dp/samples/s1\.png: no saved restoration"):
        make_figures(CFG, _sources(world), _loader([]), out)
    assert (out / "index.json").read_text() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["eval", "figures"]  # no temp folder left
    with pytest.raises(ValueError, match=r"figures\.scene_index: 2 outside the 2 test scenes of .*manifest\.csv"):
        make_figures(FiguresConfig(**{**CFG.__dict__, "scene_index": 2}), _sources(world), _loader([]), out)


def test_bpa_run_must_have_a_bpa_block(world):
    def load(name):
        return SimpleNamespace(model=nn.Identity(), experiment=RUNS[name])
    with pytest.raises(ValueError, match=r"figures\.bpa_experiment: 'ldp-small' \(ldp-small\) has no BPA block"):
        make_figures(CFG, _sources(world), load, world / "results" / "figures")
    assert not (world / "results" / "figures").exists()


def _stage_params(**figures):
    base = {"scene_index": 0, "blurmaps": list(MAPS), "bpa_experiment": "ldp-small", "qualitative": list(QUALITATIVE)}
    return Params({"figures": {**base, **figures}}, source="given.yaml")


def test_stage_checks_params_then_inputs_before_writing(world, monkeypatch):
    monkeypatch.chdir(world)
    for change, message in (({"scene_index": -1}, r"figures\.scene_index: must be >= 0"),
                            ({"crop": 0}, r"figures\.crop: must be positive"),
                            ({"scene_indx": 0}, r"figures\.scene_indx: unknown key")):
        with pytest.raises(ValueError, match=f"^given\\.yaml:{message}"):
            figures_stage.configure(_stage_params(**change), [])
    with pytest.raises(ConfigError):
        figures_stage.configure(_stage_params(scene_indx=0), [])
    with pytest.raises(ValueError, match=r"usage: python -m pipelines\.figures"):
        figures_stage.configure(_stage_params(), ["x"])
    job = figures_stage.configure(_stage_params(), [])  # no file is needed to configure
    assert job.figures.qualitative == QUALITATIVE and job.sources.evals.as_posix() == "results/eval"
    with pytest.raises(FileNotFoundError, match=r"^figures\.bpa_experiment: 'ldp-small' has no finished"):
        figures_stage.run(job)
    for name in (*QUALITATIVE, "deeprft-dp"):
        (world / "checkpoints" / name).mkdir(parents=True)
        (world / "checkpoints" / name / "config.json").write_text("{}")
    cases = [({"blurmaps": ["clip-like", "nope"]}, r"figures\.blurmaps\[1\]: data/blurmaps/nope not found"),
             ({"qualitative": ["ldp-small", "absent"]}, r"figures\.qualitative\[1\]: 'absent' has no finished"),
             ({"qualitative": ["ldp-small", "deeprft-dp"]},
              r"figures\.qualitative\[1\]: results/eval/deeprft-dp/samples not found"),
             ({"dpd_disp_root": "absent"}, r"figures\.dpd_disp_root: absent/manifest\.csv not found")]
    for change, message in cases:
        with pytest.raises(FileNotFoundError, match=f"^{message}"):
            figures_stage.run(figures_stage.configure(_stage_params(**change), []))
    assert not (world / "results" / "figures").exists()


def test_run_labels_read_the_real_resolved_experiment():
    """The fake runs above mirror ldp.experiments.ResolvedExperiment; the labels read the real one the same way."""
    from ldp.config import load_params
    from ldp.experiments import resolve

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    exp = resolve(params, "ldp-small", data_source="synthetic")
    assert exp.input_kind == "dp+blurmap" and exp.blurmap_config.estimator == "clip"
    assert run_labels([exp]) == ["ldp-small: random CLIP weights",
                                 f"ldp-small: short schedule ({exp.train.iters} of 200000 iterations)",
                                 "ldp-small: trained on synthetic data, not DPDD"]
