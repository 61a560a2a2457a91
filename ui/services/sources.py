"""The sources under the data folder, what kind each is (:mod:`core.acquire.sources`), and class schemes.

What a source's kind means (its label, default scheme, preprocessing defaults, credit) is read from
its :class:`~core.acquire.sources.SourceKind`, the one the builder reads: nothing here goes by a
folder's name.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core.acquire import catalogue, labels
from core.acquire.sample import ensure_sample
from core.acquire.sources import SourceKind, detect_kind, get_source_kind
from core.errors import GalaxyMorphError
from core.paths import data_layout
from core.prepare.selection import preprocess_defaults as builder_preprocess_defaults
from core.prepare.preprocessing import PreprocessConfig
from ui.services.keys import source_fingerprint

SAMPLE_SIZE = 2000
"""Galaxies of the built-in sample the dashboard generates on its first run."""


def ensure_builtin_sample() -> None:
    """Generate the built-in synthetic sample on first run (a spinner while it is made)."""
    out = data_layout().sample
    if (out / "catalog.csv").exists():
        return
    with st.spinner(f"First run: generating the built-in sample of {SAMPLE_SIZE} galaxies in {out} …"):
        ensure_sample(out, n=SAMPLE_SIZE, seed=0)


def source_options() -> dict[str, str]:
    """``{folder: label}`` of every source under the data folder, in the order the registered kinds
    list them (the built-in sample first)."""
    return {
        str(s.root): f"{s.root.name} — {get_source_kind(s.kind).label} ({s.n_rows:,} rows)"
        for s in catalogue.list_sources(data_layout().root)
    }


def default_source(options: dict[str, str]) -> str:
    """The first source listed: the built-in sample where there is one (:func:`source_options`)."""
    return next(iter(options))


@st.cache_resource(max_entries=8, show_spinner=False)
def source_at(source: str, fingerprint: tuple[float, ...]) -> catalogue.Source:
    """The loaded source (:func:`core.acquire.catalogue.load_source`) at ``fingerprint``
    (:func:`ui.services.keys.source_fingerprint`).

    A resource, not data: the builder only reads it, and a copy per slider move would double its time.
    """
    return catalogue.load_source(source)


def source_kind(source: str | Path) -> SourceKind:
    """The kind the builder gives ``source`` (markers, place and labels); from the markers and place
    alone when its catalogue cannot be read, and :data:`core.acquire.sources.FOLDER` when it is gone."""
    try:
        return get_source_kind(source_at(str(source), source_fingerprint(str(source))).kind)
    except (GalaxyMorphError, OSError):
        return detect_kind(Path(source))


def default_scheme(source: str) -> str:
    """The class scheme a build of ``source`` uses when none is given: its kind's (``gz1`` for Galaxy Zoo,
    whose labels are not Hubble types, else ``hubble3``), as ``python -m core build`` chooses."""
    return source_kind(source).default_scheme


def credit(source: str | Path | None) -> str:
    """The acknowledgement to show under ``source``'s images (``""``: none)."""
    return source_kind(source).credit if source is not None else ""


def preprocess_defaults(source: str) -> PreprocessConfig:
    """The preprocessing ``build`` gives ``source`` for every option left out
    (:func:`core.prepare.selection.preprocess_defaults`: its kind's, colour cutouts apart)."""
    return builder_preprocess_defaults(source_at(source, source_fingerprint(source)))


def is_colour_source(source: str) -> bool:
    """Whether ``build`` makes a colour dataset of this source by default (JPEG / PNG cutouts)."""
    return int(preprocess_defaults(source).channels) == 3


def scheme_names() -> list[str]:
    """The built-in class schemes."""
    return list(labels.BUILTIN_SCHEMES)


def scheme_classes(scheme: str) -> list[str]:
    """The classes of ``scheme`` in their fixed order."""
    return list(labels.get_scheme(scheme).classes)


def scheme_description(scheme: str) -> str:
    """One line about ``scheme``."""
    return labels.get_scheme(scheme).description


def class_definitions(scheme: str) -> dict[str, str]:
    """What each class of ``scheme`` means, where the scheme's labels are not Hubble types (``gz1``)."""
    return dict(labels.CLASS_DEFINITIONS.get(scheme, {}))


def ned_fetch_results() -> pd.DataFrame:
    """The NED image manifest (one row per fetched or failed image), empty before the first fetch."""
    path = data_layout().ned_manifest
    return pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else pd.DataFrame()


def has_ned_catalogue() -> bool:
    """Whether a NED scrape has written its catalogue (so its images can be fetched)."""
    return data_layout().ned_catalogue.exists()
