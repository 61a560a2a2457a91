"""AppTest of every dashboard page on a small real sample, a real dataset and tiny real runs.

The session fixture ``world`` (tests/conftest.py) generates a 120-galaxy sample, builds a 32-px dataset from it and trains
LeNet-5, AlexNet and ResNet-18 for one epoch each through ``core`` (no page input is faked).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.acquire.catalogue import load_source
from core.acquire.counts import count_source, galaxy_names, left_out_objects
from core.acquire.labels import get_scheme, label_table

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGES = ("home", "data", "statistics", "balance", "preprocessing", "training", "comparison", "classify")
from tests.conftest import MODELS


@pytest.fixture
def app(world: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[AppTest]:
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(world["data"]))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(world["runs"]))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    yield at


def _open(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, f"{page}: {[e.value for e in at.exception]}"
    return at


def _metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return values[0]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(app: AppTest, page: str) -> None:
    _open(app, page)
    assert app.title, f"{page} has no title"
    assert not app.error, f"{page} shows an error: {[e.value for e in app.error]}"


def test_home_summarises_the_sample_source(app: AppTest, world: dict[str, Path]) -> None:
    assert Path(app.selectbox(key="sidebar_source").value).name == "sample"
    rows = int(_metric(app, "Catalogue rows").replace(",", ""))
    assert rows >= 120
    assert _metric(app, "Saved datasets") == "1"
    assert _metric(app, "Finished runs") == f"{len(MODELS)} of {len(MODELS)}"
    datasets = app.dataframe[0].value
    assert list(datasets["dataset"]) == [Path(world["dataset"]).name]
    assert list(datasets["runs"]) == [len(MODELS)]


def test_preview_defaults_are_the_builders(app: AppTest) -> None:
    from core.prepare.quality import QualityThresholds

    _open(app, "preprocessing")
    assert app.slider(key="pp_min_quality").value == QualityThresholds().min_quality
    assert app.slider(key="pp_min_size").value == QualityThresholds().min_size


def test_preview_follows_the_source_it_shows(app: AppTest, world: dict[str, Path]) -> None:
    """Switching to a Galaxy Zoo source resets the preview to what `build` does there: colour, crop
    0.3, linear; the sample's grey, 0.5, asinh did not carry over (the dashboard built grey gz1 sets)."""
    _open(app, "preprocessing")
    assert (app.slider(key="pp_crop").value, app.selectbox(key="pp_colour").value) == (0.5, "grey")
    app.session_state["source"] = str(world["data"] / "gz1")
    app.session_state["scheme"] = "gz1"
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.slider(key="pp_crop").value == 0.3
    assert (app.selectbox(key="pp_colour").value, app.selectbox(key="pp_stretch").value) == ("colour", "linear")
    app.selectbox(key="pp_colour").set_value("grey").run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.selectbox(key="pp_colour").value == "grey"  # a choice made on this source is kept


def test_preview_settings_survive_a_visit_to_another_page(app: AppTest) -> None:
    """Streamlit forgets a widget's value on a run that does not draw it; the sliders must come back
    at the build's defaults, not at their minimum (crop 0.1, size 32, quality 0), after another page."""
    _open(app, "preprocessing")
    _open(app, "statistics")
    _open(app, "preprocessing")
    assert app.slider(key="pp_crop").value == 0.5
    assert app.select_slider(key="pp_size").value == 64
    assert app.slider(key="pp_min_quality").value == 0.5


def test_quality_slider_changes_the_kept_count(app: AppTest) -> None:
    _open(app, "preprocessing")
    for key in ("pp_crop", "pp_min_quality", "pp_min_size"):
        assert app.slider(key=key) is not None
    assert app.selectbox(key="pp_stretch").value == "asinh"
    assert app.button(key="pp_build") is not None

    totals = {}
    for threshold in (0.0, 0.9):
        app.slider(key="pp_min_quality").set_value(threshold)
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        kept = int(_metric(app, "Kept objects").replace(",", ""))
        rejected = int(_metric(app, "Left out objects").replace(",", ""))
        totals[threshold] = (kept, kept + rejected)
    assert totals[0.9][0] < totals[0.0][0]
    assert totals[0.9][1] == totals[0.0][1]  # the same images, only the decision moved


