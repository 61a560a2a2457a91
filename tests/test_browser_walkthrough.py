"""The README's walkthrough clicked in headless Chromium on the built-in sample (2,000 galaxies):
every number it quotes is on the page. Its own file, so that `make test`'s two processes can run it
beside the other browser tests."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, ROOT, require_chromium, serve, wait_ready

if TYPE_CHECKING:
    from playwright.sync_api import Page

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
        assert "LeNet-5" in title and "equal protocol" in title, title
        page.get_by_text(re.compile(r"^sample-hubble3 · one recipe for every model")).first.wait_for(timeout=60_000)
        chart = page.locator('[data-testid="stPlotlyChart"]').first.text_content()
        assert f"LeNet-5 (n = {promised['test']:,})" in chart, chart
        assert not page.locator('[data-testid="stException"]').count()
        browser.close()


# --------------------------------------------------------------------------- presentation mode on a projector

