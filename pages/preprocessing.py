"""Preprocessing preview: crop, size, stretch and quality sliders with instant kept / rejected counts.

The sliders make a :class:`core.spec.BuildSpec`; the counts are :func:`core.prepare.selection.select` of it
over the per-image metrics (computed once per source and cached), the function ``build`` itself
calls, so they are the build's counts, in objects. Moving a slider never re-reads an image; the
before / after grid re-processes only the few images shown.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.prepare.selection import REASON_TEXT
from core.errors import GalaxyMorphError
from core.io import check_folder_name
from ui import charts, common, present, session, state
from ui.services import builds, catalogue, pictures, preview, sources

session.require_router()

GRID_IMAGE_WIDTH = 150  # pixels per picture of the before / after grid: four galaxies to a row
# (no docstring here: Streamlit's magic would draw a bare string on the page)

common.page_header(
    "Preprocessing preview",
    "Choose how images are cropped, stretched and resized, and which are too poor to keep. "
    "Counts update as you move the sliders; the dataset is built with exactly these settings.",
)
source = st.session_state["source"]
scheme = st.session_state["scheme"]
classes = sources.scheme_classes(scheme)
metrics = preview.metrics(source, scheme)
if metrics.empty:
    common.stop_with("No readable images in this source yet — fetch or import galaxies on the **Data** page.")

state.preprocess_settings(source)  # the source's build defaults, before the widgets read them

presenting = present.presenting()  # results only: the settings chosen last, no widgets
prefixes = sorted(metrics["prefix"].dropna().unique())
if st.session_state.get("pp_catalog") not in ("auto", "all", *prefixes):
    st.session_state["pp_catalog"] = "auto"  # a catalogue of the source shown before
surveys = sorted(s for s in metrics["survey"].unique() if s)
if st.session_state.get("pp_survey") not in ("auto", "all", *surveys):
    st.session_state["pp_survey"] = "auto"  # a survey of the source shown before
controls = st.container(border=True) if not presenting else None
if controls is not None:
    c1, c2, c3, c4, c5 = controls.columns(5)
    c1.slider(min_value=0.1, max_value=1.0, step=0.05, **state.widget_args("pp_crop"))
    c2.select_slider(options=[32, 48, 64, 96, 128], **state.widget_args("pp_size"))
    c3.selectbox(options=state.STRETCHES, **state.widget_args("pp_stretch"))
    c4.slider(min_value=0.0, max_value=1.0, step=0.01, **state.widget_args("pp_min_quality"))
    c5.slider(min_value=0, max_value=256, step=4, **state.widget_args("pp_min_size"))
    left, middle, right = controls.columns([2, 1, 2])
    middle.selectbox(options=list(state.CHANNELS), **state.widget_args("pp_colour"))
    left.selectbox(options=["auto", "all", *prefixes], **state.widget_args("pp_catalog"))
spec = state.build_spec(source, scheme)
try:
    chosen = preview.selection(spec)
    auto = preview.selection(spec.replace(survey="auto", band="auto")).survey
except GalaxyMorphError as exc:
    common.stop_with(f"`python -m core build` would refuse these settings: {common.md(str(exc))}", kind="error")
if controls is not None:
    # No format_func: Streamlit's AppTest cannot set a selectbox whose labels differ from its options.
    right.selectbox(options=["auto", "all", *surveys], **state.widget_args("pp_survey", suffix=f" (auto = {common.md(auto)})"))

filters = state.preprocess_settings(source)
table = chosen.table
kept = table[table["kept"]]
# Objects are galaxies (core.acquire.counts): a galaxy left out is counted once however many names it has,
# and the other names of a galaxy are duplicates, neither kept nor left out.
left_out = catalogue.left_out_objects(source, table)
duplicates = len(table) - len(kept) - len(left_out)
by_class = pd.DataFrame({
    "kept": pd.Series(chosen.kept_per_class()),
    "left out": left_out.groupby("label").size(),
}).reindex(classes, fill_value=0).fillna(0).astype(int)

cols = st.columns(5)
cols[0].metric("Kept objects", f"{len(kept):,}")
cols[1].metric("Left out objects", f"{len(left_out):,}", help="Galaxies none of whose names is kept, each counted once.")
cols[2].metric("Duplicate names", f"{duplicates:,}",
               help="Further names of a galaxy counted already (same position within 3 arcsec): not more galaxies.")
cols[3].metric("Kept fraction", f"{len(kept) / max(1, len(kept) + len(left_out)):.0%}", help="Of the objects.")
cols[4].metric("Imbalance ratio (kept)", catalogue.imbalance_text(by_class["kept"]), help="Largest class ÷ smallest class.")
try:
    sizes = preview.split_sizes(spec)
    refusal = None
except GalaxyMorphError as exc:
    sizes, refusal = None, str(exc)
if refusal is not None:
    st.error(f"A build with these settings would be refused: {common.md(refusal)}")
else:
    st.markdown(f"**A build makes {sum(sizes.values()):,} galaxies: {sizes['train']:,} for training, "
                f"{sizes['val']:,} for validation, {sizes['test']:,} for testing** "
                f"({1 - spec.val_fraction - spec.test_fraction:.0%} / {spec.val_fraction:.0%} / {spec.test_fraction:.0%}, "
                "stratified by class, seed 0).")
if not presenting:
    st.caption(f"Counted in objects (galaxies), as `python -m core build` counts them: catalogue "
               f"**{common.md(chosen.catalog)}**, survey **{common.md(chosen.survey)}** / band "
               f"**{common.md(chosen.band)}**, label conflicts **{common.md(spec.conflicts)}** (Class balance page). "
               "A build keeps exactly these, unless an image fails to preprocess.")

# On a projector one above the other: in half a 1024-px screen the reasons' meanings wrapped a word a line.
left, right = st.columns([1, 1]) if not presenting else (st.container(), st.container())
with left:
    st.plotly_chart(charts.kept_rejected_bar(by_class["kept"], by_class["left out"], title="Kept and left out per class",
                                             y_title="objects"), key="pp_by_class")
with right:
    st.markdown("**Left out, by reason** (objects)")
    if left_out.empty:
        st.caption("Nothing is left out with these settings.")
    else:
        reasons = left_out["reason"].astype(str).map(lambda r: r.split(":")[0])
        per_reason = pd.crosstab(reasons, left_out["label"]).rename_axis(index="reason", columns=None)
        per_reason = per_reason.reindex(columns=[c for c in [*classes, catalogue.UNCLASSIFIED] if c in per_reason.columns])
        per_reason = per_reason.assign(total=per_reason.sum(axis=1)).sort_values("total", ascending=False)
        per_reason["what it means"] = [REASON_TEXT.get(r, "") for r in per_reason.index]
        if presenting:
            # A static table wraps its text: in the scrolling grid the meanings were cut off on a projector.
            st.table(per_reason)
        else:
            st.dataframe(per_reason.reset_index(), hide_index=True, width="stretch", key="pp_reasons",
                         column_config={"what it means": st.column_config.TextColumn(width="large")})

st.subheader("Quality metrics")
h1, h2 = st.columns(2)
classified = metrics[metrics["label"] != catalogue.UNCLASSIFIED]  # every image, not only those the labels leave
h1.plotly_chart(charts.histogram_with_threshold(classified["quality"], threshold=filters["min_quality"],
                title="Quality score", x_title="quality score (0 = unusable, 1 = clean)",
                y_title="images of classified objects"), key="pp_hist_quality")
h2.plotly_chart(charts.histogram_with_threshold(classified["min_side"], threshold=filters["min_size"],
                title="Image side", x_title="shorter image side (pixels)", y_title="images of classified objects"),
                key="pp_hist_size")

st.subheader("Before and after, per class")
top = st.columns([1, 4])
if not presenting and top[0].button("Reshuffle", key="pp_reshuffle", icon=":material/shuffle:"):
    st.session_state["pp_seed"] = st.session_state.get("pp_seed", 0) + 1
top[1].caption("Random kept images of each class (seeded, so the same until you reshuffle): the raw images, "
               "and under each the preprocessed one the model sees.")
examples = preview.examples(kept, classes, per_class=4, seed=st.session_state.get("pp_seed", 0))
for cls in classes:
    rows = examples[examples["label"] == cls]
    st.markdown(f"**{common.md(cls)}** — {int(by_class.loc[cls, 'kept'])} kept")
    if rows.empty:
        st.caption("No kept images of this class with these settings.")
        continue
    # Two image lists per class (raw above, after below, the same widths so they line up): a slider step
    # redraws 6 elements here, not 24 images in 24 columns.
    pairs = [pictures.preview_pair(row, chosen.preprocess) for _, row in rows.iterrows()]
    st.image([raw for raw, _ in pairs], caption=[common.md(n) for n in rows["name"]], width=GRID_IMAGE_WIDTH,
             output_format="PNG")
    st.image([after for _, after in pairs], caption=[f"after ({st.session_state['pp_size']} px)"] * len(pairs),
             width=GRID_IMAGE_WIDTH, output_format="PNG")
common.acknowledge(source)
if presenting:
    st.stop()

st.subheader("Build the dataset")
name = st.text_input("Dataset name", value=state.suggest_dataset_name(source, scheme), key="pp_dataset_name",
                     help="Letters, digits, '_', '-' and '.'; it becomes the folder name under datasets/.")
try:
    check_folder_name(name, what="dataset name", example="sample-hubble3")
    name_error = None
except GalaxyMorphError as exc:
    name_error = str(exc)
    st.error(common.md(name_error))
replace = False
if name_error is None and builds.dataset_path(name).exists():
    replace = st.checkbox(f"Replace the saved dataset {name!r}", key="pp_replace",
                          help="Without this, a dataset of that name built with other settings is kept and the "
                               "build stops with a message. A folder that is not a dataset is never replaced.")
if st.button("Build and save dataset", key="pp_build", type="primary", icon=":material/save:",
             disabled=name_error is not None or refusal is not None,
             help="These settings keep too few galaxies: see the message above the charts." if refusal else None):
    st.session_state["pp_build_job"] = state.submit_build(source, scheme, name, force=replace).id
if "pp_build_job" in st.session_state:
    common.job_panel(st.session_state["pp_build_job"], key="pp_build_panel")
