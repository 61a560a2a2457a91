"""Progress of long work: a terminal bar (count, rate, ETA, failures) and a JSON-lines event log.

One :class:`Progress` feeds both: the CLI shows the bar on stderr, and when ``events_path`` is
given every update is also appended to that file, so the dashboard can follow work started in
another process (see :func:`read_progress`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from core.io import append_jsonl, read_jsonl


def format_duration(seconds: float | None) -> str:
    """``75`` -> ``'1:15'``, ``3725`` -> ``'1:02:05'``, ``None`` -> ``'?'``."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_estimate(seconds: float) -> str:
    """An estimate in words, to the minute: ``about 5 min``, ``about 1 h 05 min``, ``under a minute`` (the
    ``5:02`` of :func:`format_duration` reads like a clock time, with a precision an estimate does not have)."""
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    return f"about {minutes} min" if minutes < 60 else f"about {minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """Count work done, show it, and log it.

    Parameters
    ----------
    total : int or None
        Number of items, if known.
    desc : str
        What is being done ("fetch", "build"); also the ``stage`` of each event.
    stream : file or None
        Where the bar goes; ``None`` for no bar (the default when stderr is not a terminal is
        still to print, at most every ``min_interval`` seconds, so CI logs show progress).
    events_path : Path or None
        JSON-lines file to append events to.
    min_interval : float
        Seconds between two redraws or two events (the last one is always written).
    """

    def __init__(
        self,
        total: int | None,
        *,
        desc: str,
        stream: TextIO | None = sys.stderr,
        events_path: str | Path | None = None,
        min_interval: float = 0.5,
    ) -> None:
        self.total = total
        self.desc = desc
        self.stream = stream
        self.events_path = Path(events_path) if events_path else None
        self.min_interval = min_interval
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._last_emit = 0.0
        self._is_tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def __enter__(self) -> Progress:
        self._emit(force=True, status="running")
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(status="failed" if exc_type else "done", error=str(exc) if exc else None)

    @property
    def rate(self) -> float:
        """Items per second since the start."""
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, if the total is known."""
        if self.total is None or self.rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    def update(self, n: int = 1, *, failed: int = 0, **info: Any) -> None:
        """Record ``n`` more items done, ``failed`` of them failures; ``info`` goes into the event."""
        self.done += n
        self.failed += failed
        self._emit(force=False, status="running", **info)

    def close(self, *, status: str = "done", **info: Any) -> None:
        """Write the final line and event."""
        self._emit(force=True, status=status, **{k: v for k, v in info.items() if v is not None})
        if self.stream is not None and self._is_tty:
            self.stream.write("\n")
            self.stream.flush()

    def line(self) -> str:
        """The bar as one line of text."""
        total = "?" if self.total is None else str(self.total)
        width = 24
        if self.total:
            filled = int(width * min(1.0, self.done / self.total))
            bar = "[" + "#" * filled + "-" * (width - filled) + "] "
        else:
            bar = ""
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"{self.desc}: {bar}{self.done}/{total}{failed} | {self.rate:.1f}/s | "
            f"elapsed {format_duration(time.monotonic() - self.started)} | ETA {format_duration(self.eta)}"
        )

    def _emit(self, *, force: bool, status: str, **info: Any) -> None:
        now = time.monotonic()
        if not force and now - self._last_emit < self.min_interval:
            return
        self._last_emit = now
        if self.stream is not None:
            end = "\r" if self._is_tty and status == "running" else "\n"
            self.stream.write(self.line() + end)
            self.stream.flush()
        if self.events_path is not None:
            event = {
                "time": time.time(),
                "stage": self.desc,
                "status": status,
                "done": self.done,
                "total": self.total,
                "failed": self.failed,
                "rate": round(self.rate, 3),
                "eta": None if self.eta is None else round(self.eta, 1),
            }
            event.update(info)
            append_jsonl(self.events_path, event)


def read_progress(events_path: str | Path) -> dict[str, Any] | None:
    """The latest event of a progress log, or ``None`` when nothing was written yet."""
    events = read_jsonl(events_path)
    return events[-1] if events else None
