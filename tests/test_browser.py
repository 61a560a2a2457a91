"""Real browser: `streamlit run` on a free port, every page in headless Chromium, one screenshot each.

Skipped when /usr/bin/chromium is missing, unless REQUIRE_BROWSER=1 (CI), where that is a failure.
Screenshots go to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "docs" / "screenshots"
# url path, screenshot name, a selector that only appears once the page's content has arrived
PAGES = (
    ("", "home", '[data-testid="stMetricValue"]'),
    ("data", "data", '[data-testid="stTabs"]'),
    ("statistics", "statistics", ".js-plotly-plot .main-svg"),
    ("balance", "balance", ".js-plotly-plot .main-svg"),
    ("preprocessing", "preprocessing", '[data-testid="stImage"] img'),
    ("training", "training", '[data-testid="stProgress"]'),
    ("comparison", "comparison", ".js-plotly-plot .main-svg"),
    ("classify", "classify", '[data-testid="stFileUploader"]'),
)

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(world: dict[str, Path]) -> Iterator[str]:
    if not CHROMIUM.exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {CHROMIUM} is missing: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    port = _free_port()
    env = dict(os.environ, GALAXY_MORPH_DATA_DIR=str(world["data"]), GALAXY_MORPH_RUNS_DIR=str(world["runs"]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"streamlit did not come up: {proc.stdout.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_every_page_renders_in_chromium(server: str) -> None:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        page = browser.new_page(viewport={"width": 1600, "height": 2000}, device_scale_factor=1)
        for path, name, selector in PAGES:
            page.goto(f"{server}/{path}", wait_until="domcontentloaded")
            page.wait_for_selector(selector, timeout=120_000)
            # Let the script run finish: Streamlit shows a running indicator until it has.
            page.wait_for_function(
                "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000
            )
            if page.locator('[data-testid="stException"]').count():
                problems.append(f"{name}: {page.locator('[data-testid=stException]').first.inner_text()[:500]}")
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        browser.close()
    assert not problems, problems
    assert {name for _, name, _ in PAGES} <= {p.stem for p in SHOTS.glob("*.png")}
