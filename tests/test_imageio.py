import numpy as np
import pytest

from ldp.imageio import MIN_SIDE, ImageReadError, depth_mismatch, read_image, read_image_raw, too_small, write_image
from ldp.metrics import SSIM_WIN


def test_16bit_roundtrip_rgb_order(tmp_path):
    img = np.zeros((5, 7, 3), np.uint16)
    img[..., 0] = 65535  # red
    img[2, 3] = [1, 2, 3]
    p = write_image(tmp_path / "a.png", img)
    raw = read_image_raw(p)
    assert raw.dtype == np.uint16 and np.array_equal(raw, img)
    f = read_image(p)
    assert f.dtype == np.float32 and f[0, 0, 0] == 1.0 and f[0, 0, 2] == 0.0


def test_float_written_as_16bit_and_8bit_scaled(tmp_path):
    x = np.linspace(0, 1, 12, dtype=np.float32).reshape(2, 2, 3)
    assert read_image_raw(write_image(tmp_path / "f.png", x)).dtype == np.uint16
    assert np.abs(read_image(tmp_path / "f.png") - x).max() < 1e-4
    write_image(tmp_path / "g.png", x, bits=8)
    assert read_image_raw(tmp_path / "g.png").dtype == np.uint8
    assert np.abs(read_image(tmp_path / "g.png") - x).max() <= 0.5 / 255 + 1e-6


def test_grey_is_replicated(tmp_path):
    write_image(tmp_path / "g.png", np.full((3, 4), 1000, np.uint16))
    assert read_image(tmp_path / "g.png").shape == (3, 4, 3)


def test_truncated_and_missing_files_name_the_file(tmp_path):
    p = write_image(tmp_path / "t.png", np.zeros((32, 32, 3), np.uint16))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match="t.png"):
        read_image(p)
    with pytest.raises(ImageReadError, match="missing.png: file not found"):
        read_image(tmp_path / "missing.png")


def test_real_dpdd_scene_is_16bit(realdp_dpdd):
    left = next((realdp_dpdd / "dd_dp_dataset_canon" / "test_l" / "source").glob("*.png"))
    raw = read_image_raw(left)
    assert raw.dtype == np.uint16 and raw.ndim == 3 and raw.shape[2] == 3


def test_min_side_is_the_ssim_window_and_the_rules_name_both_files():
    assert MIN_SIDE == SSIM_WIN  # the data stage refuses exactly what the evaluation protocol cannot score
    assert too_small("a.png", (MIN_SIDE, MIN_SIDE)) is None
    assert too_small("a.png", (MIN_SIDE - 1, 40)) == (f"a.png: 40x{MIN_SIDE - 1} pixels is smaller than the 7x7 the "
                                                     "evaluation protocol needs (its SSIM window)")
    assert depth_mismatch("r.png", 16, "l.png", 16) is None
    assert depth_mismatch("r.png", 16, "l.png", 8).startswith("r.png: 16-bit, but l.png is 8-bit")
