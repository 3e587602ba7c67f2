import os
import stat

import pytest

from ldp.fsutil import DIR_MODE, FILE_MODE, atomic_dir, atomic_write, atomic_write_json, atomic_write_text, replace_dir


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_text_replaces_with_normal_permissions(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert _mode(path) == FILE_MODE
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_json(path, {"x": 1})

    def boom(fh):
        fh.write(b"partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(path, boom, "wb")
    assert path.read_text() == '{\n  "x": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_dir_swaps_in_and_cleans_up_on_failure(tmp_path):
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "f").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(final) as tmp:
            (tmp / "f").write_text("2")
            raise ValueError
    assert (final / "f").read_text() == "1"
    with atomic_dir(final) as tmp:
        (tmp / "g").write_text("3")
    assert [p.name for p in final.iterdir()] == ["g"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert _mode(final) == DIR_MODE


def test_replace_dir_onto_missing_target(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    replace_dir(src, tmp_path / "dst")
    assert (tmp_path / "dst").is_dir() and not src.exists()
