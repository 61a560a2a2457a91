"""Data: scrape NED and fetch images for chosen classes (live progress), or import your own folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core import jobs
from core.errors import GalaxyMorphError
from core.spec import ImportSpec
from ui import common, present, session, state
from ui.services import sources

session.require_router()

common.page_header(
    "Data",
    "Get galaxies: search NED by morphological class and download one image per object, or import a "
    "catalogue CSV with a folder of images. Both run in the background and resume where they stopped.",
)
settings = common.settings()
CLASS_TERMS = ["E", "S0", "S0/a", "SA", "SAB", "SB", "S", "Irr"]

if present.presenting():
    # Results only: what was fetched and the jobs, no buttons or fields.
    rows = common.job_table(jobs.list_jobs())
    st.subheader("Background jobs")
    if rows:
        st.dataframe(pd.DataFrame(rows).drop(columns=["id"]), hide_index=True, key="data_jobs_present")
    else:
        st.caption("No background jobs yet.")
    st.stop()

scrape_tab, import_tab, jobs_tab = st.tabs(["NED scrape and fetch", "Import a folder", "All jobs"])

with scrape_tab:
    st.caption("NED asks for at most one request per second; the scraper keeps to it. Server: "
               + common.md_code(settings.ned_base_url))
    c1, c2 = st.columns([3, 1])
    terms = c1.multiselect(options=CLASS_TERMS, default=list(state.field_default("data_classes")),
                           **state.widget_args("data_classes"))
    max_pages = c2.number_input(min_value=0, max_value=10_000, value=state.field_default("data_max_pages"),
                                **state.widget_args("data_max_pages"))
    b1, b2, b3, _ = st.columns([1, 1, 1, 2])
    if b1.button("1. Scrape NED", key="data_scrape", type="primary", disabled=not terms, icon=":material/travel_explore:"):
        spec = state.scrape_spec(terms, max_pages=int(max_pages))
        st.session_state["data_job"] = jobs.submit(spec, label=f"scrape {', '.join(terms)}").id
    has_catalog = sources.has_ned_catalogue()
    if b2.button("2. Fetch images", key="data_fetch", disabled=not has_catalog, icon=":material/download:",
                 help=None if has_catalog else "Scrape first: there is no NED catalogue yet."):
        st.session_state["data_job"] = jobs.submit(state.fetch_spec(), label="fetch images").id
    manifest = sources.ned_fetch_results()
    n_failed = int((manifest.get("status", pd.Series(dtype=str)).str.lower() == "failed").sum()) if not manifest.empty else 0
    if b3.button(f"Retry {n_failed} failed", key="data_retry", disabled=n_failed == 0, icon=":material/replay:"):
        st.session_state["data_job"] = jobs.submit(state.fetch_spec(retry_failed=True), label="retry failed fetches").id
    if "data_job" in st.session_state:
        common.job_panel(st.session_state["data_job"], key="data_panel")
    if not manifest.empty:
        st.markdown("#### Fetch results")
        counts = manifest["status"].value_counts()
        cols = st.columns(len(counts))
        for col, (status, n) in zip(cols, counts.items()):
            col.metric(common.md(status), f"{n:,}")
        failed = manifest[manifest["status"].str.lower() != "ok"]
        if not failed.empty:
            st.dataframe(failed[[c for c in ("name", "status", "reason") if c in failed]], hide_index=True, height=220,
                         key="data_failed")
    elif not has_catalog:
        st.info("No NED data yet — choose classes and press **1. Scrape NED** (needs the internet), or work with "
                "the built-in samples.")

with import_tab:
    st.caption("A CSV with at least `name` and `classification` (or `label`) columns, and a `file` column naming each "
               "image inside the folder (FITS, JPEG or PNG). Bad rows are reported, the rest is imported.")
    csv_path = st.text_input(placeholder="/path/to/catalog.csv", **state.widget_args("data_import_csv"))
    images_dir = st.text_input(placeholder="/path/to/images", **state.widget_args("data_import_images"))
    name = st.text_input(placeholder="my-galaxies", **state.widget_args("data_import_name"))
    if st.button("Import", key="data_import", disabled=not (csv_path and images_dir), icon=":material/upload_file:"):
        try:
            for label, value in (("catalogue CSV", csv_path), ("image folder", images_dir)):
                if not Path(value).exists():
                    raise GalaxyMorphError(f"{label} {value!r} does not exist. Give a path on the machine running the dashboard.")
            spec = ImportSpec(catalog=csv_path, images=images_dir, name=name or None)
            st.session_state["data_import_job"] = jobs.submit(spec, label=f"import {name or Path(csv_path).stem}").id
        except GalaxyMorphError as exc:
            st.error(common.md(exc))
    if "data_import_job" in st.session_state:
        common.job_panel(st.session_state["data_import_job"], key="data_import_panel")

with jobs_tab:
    rows = common.job_table(jobs.list_jobs())
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="data_jobs")
    else:
        st.info("No background jobs yet — start one above, or build / train from the other pages.")
