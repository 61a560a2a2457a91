"""Home: what the tool is, the source in use, a summary of it, and what to do next."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from ui import charts, common, session
from ui.services import builds, catalogue, results

session.require_router()

common.page_header(
    "galaxy-morph",
    "Build a galaxy-morphology dataset from NED (or the built-in samples) and compare LeNet-5, "
    "AlexNet and ResNet on it under one protocol.",
)

source = st.session_state["source"]
scheme = st.session_state["scheme"]

st.subheader(f"Source: {common.md(Path(source).name)}")
st.caption(f"{common.source_kind(Path(source))} — {common.md_code(source)}")
counted = catalogue.source_counts(source, scheme)
common.count_metrics(counted, scheme)

left, right = st.columns([3, 2])
with left:
    counts = pd.Series(counted.per_class)
    st.plotly_chart(charts.class_bar(counts, title=f"Labelled objects per class ({scheme} scheme)"), key="home_classes")
with right:
    st.markdown("#### Datasets and runs")
    datasets, damaged_datasets = builds.checked_datasets()
    runs = results.runs_table()
    finished = runs[runs["status"] == "finished"] if not runs.empty else runs
    m1, m2 = st.columns(2)
    m1.metric("Saved datasets", len(datasets))
    m2.metric("Finished runs", f"{len(finished)} of {len(runs)}")
    if datasets:
        rows = []
        for path in datasets:
            manifest = builds.dataset_manifest(str(path))
            counts = manifest.get("counts", {})
            rows.append({
                "dataset": path.name,
                "galaxies": sum(sum(per_class.values()) for per_class in counts.values()),
                "classes": ", ".join(manifest.get("classes", [])),
                "runs": sum(1 for p in runs["dataset"] if p and Path(p).resolve() == path.resolve()) if not runs.empty else 0,
            })
        st.dataframe(rows, hide_index=True, width="stretch")
    elif not damaged_datasets:
        st.caption("No dataset yet: build one on **Preprocessing preview**.")
    common.damaged_notice(damaged_datasets, what="dataset", key="home_damaged_datasets")
    common.damaged_notice(common.damaged_runs(runs), what="run", key="home_damaged_runs")
    common.changed_dataset_notice(results.changed_datasets(runs), key="home_changed_runs")
    st.markdown("#### Next steps")
    steps = []
    if not datasets:
        steps.append("Tune crop and quality on **Preprocessing preview**, then *Build dataset*.")
    if finished.empty:
        steps.append("Train LeNet-5, AlexNet and ResNet on the **Training** page.")
    else:
        steps.append("Compare the trained models on **Model comparison**; try one on **Classify**.")
    steps.append("Explore the classes on **Dataset statistics** and **Class balance**.")
    steps.append("Fetch real galaxies from NED or import your own folder on the **Data** page.")
    st.markdown("\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1)))
common.acknowledge(source)
