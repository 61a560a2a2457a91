"""A source's catalogue as the pages show it: labelled rows, counts, label conflicts, raw type strings.

Every loader is cached per source, scheme and the source's fingerprint (:mod:`ui.services.keys`);
the ``*_at`` functions are the cached ones, for other loaders to build on.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core.acquire import catalogue, counts, labels
from core.errors import GalaxyMorphError
from core.images import read_image
from core.prepare.selection import image_surveys
from ui.services.keys import source_fingerprint
from ui.services.sources import default_scheme, scheme_classes

UNCLASSIFIED = labels.UNCLASSIFIED


@st.cache_data(show_spinner="Reading the catalogue …", max_entries=16)
def labelled_at(source: str, scheme: str, fingerprint: tuple[float, ...]) -> pd.DataFrame:
    """:func:`labelled` at ``fingerprint``."""
    table = catalogue.load_source(source).table.copy()
    table["label"] = labels.label_table(table, labels.get_scheme(scheme)).to_numpy()
    table["has_image"] = table["path"].notna() & (table["path"].astype(str) != "")
    if "image_reason" in table:  # NED sources: why the fetch gave no image
        table["reason"] = table["image_reason"].replace("", np.nan)
    table["prefix"] = [catalogue.catalogue_prefix(n) for n in table["name"]]
    for column in ("redshift", "survey", "band", "reason", "file"):
        if column not in table:
            table[column] = np.nan
    return table


def labelled(source: str, scheme: str) -> pd.DataFrame:
    """The source's catalogue, one row per catalogue row, with ``label``, ``has_image``, ``prefix``."""
    return labelled_at(source, scheme, source_fingerprint(source))


@st.cache_data(max_entries=16, show_spinner=False)
def _counts(source: str, scheme: str, policy: str, fingerprint: tuple[float, ...]) -> counts.SourceCounts:
    return counts.count_source(labelled_at(source, scheme, fingerprint), classes=scheme_classes(scheme), policy=policy)


def source_counts(source: str, scheme: str, policy: str = "drop") -> counts.SourceCounts:
    """Rows, objects, labelled objects and objects per class, as every page names them (:mod:`core.acquire.counts`)."""
    return _counts(source, scheme, policy, source_fingerprint(source))


@st.cache_data(max_entries=16)
def _resolved(source: str, scheme: str, policy: str, fingerprint: tuple[float, ...]) -> tuple[pd.DataFrame, dict[str, Any]]:
    table, report = labels.resolve_conflicts(labelled_at(source, scheme, fingerprint), policy=policy)
    return table, {**report.to_dict(), "dropped_names": list(report.dropped_names)}


class _Report:
    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__.update(fields)


def resolved(source: str, scheme: str, policy: str) -> tuple[pd.DataFrame, Any]:
    """One row per object with conflicts settled by ``policy``, and the conflict report."""
    table, report = _resolved(source, scheme, policy, source_fingerprint(source))
    return table, _Report(report)


def dropped_conflicts(source: str, scheme: str, report: Any) -> pd.DataFrame:
    """The objects a ``drop`` policy left out, with the classes they were listed under."""
    names = list(getattr(report, "dropped_names", []))
    if not names:
        return pd.DataFrame(columns=["name", "labels_seen", "outcome"])
    table = labelled(source, scheme)
    rows = table[table["name"].isin(names) & (table["label"] != UNCLASSIFIED)]
    seen = rows.groupby("name")["label"].agg(lambda s: "|".join(dict.fromkeys(s)))
    return pd.DataFrame({"name": seen.index, "labels_seen": seen.to_numpy(), "outcome": "dropped"})


def listed_as(table: pd.DataFrame, names: pd.Series) -> pd.Series:
    """``{name: "E1 → E; SAB(rs)bc → Spiral"}``: each distinct raw type of the named objects with its class."""
    rows = table[table["name"].isin(set(names))]
    pairs = rows["classification"].fillna("(none)").astype(str) + " → " + rows["label"].astype(str)
    return pairs.groupby(rows["name"]).agg(lambda s: "; ".join(dict.fromkeys(s)))


def type_flows(table: pd.DataFrame, *, top: int) -> pd.DataFrame:
    """``source, target, n``: objects per (raw type string, class), the ``top`` raw strings kept apart."""
    raw = _raw_types(table)
    frequent = raw.value_counts().head(top).index
    grouped = raw.where(raw.isin(frequent), other=f"other types ({raw.nunique() - len(frequent)})")
    flows = pd.DataFrame({"source": grouped, "target": table["label"]}).value_counts().rename("n").reset_index()
    return flows.sort_values(["target", "n"], ascending=[True, False])


def with_exclusions(table: pd.DataFrame, *, dwarfs: bool, uncertain: bool) -> pd.DataFrame:
    """``table`` with ``excluded`` (``dwarf``/``uncertain``/``""``), the excluded rows relabelled unclassified."""
    why = labels.exclusion_reasons(table["classification"].tolist(), dwarfs=dwarfs, uncertain=uncertain)
    out = table.assign(excluded=np.where(table["label"] != UNCLASSIFIED, why, ""))
    out.loc[out["excluded"] != "", "label"] = UNCLASSIFIED
    return out


def unclassified_types(table: pd.DataFrame) -> pd.DataFrame:
    """``type, objects``: the raw strings the scheme leaves unclassified, most frequent first."""
    return labels.unclassified_types(table[table.get("excluded", "") == ""]).reset_index()


def _raw_types(table: pd.DataFrame) -> pd.Series:
    return table["classification"].fillna("(none)").astype(str).str.strip().replace("", "(none)")


def top_type_strings(table: pd.DataFrame, *, top: int) -> list[str]:
    """The ``top`` most common raw type strings (``type_flows`` keeps them apart)."""
    return list(_raw_types(table).value_counts().head(top).index)


