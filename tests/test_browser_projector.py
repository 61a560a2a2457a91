"""Presentation mode on a projector (1440x900 and 1024x768) in headless Chromium: no sidebar, no
controls but the page switcher, nothing cut off. Screenshots go where test_browser.py puts its own."""

from __future__ import annotations

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, PAGES, _save_small, _shots, wait_ready


CONTROLS = ", ".join(f'[data-testid="{t}"]' for t in (
    "stSelectbox", "stMultiSelect", "stSlider", "stTextInput", "stNumberInput", "stFileUploader", "stCheckbox",
    "stRadio", "stToggle", "stButtonGroup", "stTextArea"))
PROJECTORS = ((1440, 900), (1024, 768))
MAIN_LEFT = """() => Math.round(document.querySelector('[data-testid="stMainBlockContainer"]').getBoundingClientRect().left)"""
# Where the first thing on the page starts (the way out of presentation mode), and where the bar of pages ends.
LEAVE_TOP = """() => Math.round(Array.from(document.querySelectorAll('[data-testid="stButton"]'))
  .find(b => b.innerText.includes('Leave presentation mode')).getBoundingClientRect().top)"""
HEADER_BOTTOM = """() => Math.round(document.querySelector('[data-testid="stHeader"]').getBoundingClientRect().bottom)"""
# How many lines the page's title (h1) takes: the distinct tops of its text's line boxes (not the link icon's).
TITLE_LINES = """() => {
  const range = document.createRange();
  range.selectNodeContents(document.querySelector('h1 [data-heading-text]') || document.querySelector('h1'));
  return new Set(Array.from(range.getClientRects()).filter(r => r.width > 1).map(r => Math.round(r.top / 8))).size;
}"""


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
                # The comparison's title took 3 lines of a 1024-px projector; the details now sit under it.
                if name == "comparison" and (lines := page.evaluate(TITLE_LINES)) > 2:
                    problems.append(f"the comparison's title takes {lines} lines at {width}px")
                _save_small(page.screenshot(), shots / f"present-{name}-{width}.png")
        browser.close()
    assert not problems, problems
