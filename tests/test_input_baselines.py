"""The input baselines (input-combined = C, input-average = (L+R)/2): their outputs, `ldp evaluate` on them, the
`inputs` stage, and the real Canon DPDD-layout scenes of ../shared/realdp when they are there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ldp
from ldp.config import Params
from ldp.data.manifest import layout_paths, load_manifest, load_scene, write_manifest
from ldp.evaluate import EvalConfig, EvaluationError, evaluate, to_batch
from ldp.imageio import write_image
from ldp.metrics import compute_metrics
from ldp.models.input_baselines import FED_CAMERA_C, FED_VIEW_AVERAGE, NO_WEIGHTS, combined_views
from ldp.models.inputs import make_input
from ldp.runs import Layout, MlflowConfig
from pipelines import inputs as inputs_stage

REAL_CANON = Path(__file__).resolve().parents[2] / "shared" / "realdp" / "dpdd_canon_dev_dpddlayout"
CFG = EvalConfig(save_samples=0, lpips=False, bootstrap=50)
H, W = 24, 32


def _tiny_dataset(root: Path, with_combined: bool = True, with_views: bool = True) -> Path:
    """Three scenes whose C is not (L+R)/2 (as on a real camera), 16-bit PNGs in the DPDD layout."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        scene = f"s{i}"
        paths = layout_paths("test", scene)
        images = {"target": rng.random((H, W, 3))}
        images["left"] = np.clip(images["target"] + 0.1 * rng.standard_normal((H, W, 3)), 0, 1)
        images["right"] = np.clip(images["target"] + 0.1 * rng.standard_normal((H, W, 3)), 0, 1)
        images["combined"] = np.clip(images["target"] + 0.05 * rng.standard_normal((H, W, 3)), 0, 1)
        row = {"scene": scene, "split": "test", "category": "", "height": H, "width": W, "bit_depth": 16}
        for col, img in images.items():
            if (col == "combined" and not with_combined) or (col in ("left", "right") and not with_views):
                continue
            write_image(root / paths[col], img.astype(np.float32), bits=16)
            row[col] = paths[col]
        rows.append(row)
    write_manifest(root, rows)
    return root


def _direct(root: Path, image: str) -> dict[str, np.ndarray]:
    """Per-image metrics of the restoration ``C`` or ``(L+R)/2``, computed here without the evaluation runner."""
    out: dict[str, list[float]] = {}
    for row in load_manifest(root, "test").to_dict("records"):
        scene = load_scene(root, row)
        pred = to_batch(scene["combined"], torch.device("cpu")) if image == "C" else \
            0.5 * (to_batch(scene["left"], torch.device("cpu")) + to_batch(scene["right"], torch.device("cpu")))
        vals = compute_metrics(pred.clamp(0, 1), to_batch(scene["target"], torch.device("cpu")))
        for k in ("psnr", "ssim", "mae", "rmse"):
            out.setdefault(k, []).append(float(vals[k][0]))
    return {k: np.array(v) for k, v in out.items()}


def _assert_scores(result, expected: dict[str, np.ndarray]) -> None:
    for metric, values in expected.items():
        assert np.array_equal(result.per_image[metric].to_numpy(), values), metric  # exactly, not approximately


def test_the_baselines_return_c_and_the_view_average_exactly(tmp_path):
    root = _tiny_dataset(tmp_path / "data")
    row = load_manifest(root, "test").iloc[0]
    scene = load_scene(root, row)
    cpu = torch.device("cpu")
    for name, image in (("input-combined", "C"), ("input-average", "avg")):
        model = ldp.build_model(name)
        assert not list(model.parameters())
        left, right, fed = combined_views(name, scene)
        assert fed == (FED_CAMERA_C if image == "C" else FED_VIEW_AVERAGE)
        out = model(make_input("combined", to_batch(left, cpu), to_batch(right, cpu)))
        expected = to_batch(scene["combined"], cpu) if image == "C" else \
            0.5 * (to_batch(scene["left"], cpu) + to_batch(scene["right"], cpu))
        assert torch.equal(out, expected), name
    assert not np.array_equal(scene["combined"], 0.5 * (scene["left"] + scene["right"]))  # the test can tell them apart