def test_preview_shows_what_build_keeps(app: AppTest, world: dict[str, Path], tmp_path: Path) -> None:
    from core.prepare.builder import build
    from core.prepare.preprocessing import PreprocessConfig
    from core.prepare.quality import QualityThresholds
    from core.spec import BuildSpec

    _open(app, "preprocessing")
    # The defaults are build's: catalogue auto, survey auto, crop 0.5 (also for Galaxy Zoo cutouts).
    assert (app.selectbox(key="pp_catalog").value, app.slider(key="pp_crop").value) == ("auto", 0.5)
    app.slider(key="pp_min_quality").set_value(0.2)
    app.slider(key="pp_min_size").set_value(8)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    shown = int(_metric(app, "Kept objects").replace(",", ""))
    table = next(d.value for d in app.dataframe if "reason" in d.value.columns and "total" in d.value.columns)
    reasons = table.set_index("reason")["total"].to_dict()

    spec = BuildSpec(source=str(world["sample"]), scheme="hubble3",
                     preprocess=PreprocessConfig(crop=0.5, size=app.select_slider(key="pp_size").value),
                     thresholds=QualityThresholds(min_quality=0.2, min_size=8))
    out = build(spec, out=tmp_path / "ds", n_jobs=1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert shown == sum(sum(counts.values()) for counts in manifest["counts"].values())
    # The split sizes the page announces before Build are the build's.
    sizes = {split: sum(counts.values()) for split, counts in manifest["counts"].items()}
    announced = next(m.value for m in app.markdown if m.value.startswith("**A build makes"))
    assert f"{sizes['train']:,} for training, {sizes['val']:,} for validation, {sizes['test']:,} for testing" in announced
    # The page counts objects (galaxies); the manifest's reasons count names. A galaxy left out under
    # two names is one left-out object; a further name of a kept galaxy is a duplicate, not left out.
    names = pd.read_parquet(out / "images.parquet")
    galaxies = galaxy_names(load_source(world["sample"]).table)  # the build's rule: same position, one galaxy
    left = left_out_objects(names, galaxies)
    assert reasons == left["reason"].map(lambda r: r.split(":")[0]).value_counts().to_dict()
    duplicates = _metric(app, "Duplicate names")
    assert shown + len(left) + int(duplicates) == len(names)
    catalogue = load_source(world["sample"]).table
    catalogue = catalogue.assign(label=label_table(catalogue, get_scheme("hubble3")).to_numpy())
    assert shown + len(left) == count_source(catalogue, classes=["E", "S0", "Spiral"]).objects
    assert sum(reasons.values()) <= sum(manifest["reasons"].values())


def test_switching_scheme_changes_the_class_list(app: AppTest) -> None:
    # The default is the CLI's (hubble3); on the first run AppTest also shows app.py's sidebar:
    # switch the scheme there.
    assert _class_axis(app) == ["E", "S0", "Spiral"]
    app.selectbox(key="sidebar_scheme").set_value("hubble4")
    app.run()
    assert _class_axis(app) == ["E", "S0", "Spiral", "Irr"]

    # And with the Class balance page's own selector.
    _open(app, "balance")
    assert app.selectbox(key="balance_scheme").value == "hubble4"
    app.selectbox(key="balance_scheme").set_value("seed6")
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    six = list(data_classes("seed6"))
    line = [m.value for m in app.markdown if m.value.startswith("**Scheme")]
    assert line and line[0].startswith("**Scheme `seed6`**")
    assert all(f"`{c}`" in line[0] for c in six) and len(six) == 6
    counts = json.loads(app.get("plotly_chart")[1].proto.spec)
    assert [trace["x"] for trace in counts["data"]][0] == six


def data_classes(scheme: str) -> tuple[str, ...]:
    from core.acquire.labels import get_scheme

    return get_scheme(scheme).classes


def _class_axis(app: AppTest) -> list[str]:
    spec = json.loads(app.get("plotly_chart")[0].proto.spec)
    return list(spec["data"][0]["x"])


def test_comparison_shows_one_column_per_model(app: AppTest) -> None:
    _open(app, "comparison")
    assert set(app.multiselect(key="cmp_runs").value) and len(app.multiselect(key="cmp_runs").value) == len(MODELS)
    # The title names the models and the protocol; the line under it the dataset and the test galaxies (n).
    title = app.markdown[0].value.replace("\\", "")
    assert title.startswith("#### LeNet-5 vs AlexNet vs ResNet-18 · ") and title.endswith(" protocol"), title
    details = [c.value.replace("\\", "") for c in app.caption if c.value.startswith("tiny · ")]
    assert len(details) == 1 and "test galaxies per model" in details[0], [c.value for c in app.caption]
    summary = app.dataframe[0].value
    assert len(summary.columns) == len(MODELS)
    assert list(summary.index[:2]) == ["Accuracy", "Test galaxies (n)"]
    assert all(" [" in cell and cell.endswith("]") for cell in summary.loc["Accuracy"]), summary.loc["Accuracy"]
    assert {"Parameters", "Train time (s)"} <= set(summary.index)
    # One sentence for the pairs of networks, from the Holm-corrected paired tests; one seed on one split is
    # never called "better".
    body = "\n".join(m.value.replace("\\", "") for m in app.markdown)
    assert "Holm-corrected" in body and "is better than" not in body, body[:2000]
    # No baseline among the runs: the page says how to get the floor.
    assert "No gradient-boosting baseline" in body
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in app.get("plotly_chart")]
    assert sum(t.endswith(" held-out predictions") for t in titles) == len(MODELS), titles  # a confusion matrix each
    assert any(t.startswith("Test accuracy with 95 % interval") for t in titles), titles
    # Exports sit under the headline, before the table, one click each.
    assert [b.proto.label for b in app.get("download_button")] == ["Summary CSV", "LaTeX (standalone)",
                                                                   "HTML report", "All figures (PNG + SVG)"]


