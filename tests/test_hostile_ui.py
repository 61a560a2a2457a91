"""Hostile strings and first requests in the dashboard (part of the hostile corpus of issue 8).

Galaxy names, type strings, class names and model labels come from files and users. Every page
must show them as text: no Markdown image that makes the browser fetch an address, no HTML in a
plotly label, no LaTeX that ``summary.tex`` would run. And every page must work as the first page
it is asked for (a deep link); test_hostile_browser.py asks a fresh server for each in Chromium.
The hostile world is in tests/hostile_world.py.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings, strategies
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from core.learn.report import latex_escape, latex_table
from tests.hostile_world import APP, MODEL_PAYLOAD, NAME_PAYLOADS, PAGES, ROOT, TITLES, TYPE_PAYLOAD, Trap, trap_url
from ui.charts import text as plot_text
from ui.common import md, md_code

# Markup that would act if it reached Markdown unescaped (a backslash before it makes it text).
RAW_MARKDOWN = re.compile(r"(?<!\\)(!\[|<img|<b>|\$\\input|:red\[)")
# HTML that plotly would interpret in a title, tick, legend or hover label.
RAW_PLOTLY_HTML = re.compile(r"<(img|b)\b")
# Proto fields Streamlit shows as plain text (widget options and values), or binary tables.
PLAIN_FIELDS = frozenset({"options", "default", "value", "rawValue", "rawValues", "data", "formattedValue", "id",
                          "formId", "spec", "arrowData", "styler", "columns", "url", "markup"})


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
    hostile_app: AppTest, hostile_world: dict[str, Any], trap: Trap
) -> None:
    """Not vacuous: the hostile strings are on the page, escaped."""
    at = hostile_app
    at.switch_page("pages/comparison.py")
    at.run()
    body = "\n".join(m.value for m in at.markdown)
    assert any(md(name) in body for name in hostile_world["names"]), body[:2000]
    assert any(md(cls) in body for cls in hostile_world["classes"]), body[:2000]
    assert md(MODEL_PAYLOAD.format(trap=trap_url(trap))) in body


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
