"""Dataset statistics: counts, catalogues, redshifts, image sizes, coverage, failures, object browser."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ui import charts, common, palette, present, session
from ui.services import catalogue, pictures, preview, sources

session.require_router()

common.page_header(
    "Dataset statistics",
    "What the current source contains: objects per class and catalogue, redshifts, image sizes, "
    "survey / band coverage, and which images are missing and why.",
)
source = st.session_state["source"]
scheme = st.session_state["scheme"]
table = catalogue.labelled(source, scheme)
classes = sources.scheme_classes(scheme)
colors = palette.class_colors(classes)
if table.empty:
    common.stop_with("This source has no catalogue rows yet — fetch or import galaxies on the **Data** page.")

images = preview.metrics(source, scheme)  # per image: sizes and quality, with its label
n_missing = int((~table["has_image"]).sum())
counted = catalogue.source_counts(source, scheme)
cols = st.columns(5)
common.count_metrics(counted, scheme, cols[:3])
cols[3].metric("Missing images", f"{n_missing:,}", help="Catalogue rows without a readable image; see the list below.")
cols[4].metric("Unclassified rows", f"{int((table['label'] == catalogue.UNCLASSIFIED).sum()):,}",
               help=f"Types that the {scheme} scheme does not map to a class.")

definitions = sources.class_definitions(scheme)
if definitions:
    st.markdown(f"**What the {common.md(scheme)} classes mean**")
    st.markdown("\n".join(f"- **{common.md(c)}**: {text}" for c, text in definitions.items()))

left, right = st.columns(2)
with left:
    counts = pd.Series(counted.per_class)
    st.plotly_chart(charts.class_bar(counts, title="Labelled objects per class", colors=colors), key="stats_classes")
with right:
    galaxies = catalogue.galaxy_map(source)
    named = table.assign(galaxy=table["name"].astype(str).map(lambda n: galaxies.get(n, n)))
    prefixes = named.groupby("prefix")["galaxy"].nunique().sort_values(ascending=False)
    if len(prefixes) <= 1:
        st.markdown("**Catalogues the names come from**")
        st.caption(f"Every name comes from one catalogue: **{common.md(prefixes.index[0] if len(prefixes) else '?')}** "
                   f"({int(prefixes.sum()) if len(prefixes) else 0:,} objects).")
    else:
        top = prefixes.head(12)
        if len(prefixes) > 12:
            top = pd.concat([top, pd.Series({"other": prefixes.iloc[12:].sum()})])
        fig = go.Figure(go.Bar(x=top.to_numpy(), y=charts.texts(top.index), orientation="h",
                               marker_color=palette.KEPT_COLOR))
        fig.update_yaxes(autorange="reversed", title="catalogue (name prefix)")
        # On two lines: in one, a half-width chart cut it off at 1024 px.
        fig.update_xaxes(title="objects<br>(a galaxy with names in two catalogues counts in both)")
        st.plotly_chart(charts.style(fig, title="Catalogues the names come from"), key="stats_prefixes")

left, right = st.columns(2)
with left:
    objects = catalogue.labelled_objects(source, scheme)
    colour = catalogue.colours(source) if sources.is_colour_source(source) else pd.DataFrame()
    if objects["redshift"].notna().any():
        st.plotly_chart(
            charts.per_class_violin(
                objects, column="redshift", classes=classes,
                title="Redshift per class (labelled objects with a redshift)", y_title="redshift z",
            ),
            key="stats_redshift",
        )
    elif not colour.empty:
        st.plotly_chart(
            charts.per_class_violin(
                objects.merge(colour, on="name"), column="red_blue", classes=classes,
                title="Colour per class (labelled objects)", y_title="log10 red ÷ blue at the centre (i ÷ g)",
            ),
            key="stats_colour",
        )
        st.caption("Measured on the central fifth of each colour cutout: larger is redder. Ellipticals are redder "
                   "than discs, which is why colour helps the models on this source.")
    else:
        st.info("No redshifts in this source's catalogue.")
with right:
    sized = images.dropna(subset=["width", "height"]) if {"width", "height"} <= set(images.columns) else pd.DataFrame()
    if sized.empty:
        st.info("No readable images yet, so no image sizes.")
    else:
        # Cutouts are square: width against height was one diagonal line. Their side is what the
        # min-size filter and the crop act on.
        sized = sized.assign(side=sized[["width", "height"]].min(axis=1))
        sides = sized["side"].value_counts()
        if len(sides) == 1:
            st.markdown("**Image side**")
            shape = sized.iloc[0]
            st.caption(f"Every image ({len(sized):,}) is {int(shape['width'])} × {int(shape['height'])} px, so there "
                       "is no size distribution to show.")
        else:
            st.plotly_chart(charts.stacked_histogram(sized, column="side", classes=[*classes, catalogue.UNCLASSIFIED],
                                                     title="Image side (shorter one)", x_title="pixels",
                                                     y_title="images"),
                            key="stats_sizes")

st.subheader("Survey and band coverage")
coverage = catalogue.coverage(table, images, galaxies=galaxies)
if coverage is None:
    st.caption("This source does not record surveys or bands (one image per object).")
else:
    matrix, per_object, with_image = coverage
    known = matrix.drop(index="?", errors="ignore")
    if matrix.shape == (1, 1):
        st.caption(f"Every image is from one survey and band: **{common.md(matrix.index[0])} / "
                   f"{common.md(matrix.columns[0])}** ({with_image:,} objects with an image).")
    else:
        if len(known) and known.to_numpy().sum():
            top = known.sum(axis=1).idxmax()
            st.caption(
                f"{len(known)} survey(s) in this source. `python -m core build` keeps one survey and band, by default "
                f"the most common: **{common.md(top)} / {common.md(known.loc[top].idxmax())}** "
                f"({int(known.loc[top].max()):,} of {with_image:,} objects with an image), so a dataset does not mix "
                "photographic plates and CCDs. Pick another on the Preprocessing page or with `--survey` / `--band`."
            )
        left, right = st.columns([3, 2])
        left.plotly_chart(charts.heatmap(matrix, title="Objects with an image, per survey and band", x_title="band",
                                         y_title="survey"), key="stats_coverage")
        right.plotly_chart(charts.class_bar(per_object, title="Images per object", y_title="objects",
                                            colors={k: palette.KEPT_COLOR for k in per_object.index}),
                           key="stats_per_object")

st.subheader("Missing or failed images")
failures = catalogue.failures(table)
if failures.empty:
    st.success("Every catalogue row has a readable image.")
else:
    by_reason = failures.groupby("reason").size().sort_values(ascending=False).rename("objects")
    left, right = st.columns([2, 3])
    left.dataframe(by_reason.reset_index(), hide_index=True, key="stats_reasons")
    right.dataframe(failures, hide_index=True, height=240, key="stats_failures")

if present.presenting():
    common.acknowledge(source)
    st.stop()
st.subheader("Objects")
query = st.text_input("Search names, types or classes", key="stats_search", placeholder="e.g. NGC 4, SB, Spiral")
shown = catalogue.search(table, query)
st.caption(f"{len(shown):,} of {len(table):,} rows. Select a row to see its image.")
# Survey and band only where the source records them (the samples have one image per object).
columns = [c for c in ("name", "classification", "label", "redshift", "prefix", "survey", "band", "file")
           if c in shown.columns and (c not in ("survey", "band") or shown[c].notna().any())]
selection = st.dataframe(
    shown[columns], hide_index=True, height=300, key="stats_objects",
    on_select="rerun", selection_mode="single-row",
    column_config={"redshift": st.column_config.NumberColumn("redshift z", format="%.4f")},
)
rows = selection.selection.rows if selection else []
if rows:
    row = shown.iloc[rows[0]]
    left, right = st.columns([1, 2])
    if row["path"]:
        left.image(pictures.display_image(str(row["path"])), caption=f"{common.md(row['name'])} (display stretch)",
                   width=280)
    else:
        left.warning(f"{common.md(row['name'])}: no image ({common.md(row.get('reason') or 'not fetched')}).")
    right.markdown(f"**{common.md(row['name'])}** — NED type {common.md_code(row['classification'])} → "
                   f"**{common.md(row['label'])}** ({common.md(scheme)})")
    details = row.drop(labels=["path"])
    details = details[details.map(lambda v: v is not None and v == v and str(v) != "")]
    right.dataframe(details.astype(str).rename("value").to_frame(), key="stats_row", width="stretch")
common.acknowledge(source)
