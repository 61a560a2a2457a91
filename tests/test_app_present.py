"""Presentation mode (``?present=1``) on the Comparison page: AppTest on the test world (tests/conftest.py).

AppTest runs the router (app.py) on the first run only, then the page alone: the router's part
(no sidebar, the leave button) is checked on a first run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_app import APP, _open


def _app(world: dict[str, Path], monkeypatch: pytest.MonkeyPatch, *, runs: Path | None = None,
         present: bool = False) -> AppTest:
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(world["data"]))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(runs or world["runs"]))
    at = AppTest.from_file(APP, default_timeout=120)
    if present:
        at.query_params["present"] = "1"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _chart(at: AppTest, title: str) -> dict:
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    found = [s for s in specs if s["layout"].get("title", {}).get("text", "").startswith(title)]
    assert found, [s["layout"].get("title", {}).get("text") for s in specs]
    return found[0]


def test_a_shared_link_opens_the_comparison_as_a_presentation(world, monkeypatch) -> None:
    at = _app(world, monkeypatch, present=True)
    # No sidebar (no source or scheme selector), only a way out.
    assert not at.sidebar.children and [b.key for b in at.button] == ["present_leave"]
    _open(at, "comparison")
    # The title always names the protocol, and fits two lines of a 1024-px projector: the dataset, what the
    # protocol means and the test galaxies per model go in a smaller line under it.
    assert [t.value.replace("\\", "") for t in at.title] == ["LeNet-5 vs AlexNet vs ResNet-18 · equal protocol"]
    details = at.caption[0].value.replace("\\", "")
    assert details.startswith("tiny · one recipe for every model · one split and seed: ") and details.endswith(
        " test galaxies per model"), details
    # No selectors and no saliency; the exports stay reachable.
    assert not at.selectbox and not at.multiselect and not at.button
    assert len(at.get("download_button")) == 4
    # The corrected verdict first under the title: one split and one seed is never called "better".
    verdict = at.markdown[0].value.replace("\\", "")
    assert verdict.startswith("- **") and "Holm-corrected" in verdict and "is better than" not in verdict, verdict
    # n and the corrected p-values only, with a legend: no raw McNemar table, no uncorrected column.
    assert _chart(at, "Test accuracy with 95 % interval")["data"][0]["y"][0].startswith("LeNet-5 (n = ")
    heatmap = _chart(at, "Paired tests between models")["data"][0]
    assert heatmap["showscale"] and heatmap["colorbar"]["title"]["text"] == "Holm-corrected p"
    frames = [d.value for d in at.dataframe]
    assert not any("p (uncorrected)" in getattr(f, "columns", []) for f in frames)
    assert list(frames[0].index) == ["Accuracy", "Test galaxies (n)", "Parameters", "Train time (s)"]
    # No pills on a projector: the ROC shows the class chosen before presenting (the first by default).
    assert not at.get("button_group")
    assert not any("over-confident" in c.value for c in at.caption)
    size = _chart(at, "Size vs accuracy")
    # Accuracy on [0, 1], and room above the plot for the title, so the tick "1" does not run into it.
    assert size["layout"]["yaxis"]["range"] == [0, 1] and size["layout"]["margin"]["t"] == 50
    assert _chart(at, "Learning curves")["layout"]["yaxis"]["range"] == [0, 1]


def test_presentation_mode_survives_a_page_switch_and_can_be_left(world, monkeypatch) -> None:
    at = _app(world, monkeypatch)
    _open(at, "comparison").button(key="cmp_present").click().run()
    assert not at.multiselect and at.query_params.get("present") == "1"
    _open(at, "home")
    _open(at, "comparison")
    assert at.title[0].value.startswith("LeNet\\-5 vs AlexNet") and not at.multiselect

    at = _app(world, monkeypatch, present=True)
    at.button(key="present_leave").click().run()
    assert "present" not in at.query_params
    assert _open(at, "comparison").multiselect(key="cmp_runs") is not None


def test_a_presentation_drops_what_has_nothing_to_show(world, monkeypatch, tmp_path) -> None:
    # One model: no paired test, no verdict.
    runs = tmp_path / "runs"
    first = sorted(world["runs"].iterdir())[0]
    shutil.copytree(first, runs / first.name)
    at = _open(_app(world, monkeypatch, runs=runs, present=True), "comparison")
    subheaders = [s.value for s in at.subheader]
    assert "Test-set metrics" in subheaders
    assert not any("Holm-corrected)" in m.value for m in at.markdown)
    assert not any(json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "").startswith("Paired tests")
                   for c in at.get("plotly_chart"))
    # Outside presentation mode the page says why there is no test.
    at = _open(_app(world, monkeypatch, runs=runs), "comparison")
    assert any("Paired tests need two different models" in c.value for c in at.caption)


@pytest.mark.parametrize("page", ["home", "data", "statistics", "balance", "preprocessing", "training", "classify"])
def test_no_page_shows_a_control_in_presentation_mode(world, monkeypatch, page) -> None:
    """Results only on every page: no selector, slider, field or button but the way out."""
    at = _open(_app(world, monkeypatch, present=True), page)
    assert not at.exception, [e.value for e in at.exception]
    controls = {kind: len(at.get(kind)) for kind in ("selectbox", "multiselect", "slider", "select_slider",
                "text_input", "number_input", "checkbox", "toggle", "radio", "button_group", "file_uploader")}
    assert not any(controls.values()), controls
    assert [b.key for b in at.button] in ([], ["present_leave"])
    assert at.title or at.subheader, "the page still shows its results"


def test_runs_left_out_are_named_in_the_title_and_change_the_holm_family(world, monkeypatch) -> None:
    at = _open(_app(world, monkeypatch), "comparison")
    runs = at.multiselect(key="cmp_runs")
    alexnet = [i for i in runs.value if "alexnet" in i]
    runs.set_value([i for i in runs.value if i not in alexnet]).run()
    assert not at.exception, [e.value for e in at.exception]
    title = at.markdown[0].value.replace("\\", "")
    assert title.endswith("· 1 run left out"), title
    assert any(c.value.replace("\\", "").endswith("· left out: AlexNet s0") for c in at.caption)
    warning = at.warning[0].value.replace("\\", "")
    assert "1 run left out by hand (AlexNet s0)" in warning and "covers 1 model pair" in warning
    assert "(with every run: 3)" in warning
    # Presentation mode keeps the choice and says so too.
    at.button(key="cmp_present").click().run()
    assert at.title[0].value.replace("\\", "").endswith("· 1 run left out")
    assert at.caption[0].value.replace("\\", "").endswith("· left out: AlexNet s0")
    assert "left out by hand" in at.warning[0].value


def test_the_reasons_left_out_keep_their_meaning_whole_on_a_projector(world, monkeypatch) -> None:
    """Preprocessing in presentation mode: a static table, which wraps; the scrolling grid cut the meanings off
    at 1024 and at 1440 px (docs/screenshots/present-preprocessing-*.png)."""
    at = _open(_app(world, monkeypatch, present=True), "preprocessing")
    assert not at.exception, [e.value for e in at.exception]
    reasons = [t.value for t in at.table if "what it means" in t.value.columns]
    assert reasons, "the reasons left out are not a static table"
    assert all(reasons[0]["what it means"].str.len() > 0)
    assert not any("what it means" in getattr(d.value, "columns", []) for d in at.dataframe)
