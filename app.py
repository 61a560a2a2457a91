"""galaxy-morph dashboard: ``streamlit run app.py`` (or ``make run``).

The router: page config, first-run sample, session defaults, the shared sidebar (data source and
class scheme), then the page the user picked. Pages are layout; ``core`` does the work.
"""

from __future__ import annotations

import streamlit as st

from ui import data as ui_data

st.set_page_config(page_title="galaxy-morph", page_icon=":material/auto_awesome:", layout="wide")

ui_data.ensure_builtin_sample()

sources = ui_data.source_options()
if not sources:
    st.error("No data source found under the data folder — run `python -m core sample` or import a folder.")
    st.stop()
options = list(sources)
# The canonical choices live under plain keys ("source", "scheme") that pages read; the widgets
# have their own keys, so a choice survives page switches even when a widget's state is reset.
if st.session_state.get("source") not in sources:
    st.session_state["source"] = ui_data.default_source(sources)
schemes = ui_data.scheme_names()
with st.sidebar:
    source = st.selectbox(
        "Data source",
        options,
        index=options.index(st.session_state["source"]),
        format_func=lambda p: sources[p],
        key="sidebar_source",
        help="Every page reads this source. Add sources on the Data page.",
    )
    if st.session_state.get("scheme_source") != source:
        st.session_state["scheme_source"] = source
        st.session_state["sidebar_scheme"] = ui_data.default_scheme(source)
    elif st.session_state.get("sidebar_scheme") not in schemes:
        st.session_state["sidebar_scheme"] = st.session_state.get("scheme", ui_data.default_scheme(source))
    scheme = st.selectbox(
        "Class scheme",
        schemes,
        key="sidebar_scheme",
        help="How raw morphological types are grouped into the classes the models learn.",
    )
st.session_state["source"], st.session_state["scheme"] = source, scheme

pages = {
    "Explore": [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/data.py", title="Data", icon=":material/cloud_download:"),
        st.Page("pages/statistics.py", title="Dataset statistics", icon=":material/query_stats:"),
        st.Page("pages/balance.py", title="Class balance", icon=":material/balance:"),
        st.Page("pages/preprocessing.py", title="Preprocessing preview", icon=":material/tune:"),
    ],
    "Models": [
        st.Page("pages/training.py", title="Training", icon=":material/model_training:"),
        st.Page("pages/comparison.py", title="Model comparison", icon=":material/leaderboard:"),
        st.Page("pages/classify.py", title="Classify", icon=":material/image_search:"),
    ],
}
st.navigation(pages).run()
