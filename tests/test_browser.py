"""Real browser: `streamlit run` on a free port, every page in headless Chromium, one screenshot each.

Skipped when /usr/bin/chromium is missing, unless REQUIRE_BROWSER=1 (CI), where that is a failure.
By default the app runs on the test world (a 120-galaxy sample, 1-epoch runs) and the screenshots
go to screenshots-tmp/ (ignored by git). For the README pictures in docs/screenshots/, point it at
real data and runs:

    SCREENSHOT_DATA_DIR=data SCREENSHOT_RUNS_DIR=runs python -m pytest tests/test_browser.py tests/test_browser_projector.py -q
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page


ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
README_SHOTS = ROOT / "docs" / "screenshots"
TEST_SHOTS = ROOT / "screenshots-tmp"
# url path, screenshot name, a selector that only appears once the page's content has arrived
PAGES = (
    ("", "home", '[data-testid="stMetricValue"]'),
    ("data", "data", '[data-testid="stTabs"] [data-testid="stButton"]'),
    ("statistics", "statistics", '[data-testid="stDataFrame"] canvas'),
    ("balance", "balance", ".js-plotly-plot .main-svg"),
    ("preprocessing", "preprocessing", '[data-testid="stImage"] img'),
    ("training", "training", '[data-testid="stProgress"]'),
    ("comparison", "comparison", ".js-plotly-plot .main-svg"),
    ("classify", "classify", '[data-testid="stFileUploader"]'),
)
WIDTH = 1280
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
MAX_SHOT_BYTES = 400_000  # the README shows eight of them
# True once the script run has finished and everything the page drew has its content: no skeleton
# placeholders, every plotly
# chart has its SVG, every table its canvas, every image has loaded.
PAGE_READY = """() => {
  const all = (sel) => Array.from(document.querySelectorAll(sel));
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stSkeleton"]')) return false;
  // What sits in a closed expander is never drawn, by design: only what is shown must be ready.
  const shown = (sel) => all(sel).filter(el => !el.closest('details:not([open]), [inert]'));
  if (shown('[data-testid="stPlotlyChart"]').some(el => !el.querySelector('.main-svg'))) return false;
  if (shown('[data-testid="stDataFrame"]').some(el => !el.querySelector('canvas'))) return false;
  return all('img').every(img => img.complete && img.naturalWidth > 0);
}"""
# Streamlit scrolls inside its main section, not the window: its height is the page's height.
CONTENT_HEIGHT = """() => {
  const main = document.querySelector('[data-testid="stMain"]') || document.querySelector('section.main');
  const block = document.querySelector('[data-testid="stMainBlockContainer"]');
  return Math.ceil(Math.max(main ? main.scrollHeight : 0, block ? block.scrollHeight + 120 : 0));
}"""

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_chromium() -> None:
    """Skip without Debian's Chromium, or fail where CI asks for the browser (REQUIRE_BROWSER=1)."""
    if not CHROMIUM.exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {CHROMIUM} is missing: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")


def wait_until_healthy(proc: subprocess.Popen[bytes], url: str, *, timeout: float = 180.0,
                       log: IO[bytes] | None = None) -> None:
    """Poll the Streamlit server at ``url`` until it answers its health check; fail with its output
    (its piped stdout, or the open file ``log``) if the process ends or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                if log is not None:
                    log.seek(0)
                output = log.read() if log is not None else proc.stdout.read()
                pytest.fail(f"streamlit did not come up: {output.decode(errors='replace')[-2000:]}")
            time.sleep(0.2)


@contextlib.contextmanager
def serve(data_dir: str | Path, runs_dir: str | Path, *, script: str | Path | None = None,
          error_details: str | None = "full") -> Iterator[str]:
    """The dashboard as ``make run`` serves it (``python -m ui.serve``), or ``streamlit run script``, on a
    free port of 127.0.0.1 with the project's ``.streamlit/config.toml``; yields its URL once healthy.
    Tests see full error details (the shipped config hides them); ``error_details=None`` keeps the
    config's setting."""
    port = _free_port()
    env = dict(os.environ, GALAXY_MORPH_DATA_DIR=str(Path(data_dir).resolve()),
               GALAXY_MORPH_RUNS_DIR=str(Path(runs_dir).resolve()))
    if error_details is not None:
        env["STREAMLIT_CLIENT_SHOW_ERROR_DETAILS"] = error_details
    # The server's output goes to a file, not a pipe: nobody reads a pipe while the test runs, and a
    # chatty server (TensorFlow's log lines) would block on its next write once it filled one.
    with tempfile.TemporaryFile() as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", *(("ui.serve",) if script is None else ("streamlit", "run", str(script))),
             "--server.headless", "true", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(proc, url, log=log_file)
            yield url
        finally:
            # A server takes about 3 s to stop after its last session; the test goes on meanwhile,
            # and _reap_stopping_servers sees every one of them gone before the process exits.
            proc.terminate()
            _STOPPING.append(proc)


