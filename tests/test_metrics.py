"""ldp.metrics against scikit-image / the lpips package, on real DP images and synthetic ones."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from ldp.imageio import read_image
from ldp.metrics import (
    LPIPSAlex,
    LPIPSUnavailable,
    MetricInputError,
    compute_metrics,
    find_lpips_weights,
    load_lpips,
    ssim,
)


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]


def _reference(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Restormer's protocol, written with numpy/skimage on float64 copies."""
    p, t = pred.astype(np.float64), target.astype(np.float64)
    mse = np.mean((p - t) ** 2)
    return {
        "psnr": 10 * math.log10(1 / mse),
        "ssim": structural_similarity(p, t, data_range=1, channel_axis=-1),
        "mae": float(np.mean([np.mean(np.abs(p[..., c] - t[..., c])) for c in range(3)])),
        "rmse": math.sqrt(mse),
    }


def _check_against_reference(pred: np.ndarray, target: np.ndarray) -> None:
    got = compute_metrics(_t(pred), _t(target))
    ref = _reference(pred, target)
    assert abs(got["ssim"].item() - ref["ssim"]) < 1e-6
    assert got["psnr"].item() == pytest.approx(ref["psnr"], abs=1e-9)
    assert got["mae"].item() == pytest.approx(ref["mae"], abs=1e-12)
    assert got["rmse"].item() == pytest.approx(ref["rmse"], abs=1e-12)
    # Restormer feeds float32 arrays to skimage; that path agrees to float32 rounding
    sk32 = structural_similarity(pred.astype(np.float32), target.astype(np.float32), data_range=1, channel_axis=-1)
    assert abs(got["ssim"].item() - sk32) < 5e-6


def test_matches_skimage_on_real_dp_images(realdp_dpdd):
    base = realdp_dpdd / "dd_dp_dataset_canon"
    for scene in ("canon_00", "canon_03", "canon_07"):
        left = read_image(base / "test_l" / "source" / f"{scene}_L.png")
        target = read_image(base / "test_c" / "target" / f"{scene}.png")
        _check_against_reference(left, target)


@pytest.mark.parametrize("shape", [(64, 96), (7, 9), (33, 50)])
def test_matches_skimage_on_synthetic_images(shape):
    rng = np.random.default_rng(sum(shape))
    target = rng.random((*shape, 3)).astype(np.float32)
    # smooth + noisy prediction, clipped, like a restoration
    pred = np.clip(0.7 * target + 0.3 * target.mean() + rng.normal(0, 0.05, target.shape), 0, 1).astype(np.float32)
    _check_against_reference(pred, target)


def test_batch_is_per_image():
    rng = np.random.default_rng(1)
    imgs = [rng.random((40, 48, 3)).astype(np.float32) for _ in range(4)]
    pred = torch.cat([_t(imgs[0]), _t(imgs[1])])
    target = torch.cat([_t(imgs[2]), _t(imgs[3])])
    batch = compute_metrics(pred, target)
    for i in range(2):
        single = compute_metrics(pred[i : i + 1], target[i : i + 1])
        for k in ("psnr", "ssim", "mae", "rmse"):
            assert batch[k].shape == (2,)
            assert batch[k][i].item() == pytest.approx(single[k].item(), abs=1e-12)


def test_identical_images():
    x = torch.rand(1, 3, 16, 16)
    m = compute_metrics(x, x)
    assert m["psnr"].item() == 100.0  # Restormer's convention for MSE == 0
    assert m["ssim"].item() == pytest.approx(1.0, abs=1e-12)
    assert m["mae"].item() == 0.0 and m["rmse"].item() == 0.0


def test_rmse_is_papers_mse_rel():
    # MSE_rel printed in the supplement equals 10^(-PSNR/20) per image
    x = torch.rand(2, 3, 20, 20)
    y = (x + 0.03 * torch.randn_like(x)).clamp(0, 1)
    m = compute_metrics(x, y)
    assert torch.allclose(m["rmse"], 10 ** (-m["psnr"] / 20), atol=1e-12)


def test_bad_input_is_an_error():
    with pytest.raises(MetricInputError, match="shape"):
        compute_metrics(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(MetricInputError, match="N×3×H×W"):
        compute_metrics(torch.rand(3, 8, 8), torch.rand(3, 8, 8))
    with pytest.raises(MetricInputError, match="at least 7x7"):
        ssim(torch.rand(1, 3, 6, 30), torch.rand(1, 3, 6, 30))


def test_lpips_missing_weights_is_unavailable_not_zero(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # empty hub cache: no AlexNet weights
    with pytest.raises(LPIPSUnavailable, match="AlexNet|linear weights"):
        find_lpips_weights()
    model, reason = load_lpips()
    assert model is None and "not found" in reason
    m = compute_metrics(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), lpips=model)
    assert "lpips" not in m
    with pytest.raises(LPIPSUnavailable, match="linear weights"):
        find_lpips_weights(lin_path=tmp_path / "nope.pth")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lpips_matches_lpips_package_with_same_trunk():
    lpips = pytest.importorskip("lpips")
    torch.manual_seed(0)
    ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)  # package linear weights, random trunk
    ours = LPIPSAlex()
    trunk = {}
    for s in (ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5):
        for name, tensor in s.state_dict().items():
            trunk[f"features.{name}"] = tensor
    ours.load_trunk_state(trunk)
    ours.load_lin_state({k: v for k, v in ref.state_dict().items() if k.startswith("lin")})
    x = torch.rand(2, 3, 64, 80)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    want = ref(x, y, normalize=True).flatten().double()
    got = compute_metrics(x, y, lpips=ours)["lpips"]
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-7)
    assert (got > 0).all()
