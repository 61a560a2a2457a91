"""Home: what the tool is, the source in use, a summary of it, and what to do next."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui import charts, common, data

common.page_header(
    "galaxy-morph",
    "Build a galaxy-morphology dataset from NED (or the built-in samples) and compare LeNet-5, "
    "AlexNet and ResNet on it under one protocol.",
)

source = st.session_state["source"]
scheme = st.session_state["scheme"]
table = data.labelled(source, scheme)

st.subheader(f"Source: {Path(source).name}")
st.caption(f"{common.source_kind(Path(source))} — `{source}`")
n_images = int(table["has_image"].sum())
labelled = table[table["label"] != data.UNCLASSIFIED]
cols = st.columns(4)
cols[0].metric("Catalogue rows", f"{len(table):,}")
cols[1].metric("Objects with an image", f"{n_images:,}")
cols[2].metric(f"Classes ({scheme})", labelled["label"].nunique())
cols[3].metric("Labelled objects", f"{labelled['name'].nunique():,}")

left, right = st.columns([3, 2])
with left:
    counts = labelled.groupby("label").size().reindex(data.scheme_classes(scheme), fill_value=0)
    st.plotly_chart(charts.class_bar(counts, title=f"Objects per class ({scheme} scheme)"), key="home_classes")
with right:
    st.markdown("#### Datasets and runs")
    datasets = data.list_dataset_paths()
    runs = data.runs_table()
    st.metric("Saved datasets", len(datasets))
    st.metric("Training runs", len(runs))
    st.markdown("#### Next steps")
    steps = []
    if not datasets:
        steps.append("Tune crop and quality on **Preprocessing preview**, then *Build dataset*.")
    if runs.empty:
        steps.append("Train LeNet-5, AlexNet and ResNet on the **Training** page.")
    else:
        steps.append("Compare the trained models on **Model comparison**.")
    steps.append("Explore the classes on **Dataset statistics** and **Class balance**.")
    steps.append("Fetch real galaxies from NED or import your own folder on the **Data** page.")
    st.markdown("\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1)))
common.acknowledge(source)
