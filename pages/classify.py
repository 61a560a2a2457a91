"""Classify: upload an image or name a galaxy, see the preprocessing step by step and each model's answer."""

from __future__ import annotations

import streamlit as st

from core import runs
from core.learn import report
from core.errors import GalaxyMorphError
from core.images import display_name
from ui import charts, common, palette, present, session
from ui.services import builds, catalogue, pictures, results, sources

session.require_router()

common.page_header(
    "Classify a galaxy",
    "Upload a FITS, JPEG or PNG image (or pick a galaxy of the current source): it goes through exactly the "
    "preprocessing of the chosen dataset, then every trained model gives its class probabilities.",
)
table = results.runs_table()
finished = table[table["status"] == "finished"] if not table.empty else table
common.damaged_notice(common.damaged_runs(table), what="run", key="cls_damaged_runs")
if finished.empty:
    common.stop_with("No trained models yet — train on the **Training** page, then come back to classify.")

trained_on = list(dict.fromkeys(finished["dataset"]))
if present.presenting():
    dataset = st.session_state.get("cls_dataset") if st.session_state.get("cls_dataset") in trained_on else trained_on[-1]
else:
    dataset = st.selectbox("Models trained on", trained_on, key="cls_dataset", format_func=lambda p: str(p).split("/")[-1])
candidates = report.first_seed_runs(report.in_model_order(
    results.load_runs(tuple(finished[finished["dataset"] == dataset]["path"]))))
# The gradient-boosting baseline classifies features of a dataset's images, not an uploaded image.
candidates = [r for r in candidates if (r.path / "model.keras").exists()]
candidates, damaged_models = runs.split_damaged(candidates, files=("model.keras",))
common.damaged_notice(damaged_models, what="run", key="cls_damaged_models")
if not candidates:
    common.stop_with("Only the baseline was trained on this dataset; train a network to classify an image.")
# A model sees what it was trained on or nothing: runs whose dataset folder was rebuilt or
# altered are refused.
changed = [(run.path, change) for run in candidates if (change := results.dataset_change(run)) is not None]
common.changed_dataset_notice(changed, key="cls_changed_runs")
candidates = [run for run in candidates if run.path not in dict(changed)]
if not candidates:
    common.stop_with("Every model trained on this dataset was trained on an earlier version of it, so an "
                     "image prepared from the folder now would not be what they learnt from. Retrain them "
                     "on the **Training** page (or choose another dataset above).", kind="error")
try:
    trained = results.trained_preprocessing(candidates[0])
except GalaxyMorphError as exc:
    common.stop_with(common.md(exc), kind="error")
config = trained.config
if not trained.stored:
    st.info("These runs predate the record of their preprocessing: it is taken from the dataset folder's "
            "manifest, whose content still matches them.")
# The image comes from the input chosen here; using an input chooses it (an upload sitting in
# the uploader used to hide a galaxy picked afterwards, without a word).
INPUTS = {"upload": "an uploaded file", "galaxy": "a galaxy of the current source", "ned": "a NED name"}
if "cls_input" not in st.session_state:
    st.session_state["cls_input"] = "galaxy"
uploaded = st.session_state.get("cls_upload")
if uploaded is not None and st.session_state.get("cls_upload_seen") != uploaded.file_id:
    st.session_state["cls_upload_seen"] = uploaded.file_id
    st.session_state["cls_input"] = "upload"
source_table = catalogue.labelled(st.session_state["source"], st.session_state["scheme"])
names = list(source_table.loc[source_table["has_image"], "name"].drop_duplicates().head(500))
if present.presenting():
    # No controls: the galaxy picked last (or the first one of the source) goes through the models.
    choice, upload, ned_name = "galaxy", None, ""
    picked = st.session_state.get("cls_name") if st.session_state.get("cls_name") in names else names[0]
