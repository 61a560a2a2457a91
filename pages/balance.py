"""Class balance: raw NED types flowing into classes, counts before and after filters, conflicts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import GalaxyMorphError
from ui import charts, common, palette, present, session, state
from ui.services import catalogue, preview, sources

session.require_router()

common.page_header(
    "Class balance",
    "How the raw morphological types of the catalogue become the classes of the chosen scheme, "
    "and how balanced those classes are before and after the quality filters.",
)
source = st.session_state["source"]
presenting = present.presenting()  # results only: the choices made last, no widgets
if presenting:
    scheme = st.session_state["scheme"]
else:
    common.bind("balance_scheme", "scheme")
    scheme = st.selectbox(options=sources.scheme_names(), on_change=common.adopt, args=("balance_scheme", "scheme"),
                          **state.widget_args("balance_scheme"))
TOP_TYPES = 15
classes = sources.scheme_classes(scheme)
colors = palette.class_colors(classes)
table = catalogue.labelled(source, scheme)
if table.empty:
    common.stop_with("This source has no catalogue rows yet — fetch or import galaxies on the **Data** page.")
# A source whose classifications are the classes already (Galaxy Zoo) has no type strings to map:
# the NED-only switches, diagram and table would be empty.
type_strings = catalogue.has_type_strings(table)
if type_strings and not presenting:
    switches = st.columns(2)
    for column, name in ((switches[0], "dwarfs"), (switches[1], "uncertain")):
        common.bind(f"balance_exclude_{name}", f"exclude_{name}")
        column.toggle(on_change=common.adopt, args=(f"balance_exclude_{name}", f"exclude_{name}"),
                      **state.widget_args(f"balance_exclude_{name}"))
table = catalogue.with_exclusions(table, **state.exclusions())
excluded_names = set(table.loc[table["excluded"] != "", "name"])

st.markdown(f"**Scheme `{scheme}`** — {sources.scheme_description(scheme)} Classes: " + ", ".join(f"`{c}`" for c in classes))
definitions = sources.class_definitions(scheme)
if definitions:
    st.markdown("\n".join(f"- **{common.md(c)}**: {text}" for c, text in definitions.items()))
if presenting:
    policy = st.session_state.get("balance_policy") or state.field_default("balance_policy")
else:
    policy = st.segmented_control(options=state.field_choices("balance_policy"),
                                  default=state.field_default("balance_policy"), required=True,
                                  **state.widget_args("balance_policy"))
resolved, report = catalogue.resolved(source, scheme, policy)
counted = catalogue.source_counts(source, scheme, policy)
before = pd.Series(counted.per_class)
filters = state.preprocess_settings(source)
try:
    after = pd.Series(preview.selection(state.build_spec(source, scheme)).kept_per_class()).reindex(classes, fill_value=0)
except GalaxyMorphError as exc:
    common.stop_with(f"`python -m core build` would refuse the Preprocessing page's settings: {common.md(str(exc))}",
                     kind="error")

cols = st.columns(4)
common.count_metrics(counted, scheme, cols[:1], show=["labelled"])
cols[1].metric("Imbalance ratio (before)", catalogue.imbalance_text(before), help="Largest class ÷ smallest class.")
cols[2].metric("Kept after filters", f"{int(after.sum()):,}")
cols[3].metric("Imbalance ratio (after)", catalogue.imbalance_text(after))

if type_strings:
    flows = catalogue.type_flows(table, top=TOP_TYPES)
    common_types = flows[flows["source"].isin(catalogue.top_type_strings(table, top=TOP_TYPES))]
    st.plotly_chart(charts.type_bars(common_types, classes=[*classes, catalogue.UNCLASSIFIED],
                                     title=f"The {TOP_TYPES} most common raw NED type strings and the class each becomes"),
                    key="balance_types")
    others = len(table) - int(common_types["n"].sum())
    if others:
        st.caption(f"Not shown: {others:,} catalogue rows with {catalogue.type_strings(table) - TOP_TYPES:,} rarer type strings.")

    st.markdown("#### Type strings this scheme leaves unclassified")
    dropped = catalogue.unclassified_types(table)
    excluded = table.drop_duplicates("name")["excluded"].value_counts()
    st.caption(
        f"{int(dropped['objects'].sum()):,} objects, {len(dropped):,} distinct strings, most frequent first: what "
        "`python -m core build` leaves out as `unclassified`. Excluded by the switches above: "
        f"{int(excluded.get('dwarf', 0)):,} dwarfs, {int(excluded.get('uncertain', 0)):,} uncertain types."
    )
    st.dataframe(dropped, hide_index=True, height=220, key="balance_unclassified", width="stretch")

left, right = st.columns(2)
with left:
    counts = pd.DataFrame({"before filters": before, "after filters": after})
    fig = charts.grouped_bars(counts, title="Objects per class before and after the quality filters", y_title="objects")
    st.plotly_chart(fig, key="balance_counts")
    st.caption(
        "Filters from the Preprocessing preview page: quality ≥ {min_quality:g}, image side ≥ {min_size} px, "
        "crop {crop:g}, catalogue {catalog}, survey {survey}.".format(
            **{**filters, "catalog": common.md(filters["catalog"]), "survey": common.md(filters["survey"])}
        )
    )
with right:
    st.markdown("#### Label conflicts")
    st.caption(
        f"{report.conflicts} objects have conflicting classes: {report.resolved} resolved by '{policy}', "
        f"{report.dropped} dropped; {report.collapsed} duplicates agreed and were merged."
    )
    conflicts = resolved[resolved["conflict"]] if "conflict" in resolved else resolved.iloc[:0]
    dropped = catalogue.dropped_conflicts(source, scheme, report)
    shown = pd.concat([conflicts.assign(outcome="kept as " + conflicts["label"].astype(str)), dropped])
    if shown.empty:
        st.success("No label conflicts in this source.")
    else:
        # Each catalogue row of the object, as "type → class": "classes seen: Spiral" alone did not say what
        # it conflicted with (its other row was a type the scheme leaves unclassified).
        listed = catalogue.listed_as(table, shown["name"])
        shown = shown.assign(listed=shown["name"].map(listed).fillna(shown["labels_seen"]),
                             outcome=shown["outcome"].replace({"dropped": "left out (drop policy)"}))
        st.dataframe(shown[["name", "listed", "outcome"]], hide_index=True, height=300, key="balance_conflicts",
                     width="stretch", column_config={
                         "name": st.column_config.TextColumn("object", width="medium"),
                         "listed": st.column_config.TextColumn("listed as (type → class)", width="medium"),
                         "outcome": st.column_config.TextColumn("outcome", width="small")})
common.acknowledge(source)
