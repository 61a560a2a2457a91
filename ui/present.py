"""Presentation mode: results only, for a demo on a projector. ``?present=1`` in the URL turns it on,
so a shared link opens in it; the router writes it back into the URL on every page, so it survives
page switches.

Pages ask :func:`presenting` and leave their controls out when it is true (they read the values the
controls last had from the session); the router draws the page switcher on top and hides the sidebar.
"""

from __future__ import annotations

import streamlit as st

PARAM = "present"
_STATE = "present_mode"

# Streamlit keeps the sidebar's column (an empty grey strip, ~300 px: a third of a 1024-px projector)
# when a run that draws nothing in it follows one that did, until the page is loaded afresh.
# Its main column also starts 6rem down, under the bar of pages: an empty band of ~130 px, a sixth of
# a 768-px projector, above every title. 4rem clears the bar.
_HIDE_SIDEBAR = """<style>
section[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"],
[data-testid="stExpandSidebarButton"], [data-testid="stSidebarCollapseButton"] { display: none !important; }
[data-testid="stMainBlockContainer"] { padding-top: 4rem !important; }
</style>"""


def active() -> bool:
    """Whether this session is in presentation mode (the URL asks for it, or it was turned on).

    The router calls it once per run; pages call :func:`presenting`."""
    if st.query_params.get(PARAM) == "1":
        st.session_state[_STATE] = True
    elif st.session_state.get(_STATE):
        st.query_params[PARAM] = "1"
    return bool(st.session_state.get(_STATE))


def presenting() -> bool:
    """Whether the page being drawn is in presentation mode: draw results, leave controls out."""
    return bool(st.session_state.get(_STATE)) or st.query_params.get(PARAM) == "1"


def hide_sidebar() -> None:
    """Hide the sidebar's column entirely (the router calls it in presentation mode)."""
    st.html(_HIDE_SIDEBAR)


def enter() -> None:
    """Turn presentation mode on (a button callback)."""
    st.session_state[_STATE] = True
    st.query_params[PARAM] = "1"


def leave() -> None:
    """Turn presentation mode off (a button callback)."""
    st.session_state[_STATE] = False
    st.query_params.pop(PARAM, None)