else:
    choice = st.radio("Classify", list(INPUTS), format_func=INPUTS.get, horizontal=True, key="cls_input")
    left, right = st.columns(2)
    # No type= filter: Streamlit enforces it (and refuses a name with a NUL) before this script runs,
    # as an exception the page cannot catch; read_upload judges the file by its content instead.
    upload = left.file_uploader("Image file", key="cls_upload",
                                help="FITS (.fits, .fits.gz), JPEG or PNG, up to 50 MB.")
    picked = right.selectbox("…or a galaxy of the current source", ["—", *names], key="cls_name",
                             on_change=lambda: st.session_state.update(cls_input="galaxy"))
    ned_name = right.text_input("…or a NED name to fetch (needs the internet)", key="cls_ned",
                                placeholder="e.g. NGC 4486", on_change=lambda: st.session_state.update(cls_input="ned"))
    if choice != "upload" and upload is not None:
        st.caption(f"The uploaded file is not used: classifying {INPUTS[choice]}. Choose *{INPUTS['upload']}* to use it.")
    upload = upload if choice == "upload" else None
    picked = picked if choice == "galaxy" else "—"
    ned_name = ned_name if choice == "ned" else ""

position: dict[str, float | None] = {}
try:
    if upload is not None:
        image, label = pictures.read_upload(upload.name, upload.getvalue(), channels=config.channels), display_name(upload.name)
    elif picked != "—":
        row = source_table.loc[source_table["name"] == picked].iloc[0]
        image, label = pictures.read_path(row["path"], channels=config.channels), picked
        position = {"ra": row.get("ra"), "dec": row.get("dec")}
    elif ned_name.strip():
        image, label = pictures.fetch_ned_image(ned_name.strip()), ned_name.strip()
    else:
        common.stop_with("Upload an image, pick a galaxy or type a NED name to classify it.")
except GalaxyMorphError as exc:
    common.stop_with(common.md(exc), kind="error")

run_classes = candidates[0].classes
if picked != "—":
    # What is known of a galaxy of the source: its class (in the source's scheme) and whether the
    # models saw it in training, which makes their answer a recall, not a prediction.
    truth = str(row["label"])
    scheme = st.session_state["scheme"]
    member = builds.dataset_member(dataset, picked)
    tested = any(picked in set(run.predictions.get("name", [])) for run in candidates)
    if member is None:
        where = "not in this dataset: the models never saw it"
    elif tested:
        where = f"a **test** galaxy of this dataset ({common.md(member[1])} split): the models never trained on it"
    else:
        where = (f"in this dataset's **{common.md(member[1])}** split: the models saw it while training, so "
                 "their answer is not a fair test")
    st.markdown(f"**{common.md(picked)}**: true class **{common.md(truth)}** ({common.md(scheme)} scheme); {where}.")
    if truth not in run_classes or set(sources.scheme_classes(scheme)) != set(run_classes):
        st.warning(f"The source's {common.md(scheme)} scheme has classes "
                   f"{', '.join(common.md(c) for c in sources.scheme_classes(scheme))}; these models answer in "
                   f"{', '.join(common.md(c) for c in run_classes)}. Their answer cannot be checked against the "
                   "galaxy's class: pick the source and scheme the dataset was built from.")
steps = pictures.steps_for(image, config, **position)
st.subheader(f"Preprocessing of {common.md(label)}")
for col, (step, array) in zip(st.columns(len(steps)), steps.items()):
    shown, caption = pictures.step_for_display(step, array, stretch=pictures.display_stretch(image))
    col.image(shown, caption=caption, width="stretch")
st.caption(f"Crop {config.crop:g} of the side, {common.md(config.stretch)} stretch, "
           f"resized to {config.size} × {config.size} px.")
if upload is None and picked != "—":
    common.acknowledge(st.session_state["source"])

st.subheader("Class probabilities")
columns = st.columns(len(candidates))
for column, run in zip(columns, candidates):
    with column:
        try:
            probs = results.predict(run.path, steps["final"])
        except runs.RunDamagedError as exc:  # an archive that passed the size checks but does not load
            st.warning(common.md(str(exc)))
            continue
        best = max(probs, key=probs.get)
        model = common.md(common.model_label(run.model_name))
        st.markdown(f"**{model}** → **{common.md(best)}** ({probs[best]:.0%})")
        st.plotly_chart(charts.probability_bar(probs, color=palette.model_color(run.model_name)), key=f"cls_probs_{run.id}")