def test_comparison_roc_class_can_be_chosen(app: AppTest) -> None:
    _open(app, "comparison")
    pills = app.get("button_group")
    assert pills, "no ROC class pills"
    roc = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in app.get("plotly_chart")
           if json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "").startswith("ROC")]
    assert roc and roc[0].startswith("ROC curves: E vs rest"), roc
    pills[0].set_value("Spiral").run()
    roc = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in app.get("plotly_chart")
           if json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "").startswith("ROC")]
    assert roc[0].startswith("ROC curves: Spiral vs rest"), roc


def test_comparison_computes_saliency_and_grad_cam_for_every_model(app: AppTest) -> None:
    _open(app, "comparison")
    app.button(key="cmp_saliency").click().run()
    assert not app.exception, [e.value for e in app.exception]
    specs = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    overlays = [s for s in specs if len(s["data"]) == 2 and s["data"][1].get("type") == "heatmap"
                and s["data"][1].get("colorbar")]
    titles = [s["layout"]["title"]["text"] for s in overlays]
    assert sum(t.endswith("Grad-CAM") for t in titles) == len(MODELS), titles
    assert sum("∂p/∂pixel" in t for t in titles) == len(MODELS), titles
    # In colour over the galaxy: the map's low end is transparent, and a colour bar says what it shows.
    assert all(s["data"][1]["colorscale"][0][1].endswith(",0)") for s in overlays)
    assert {s["data"][1]["colorbar"]["title"]["text"] for s in overlays} == {"saliency", "Grad-CAM"}


def test_comparison_never_pools_two_protocols(world: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # The world's runs (the default equal protocol), and a copy of each recorded as the tuned protocol: two
    # experiments on one dataset.
    import shutil

    runs_dir = tmp_path / "runs"
    shutil.copytree(world["runs"], runs_dir)
    for run in sorted(runs_dir.iterdir()):
        twin = runs_dir / f"{run.name}-tuned"
        shutil.copytree(run, twin)
        config = json.loads((twin / "config.json").read_text())
        config["params"]["protocol"] = "tuned"
        (twin / "config.json").write_text(json.dumps({**config, "id": twin.name}))
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(world["data"]))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    _open(at, "comparison")
    experiment = at.selectbox(key="cmp_experiment")
    assert sorted(option.endswith("-equal") for option in experiment.options) == [False, True]
    assert len(at.dataframe[0].value.columns) == len(MODELS)  # one column per model, not per model x protocol
    experiment.set_value(experiment.options[0]).run()
    assert not at.exception and len(at.dataframe[0].value.columns) == len(MODELS)


def test_training_page_lists_the_finished_runs(app: AppTest) -> None:
    _open(app, "training")
    assert app.multiselect(key="train_models").value == list(MODELS)
    assert app.button(key="train_start") is not None and app.button(key="train_resume") is not None
    progress_texts = [p.proto.text for p in app.get("progress")]
    for label in (r"LeNet\-5", "AlexNet", r"ResNet\-18"):
        assert any(label in t and "finished" in t for t in progress_texts), progress_texts


