"""The parity fixtures copied into the test tree: the expected files, data only, small, and equal to ../shared."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import PARITY_IN_TREE, PARITY_SHARED, load_parity_fixture

FAMILIES = ("deeprft", "ldp", "nafnet", "restormer")
MANIFESTS = ("deeprft/full_manifest.json", "deeprft/full_manifest_eval.json", "ldp/full_manifest.json",
             "nafnet/full_manifest.json", "nafnet/ldp_core_manifest.json", "restormer/full_manifest.json")
TINY = tuple(f"{family}/tiny.pt" for family in FAMILIES)
MAX_TOTAL_BYTES = 10_000_000


def _in_tree() -> list[str]:
    return sorted(str(p.relative_to(PARITY_IN_TREE)) for p in PARITY_IN_TREE.rglob("*") if p.is_file())


def test_the_test_tree_holds_the_manifests_and_one_float32_tiny_fixture_per_family():
    assert _in_tree() == sorted((*MANIFESTS, *TINY, "README.md"))
    total = sum((PARITY_IN_TREE / name).stat().st_size for name in _in_tree())
    assert total < MAX_TOTAL_BYTES, f"{total} bytes"


@pytest.mark.parametrize("relative", TINY)
def test_tiny_fixtures_are_float32_data(relative):
    fx = load_parity_fixture(relative)  # weights_only=True: any pickled code object would fail to load
    assert (PARITY_IN_TREE / relative).is_file()
    assert fx["dtype"] == "float32"
    assert fx["cases"] and all({"input", "output"} <= set(case) for case in fx["cases"].values())


@pytest.mark.parametrize("relative", MANIFESTS)
def test_manifests_are_json_with_keys_and_counts(relative):
    manifest = json.loads((PARITY_IN_TREE / relative).read_text())
    assert manifest["state_dict"] and manifest["param_count"] > 0


@pytest.mark.parametrize("relative", (*MANIFESTS, *TINY))
def test_copies_equal_the_shared_originals(relative):
    original = PARITY_SHARED / relative
    if not original.is_file():
        pytest.skip(f"{original} not found")
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (PARITY_IN_TREE / relative, original)]
    assert digest[0] == digest[1], relative
