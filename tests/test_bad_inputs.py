"""Bad images and broken models, end to end: one error naming the file (exit status 2), nothing accepted as good."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ldp import cli
from ldp.data.sources import DataConfig, DatasetError, FolderConfig, prepare_dataset
from ldp.errors import BAD_INPUT
from ldp.evaluate import EvalConfig, EvaluationError, evaluate
from ldp.imageio import ImageReadError, read_image, write_image
from ldp.registry import register_model, unregister_model
from pipelines.common import run_stage
from pipelines.data import configure, run

MODEL = "test-bad-inputs-gain"


class Gain(nn.Module):
    """out = gain * (L + R) / 2: its one weight decides whether the output is finite."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * 0.5 * (x[:, :3] + x[:, 3:6])


@pytest.fixture(scope="module", autouse=True)
def gain_model():
    register_model(MODEL, input_kind="dp", inference="whole", description="test only")(Gain)
    yield
    unregister_model(MODEL)


@pytest.fixture()
def no_lpips_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))


def huge_png(path: Path, side: int = 100_000) -> Path:
    """A PNG whose header claims ``side``×``side`` 16-bit RGB pixels (far beyond what OpenCV will allocate)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 16, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64)))
                     + chunk(b"IEND", b""))
    return path


def _image(h: int = 16, w: int = 24, bits: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    peak, dtype = (65535, np.uint16) if bits == 16 else (255, np.uint8)
    return rng.integers(0, peak + 1, (h, w, 3)).astype(dtype)


def _captures(folder: Path, scenes=("a", "b"), h: int = 16, w: int = 24) -> Path:
    for i, scene in enumerate(scenes):
        for view in ("L", "R", "T"):
            write_image(folder / f"{scene}_{view}.png", _image(h, w, seed=3 * i + len(view)))
    return folder


def _folder_config(folder: Path) -> DataConfig:
    return DataConfig(source="folder", root=str(folder), folder=FolderConfig(target="*_T.png"))


def _run_cli(argv: list[str], capsys) -> str:
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert status == BAD_INPUT == 2, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"ldp {argv[0]}: error: ") and "Traceback" not in err, err
    return errors[0]


def _dataset(tmp_path: Path) -> Path:
    return prepare_dataset(_folder_config(_captures(tmp_path / "captures")), tmp_path / "dataset")


# ---------------------------------------------------------------------------------------- huge PNG header

def test_huge_png_header_is_an_image_read_error_naming_the_file(tmp_path):
    bad = huge_png(tmp_path / "huge.png")
    with pytest.raises(ImageReadError, match=f"{bad}: cannot decode image \\(OpenCV refused it"):
        read_image(bad)


def test_huge_png_header_is_one_error_naming_the_file_in_the_data_stage(tmp_path):
    folder = _captures(tmp_path / "captures")
    bad = huge_png(folder / "b_R.png")
    with pytest.raises(DatasetError, match=f"{bad}: cannot decode image"):
        prepare_dataset(_folder_config(folder), tmp_path / "dataset")
    assert not (tmp_path / "dataset").exists()


def test_huge_png_header_in_ldp_deblur_exits_2_naming_the_file(tmp_path, capsys):
    left = write_image(tmp_path / "L.png", _image())
    right = huge_png(tmp_path / "R.png")
    err = _run_cli(["deblur", "--left", str(left), "--right", str(right), "--out", str(tmp_path / "O.png"),
                    "--model", MODEL], capsys)
    assert f"ldp deblur: error: {right}: cannot decode image" in err
    assert not (tmp_path / "O.png").exists()


def test_huge_png_header_in_ldp_evaluate_exits_2_naming_the_file(tmp_path, capsys, monkeypatch, no_lpips_weights):
    root = _dataset(tmp_path)
    bad = huge_png(tmp_path / "captures" / "b_T.png")  # the dataset indexes the captures in place
    monkeypatch.chdir(tmp_path)  # no params.yaml here: evaluate's defaults
    err = _run_cli(["evaluate", "--model", MODEL, "--data", str(root), "--out", str(tmp_path / "eval")], capsys)
    assert f"{bad.name}: cannot decode image (OpenCV refused it: pixels <= CV_IO_MAX_IMAGE_PIXELS)" in err
    assert Path(err.split(": error: ")[1].split(": cannot decode")[0]).resolve() == bad.resolve()
    assert not (tmp_path / "eval" / "per_image.csv").exists()


# --------------------------------------------------------------------------------------- non-finite output

@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_output_is_an_error_naming_image_and_weights(tmp_path, value, no_lpips_weights):
    root = _dataset(tmp_path)
    weights = tmp_path / f"gain-{value}.pth"
    torch.save({"gain": torch.full((1,), value)}, weights)
    out = tmp_path / "eval"
    with pytest.raises(EvaluationError) as err:
        evaluate(MODEL, weights, root, out_dir=out, cfg=EvalConfig(device="cpu", bootstrap=10), quiet=True)
    msg = str(err.value)
    assert "scene a (" in msg and "captures/a_L.png)" in msg and f"weights {weights}" in msg
    assert "NaN/Inf" in msg
    assert not out.exists() or not any(out.iterdir())  # no per_image.csv, no metrics, no samples


def test_non_finite_output_in_ldp_deblur_exits_2(tmp_path, capsys):
    left, right = write_image(tmp_path / "L.png", _image()), write_image(tmp_path / "R.png", _image(seed=1))
    weights = tmp_path / "nan.pth"
    torch.save({"gain": torch.full((1,), float("nan"))}, weights)
    err = _run_cli(["deblur", "--left", str(left), "--right", str(right), "--out", str(tmp_path / "O.png"),
                    "--model", MODEL, "--weights", str(weights)], capsys)
    assert str(left) in err and str(weights) in err and "NaN/Inf" in err
    assert not (tmp_path / "O.png").exists()


# ------------------------------------------------------------------------------------ sizes and bit depths

@pytest.mark.parametrize("h, w", [(1, 1), (6, 24), (16, 6)])
def test_images_smaller_than_the_protocol_needs_are_refused_at_the_data_stage(tmp_path, h, w):
    folder = _captures(tmp_path / "captures", scenes=("a",), h=h, w=w)
    with pytest.raises(DatasetError, match=r"a_L\.png: .* smaller than the 7x7 the evaluation protocol needs"):
        prepare_dataset(_folder_config(folder), tmp_path / "dataset")
    assert not (tmp_path / "dataset").exists()


def test_ldp_deblur_refuses_mixed_bit_depths_like_the_data_stage(tmp_path, capsys):
    left = write_image(tmp_path / "L.png", _image(bits=8))
    right = write_image(tmp_path / "R.png", _image(bits=16))
    err = _run_cli(["deblur", "--left", str(left), "--right", str(right), "--out", str(tmp_path / "O.png"),
                    "--model", MODEL], capsys)
    assert f"{right}: 16-bit, but {left} is 8-bit (mixed bit depths" in err
    assert not (tmp_path / "O.png").exists()
    folder = tmp_path / "captures"
    write_image(folder / "a_L.png", _image(bits=8))
    write_image(folder / "a_R.png", _image(bits=16))
    write_image(folder / "a_T.png", _image(bits=8))
    with pytest.raises(DatasetError, match="a_R.png: 16-bit, but .*a_L.png is 8-bit \\(mixed bit depths"):
        prepare_dataset(_folder_config(folder), tmp_path / "dataset")


def test_data_stage_script_exits_2_naming_the_file(tmp_path, monkeypatch, capsys):
    folder = _captures(tmp_path / "captures")
    bad = huge_png(folder / "a_L.png")
    (tmp_path / "params.yaml").write_text(f"data:\n  source: folder\n  root: {folder}\n"
                                          "  folder:\n    target: '*_T.png'\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        run_stage(configure, run, argv=[])
    assert exited.value.code == 2
    assert f"error: {bad}: cannot decode image" in capsys.readouterr().err
    assert not (tmp_path / "data" / "dataset").exists()
