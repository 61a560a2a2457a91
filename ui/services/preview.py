"""Quality metrics and the builder's own selection, for the Preprocessing preview and the statistics.

:func:`selection` is :func:`core.prepare.selection.select` of the spec the widgets make
(:func:`ui.state.build_spec`), cached per spec and source fingerprint: what the preview counts is
what ``python -m core build`` keeps.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.prepare import quality
from core.prepare.selection import LabelStage, Selection, image_surveys, label_stage, label_stage_key, select
from core.prepare.selection import split_sizes as selection_split_sizes
from core.prepare.quality import compute_metrics
from core.progress import Progress
from core.spec import BuildSpec
from ui.services.catalogue import UNCLASSIFIED, labelled_at
from ui.services.keys import source_fingerprint
from ui.services.sources import source_at


@st.cache_data(show_spinner="Measuring image quality (once per source) …", max_entries=8)
def _source_metrics(source: str, fingerprint: tuple[float, ...]) -> pd.DataFrame:
    return compute_metrics(source)


@st.cache_data(max_entries=8)
def _metrics(source: str, scheme: str, fingerprint: tuple[float, ...]) -> pd.DataFrame:
    table = _source_metrics(source, fingerprint)
    catalogue_rows = labelled_at(source, scheme, fingerprint)
    # Several catalogue rows can share an image (aliases); the first classified one names it.
    catalogue_rows = catalogue_rows.sort_values("label", key=lambda s: s == UNCLASSIFIED, kind="stable")
    labelled_rows = catalogue_rows.drop_duplicates("path")[["path", "name", "label", "prefix", "survey", "band"]]
    table = image_surveys(table.merge(labelled_rows, on="path", how="left"), table)
    table["label"] = table["label"].fillna(UNCLASSIFIED)
    table["quality"] = quality.quality_score(table).to_numpy()
    return table


def metrics(source: str, scheme: str) -> pd.DataFrame:
    """One row per image of the source: quality metrics (sizes included), ``quality``, ``label``, ``prefix``."""
    fingerprint = source_fingerprint(source)
    measured = st.session_state.setdefault("metrics_measured", set())
    if (source, fingerprint) not in measured:
        _measure_with_progress_bar(source)
        measured.add((source, fingerprint))
    return _metrics(source, scheme, fingerprint)


class _BarStream:
    """A text stream for :class:`core.progress.Progress` that draws on a Streamlit progress bar."""

    def __init__(self, slot: Any) -> None:
        self.slot = slot
        self.progress: Progress | None = None

    def write(self, text: str) -> int:
        if self.progress is not None and self.progress.total:
            self.slot.progress(min(1.0, self.progress.done / self.progress.total), text=text.strip())
        return len(text)

    def flush(self) -> None:
        pass


def _measure_with_progress_bar(source: str) -> None:
    """Measure the images the on-disk metrics cache lacks, with a bar (none shows when it has them all).

    Outside the cached loader on purpose: an element drawn inside a cached function would be
    replayed on every cache hit.
    """
    slot = st.empty()
    stream = _BarStream(slot)
    stream.progress = Progress(None, desc="Measuring image quality (once per source)", stream=stream)
    compute_metrics(source, progress=stream.progress)
    slot.empty()


@st.cache_resource(max_entries=16, show_spinner=False)
def _label_stage(key: tuple[Any, ...], _spec: BuildSpec, fingerprint: tuple[float, ...]) -> LabelStage:
    # Keyed by ``key``, the spec fields it reads (label_stage_key), and the source's fingerprint; the
    # leading underscore keeps the whole spec, whose sliders do not matter here, out of the key.
    # A resource, as source_at: select() only reads it.
    return label_stage(_spec, source_at(_spec.source, fingerprint))


@st.cache_data(max_entries=64, show_spinner=False)
def _selection(spec: BuildSpec, fingerprint: tuple[float, ...]) -> Selection:
    labels = _label_stage(label_stage_key(spec), spec, fingerprint)
    return select(spec, _source_metrics(spec.source, fingerprint), source=source_at(spec.source, fingerprint),
                  labels=labels)


def selection(spec: BuildSpec) -> Selection:
    """What ``python -m core build`` keeps with ``spec``, per object (:func:`core.prepare.selection.select`, the
    build's own function); raises its :class:`~core.errors.GalaxyMorphError` for a spec it would refuse."""
    return _selection(spec, source_fingerprint(spec.source))


@st.cache_data(max_entries=64, show_spinner=False)
def _split_sizes(spec: BuildSpec, fingerprint: tuple[float, ...]) -> dict[str, int]:
    return selection_split_sizes(_selection(spec, fingerprint), spec)


def split_sizes(spec: BuildSpec) -> dict[str, int]:
    """Training, validation and test galaxies of a build of ``spec`` (:func:`core.prepare.selection.split_sizes`);
    raises the build's own :class:`~core.errors.GalaxyMorphError` when it would keep too few."""
    return _split_sizes(spec, source_fingerprint(spec.source))


def examples(kept: pd.DataFrame, classes: list[str], *, per_class: int, seed: int) -> pd.DataFrame:
    """A seeded random choice of ``per_class`` kept images per class."""
    parts = []
    for i, cls in enumerate(classes):
        rows = kept[kept["label"] == cls]
        if len(rows):
            parts.append(rows.sample(n=min(per_class, len(rows)), random_state=seed * 1009 + i))
    return pd.concat(parts) if parts else kept.iloc[:0]
