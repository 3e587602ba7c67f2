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