_STOPPING: list[subprocess.Popen[bytes]] = []


@atexit.register
def _reap_stopping_servers() -> None:
    for proc in _STOPPING:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a script run still busy (e.g. saliency): nothing to keep
            proc.kill()
            proc.wait(timeout=20)


def wait_ready(page: Page) -> None:
    page.wait_for_function(PAGE_READY, timeout=180_000, polling=250)


def interact(page: Page, name: str) -> None:
    """Show the pages as a user sees them after one click: a galaxy classified, saliency computed."""
    if name == "classify":
        galaxies = page.locator('[data-testid="stSelectbox"]').filter(has_text="galaxy of the current source")
        if galaxies.count():
            galaxies.first.click()
            page.locator('[role="option"]').nth(1).click()
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=180_000)
    elif name == "statistics":
        # The object table's first row: its tick box sits in the canvas, left of the first column.
        page.locator('[data-testid="stDataFrame"]').last.click(position={"x": 16, "y": 54})
        page.wait_for_selector('[data-testid="stImage"] img', timeout=180_000)
    elif name == "comparison":
        button = page.get_by_role("button", name="Compute saliency maps")
        if button.count():
            button.click()
            page.get_by_text("∂p/∂pixel").first.wait_for(timeout=180_000)


def _save_small(png: bytes, path: Path) -> None:
    """Write a screenshot in full colour, or as a 256-colour PNG where that is over MAX_SHOT_BYTES."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as shot:
        rgb = shot.convert("RGB")
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG", optimize=True)
    if buffer.tell() > MAX_SHOT_BYTES:
        buffer = io.BytesIO()
        rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    path.write_bytes(buffer.getvalue())


def test_every_page_renders_in_chromium(server: str) -> None:
    from playwright.sync_api import sync_playwright

    shots = _shots()
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": 1000}, device_scale_factor=1)
        for path, name, selector in PAGES:
            page.set_viewport_size({"width": WIDTH, "height": 1000})
            page.goto(f"{server}/{path}", wait_until="domcontentloaded")
            page.wait_for_selector(selector, timeout=180_000)
            wait_ready(page)
            interact(page, name)
            wait_ready(page)
            if page.locator('[data-testid="stException"]').count():
                problems.append(f"{name}: {page.locator('[data-testid=stException]').first.inner_text()[:500]}")
            _full_page_shot(page, shots / f"{name}.png")
        browser.close()
    assert not problems, problems
    assert {name for _, name, _ in PAGES} <= {p.stem for p in shots.glob("*.png")}


def _shots() -> Path:
    shots = README_SHOTS if os.environ.get("SCREENSHOT_DATA_DIR") else TEST_SHOTS
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def _full_page_shot(page: Page, path: Path) -> None:
    """A viewport as tall as the content, so nothing below the fold is cut off; then the charts
    re-lay out to the new size, so wait for them again."""
    page.set_viewport_size({"width": WIDTH, "height": max(900, page.evaluate(CONTENT_HEIGHT))})
    wait_ready(page)
    _save_small(page.screenshot(), path)
    page.set_viewport_size({"width": WIDTH, "height": 1000})


def test_presentation_mode_hides_the_controls_and_survives_a_page_switch(server: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": 1000}, device_scale_factor=1)
        page.goto(f"{server}/comparison?present=1", wait_until="domcontentloaded")
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=180_000)
        wait_ready(page)
        assert " vs " in page.locator("h1").first.inner_text()
        assert not page.locator('[data-testid="stSidebar"]').count()
        assert not page.locator('[data-testid="stSelectbox"], [data-testid="stMultiSelect"]').count()
        _full_page_shot(page, _shots() / "comparison-present.png")
        # The pages sit in a bar on top; another page and back keeps the mode in the address.
        page.get_by_text("Explore", exact=True).first.click()
        page.locator(f'a[href="{server}/"]').click()
        page.wait_for_url(f"{server}/?present=1", timeout=60_000)
        wait_ready(page)
        assert not page.locator('[data-testid="stSidebar"]').count()
        page.get_by_role("button", name="Leave presentation mode").click()
        page.wait_for_selector('[data-testid="stSidebar"]', timeout=60_000)
        assert "present" not in page.url
        browser.close()