def test_evaluation_scores_c_and_the_view_average_and_records_no_weights(tmp_path):
    root = _tiny_dataset(tmp_path / "data")
    for name, image, fed in (("input-combined", "C", FED_CAMERA_C), ("input-average", "avg", FED_VIEW_AVERAGE)):
        result = evaluate(name, None, root, out_dir=tmp_path / name, cfg=CFG, quiet=True)
        _assert_scores(result, _direct(root, image))
        summary = json.loads((tmp_path / name / "metrics.json").read_text())
        assert summary["weights"] == NO_WEIGHTS and summary["combined_input"] == {fed: 3}
    with pytest.raises(EvaluationError, match=r"w\.pt: model 'input-average' is an input baseline and takes no "):
        evaluate("input-average", tmp_path / "w.pt", root, out_dir=tmp_path / "bad", cfg=CFG, quiet=True)
    assert not (tmp_path / "bad").exists()


def test_input_combined_falls_back_to_the_view_average_only_without_c(tmp_path):
    root = _tiny_dataset(tmp_path / "data", with_combined=False)
    result = evaluate("input-combined", None, root, out_dir=tmp_path / "out", cfg=CFG, quiet=True)
    _assert_scores(result, _direct(root, "avg"))
    assert result.summary["combined_input"] == {FED_VIEW_AVERAGE: 3}
    views_only_c = _tiny_dataset(tmp_path / "c-only", with_views=False)
    with pytest.raises(EvaluationError, match=r"c-only/manifest\.csv: split 'test' lacks 'left'"):
        evaluate("input-average", None, views_only_c, out_dir=tmp_path / "avg", cfg=CFG, quiet=True)
    assert not (tmp_path / "avg").exists()


def test_ldp_evaluate_scores_a_baseline_without_weights(tmp_path, monkeypatch, capsys):
    from ldp.cli import main

    root = _tiny_dataset(tmp_path / "data")
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the default evaluation config
    assert main(["evaluate", "--model", "input-average", "--data", str(root), "--out", "out"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"input-average | dpdd16-restormer-v1 | weights: {NO_WEIGHTS}")
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert summary["weights"] == NO_WEIGHTS and summary["n_images"] == 3
    assert summary["metrics"]["all"]["psnr"]["mean"] == pytest.approx(_direct(root, "avg")["psnr"].mean(), abs=0)


def test_inputs_stage_writes_both_like_an_evaluate_stage(tmp_path):
    root = _tiny_dataset(tmp_path / "data")
    params = Params({"evaluate": {"save_samples": 1, "lpips": False, "bootstrap": 50}, "mlflow": {"enabled": False}},
                    source="p.yaml")
    job = inputs_stage.configure(params, [])
    assert job.mlflow == MlflowConfig(enabled=False) and job.evaluate.save_samples == 1
    inputs_stage.run(inputs_stage.InputsJob(job.evaluate, job.mlflow, Layout(dataset=root, results=tmp_path / "res")))
    for name in ("input-combined", "input-average"):
        out = tmp_path / "res" / "eval" / name
        assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "per_image.csv", "protocols.json", "samples",
                                                         "scores.json", "tracking.json"]
        assert json.loads((out / "scores.json").read_text())["all"]["n_images"] == 3
    with pytest.raises(ValueError, match=r"usage: python -m pipelines\.inputs"):
        inputs_stage.configure(params, ["extra"])


@pytest.mark.skipif(not REAL_CANON.is_dir(), reason=f"{REAL_CANON} not on this machine")
def test_real_canon_scenes_score_c_and_the_view_average(tmp_path):
    from ldp.data.sources import DataConfig, prepare_dataset

    root = prepare_dataset(DataConfig(source="dpdd", root=str(REAL_CANON)), tmp_path / "canon")
    results = {}
    for name, image in (("input-combined", "C"), ("input-average", "avg")):
        results[name] = evaluate(name, None, root, out_dir=tmp_path / name, cfg=CFG, quiet=True)
        _assert_scores(results[name], _direct(root, image))
        assert results[name].summary["n_images"] == 10
    assert results["input-combined"].summary["combined_input"] == {FED_CAMERA_C: 10}
    # measured 2026-12-02 (docs/metrics.md): (L+R)/2 scores 0.12 dB above C on these ten scenes
    gain = results["input-average"].per_image["psnr"].mean() - results["input-combined"].per_image["psnr"].mean()
    assert gain == pytest.approx(0.1214, abs=1e-3)
