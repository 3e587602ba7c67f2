"""Every DVC stage reads exactly the params keys it declares in dvc.yaml (no more: its outputs would go stale when an
undeclared key changes; no fewer: a declared key it ignores re-runs it for nothing)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from ldp.config import load_params

REPO = Path(__file__).resolve().parents[1]


class RecordingParams(Mapping):
    """A read-only view of a params dict that records the dotted path of every value read.

    Reading a scalar or list records its path; iterating a mapping (or taking its length) records the mapping's
    path, since that reads all of it; a membership test or stepping into a sub-mapping records nothing by itself.
    """

    def __init__(self, data: Mapping[str, Any], reads: set[str], path: str = "", source: str = "params.yaml"):
        self._data, self._reads, self._path, self.source = data, reads, path, source

    def _child(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else str(key)

    def __getitem__(self, key):
        value = self._data[key]
        if isinstance(value, Mapping):
            return RecordingParams(value, self._reads, self._child(key), self.source)
        self._reads.add(self._child(key))
        return value

    def __contains__(self, key) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator:
        self._reads.add(self._path or "<all>")
        return iter(self._data)

    def __len__(self) -> int:
        self._reads.add(self._path or "<all>")
        return len(self._data)


def _stage_runs(params: Mapping[str, Any]) -> Iterator[tuple[str, str, list[str], list[str]]]:
    """(stage id, module, argv, declared params) for every stage and foreach item of dvc.yaml."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        if "foreach" in stage:
            var = re.fullmatch(r"\$\{(\w+)\}", stage["foreach"]).group(1)
            for key, item in params[var].items():
                def fill(text: str, key=key, item=item) -> str:
                    text = text.replace("${key}", key)
                    return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), text)

                do = stage["do"]
                cmd = fill(do["cmd"]).split()
                yield f"{name}@{key}", cmd[2], cmd[3:], [fill(p) for p in do.get("params", [])]
        else:
            cmd = stage["cmd"].split()
            yield name, cmd[2], cmd[3:], list(stage.get("params", []))


def _covered(path: str, declared: list[str]) -> bool:
    return any(path == d or path.startswith(d + ".") for d in declared)


PARAMS = load_params(REPO / "params.yaml")
RUNS = list(_stage_runs(PARAMS))


@pytest.mark.parametrize(("stage", "module", "argv", "declared"), RUNS, ids=[r[0] for r in RUNS])
def test_stage_reads_exactly_its_declared_params(stage, module, argv, declared, monkeypatch):
    assert module.startswith("pipelines."), stage
    monkeypatch.chdir(REPO)
    reads: set[str] = set()
    importlib.import_module(module).configure(RecordingParams(PARAMS, reads, source="params.yaml"), argv)
    undeclared = sorted(r for r in reads if not _covered(r, declared))
    unused = sorted(d for d in declared if not any(_covered(r, [d]) for r in reads))
    assert not undeclared, f"{stage} reads params it does not declare in dvc.yaml: {undeclared}"
    assert not unused, f"{stage} declares params it never reads: {unused}"


def test_recording_params_sees_reads_not_membership():
    reads: set[str] = set()
    view = RecordingParams({"a": {"b": 1, "c": {"d": 2}}, "e": [1]}, reads)
    assert "a" in view and "x" not in view
    assert view["a"]["b"] == 1 and view["e"] == [1]
    dict(view["a"]["c"])
    assert reads == {"a.b", "e", "a.c", "a.c.d"}
