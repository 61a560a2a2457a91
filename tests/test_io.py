"""Atomic writes and JSON-lines logs."""

from __future__ import annotations

import json

import pytest

from core.io import append_jsonl, atomic_path, atomic_write_json, atomic_write_text, read_jsonl


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    atomic_write_text(target, "a,b\n1,2\n")
    atomic_write_text(target, "a,b\n3,4\n")
    assert target.read_text() == "a,b\n3,4\n"
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.name.endswith(".keras")
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_jsonl_round_trip_ignores_a_torn_last_line(tmp_path):
    log = tmp_path / "events.jsonl"
    append_jsonl(log, {"epoch": 1})
    append_jsonl(log, {"epoch": 2})
    with open(log, "a") as handle:
        handle.write('{"epoch": 3, "lo')
    assert read_jsonl(log) == [{"epoch": 1}, {"epoch": 2}]
    assert read_jsonl(tmp_path / "absent.jsonl") == []


def test_atomic_json_is_sorted_and_readable(tmp_path):
    path = atomic_write_json(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "report.html", "<html></html>")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
