"""workbench.atomic: all-or-nothing writes through a temp file in the same folder."""
from __future__ import annotations

import json
import os
import stat

import pytest

from workbench.atomic import atomic_path, read_json, write_bytes, write_json, write_jsonl, write_text


def test_success_replaces_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "table.csv"  # parent is created
    write_text(path, "old\n")
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".") and tmp.name.endswith(".csv.tmp")
        assert tmp.exists() and path.read_text() == "old\n"  # not visible until the block ends
        tmp.write_text("new\n")
    assert path.read_text() == "new\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.csv"]


def test_exception_keeps_old_file_and_removes_temp(tmp_path):
    path = tmp_path / "data.bin"
    write_bytes(path, b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half-writ")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_exception_before_first_write_creates_nothing(tmp_path):
    path = tmp_path / "never.json"
    with pytest.raises(TypeError):
        write_json(path, {"x": object()})  # not serialisable
    assert list(tmp_path.iterdir()) == []


def test_write_json_round_trip_and_kwargs(tmp_path):
    obj = {"a": [1, 2.5, None], "b": {"c": "é"}}
    path = write_json(tmp_path / "x.json", obj, indent=2, sort_keys=True)
    assert path == tmp_path / "x.json"
    assert read_json(path) == obj
    assert path.read_text(encoding="utf-8") == json.dumps(obj, indent=2, sort_keys=True)


def test_write_jsonl_and_fsync(tmp_path):
    rows = [{"i": i} for i in range(3)]
    path = write_jsonl(tmp_path / "rows.jsonl", iter(rows), fsync=True)
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in rows)


def test_permissions_follow_umask_not_mkstemp(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "p.txt", "x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & 0o044  # readable by others, unlike mkstemp's 0o600
