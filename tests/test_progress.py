"""Progress: the terminal line and the event log the dashboard follows."""

from __future__ import annotations

import io

import pytest

from core.progress import Progress, format_duration, read_progress


@pytest.mark.parametrize(("seconds", "text"), [(0, "0:00"), (75, "1:15"), (3725, "1:02:05"), (None, "?")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_events_record_counts_failures_and_final_status(tmp_path):
    stream = io.StringIO()
    events = tmp_path / "progress.jsonl"
    with Progress(4, desc="fetch", stream=stream, events_path=events, min_interval=0) as progress:
        progress.update()
        progress.update(failed=1, item="NGC 1")
        progress.update(2)
    last = read_progress(events)
    assert (last["stage"], last["status"], last["done"], last["total"], last["failed"]) == ("fetch", "done", 4, 4, 1)
    assert "fetch: [########################] 4/4, 1 failed" in stream.getvalue()


def test_an_exception_marks_the_log_failed(tmp_path):
    events = tmp_path / "p.jsonl"
    with pytest.raises(ValueError), Progress(None, desc="build", stream=None, events_path=events):
        raise ValueError("bad crop")
    last = read_progress(events)
    assert last["status"] == "failed" and last["error"] == "bad crop" and last["total"] is None


def test_updates_are_throttled_but_the_last_is_always_written(tmp_path):
    events = tmp_path / "p.jsonl"
    with Progress(1000, desc="build", stream=None, events_path=events, min_interval=3600) as progress:
        for _ in range(1000):
            progress.update()
    lines = events.read_text().splitlines()
    assert len(lines) == 2  # the opening and the closing event; the 1000 updates fell inside the interval
    assert read_progress(events)["done"] == 1000


def test_eta_uses_the_rate():
    progress = Progress(10, desc="x", stream=None)
    assert progress.eta is None or progress.eta >= 0
    assert read_progress("/nonexistent/p.jsonl") is None