def type_strings(table: pd.DataFrame) -> int:
    """How many distinct raw type strings the catalogue has."""
    return int(_raw_types(table).nunique())


def has_type_strings(table: pd.DataFrame) -> bool:
    """Whether the catalogue's classifications are raw type strings the scheme maps (NED: ``SAB(rs)bc``),
    not already the classes (Galaxy Zoo: ``Spiral``): only then is a type-to-class diagram worth showing."""
    raw = table["classification"].astype(str).str.strip()
    return bool((raw != table["label"].astype(str)).any())


def imbalance_text(counts: pd.Series) -> str:
    """``'3.2 : 1'`` (largest / smallest class), ``'∞'`` when a class is empty."""
    counts = counts.astype(float)
    if counts.empty or counts.max() == 0:
        return "—"
    if counts.min() == 0:
        return "∞ (empty class)"
    return f"{counts.max() / counts.min():.1f} : 1"


def coverage(
    table: pd.DataFrame, images: pd.DataFrame | None = None, *, galaxies: dict[str, str] | None = None
) -> tuple[pd.DataFrame, pd.Series, int] | None:
    """(objects per survey × band, objects per number of images, objects with an image), or None if
    not recorded.

    Objects are galaxies (``galaxies``: :func:`galaxy_map`), not names: two names of one galaxy
    with an image each are one object with two images. Survey and band are the catalogue's (NED
    manifest, import columns), else the image headers' (``images``).
    """
    table = image_surveys(table, images)
    if (table["survey"] == "").all() and (table["band"] == "").all():
        return None
    with_image = table[table["has_image"]]
    galaxies = galaxies or {}
    with_image = with_image.assign(galaxy=with_image["name"].astype(str).map(lambda n: galaxies.get(n, n)))
    matrix = with_image.pivot_table(index=with_image["survey"].replace("", "?"), columns=with_image["band"].replace("", "?"),
                                    values="galaxy", aggfunc=pd.Series.nunique, fill_value=0)
    per_object = with_image.groupby("galaxy")["path"].nunique().value_counts().sort_index()
    per_object.index = [f"{n} image{'s' if n > 1 else ''}" for n in per_object.index]
    return matrix, per_object, int(with_image["galaxy"].nunique())


@st.cache_data(max_entries=16, show_spinner=False)
def _labelled_objects(source: str, scheme: str, policy: str, fingerprint: tuple[float, ...]) -> pd.DataFrame:
    return counts.labelled_objects(labelled_at(source, scheme, fingerprint), policy=policy)


def labelled_objects(source: str, scheme: str, policy: str = "drop") -> pd.DataFrame:
    """One row per labelled object, the objects :func:`source_counts` counts per class (:func:`core.acquire.counts.labelled_objects`)."""
    return _labelled_objects(source, scheme, policy, source_fingerprint(source))


@st.cache_data(max_entries=8, show_spinner=False)
def _galaxy_names(source: str, fingerprint: tuple[float, ...]) -> dict[str, str]:
    return counts.galaxy_names(catalogue.load_source(source).table)


def galaxy_map(source: str) -> dict[str, str]:
    """``{name: first name of its galaxy}`` for names that share a galaxy (:func:`core.acquire.counts.galaxy_names`)."""
    return _galaxy_names(source, source_fingerprint(source))


def left_out_objects(source: str, selection_table: pd.DataFrame) -> pd.DataFrame:
    """The galaxies (objects) a selection leaves out, one row each (:func:`core.acquire.counts.left_out_objects`)."""
    return counts.left_out_objects(selection_table, galaxy_map(source))


@st.cache_data(max_entries=4, show_spinner="Measuring colours (once per source) …")
def _colours(source: str, fingerprint: tuple[float, ...]) -> pd.DataFrame:
    rows = []
    for name, path in labelled_at(source, default_scheme(source), fingerprint)[["name", "path"]].dropna().drop_duplicates("path").itertuples(index=False):
        try:
            image = read_image(str(path), rgb=True)
        except GalaxyMorphError:
            continue
        if image.data.ndim != 3 or image.data.shape[2] != 3:
            continue
        side = min(image.data.shape[:2])
        half = max(2, side // 10)  # the central fifth: where the galaxy is in a cutout, not the sky
        cy, cx = image.data.shape[0] // 2, image.data.shape[1] // 2
        centre = image.data[cy - half:cy + half, cx - half:cx + half].reshape(-1, 3).astype(np.float64)
        red, blue = centre[:, 0].mean(), centre[:, 2].mean()
        if red > 0 and blue > 0:
            rows.append({"name": name, "red_blue": float(np.log10(red / blue))})
    return pd.DataFrame(rows, columns=["name", "red_blue"])


def colours(source: str) -> pd.DataFrame:
    """``name, red_blue``: log10 of the red over the blue channel in the central fifth of each colour
    image (for SDSS gri cutouts, i over g: redder galaxies, larger values); empty for grey sources."""
    return _colours(source, source_fingerprint(source))


def failures(table: pd.DataFrame) -> pd.DataFrame:
    """Rows without a readable image, with the reason the fetch or read gave."""
    missing = table[~table["has_image"]]
    reason = missing["reason"].fillna("no image file listed")
    return pd.DataFrame({"name": missing["name"], "classification": missing["classification"], "reason": reason})


def search(table: pd.DataFrame, query: str) -> pd.DataFrame:
    """Rows whose name, type or class contains ``query`` (case-insensitive, plain text)."""
    if not query.strip():
        return table
    pattern = re.escape(query.strip())
    hay = table["name"].astype(str) + " " + table["classification"].astype(str) + " " + table["label"].astype(str)
    return table[hay.str.contains(pattern, case=False, regex=True)]
