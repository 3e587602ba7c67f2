"""Combined-input models are fed DPDD's camera combined image C where the data has one, (L+R)/2 otherwise: the
training sampler follows the rule the evaluation follows (tests/test_evaluate.py), issue 12 point 9."""

from __future__ import annotations

import numpy as np
import pytest

from ldp.data.manifest import write_manifest
from ldp.data.sampler import DPImageDataset, DPPatchDataset, to_unit_float
from ldp.imageio import write_image
from ldp.models.inputs import make_input

H, W = 32, 48
LEVEL = {"left": 1000, "right": 3000, "target": 5000, "combined": 9000}  # C differs from (L+R)/2 = 2000


def _root(tmp_path, with_c: tuple[bool, ...]):
    rows = []
    for i, has_c in enumerate(with_c):
        paths = {"left": f"dd_dp_dataset_canon/train_l/source/s{i}_L.png",
                 "right": f"dd_dp_dataset_canon/train_r/source/s{i}_R.png",
                 "target": f"dd_dp_dataset_canon/train_c/target/s{i}.png",
                 "combined": f"dd_dp_dataset_canon/train_c/source/s{i}.png" if has_c else ""}
        for kind, rel in paths.items():
            if rel:
                write_image(tmp_path / rel, np.full((H, W, 3), LEVEL[kind], np.uint16))
        rows.append({"scene": f"s{i}", "split": "train", "height": H, "width": W, "bit_depth": 16, **paths})
    write_manifest(tmp_path, rows)
    return tmp_path


def _fed(item) -> int:
    """The 16-bit level of the combined-kind network input built from an item."""
    x = make_input("combined", to_unit_float(item["left"][None]), to_unit_float(item["right"][None]))
    return int(np.rint(float(x.mean()) * 65535))


@pytest.mark.parametrize("augment", [False, True])
def test_patches_of_combined_input_models_are_the_camera_combined_image(tmp_path, augment):
    root = _root(tmp_path, (True, False))
    fed = DPPatchDataset(root, "train", 16, augment=augment, combined_input=True, progress=False)
    by_scene = {}
    for i in range(8):
        item = fed[i]
        by_scene.setdefault(item["scene"], set()).add(_fed(item))
        assert int(np.rint(float(to_unit_float(item["target"]).mean()) * 65535)) == LEVEL["target"]
    assert by_scene == {"s0": {LEVEL["combined"]}, "s1": {(LEVEL["left"] + LEVEL["right"]) // 2}}

    dp = DPPatchDataset(root, "train", 16, augment=augment, progress=False)  # DP models keep their two views
    assert {_fed(dp[i]) for i in range(8)} == {(LEVEL["left"] + LEVEL["right"]) // 2}
    assert {int(dp[i]["left"].float().mean()) for i in range(8)} <= {LEVEL["left"], LEVEL["right"]}


def test_full_images_of_combined_input_models_are_the_camera_combined_image(tmp_path):
    root = _root(tmp_path, (True, False))
    images = DPImageDataset(root, "train", combined_input=True, progress=False)
    fed = [float(make_input("combined", images[i]["left"][None], images[i]["right"][None]).mean()) * 65535
           for i in range(2)]
    assert fed == pytest.approx([LEVEL["combined"], (LEVEL["left"] + LEVEL["right"]) / 2], abs=1e-2)
    dp = DPImageDataset(root, "train", progress=False)[0]
    assert float(dp["left"].mean()) * 65535 == pytest.approx(LEVEL["left"], abs=1e-2)  # DP models: the views


def test_training_feeds_combined_input_models_the_camera_combined_image(tmp_path, monkeypatch):
    """The trainer asks the sampler for C for a combined-input model (deeprft), and not for a DP model."""
    import ldp.data.sampler as sampler
    from ldp.train import TrainConfig, run_training
    from ldp.train.config import ValConfig

    root = _root(tmp_path / "data", (True, True))
    seen: list[bool] = []

    class Recording(sampler.DPPatchDataset):
        def __init__(self, *args, combined_input=False, **kwargs):
            seen.append(combined_input)
            super().__init__(*args, combined_input=combined_input, **kwargs)

    monkeypatch.setattr(sampler, "DPPatchDataset", Recording)
    cfg = TrainConfig(iters=1, patch_size=16, batch_size=1, checkpoint_every=1, device="cpu",
                      val=ValConfig(every=0, samples=0), model_overrides={"tiny": True})
    for model, expected in (("deeprft", True), ("nafnet-dp", False)):
        summary = run_training(cfg, model, root, tmp_path / "out" / model)
        assert seen[-1] is expected
        assert (summary["combined_input"] is not None) is expected
