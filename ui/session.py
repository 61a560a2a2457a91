"""Session defaults, set by whatever runs first in a session: the router or a deep-linked page."""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from ui import state
from ui.services import sources as source_service

_ROUTER_RETRIED = "_router_retried"
NO_SOURCE = "No data source found under the data folder — run `python -m core sample` or import a folder."


def init_session() -> dict[str, str]:
    """Set the session's defaults (data source and class scheme); return ``{source: label}``.

    Whatever runs first in a session calls this: the router (``app.py``) and, through
    :func:`require_router`, a page opened without it. Generates the built-in sample on the
    first run, and ends the page with a message when there is no source at all.
    """
    source_service.ensure_builtin_sample()
    sources = source_service.source_options()
    if not sources:
        st.error(NO_SOURCE)
        st.stop()
    if st.session_state.get("source") not in sources:
        st.session_state["source"] = source_service.default_source(sources)
        state.adopt_source_scheme()
    if st.session_state.get("scheme") not in source_service.scheme_names():
        state.adopt_source_scheme()
    return sources


def require_router() -> None:
    """Make sure ``app.py`` has run in this session before a page draws anything.

    Streamlit takes a ``pages/`` folder beside the main script for an old-style multipage app
    until the first ``st.navigation`` call of the server process, so a deep link (``/classify``)
    as a fresh server's first request runs the page alone: no router, no sidebar, no session
    defaults. Tell Streamlit the app navigates itself (what ``st.navigation`` would have done)
    and rerun once, through the router, on the same page. Should a rerun not go through the
    router, the page still gets the defaults.
    """
    if "source" in st.session_state:
        return
    if not st.session_state.get(_ROUTER_RETRIED):
        st.session_state[_ROUTER_RETRIED] = True
        PagesManager.uses_pages_directory = False
        st.rerun()
    init_session()
