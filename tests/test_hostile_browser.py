"""Every page as the first request of a fresh server, in headless Chromium, over the hostile world
(tests/hostile_world.py): the page with the router's sidebar, no exception, and not one request to the
addresses in the galaxies' names. And a failing page's details stay on the server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.hostile_world import PAGES, TITLES, Trap
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, interact, require_chromium, serve, wait_ready

@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_page_as_first_request_of_a_fresh_server(hostile_world: dict[str, Any], trap: Trap, page: str) -> None:
    """Open ``/page`` first on a fresh server over the hostile world: the page, with the router's
    sidebar, no exception, and not one request to the addresses in the galaxies' names."""
    from playwright.sync_api import sync_playwright


    require_chromium()
    before = len(trap.hits)
    with serve(hostile_world["data"], hostile_world["runs"]) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1280, "height": 1000})
        tab.goto(f"{url}/{'' if page == 'home' else page}", wait_until="domcontentloaded")
        tab.wait_for_selector('[data-testid="stMain"] h1, [data-testid="stException"]', timeout=180_000)
        wait_ready(tab)
        # The strings some pages show only after a click: a table row, a picked galaxy, saliency.
        if not tab.locator('[data-testid="stException"]').count():
            interact(tab, page)
            wait_ready(tab)
        errors = [e.inner_text()[:800] for e in tab.locator('[data-testid="stException"]').all()]
        title = tab.locator('[data-testid="stMain"] h1').first.inner_text()
        sidebar = tab.locator('[data-testid="stSidebar"]').get_by_text("Data source").count()
        shown = tab.locator('[data-testid="stMain"]').inner_text()
        browser.close()
    assert not errors, errors
    assert title == TITLES[page]
    assert sidebar, "the router's sidebar is missing: the page ran without app.py"
    assert trap.hits[before:] == [], f"the browser fetched addresses from galaxy names: {trap.hits[before:]}"
    if page == "comparison":
        assert "![b](" in shown or '<img src="' in shown, "no hostile name on the page: the test proved nothing"


@pytest.mark.browser
def test_error_details_stay_on_the_server(tmp_path: Path) -> None:
    """The shipped config shows a failing page's exception type, not its message or traceback."""
    from playwright.sync_api import sync_playwright


    require_chromium()
    boom = tmp_path / "boom.py"
    boom.write_text('raise RuntimeError("secret /srv/galaxy-morph/private/path")\n', encoding="utf-8")
    with serve(tmp_path, tmp_path, script=boom, error_details=None) as url, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        tab = browser.new_page()
        tab.goto(url, wait_until="domcontentloaded")
        shown = tab.locator('[data-testid="stException"]').first.inner_text(timeout=120_000)
        browser.close()
    assert "RuntimeError" in shown
    assert "/srv/galaxy-morph" not in shown and "boom.py" not in shown and str(tmp_path) not in shown
