import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

# Tiny convolutions run faster on one thread, and timings stay stable on a shared 2-core machine.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LDP_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared not found at {SHARED}: real-data and parity tests skipped")
    return SHARED


@pytest.fixture(scope="session")
def parity_dir(shared_dir) -> Path:
    path = shared_dir / "reference" / "parity"
    if not path.is_dir():
        pytest.skip(f"parity fixtures not found at {path}")
    return path


@pytest.fixture(scope="session")
def realdp_dpdd(shared_dir) -> Path:
    """Root of the 10 real DPDD Canon scenes in DPDD layout (holds dd_dp_dataset_canon/)."""
    path = shared_dir / "realdp" / "dpdd_canon_dev_dpddlayout"
    if not (path / "dd_dp_dataset_canon").is_dir():
        pytest.skip(f"real DPDD-layout scenes not found at {path}")
    return path


# ---------------------------------------------------------------------------------- parity-fixture helpers

PARITY_TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def load_parity_fixture(path: Path, skip_missing: bool = False) -> dict:
    """A parity ``.pt`` from ../shared (plain pickled dicts of tensors and configs, hence weights_only=False)."""
    if skip_missing and not path.is_file():
        pytest.skip(f"fixture not found: {path}")
    return torch.load(path, weights_only=False)


def parity_tol(dtype: torch.dtype) -> float:
    """The fixtures' tolerance: 1e-10 for float64, 1e-5 otherwise."""
    return PARITY_TOL[torch.float64] if dtype == torch.float64 else PARITY_TOL[torch.float32]


def load_fixture_weights(model: torch.nn.Module, fx: dict) -> torch.nn.Module:
    """Strictly load ``fx["state_dict"]`` (in float64 when ``fx["dtype"]`` says so) and switch to eval."""
    if fx["dtype"] == "float64":
        model = model.double()
    model.load_state_dict(fx["state_dict"], strict=True)
    return model.eval()


def assert_outputs_close(out, ref, label: str) -> None:
    """Same count, shapes and dtypes, and every output within the fixture tolerance of its reference."""
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    refs = list(ref) if isinstance(ref, (list, tuple)) else [ref]
    assert len(outs) == len(refs), f"{label}: {len(outs)} outputs, expected {len(refs)}"
    for i, (o, r) in enumerate(zip(outs, refs, strict=True)):
        assert o.shape == r.shape and o.dtype == r.dtype, f"{label}[{i}]: {o.shape}/{o.dtype} vs {r.shape}/{r.dtype}"
        tol = parity_tol(r.dtype)
        err = (o - r).abs().max().item()
        assert torch.allclose(o, r, rtol=tol, atol=tol), f"{label}[{i}]: max abs err {err:.3g}"
