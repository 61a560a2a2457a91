"""Presentation mode: results only, for a demo. ``?present=1`` in the URL turns it on, so a shared
link opens in it; the router writes it back into the URL on every page, so it survives page switches."""

from __future__ import annotations

import streamlit as st

PARAM = "present"
_STATE = "present_mode"


def active() -> bool:
    """Whether this session is in presentation mode (the URL asks for it, or it was turned on)."""
    if st.query_params.get(PARAM) == "1":
        st.session_state[_STATE] = True
    elif st.session_state.get(_STATE):
        st.query_params[PARAM] = "1"
    return bool(st.session_state.get(_STATE))


def enter() -> None:
    """Turn presentation mode on (a button callback)."""
    st.session_state[_STATE] = True
    st.query_params[PARAM] = "1"


def leave() -> None:
    """Turn presentation mode off (a button callback)."""
    st.session_state[_STATE] = False
    st.query_params.pop(PARAM, None)
