"""galaxy-morph dashboard: ``make run`` (``python -m ui.serve``, which warms imports; ``streamlit run app.py`` works too).

The router: page config, first-run sample, session defaults, the shared sidebar (data source and
class scheme), then the page the user picked. Pages are layout; ``core`` does the work.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui import common, present, session, state
from ui.services import sources as source_service

st.set_page_config(page_title="galaxy-morph", page_icon=":material/auto_awesome:", layout="wide")

# Pages read the canonical choices "source" and "scheme"; widgets (here and on pages) copy their
# value there in a callback, and take it back before they are drawn, so every selector agrees.
sources = session.init_session()
options = list(sources)
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
# Presentation mode draws nothing in the sidebar, so Streamlit shows none: the pages sit in a bar on top.
common.focus_style()
presenting = present.active()
page = st.navigation(pages, position="top" if presenting else "sidebar")
if presenting:
    present.hide_sidebar()
    st.button("Leave presentation mode", key="present_leave", on_click=present.leave, type="tertiary",
              icon=":material/close_fullscreen:")
else:
    with st.sidebar:
        common.bind("sidebar_source", "source")
        st.selectbox(
            options=options,
            # The folder name only: the sidebar is narrow, and a long label was cut off mid-word.
            format_func=lambda p: Path(p).name,
            on_change=common.adopt,
            args=("sidebar_source", "source"),
            kwargs={"then": state.adopt_source_scheme},
            **state.widget_args("sidebar_source"),
        )
        st.caption(common.md(sources[st.session_state["source"]].split(" — ", 1)[-1]))
        common.bind("sidebar_scheme", "scheme")
        st.selectbox(
            options=source_service.scheme_names(),
            on_change=common.adopt,
            args=("sidebar_scheme", "scheme"),
            **state.widget_args("sidebar_scheme"),
        )
        st.button("Presentation mode", key="sidebar_present", on_click=present.enter, icon=":material/slideshow:",
                  help="Results only, for a projector: no sidebar and no controls on any page. The address "
                       "(…?present=1) opens in it too.")
page.run()
