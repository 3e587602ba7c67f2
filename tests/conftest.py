import json
import os
from pathlib import Path

import pytest
import torch
from torch.torch_version import TorchVersion

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

# Tiny convolutions run faster on one thread, and timings stay stable on a shared 2-core machine.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LDP_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared not found at {SHARED}: real-data tests skipped")
    return SHARED


@pytest.fixture(scope="session")
def realdp_dpdd(shared_dir) -> Path:
    """Root of the 10 real DPDD Canon scenes in DPDD layout (holds dd_dp_dataset_canon/)."""
    path = shared_dir / "realdp" / "dpdd_canon_dev_dpddlayout"
    if not (path / "dd_dp_dataset_canon").is_dir():
        pytest.skip(f"real DPDD-layout scenes not found at {path}")
    return path


# ---------------------------------------------------------------------------------- parity-fixture helpers

PARITY_TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
# The manifests and one float32 tiny fixture per family, copied from ../shared/reference/parity (README.md there);
# the other fixtures stay in ../shared.
PARITY_IN_TREE = REPO / "tests" / "fixtures" / "parity"
PARITY_SHARED = SHARED / "reference" / "parity"


def parity_file(relative: str) -> Path:
    """A parity fixture by its path under ``reference/parity``: the test tree's copy, else the one in ../shared
    (the test is skipped when ../shared does not have it)."""
    for root in (PARITY_IN_TREE, PARITY_SHARED):
        if (root / relative).is_file():
            return root / relative
    pytest.skip(f"parity fixture {relative} is neither in {PARITY_IN_TREE} nor in {PARITY_SHARED}")


def parity_manifest(relative: str) -> dict:
    return json.loads(parity_file(relative).read_text())


def load_parity_fixture(relative: str) -> dict:
    """A parity ``.pt``: dicts of tensors, configs and strings, loaded with ``weights_only=True`` (data only;
    the one extra type allowed is the ``TorchVersion`` string that records the torch that made it)."""
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(parity_file(relative), weights_only=True)


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
