"""Hostile strings and first requests in the dashboard (part of the hostile corpus of issue 8).

Galaxy names, type strings, class names and model labels come from files and users. Every page
must show them as text: no Markdown image that makes the browser fetch an address, no HTML in a
plotly label, no LaTeX that ``summary.tex`` would run. And every page must work as the first page
a fresh server is asked for (a deep link).

The hostile world is real: the built-in sample with its galaxies renamed, some type strings
replaced, a class mapping whose classes are markup, a dataset built and a LeNet-5 trained on it,
and a second run whose ``config.json`` names a hostile model. Every address in it points at a
local HTTP server that counts the requests it gets: the browser tests assert it got none.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings, strategies
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from core.learn.report import latex_escape, latex_table
from ui.charts import text as plot_text
from ui.common import md, md_code

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PAGES = ("home", "data", "statistics", "balance", "preprocessing", "training", "comparison", "classify")
TITLES = {"home": "galaxy-morph", "data": "Data", "statistics": "Dataset statistics", "balance": "Class balance",
          "preprocessing": "Preprocessing preview", "training": "Training", "comparison": "Model comparison",
          "classify": "Classify a galaxy"}

# ``{trap}`` is the counting server's address. Each string mixes Markdown, HTML and LaTeX.
NAME_PAYLOADS = (
    "![b]({trap}name-md.png)",
    '<img src="{trap}name-html.png">',
    r"$\input{{/etc/passwd}}$ **bold** _it_",
    "`tick` [link]({trap}link) :red[red] <b>b</b>",
    "# heading\n- item ![c]({trap}name-newline.png)",
)
TYPE_PAYLOAD = '<img src="{trap}type.png"> ![t]({trap}type-md.png) `SB`'
CLASS_PAYLOADS = {
    "E": "![E]({trap}class-e.png)",
    "S0": '<img src="{trap}class-s0.png">S0',
    "Spiral": r"$\input{{x}}$ <b>Spiral</b>",
}
MODEL_PAYLOAD = "![m]({trap}model.png) <b>net</b>"
# Markup that would act if it reached Markdown unescaped (a backslash before it makes it text).
RAW_MARKDOWN = re.compile(r"(?<!\\)(!\[|<img|<b>|\$\\input|:red\[)")
# HTML that plotly would interpret in a title, tick, legend or hover label.
RAW_PLOTLY_HTML = re.compile(r"<(img|b)\b")
# Proto fields Streamlit shows as plain text (widget options and values), or binary tables.
PLAIN_FIELDS = frozenset({"options", "default", "value", "rawValue", "rawValues", "data", "formattedValue", "id",
                          "formId", "spec", "arrowData", "styler", "columns", "url", "markup"})


# ------------------------------------------------------------------------------- the hostile world


class _Trap(ThreadingHTTPServer):
    """Counts every request; answers with a 1x1 PNG so that a fetched image would show."""

    hits: list[str]


class _TrapHandler(BaseHTTPRequestHandler):
    PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.PNG)))
        self.end_headers()
        self.wfile.write(self.PNG)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def trap() -> Iterator[_Trap]:
    server = _Trap(("127.0.0.1", 0), _TrapHandler)
    server.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _trap_url(server: _Trap) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/"


def make_hostile_world(root: Path, *, trap: str) -> dict[str, Path]:
    """A data folder (sample ``sample`` with hostile names and types, dataset ``hostile``) and a
    runs folder (a LeNet-5 run and a copy of it that names a hostile model)."""
    from core.prepare.builder import build_dataset
    from core.acquire.labels import UNCLASSIFIED, get_scheme
    from core.prepare.preprocessing import PreprocessConfig
    from core.acquire.sample import ensure_sample
    from core.learn.training import train_many

    data_dir, runs_dir = root / "data", root / "runs"
    sample = ensure_sample(data_dir / "sample", n=120, seed=0, n_jobs=1)
    catalog = pd.read_csv(sample / "catalog.csv", dtype=str, keep_default_na=False)
    names = list(dict.fromkeys(catalog["name"]))
    renamed = {n: f"{NAME_PAYLOADS[i % len(NAME_PAYLOADS)].format(trap=trap)} {i}" for i, n in enumerate(names)}
    catalog["name"] = catalog["name"].map(renamed)
    hubble3 = get_scheme("hubble3")
    classes = {c: CLASS_PAYLOADS[c].format(trap=trap) for c in hubble3.classes}
    mapping = {raw: classes[c] for raw in catalog["classification"].unique()
               if (c := hubble3.classify(raw)) != UNCLASSIFIED}
    # Every 10th row gets a hostile type string: unclassified, but listed and counted.
    catalog.loc[catalog.index % 10 == 9, "classification"] = TYPE_PAYLOAD.format(trap=trap)
    catalog.to_csv(sample / "catalog.csv", index=False)
    scheme = root / "hostile-scheme.json"
    scheme.write_text(json.dumps({"classes": list(classes.values()), "map": mapping}), encoding="utf-8")
    dataset = build_dataset(
        sample, scheme=str(scheme), preprocess=PreprocessConfig(size=32), min_quality=0.0, min_size=0,
        catalog="all", out=data_dir / "datasets" / "hostile", n_jobs=1,
    )
    outcomes = train_many(dataset, models=["lenet5"], seeds=[0], runs_dir=runs_dir,
                          overrides={"epochs": 1, "batch_size": 16, "patience": 0})
    assert [o["status"] for o in outcomes] == ["finished"], outcomes
    # A run folder copied by hand, or from another tool, whose config names a model we do not know.
    run = Path(outcomes[0]["run_dir"])
    copy = runs_dir / f"{run.name}-copy"
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text(encoding="utf-8"))
    config.update(id=copy.name, model=MODEL_PAYLOAD.format(trap=trap))
    (copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return {"data": data_dir, "runs": runs_dir, "dataset": Path(dataset), "names": list(renamed.values()),
            "classes": list(classes.values())}


@pytest.fixture(scope="session")
def hostile_world(tmp_path_factory: pytest.TempPathFactory, trap: _Trap) -> dict[str, Any]:
    return make_hostile_world(tmp_path_factory.mktemp("hostile-ui"), trap=_trap_url(trap))


# ------------------------------------------------------------------------- LaTeX (summary.tex)

LATEX_CASES = [
    (r"$\input{/etc/passwd}$", r"\$\textbackslash{}input\{/etc/passwd\}\$"),
    (r"\write18{rm -rf ~}", r"\textbackslash{}write18\{rm -rf \textasciitilde{}\}"),
    ("a_b & c % d # e", r"a\_b \& c \% d \# e"),
    ("x^2~y", r"x\textasciicircum{}2\textasciitilde{}y"),
    ("two\n\nparagraphs", "two  paragraphs"),
    ("ResNet-18", "ResNet-18"),
]


@pytest.mark.parametrize(("label", "escaped"), LATEX_CASES, ids=[c[1][:20] for c in LATEX_CASES])
def test_latex_escape_prints_every_special_character(label: str, escaped: str) -> None:
    assert latex_escape(label) == escaped


def test_summary_tex_prints_a_hostile_model_label() -> None:
    columns = {f"{m}_{s}": [0.5] for m in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "ece",
                                          "params", "train_seconds", "inference_img_per_s") for s in ("mean", "std")}
    summary = pd.DataFrame({**columns, "n_seeds": [1]}, index=[r"$\input{/etc/passwd}$"])
    header = next(line for line in latex_table(summary).splitlines() if line.startswith("Metric &"))
    assert header == r"Metric & \$\textbackslash{}input\{/etc/passwd\}\$ \\"


# ----------------------------------------------------------------------- Markdown and plotly text

MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])
TEXT_CASES = [p.format(trap="http://127.0.0.1:9/") for p in NAME_PAYLOADS] + [
    TYPE_PAYLOAD.format(trap="http://127.0.0.1:9/"), "&amp; &lt;b&gt;", "| a | b |\n|---|---|", "~~gone~~ <https://x.y>",
    "   four spaces", "``` fence", "NGC 4486",
]


def _rendered_text(markdown: str) -> str:
    """The text a CommonMark renderer shows for ``markdown``, or AssertionError if it made markup."""
    tokens = [t for block in MARKDOWN.parse(markdown) for t in [block, *(block.children or [])]]
    made = {t.type for t in tokens} - {"paragraph_open", "paragraph_close", "inline", "text", "code_inline",
                                       "strong_open", "strong_close"}
    assert not made, f"{markdown!r} became {made}"
    return html.unescape(re.sub(r"</?(p|code|strong)>", "", MARKDOWN.render(markdown))).strip()


@pytest.mark.parametrize("value", TEXT_CASES)
def test_markdown_shows_the_string_itself(value: str) -> None:
    shown = " ".join(value.split("\n")).strip()
    assert _rendered_text(f"**{md(value)}** — {md_code(value)}") == f"{shown} — {shown}"


@settings(max_examples=300, deadline=None)
@given(strategies.text(alphabet=strategies.characters(min_codepoint=32, max_codepoint=126) | strategies.sampled_from(
    "\n\r\té∂→"), max_size=40))
def test_markdown_shows_any_string_itself(value: str) -> None:
    shown = re.sub(r"[\r\n]+", " ", value).strip()
    assert _rendered_text(md(value)) == shown
    assert _rendered_text(md_code(value)) == shown


@pytest.mark.parametrize("value", TEXT_CASES[:4])
def test_plotly_labels_are_escaped(value: str) -> None:
    assert not RAW_PLOTLY_HTML.search(plot_text(value)) and html.unescape(plot_text(value)) == value


# ------------------------------------------------------------------------ pages in AppTest


def _strings(node: Any, *, skip: frozenset[str] = frozenset()) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in skip:
                yield from _strings(v, skip=skip)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, skip=skip)
    elif isinstance(node, str):
        yield node


def _walk(node: Any) -> Iterator[Any]:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def _shown(at: AppTest) -> tuple[list[str], list[str]]:
    """(Markdown bodies and labels, plotly figure strings) of every element the script drew."""
    from google.protobuf.json_format import MessageToDict

    markdown, plotly = [], []
    for node in _walk(at._tree):
        proto = getattr(node, "proto", None)
        if proto is None:
            continue
        fields = MessageToDict(proto)
        markdown += list(_strings(fields, skip=PLAIN_FIELDS))
        if node.type == "plotly_chart":
            plotly += list(_strings(json.loads(fields["spec"])))
    return markdown, plotly


@pytest.fixture
def hostile_app(hostile_world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(hostile_world["data"]))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(hostile_world["runs"]))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _interact(at: AppTest, page: str, world: dict[str, Any]) -> None:
    """Make the page show the strings it shows only after a click: a galaxy picked, a row chosen."""
    if page == "classify":
        at.selectbox(key="cls_name").set_value(at.selectbox(key="cls_name").options[1]).run()
    elif page == "comparison":
        at.button(key="cmp_saliency").click().run()


@pytest.mark.parametrize("page", PAGES)
def test_page_shows_hostile_strings_as_text(hostile_app: AppTest, hostile_world: dict[str, Any], page: str) -> None:
    at = hostile_app
    at.switch_page(f"pages/{page}.py")
    at.run()
    _interact(at, page, hostile_world)
    assert not at.exception, [e.value for e in at.exception]
    markdown, plotly = _shown(at)
    raw = sorted({s[:120] for s in markdown if RAW_MARKDOWN.search(s)})
    assert not raw, f"{page} sends markup to the browser as Markdown: {raw}"
    raw = sorted({s[:120] for s in plotly if RAW_PLOTLY_HTML.search(s)})
    assert not raw, f"{page} sends HTML in plotly labels: {raw}"


def test_comparison_prints_the_names_classes_and_model(
    hostile_app: AppTest, hostile_world: dict[str, Any], trap: _Trap
) -> None:
    """Not vacuous: the hostile strings are on the page, escaped."""
    at = hostile_app
    at.switch_page("pages/comparison.py")
    at.run()
    body = "\n".join(m.value for m in at.markdown)
    assert any(md(name) in body for name in hostile_world["names"]), body[:2000]
    assert any(md(cls) in body for cls in hostile_world["classes"]), body[:2000]
    assert md(MODEL_PAYLOAD.format(trap=_trap_url(trap))) in body


@pytest.mark.parametrize("page", PAGES)
def test_page_opened_without_the_router_gets_the_session_defaults(
    hostile_world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, page: str
) -> None:
    """What Streamlit does on a fresh server's first request for ``/page``: the page script alone."""
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(hostile_world["data"]))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(hostile_world["runs"]))
    at = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert Path(at.session_state["source"]).name == "sample"
    assert at.title[0].value == TITLES[page]


# ------------------------------------------------------------------------ a real browser


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_page_as_first_request_of_a_fresh_server(hostile_world: dict[str, Any], trap: _Trap, page: str) -> None:
    """Open ``/page`` first on a fresh server over the hostile world: the page, with the router's
    sidebar, no exception, and not one request to the addresses in the galaxies' names."""
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, interact, require_chromium, serve, wait_ready

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

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, serve

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
