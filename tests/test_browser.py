"""Real browser: `streamlit run` on a free port, every page in headless Chromium, one screenshot each.

Skipped when /usr/bin/chromium is missing, unless REQUIRE_BROWSER=1 (CI), where that is a failure.
By default the app runs on the test world (a 120-galaxy sample, 1-epoch runs) and the screenshots
go to screenshots-tmp/ (ignored by git). For the README pictures in docs/screenshots/, point it at
real data and runs:

    SCREENSHOT_DATA_DIR=data SCREENSHOT_RUNS_DIR=runs python -m pytest tests/test_browser.py -q
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

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


def wait_until_healthy(proc: subprocess.Popen[bytes], url: str, *, timeout: float = 180.0) -> None:
    """Poll the Streamlit server at ``url`` until it answers its health check; fail with its output
    if the process ends or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"streamlit did not come up: {proc.stdout.read().decode(errors='replace')[-2000:]}")
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
    proc = subprocess.Popen(
        [sys.executable, "-m", *(("ui.serve",) if script is None else ("streamlit", "run", str(script))),
         "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(proc, url)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # a script run still busy (e.g. saliency) on a loaded machine
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    require_chromium()
    data_dir, runs_dir = os.environ.get("SCREENSHOT_DATA_DIR"), os.environ.get("SCREENSHOT_RUNS_DIR")
    if not (data_dir and runs_dir):
        world = request.getfixturevalue("world")
        data_dir, runs_dir = data_dir or str(world["data"]), runs_dir or str(world["runs"])
    with serve(data_dir, runs_dir) as url:
        yield url


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


# --------------------------------------------------------------------------- the README walkthrough

NUMBER = r"([\d,]+)"


def _readme_numbers() -> dict[str, int]:
    """The numbers the README's walkthrough promises a new user, read from the README itself."""
    text = re.sub(r"\s+", " ", (ROOT / "README.md").read_text(encoding="utf-8"))
    patterns = {
        ("rows", "objects", "labelled"):
            rf"\*\*{NUMBER} catalogue rows, {NUMBER} objects, {NUMBER} labelled objects\*\*",
        ("default_kept", "default_of"): rf"keep \*\*{NUMBER} of the {NUMBER} objects\*\*",
        ("all_kept",): rf"shows \*\*{NUMBER} kept objects\*\*",
        ("build", "train", "val", "test"): rf"\*\*A build makes {NUMBER} galaxies: {NUMBER} for training, "
                                           rf"{NUMBER} for validation, {NUMBER} for testing\*\*",
        ("duplicates",): rf"as \*duplicate names\* \({NUMBER}\)",
    }
    found: dict[str, int] = {}
    for names, pattern in patterns.items():
        match = re.search(pattern, text)
        assert match, f"the README's walkthrough no longer says {pattern!r}"
        found.update({name: int(value.replace(",", "")) for name, value in zip(names, match.groups())})
    return found


@pytest.fixture(scope="module")
def builtin_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding the README's built-in sample (2,000 galaxies, seed 0): the one ``make run``
    made in data/sample when it is there, else made now (about a minute on 2 idle cores)."""
    data = tmp_path_factory.mktemp("walkthrough")
    shipped = ROOT / "data" / "sample"
    if (shipped / "catalog.csv").exists():
        (data / "sample").symlink_to(shipped, target_is_directory=True)
    else:
        from core.acquire.sample import generate_sample

        generate_sample(data / "sample", n=2000, seed=0)
    return data


def _metrics(page: Page) -> dict[str, int]:
    """The page's metrics as numbers (those that are whole numbers)."""
    values = {}
    for text in page.locator('[data-testid="stMetric"]').all_inner_texts():
        label, _, value = text.partition("\n")
        with contextlib.suppress(ValueError):
            values[label.strip()] = int(value.strip().replace(",", ""))
    return values


def test_the_readme_walkthrough_shows_the_readme_numbers(builtin_sample: Path, tmp_path: Path) -> None:
    """The README's walkthrough clicked in Chromium on the built-in sample: every number it quotes is on the page
    (steps 1 to 3), the build it asks for makes that many galaxies, the Training page starts with the settings it
    names, and a model trained there (LeNet-5 for 1 epoch, to stay quick) is compared on that many test galaxies."""
    from playwright.sync_api import sync_playwright

    require_chromium()
    promised = _readme_numbers()
    with serve(builtin_sample, tmp_path / "runs") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
        page.goto(url, wait_until="domcontentloaded")  # step 1: Home
        page.wait_for_selector('[data-testid="stMetricValue"]', timeout=300_000)
        wait_ready(page)
        home = _metrics(page)
        assert (home["Catalogue rows"], home["Objects"], home["Labelled objects"]) == (
            promised["rows"], promised["objects"], promised["labelled"])

        page.get_by_role("link", name="Dataset statistics").click()  # step 2
        page.wait_for_selector('[data-testid="stDataFrame"] canvas', timeout=300_000)
        wait_ready(page)
        assert _metrics(page)["Objects"] == promised["objects"]
        page.get_by_role("link", name="Class balance").click()
        page.get_by_text("Imbalance ratio (before)").wait_for(timeout=300_000)
        wait_ready(page)
        assert _metrics(page)["Labelled objects"] == promised["labelled"]

        page.get_by_role("link", name="Preprocessing preview").click()  # step 3, with the defaults
        page.wait_for_selector('[data-testid="stImage"] img', timeout=600_000)
        wait_ready(page)
        shown = _metrics(page)
        assert shown["Kept objects"] == promised["default_kept"]
        assert shown["Kept objects"] + shown["Left out objects"] == promised["default_of"] == promised["objects"]
        assert shown["Duplicate names"] == promised["duplicates"]

        page.locator('[data-testid="stSelectbox"]').filter(has_text="Survey").click()  # "set Survey to all"
        page.get_by_role("option", name="all", exact=True).click()
        page.wait_for_function(
            "n => Array.from(document.querySelectorAll('[data-testid=stMetric]')).some("
            "m => m.innerText.startsWith('Kept objects') && !m.innerText.includes(n))",
            arg=f"{promised['default_kept']:,}", timeout=120_000)
        wait_ready(page)
        assert _metrics(page)["Kept objects"] == promised["all_kept"] == promised["build"]
        sizes = page.get_by_text("A build makes").first.inner_text()
        assert (f"A build makes {promised['build']:,} galaxies: {promised['train']:,} for training, "
                f"{promised['val']:,} for validation, {promised['test']:,} for testing") in sizes

        # "keep the suggested name (sample-hubble3) and click Build and save dataset"
        assert page.get_by_label("Dataset name", exact=True).input_value() == "sample-hubble3"
        page.get_by_role("button", name="Build and save dataset").click()
        panel = page.locator('[data-testid="stProgress"]').filter(has_text="sample-hubble3")
        panel.filter(has_text=re.compile(r"— (finished|failed|stopped)")).wait_for(timeout=300_000)
        assert "— finished" in panel.first.inner_text(), panel.first.inner_text()
        built = json.loads((builtin_sample / "datasets" / "sample-hubble3" / "manifest.json").read_text(encoding="utf-8"))
        assert built["n_images"] == promised["build"]

        page.get_by_role("link", name="Training").click()  # step 4: the settings the README names
        page.get_by_role("button", name="Start training").wait_for(timeout=300_000)
        wait_ready(page)
        assert page.get_by_role("combobox", name="Dataset", exact=True).input_value() == "sample-hubble3"
        models = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Models")
        assert models.locator("[data-tag]").evaluate_all("tags => tags.map(t => t.ariaLabel)") == [
            "LeNet-5", "AlexNet", "ResNet-18"]
        assert page.get_by_label("Epochs (at most)", exact=True).input_value() == ""
        assert page.get_by_label("Seeds (comma-separated)", exact=True).input_value() == "0"
        batch = page.locator('[data-testid="stSlider"]').filter(has_text="Batch size")
        assert batch.locator('[data-testid="stSliderThumbValue"]').inner_text() == "32"
        assert page.get_by_role("combobox", name="Protocol", exact=True).input_value() == "equal"
        assert page.get_by_label("Folds (0 = the dataset's split)", exact=True).input_value() == "0"
        # One model for one epoch keeps the test short; the README's full run is in "What to expect".
        for name in ("ResNet-18", "AlexNet"):
            page.get_by_role("button", name=f"Remove {name}", exact=True).click()
            wait_ready(page)
        page.get_by_label("Epochs (at most)", exact=True).fill("1")
        page.get_by_label("Epochs (at most)", exact=True).press("Enter")
        wait_ready(page)
        page.get_by_role("button", name="Start training").click()
        page.get_by_text(re.compile(r"LeNet-5.*seed 0.*finished, test accuracy")).wait_for(timeout=300_000)

        page.get_by_role("link", name="Model comparison").click()  # step 5
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=300_000)
        wait_ready(page)
        title = page.locator("h4").first.inner_text()
        assert "LeNet-5" in title and "sample-hubble3" in title, title
        chart = page.locator('[data-testid="stPlotlyChart"]').first.text_content()
        assert f"LeNet-5 (n = {promised['test']:,})" in chart, chart
        assert not page.locator('[data-testid="stException"]').count()
        browser.close()


# --------------------------------------------------------------------------- presentation mode on a projector

CONTROLS = ", ".join(f'[data-testid="{t}"]' for t in (
    "stSelectbox", "stMultiSelect", "stSlider", "stTextInput", "stNumberInput", "stFileUploader", "stCheckbox",
    "stRadio", "stToggle", "stButtonGroup", "stTextArea"))
PROJECTORS = ((1440, 900), (1024, 768))
MAIN_LEFT = """() => Math.round(document.querySelector('[data-testid="stMainBlockContainer"]').getBoundingClientRect().left)"""
# Where the first thing on the page starts (the way out of presentation mode), and where the bar of pages ends.
LEAVE_TOP = """() => Math.round(Array.from(document.querySelectorAll('[data-testid="stButton"]'))
  .find(b => b.innerText.includes('Leave presentation mode')).getBoundingClientRect().top)"""
HEADER_BOTTOM = """() => Math.round(document.querySelector('[data-testid="stHeader"]').getBoundingClientRect().bottom)"""


def test_presentation_mode_is_clean_on_a_projector(server: str) -> None:
    """Pressing the button hides the sidebar entirely (no empty strip), and no page shows a control but
    the way out; a shot of every page at both projector sizes."""
    from playwright.sync_api import sync_playwright

    shots = _shots()
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1024, "height": 768}, device_scale_factor=1)
        page.goto(server, wait_until="domcontentloaded")
        page.wait_for_selector('[data-testid="stMetricValue"]', timeout=180_000)
        wait_ready(page)
        left_with_sidebar = page.evaluate(MAIN_LEFT)
        page.get_by_role("button", name="Presentation mode").click()
        page.get_by_role("button", name="Leave presentation mode").wait_for(timeout=60_000)
        wait_ready(page)
        assert not page.locator('[data-testid="stSidebar"]').is_visible()
        # The content moved into the sidebar's place: no grey strip left where it was.
        assert page.evaluate(MAIN_LEFT) < left_with_sidebar - 150, (left_with_sidebar, page.evaluate(MAIN_LEFT))
        for width, height in PROJECTORS:
            page.set_viewport_size({"width": width, "height": height})
            for path, name, _ in PAGES:
                page.goto(f"{server}/{path}?present=1", wait_until="domcontentloaded")
                page.get_by_role("button", name="Leave presentation mode").wait_for(timeout=180_000)
                wait_ready(page)
                if page.locator('[data-testid="stException"]').count():
                    problems.append(f"{name}: {page.locator('[data-testid=stException]').first.inner_text()[:300]}")
                controls = page.locator(CONTROLS)
                buttons = [b for b in page.locator('[data-testid="stButton"] button').all_inner_texts()
                           if "Leave presentation mode" not in b]
                if controls.count() or buttons:
                    problems.append(f"{name} at {width}px shows controls: {controls.count()} inputs, buttons {buttons}")
                if page.locator('[data-testid="stSidebar"]').is_visible():
                    problems.append(f"{name} at {width}px shows the sidebar")
                # No empty band between the bar of pages and the content (it was ~130 px on every page).
                top, bar = page.evaluate(LEAVE_TOP), page.evaluate(HEADER_BOTTOM)
                if not bar <= top < 100:
                    problems.append(f"{name} at {width}px starts at {top} px, under a bar ending at {bar} px")
                _save_small(page.screenshot(), shots / f"present-{name}-{width}.png")
        browser.close()
    assert not problems, problems
