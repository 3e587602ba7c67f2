"""Tiled inference (ldp.models.tiling): blending mechanics, exactness for local models, and the 0.01 dB criterion
on a real DPDD image (synthetic image when ../shared is absent) for a model with global pooling (NAFNet's SCA)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ldp
from ldp.models.inputs import make_input
from ldp.models.tiling import infer, tile_starts, tiled_forward


def _psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    return (10 * torch.log10(1.0 / (pred.clamp(0, 1) - target).square().mean())).item()


class _LocalNet(nn.Module):
    """Three 3x3 convs: receptive-field radius 3, no global operation."""

    def __init__(self, cin: int = 6):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, 16, 3, padding=1), nn.GELU(), nn.Conv2d(16, 16, 3, padding=1), nn.GELU(),
            nn.Conv2d(16, 3, 3, padding=1),
        )  # fmt: skip

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize(("length", "tile", "overlap"), [(100, 32, 8), (32, 32, 8), (20, 32, 8), (33, 32, 16)])
def test_tile_starts_cover_the_axis(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts == sorted(starts)
    assert min(starts[-1] + tile, length) == length
    for a, b in zip(starts, starts[1:], strict=False):
        assert b - a <= tile - overlap  # consecutive tiles overlap by at least ``overlap``


@pytest.mark.parametrize("shape", [(2, 6, 70, 101), (1, 6, 20, 50), (1, 6, 64, 64)])
def test_blending_is_a_partition_of_unity(shape):
    """A pointwise model gives back exactly its input: weights sum to one, crops and padding line up."""
    x = torch.rand(*shape, dtype=torch.float64)
    y = tiled_forward(lambda t: t[:, :3] * 2.0, x, tile=32, overlap=16, multiple=16)
    assert y.shape == (shape[0], 3, *shape[-2:])
    assert torch.allclose(y, x[:, :3] * 2.0, atol=1e-12)


def test_tiles_are_padded_to_the_size_multiple():
    seen = []

    def strict_model(t):
        assert t.shape[-2] % 16 == 0 and t.shape[-1] % 16 == 0, tuple(t.shape)
        seen.append(tuple(t.shape[-2:]))
        return t[:, :3]

    x = torch.rand(1, 6, 20, 70)
    y = tiled_forward(strict_model, x, tile=48, overlap=16, multiple=16)
    assert torch.allclose(y, x[:, :3])
    assert seen[0] == (32, 48)  # 20 rows -> one tile padded to 32; 70 cols -> tiles of 48


def test_local_model_is_exact():
    """Receptive-field radius 3 <= overlap // 4 = 8: the blended result equals whole-image inference."""
    torch.manual_seed(0)
    model = _LocalNet().eval()
    x = torch.rand(1, 6, 100, 150)
    whole = infer(model, x, "whole")
    tiled = infer(model, x, "tiled", tile=48, overlap=32)
    assert (tiled - whole).abs().max().item() < 1e-5


def test_ldp_split_is_exact_without_global_pooling():
    """LDP's stem (patch_embed + BPA) runs on the whole image; with the inner SCA made a no-op the body is local,
    so tiled LDP must equal whole-image LDP."""
    torch.manual_seed(0)
    model = ldp.build_model("ldp-small", tiny=True).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        for block in model.modules():
            if hasattr(block, "sca"):
                block.sca[1].weight.zero_()
                block.sca[1].bias.fill_(1.0)
    x = torch.rand(1, 9, 80, 112)
    whole = infer(model, x, "whole")
    tiled = infer(model, x, "tiled", tile=64, overlap=32)
    assert (tiled - whole).abs().max().item() < 1e-5


def test_bad_arguments_are_clear_errors():
    x = torch.rand(1, 6, 40, 40)
    with pytest.raises(ValueError, match="multiple"):
        tiled_forward(nn.Identity(), x, tile=40, overlap=8, multiple=16)
    with pytest.raises(ValueError, match="overlap"):
        tiled_forward(nn.Identity(), x, tile=32, overlap=32)
    with pytest.raises(ValueError, match="inference mode"):
        infer(nn.Identity(), x, "sliding")


def _real_views(root):
    from ldp.imageio import read_image

    base = root / "dd_dp_dataset_canon"
    target = sorted((base / "test_c" / "target").glob("*.png"))[0]
    scene = target.stem
    arrays = [
        read_image(base / "test_l" / "source" / f"{scene}_L.png"),
        read_image(base / "test_r" / "source" / f"{scene}_R.png"),
        read_image(target),
    ]
    left, right, gt = (torch.from_numpy(a).permute(2, 0, 1)[None].float() for a in arrays)
    h, w = left.shape[-2:]
    top, lft = (h - 256) // 2, (w - 384) // 2  # a central 256x384 crop keeps the test fast
    return tuple(t[..., top : top + 256, lft : lft + 384] for t in (left, right, gt))


