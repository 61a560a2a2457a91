"""``python -m core import --progress-file``: the dashboard can follow an import like any long command."""

from __future__ import annotations

from PIL import Image

from core.cli import main
from core.io import read_jsonl


def test_import_writes_progress_events(tmp_path, capsys):
    images = tmp_path / "imgs"
    images.mkdir()
    for name in ("NGC 1", "NGC 2"):
        Image.new("L", (40, 40), 30).save(images / f"{name.replace(' ', '_')}.png")
    csv = tmp_path / "list.csv"
    csv.write_text("Name,Classification\nNGC 1,E1\nNGC 2,Sb\nNGC 3,Sc\n")
    events_path = tmp_path / "events.jsonl"
    argv = ["import", "--catalog", str(csv), "--images", str(images), "--out", str(tmp_path / "src"),
            "--progress-file", str(events_path)]
    assert main(argv) == 0
    assert "imported 2 rows" in capsys.readouterr().out
    events = read_jsonl(events_path)
    assert events[0]["status"] == "running" and events[0]["stage"] == "import"
    assert events[-1]["status"] == "done"
    assert (events[-1]["done"], events[-1]["total"], events[-1]["failed"]) == (3, 3, 1)


def test_a_failed_import_ends_its_progress_log_with_the_error(tmp_path, capsys):
    csv = tmp_path / "list.csv"
    csv.write_text("Name,Classification\nNGC 1,E1\n")
    events_path = tmp_path / "events.jsonl"
    argv = ["import", "--catalog", str(csv), "--images", str(tmp_path / "missing"), "--progress-file", str(events_path)]
    assert main(argv) == 2
    last = read_jsonl(events_path)[-1]
    assert last["status"] == "failed" and "missing" in last["error"]
