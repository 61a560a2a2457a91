"""Streamlit's file watcher sees the code, never the data folders (issue 13: "Inotify queue overflowed").

The default watcher puts a recursive inotify watch on the folder of ``app.py``, which holds
``data/`` and ``runs/``: a fetch or build writing thousands of files overflowed its queue.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, _free_port, require_chromium, wait_until_healthy

ROOT = Path(__file__).resolve().parent.parent


def test_config_polls_the_code_instead_of_watching_folders() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["fileWatcherType"] == "poll"


def _inotify_watches(pid: int) -> int:
    """Inotify watches the process holds (``inotify wd:`` lines of its inotify descriptors)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if "inotify" not in os.readlink(fd):
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
        except OSError:
            continue
        count += sum(line.startswith("inotify wd:") for line in info.splitlines())
    return count


@pytest.fixture
def served(world: dict[str, Path]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    require_chromium()

    port = _free_port()
    env = dict(os.environ, GALAXY_MORPH_DATA_DIR=str(world["data"]), GALAXY_MORPH_RUNS_DIR=str(world["runs"]))
    # No --server.fileWatcherType: the test is about what .streamlit/config.toml says.
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.serve", "--server.port", str(port)],  # as make run serves it
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(proc, url)
    yield proc, url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.mark.browser
def test_served_app_holds_no_inotify_watch(served: tuple[subprocess.Popen[bytes], str]) -> None:
    """No watch at all, so none on data/ or runs/ (the default held one per folder under the repository)."""
    from playwright.sync_api import sync_playwright

    proc, url = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(url, wait_until="domcontentloaded")
        # A session registers the watchers (pages, imported modules) when its first run starts.
        page.wait_for_selector('[data-testid="stMetricValue"]', timeout=180_000)
        watches = _inotify_watches(proc.pid)
        browser.close()
    proc.terminate()
    log = proc.communicate(timeout=20)[0].decode(errors="replace")
    assert watches == 0, f"the server holds {watches} inotify watches"
    assert "Inotify" not in log and "inotify" not in log, log[-2000:]