def _synthetic_views():
    g = torch.Generator().manual_seed(7)
    gt = F.interpolate(torch.rand(1, 3, 16, 24, generator=g), size=(256, 384), mode="bicubic").clamp(0, 1)
    gt = (gt + 0.1 * torch.rand(1, 3, 256, 384, generator=g)).clamp(0, 1)
    blurred = F.avg_pool2d(F.pad(gt, (4, 4, 4, 4), mode="replicate"), 9, stride=1)
    return torch.roll(blurred, 1, dims=-1), torch.roll(blurred, -1, dims=-1), gt


@pytest.mark.parametrize("source", ["real", "synthetic"])
def test_global_pooling_model_within_0p01_db(source, request):
    """nafnet-dp (tiny) has SCA global pooling in every block, so tiles see other statistics than the whole image.
    With random weights scaled to a deblurring-sized correction (RMS 0.03 around the DP mean), 128-px tiles with a
    32-px overlap on a 256x384 image keep the PSNR to the target within 0.01 dB of whole-image inference."""
    if source == "real":
        left, right, gt = _real_views(request.getfixturevalue("realdp_dpdd"))
    else:
        left, right, gt = _synthetic_views()
    torch.manual_seed(0)
    model = ldp.build_model("nafnet-dp", tiny=True).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_((0.5 if name.endswith(("beta", "gamma")) else 0.05) * torch.randn(p.shape, generator=g))
    x = make_input("dp", left, right)
    dp_mean = 0.5 * (left + right)
    with torch.no_grad():
        scale = 0.03 / (model(x) - dp_mean).square().mean().sqrt()
        model.ending.weight.mul_(scale)
        model.ending.bias.mul_(scale)
    whole = infer(model, x, "whole")
    tiled = infer(model, x, "tiled", tile=128, overlap=32)
    assert _psnr(whole, dp_mean) < 35  # the model really changes the image
    assert not torch.allclose(tiled, whole, atol=1e-6)  # and tiling really changes the SCA statistics
    assert abs(_psnr(tiled, gt) - _psnr(whole, gt)) < 0.01
    assert _psnr(tiled, whole) > 50


def test_window_forward_is_deeprfts_official_dpdd_scheme():
    """DeepRFT test.py on DPDD: non-overlapping 512-px windows, no blending. At 1120x1680 that is a 2x3 main grid plus
    border-flush windows (12 in all); every output pixel comes from exactly one window, unblended."""
    from ldp.models.tiling import window_forward, window_starts

    assert window_starts(1120, 512) == [(0, 0), (512, 0), (608, 416)]
    assert window_starts(1680, 512) == [(0, 0), (512, 0), (1024, 0), (1168, 368)]
    h, w = 1120, 1680
    rows = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1).expand(1, 1, h, w)
    cols = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(1, 1, h, w)
    shapes = []

    def window_origin(t):  # each output pixel holds its window's top-left corner
        shapes.append(tuple(t.shape))
        return t[:, :, :1, :1].expand(-1, -1, *t.shape[-2:])

    out = window_forward(window_origin, torch.cat([rows, cols], 1), window=512, batch_size=12)
    assert shapes == [(12, 2, 512, 512)]  # one batch of 12 windows
    origins = {tuple(v) for v in out[0].flatten(1).T.tolist()}
    assert origins == {(r, c) for r in (0, 512, 608) for c in (0, 512, 1024, 1168)}
    at = lambda r, c: tuple(out[0, :, r, c].tolist())  # noqa: E731
    assert at(1023, 1535) == (512, 1024) and at(1024, 1536) == (608, 1168)  # the edge windows keep only new pixels


def test_infer_windows_uses_the_models_own_window():
    from ldp.models.tiling import window_forward

    net = _LocalNet(6).eval()
    x = torch.rand(1, 6, 40, 56)
    net.inference_window = 16
    with torch.no_grad():
        assert torch.equal(infer(net, x, mode="windows", tile=512), window_forward(net, x, 16))
        assert not torch.allclose(infer(net, x, mode="windows"), net(x), atol=1e-4)  # window borders differ
    del net.inference_window
    with torch.no_grad():
        assert torch.equal(infer(net, x, mode="windows", tile=64), net(x))  # no own window: tile; one window here
    with pytest.raises(ValueError, match="windows"):
        infer(net, x, mode="bogus")