def test_classify_rejects_a_bad_upload_and_classifies_a_galaxy(app: AppTest) -> None:
    _open(app, "classify")
    names = app.selectbox(key="cls_name").options
    assert len(names) > 10
    app.selectbox(key="cls_name").set_value(names[1])
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    verdicts = [m.value for m in app.markdown if " → **" in m.body]
    assert len(verdicts) == len(MODELS)


def test_bad_upload_gets_a_clear_message(world: dict[str, Path]) -> None:
    from core.errors import GalaxyMorphError
    from ui.services import pictures

    with pytest.raises(GalaxyMorphError, match="^notes.png: .*Upload a FITS, JPEG or PNG"):
        pictures.read_upload("notes.png", b"this is not an image")
    with pytest.raises(GalaxyMorphError, match="the file is empty"):
        pictures.read_upload("empty.fits", b"")
    with pytest.raises(GalaxyMorphError, match="limit is 1 MB"):
        pictures.read_upload("big.fits", b"0" * (2 * 2**20), max_bytes=2**20)



def test_gz1_images_show_upright_with_the_acknowledgement(app: AppTest, world: dict[str, Path]) -> None:
    """JPEG rows are stored bottom-up like FITS; the dashboard flips them back, so it shows the JPEG as it is."""
    import numpy as np
    from PIL import Image

    from ui.services.pictures import display_image

    gz1 = world["data"] / "gz1"
    app.selectbox(key="sidebar_source").set_value(str(gz1))
    app.run()
    _open(app, "preprocessing")
    assert any("Galaxy Zoo" in c.value for c in app.caption), "the SDSS / Galaxy Zoo credit shows under the images"
    file = next((gz1 / "images").iterdir())
    shown = display_image(str(file))
    assert shown.ndim == 3 and shown.shape[-1] == 3  # a colour source is shown in colour
    shown = shown.mean(axis=-1)
    jpeg = np.asarray(Image.open(file).convert("L"), dtype=float)
    upright = np.corrcoef(shown.ravel(), jpeg.ravel())[0, 1]
    assert upright > 0.8  # not 1: the display uses an asinh stretch, the JPEG is linear
    assert upright > np.corrcoef(shown[::-1].ravel(), jpeg.ravel())[0, 1]
    assert upright > np.corrcoef(shown[:, ::-1].ravel(), jpeg.ravel())[0, 1]


def test_class_balance_lists_unclassified_types_and_exclusions_reach_the_build(app: AppTest, world) -> None:
    from core.acquire.catalogue import load_source
    from core.acquire.labels import get_scheme, label_table, unclassified_types

    _open(app, "balance")
    shown = app.dataframe[0].value  # AppTest does not expose a dataframe's key
    table = load_source(world["sample"]).table
    expected = unclassified_types(table.assign(label=label_table(table, get_scheme("hubble3"))))
    assert list(shown["type"]) == list(expected.index) and list(shown["objects"]) == list(expected)
    assert "Pec" in set(shown["type"])
    app.toggle(key="balance_exclude_uncertain").set_value(True)
    app.run()
    assert app.session_state["exclude_uncertain"] is True
    # The switch outlives the page, so the Preprocessing page's build passes --exclude-uncertain.
    _open(app, "preprocessing")
    assert app.session_state["exclude_uncertain"] is True


def test_statistics_shows_the_survey_mix_and_the_preview_keeps_one_survey(app: AppTest, world) -> None:
    import pandas as pd

    truth = pd.read_csv(world["sample"] / "truth.csv")
    per_survey = truth.drop_duplicates("name")["survey"].value_counts()
    _open(app, "statistics")
    caption = [c.value for c in app.caption if "keeps one survey and band" in c.value]
    assert caption and f"by default the most common: **{per_survey.index[0]} / " in caption[0]
    assert f"{len(per_survey)} survey(s) in this source" in caption[0]

    _open(app, "preprocessing")
    assert app.selectbox(key="pp_survey").value == "auto"
    app.slider(key="pp_min_quality").set_value(0.0)
    app.run()
    one = int(_metric(app, "Kept objects").replace(",", ""))
    app.selectbox(key="pp_survey").set_value("all")
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    every = int(_metric(app, "Kept objects").replace(",", ""))
    assert 0 < one < every
