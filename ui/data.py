"""Cached loaders between the pages and ``core``: every table a page shows comes through here.

Tables are cached with ``st.cache_data`` keyed by the source folder and a fingerprint of its
catalogue (so a fetch or import that changes the files shows up without a restart); Keras models
with ``st.cache_resource``. Filtering by the sliders works on the cached metrics table only.
"""

from __future__ import annotations

import dataclasses
import io
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core.prepare import builder, dataset, preprocessing, provenance, quality

from core.acquire import catalogue, counts, labels

from core import images, jobs

from core.learn import report, runs
from core.prepare.builder import LabelStage, Selection, image_surveys, label_stage, label_stage_key, preprocess_defaults, select
from core.config import get_settings
from core.learn.device import device_name
from core.errors import GalaxyMorphError
from core.images import UPLOAD_LIMIT_BYTES, read_image
from core.io import check_folder_name
from core.progress import Progress
from core.prepare.quality import compute_metrics
from core.acquire.sample import ensure_sample
from core.spec import BuildSpec, QualityThresholds
from ui.common import KIND_NAMES, model_label

UNCLASSIFIED = labels.UNCLASSIFIED
STRETCHES = ("asinh", "log", "sqrt", "linear")
SAMPLE_SIZE = 2000


# --------------------------------------------------------------------------- sources and schemes


def ensure_builtin_sample() -> None:
    """Generate the built-in synthetic sample on first run (a spinner while it is made)."""
    out = Path(get_settings().data_dir) / "sample"
    if (out / "catalog.csv").exists():
        return
    with st.spinner(f"First run: generating the built-in sample of {SAMPLE_SIZE} galaxies in {out} …"):
        ensure_sample(out, n=SAMPLE_SIZE, seed=0)


def source_options() -> dict[str, str]:
    """``{folder: label}`` of every source under the data folder, built-in ones first."""
    return {
        str(s.root): f"{s.root.name} — {KIND_NAMES.get(s.kind, s.kind)} ({s.n_rows:,} rows)"
        for s in catalogue.list_sources(get_settings().data_dir)
    }


def default_source(options: dict[str, str]) -> str:
    """The synthetic sample if present, else the first source."""
    for path in options:
        if Path(path).name == "sample":
            return path
    return next(iter(options))


def scheme_names() -> list[str]:
    """The built-in class schemes."""
    return list(labels.BUILTIN_SCHEMES)


def default_scheme(source: str) -> str:
    """``gz1`` for the Galaxy Zoo source (its labels are not Hubble types), else ``hubble3``,
    the same default as ``python -m core build``."""
    return "gz1" if Path(source).name == "gz1" else "hubble3"


def scheme_classes(scheme: str) -> list[str]:
    """The classes of ``scheme`` in their fixed order."""
    return list(labels.get_scheme(scheme).classes)


def scheme_description(scheme: str) -> str:
    """One line about ``scheme``."""
    return labels.get_scheme(scheme).description


def _fingerprint(source: str) -> tuple[float, ...]:
    """Modification time and size of the files that define a source, so caches follow its changes.

    Cached loaders take it as an argument without a leading underscore: Streamlit does not hash
    underscore arguments, and a fingerprint that is not hashed invalidates nothing.
    """
    folder = Path(source)
    stamps: list[float] = []
    for name in ("catalog.csv", "images/manifest.csv"):
        stat = (folder / name).stat() if (folder / name).exists() else None
        stamps += [stat.st_mtime_ns, stat.st_size] if stat else [0, 0]
    return tuple(stamps)


# --------------------------------------------------------------------------- catalogue tables


@st.cache_data(show_spinner="Reading the catalogue …", max_entries=16)
def _labelled(source: str, scheme: str, fingerprint: tuple[float, ...]) -> pd.DataFrame:
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
    return _labelled(source, scheme, _fingerprint(source))


@st.cache_data(max_entries=16, show_spinner=False)
def _counts(source: str, scheme: str, policy: str, fingerprint: tuple[float, ...]) -> counts.SourceCounts:
    return counts.count_source(_labelled(source, scheme, fingerprint), classes=scheme_classes(scheme), policy=policy)


def source_counts(source: str, scheme: str, policy: str = "drop") -> counts.SourceCounts:
    """Rows, objects, labelled objects and objects per class, as every page names them (:mod:`core.acquire.counts`)."""
    return _counts(source, scheme, policy, _fingerprint(source))


@st.cache_data(max_entries=16)
def _resolved(source: str, scheme: str, policy: str, fingerprint: tuple[float, ...]) -> tuple[pd.DataFrame, dict[str, Any]]:
    table, report = labels.resolve_conflicts(_labelled(source, scheme, fingerprint), policy=policy)
    return table, {**report.to_dict(), "dropped_names": list(report.dropped_names)}


class _Report:
    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__.update(fields)


def resolved(source: str, scheme: str, policy: str) -> tuple[pd.DataFrame, Any]:
    """One row per object with conflicts settled by ``policy``, and the conflict report."""
    table, report = _resolved(source, scheme, policy, _fingerprint(source))
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


def exclusions() -> dict[str, bool]:
    """The Class balance page's exclusion switches (``python -m core build --exclude-...``)."""
    return {name: bool(st.session_state.get(f"exclude_{name}", False)) for name in ("dwarfs", "uncertain")}


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


def imbalance_text(counts: pd.Series) -> str:
    """``'3.2 : 1'`` (largest / smallest class), ``'∞'`` when a class is empty."""
    counts = counts.astype(float)
    if counts.empty or counts.max() == 0:
        return "—"
    if counts.min() == 0:
        return "∞ (empty class)"
    return f"{counts.max() / counts.min():.1f} : 1"


def image_table(source: str) -> pd.DataFrame:
    """Per-image metrics (sizes included) joined to the catalogue labels; empty if no images."""
    return metrics(source, st.session_state.get("scheme", default_scheme(source)))


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


def is_colour_source(source: str) -> bool:
    """Whether ``build`` makes a colour dataset of this source by default (JPEG / PNG cutouts)."""
    return int(_preprocess_defaults(source).channels) == 3


def class_definitions(scheme: str) -> dict[str, str]:
    """What each class of ``scheme`` means, where the scheme's labels are not Hubble types (``gz1``)."""
    return dict(labels.CLASS_DEFINITIONS.get(scheme, {}))


@st.cache_data(max_entries=16, show_spinner=False)
def _labelled_objects(source: str, scheme: str, policy: str, fingerprint: tuple[float, ...]) -> pd.DataFrame:
    return counts.labelled_objects(_labelled(source, scheme, fingerprint), policy=policy)


def labelled_objects(source: str, scheme: str, policy: str = "drop") -> pd.DataFrame:
    """One row per labelled object, the objects :func:`source_counts` counts per class (:func:`core.acquire.counts.labelled_objects`)."""
    return _labelled_objects(source, scheme, policy, _fingerprint(source))


def galaxy_map(source: str) -> dict[str, str]:
    """``{name: first name of its galaxy}`` for names that share a galaxy (:func:`core.acquire.counts.galaxy_names`)."""
    return _galaxy_names(source, _fingerprint(source))


def has_type_strings(table: pd.DataFrame) -> bool:
    """Whether the catalogue's classifications are raw type strings the scheme maps (NED: ``SAB(rs)bc``),
    not already the classes (Galaxy Zoo: ``Spiral``): only then is a type-to-class diagram worth showing."""
    raw = table["classification"].astype(str).str.strip()
    return bool((raw != table["label"].astype(str)).any())


@st.cache_data(max_entries=4, show_spinner="Measuring colours (once per source) …")
def _colours(source: str, fingerprint: tuple[float, ...]) -> pd.DataFrame:
    rows = []
    for name, path in _labelled(source, default_scheme(source), fingerprint)[["name", "path"]].dropna().drop_duplicates("path").itertuples(index=False):
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
    return _colours(source, _fingerprint(source))


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


# --------------------------------------------------------------------------- images and metrics


@st.cache_data(show_spinner="Measuring image quality (once per source) …", max_entries=8)
def _source_metrics(source: str, fingerprint: tuple[float, ...]) -> pd.DataFrame:
    return compute_metrics(source)


@st.cache_data(max_entries=8)
def _metrics(source: str, scheme: str, fingerprint: tuple[float, ...]) -> pd.DataFrame:
    table = _source_metrics(source, fingerprint)
    catalogue_rows = _labelled(source, scheme, fingerprint)
    # Several catalogue rows can share an image (aliases); the first classified one names it.
    catalogue_rows = catalogue_rows.sort_values("label", key=lambda s: s == UNCLASSIFIED, kind="stable")
    labelled_rows = catalogue_rows.drop_duplicates("path")[["path", "name", "label", "prefix", "survey", "band"]]
    table = image_surveys(table.merge(labelled_rows, on="path", how="left"), table)
    table["label"] = table["label"].fillna(UNCLASSIFIED)
    table["quality"] = quality.quality_score(table).to_numpy()
    return table


def metrics(source: str, scheme: str) -> pd.DataFrame:
    """One row per image of the source: quality metrics, ``quality``, ``label``, ``prefix``."""
    fingerprint = _fingerprint(source)
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


#: The Preprocessing page's colour choice, by number of channels (and back).
COLOUR_CHOICES: dict[int, str] = {1: "grey", 3: "colour"}
CHANNELS: dict[str, int] = {label: channels for channels, label in COLOUR_CHOICES.items()}


def default_preprocess(source: str) -> dict[str, Any]:
    """Slider defaults: those of ``python -m core build`` for this source (its kind's preprocessing,
    :func:`core.prepare.builder.preprocess_defaults`, and :class:`core.spec.BuildSpec`'s choices)."""
    spec = BuildSpec(source=source, preprocess=_preprocess_defaults(source))
    return {
        "crop": float(spec.preprocess.crop),
        "size": int(get_settings().image_size),
        "stretch": str(spec.preprocess.stretch),
        "colour": COLOUR_CHOICES[int(spec.preprocess.channels)],
        "min_quality": float(spec.thresholds.min_quality),
        "min_size": int(spec.thresholds.min_size),
        "catalog": spec.catalog,
        "survey": spec.survey,
    }


def preprocess_settings(source: str) -> dict[str, Any]:
    """The Preprocessing page's settings (``pp_*`` session keys), reset to ``source``'s build defaults
    when the source changed since they were set: a Galaxy Zoo source starts in colour at crop 0.3
    even after the sample (grey, 0.5) was previewed. Call it before the page draws its widgets."""
    defaults = default_preprocess(source)
    changed = st.session_state.get("pp_defaults_for") != source
    for name, value in defaults.items():
        # Streamlit forgets a widget's value on a run that does not draw it (another page): fill it in again.
        if changed or f"pp_{name}" not in st.session_state:
            st.session_state[f"pp_{name}"] = value
    st.session_state["pp_defaults_for"] = source
    return {name: st.session_state[f"pp_{name}"] for name in defaults}


def build_spec(source: str, scheme: str) -> BuildSpec:
    """The :class:`~core.spec.BuildSpec` of the dashboard's widgets: the Preprocessing page's sliders,
    the Class balance page's conflict policy and exclusion switches (their defaults where unset)."""
    settings = preprocess_settings(source)
    return BuildSpec(
        source=source, scheme=scheme,
        preprocess=dataclasses.replace(_preprocess_defaults(source), crop=float(settings["crop"]),
                                       size=int(settings["size"]), stretch=settings["stretch"],
                                       channels=CHANNELS.get(settings["colour"], 1)),
        thresholds=QualityThresholds(min_quality=float(settings["min_quality"]), min_size=int(settings["min_size"])),
        catalog=settings["catalog"], survey=settings["survey"],
        conflicts=st.session_state.get("balance_policy") or "drop",
        exclude_dwarfs=exclusions()["dwarfs"], exclude_uncertain=exclusions()["uncertain"],
    )


@st.cache_resource(max_entries=8, show_spinner=False)
def _source(source: str, fingerprint: tuple[float, ...]) -> catalogue.Source:
    # A resource, not data: select() only reads it, and a copy per slider move would double its time.
    return catalogue.load_source(source)


def _preprocess_defaults(source: str) -> preprocessing.PreprocessConfig:
    """The preprocessing ``build`` gives this source for every option left out (colour cutouts differ)."""
    return preprocess_defaults(_source(source, _fingerprint(source)))


@st.cache_resource(max_entries=16, show_spinner=False)
def _label_stage(key: tuple[Any, ...], _spec: BuildSpec, fingerprint: tuple[float, ...]) -> LabelStage:
    # Keyed by ``key``, the spec fields it reads (label_stage_key), and the source's fingerprint; the
    # leading underscore keeps the whole spec, whose sliders do not matter here, out of the key.
    # A resource, as _source: select() only reads it.
    return label_stage(_spec, _source(_spec.source, fingerprint))


@st.cache_data(max_entries=64, show_spinner=False)
def _selection(spec: BuildSpec, fingerprint: tuple[float, ...]) -> Selection:
    labels = _label_stage(label_stage_key(spec), spec, fingerprint)
    return select(spec, _source_metrics(spec.source, fingerprint), source=_source(spec.source, fingerprint),
                  labels=labels)


@st.cache_data(max_entries=64, show_spinner=False)
def _split_sizes(spec: BuildSpec, fingerprint: tuple[float, ...]) -> dict[str, int]:
    return builder.split_sizes(_selection(spec, fingerprint), spec)


def split_sizes(spec: BuildSpec) -> dict[str, int]:
    """Training, validation and test galaxies of a build of ``spec`` (:func:`core.prepare.builder.split_sizes`);
    raises the build's own :class:`~core.errors.GalaxyMorphError` when it would keep too few."""
    return _split_sizes(spec, _fingerprint(spec.source))


@st.cache_data(max_entries=8, show_spinner=False)
def _galaxy_names(source: str, fingerprint: tuple[float, ...]) -> dict[str, str]:
    return counts.galaxy_names(catalogue.load_source(source).table)


def left_out_objects(source: str, selection_table: pd.DataFrame) -> pd.DataFrame:
    """The galaxies (objects) a selection leaves out, one row each (:func:`core.acquire.counts.left_out_objects`)."""
    return counts.left_out_objects(selection_table, _galaxy_names(source, _fingerprint(source)))


def selection(spec: BuildSpec) -> Selection:
    """What ``python -m core build`` keeps with ``spec``, per object (:func:`core.prepare.builder.select`, the
    build's own function); raises its :class:`~core.errors.GalaxyMorphError` for a spec it would refuse."""
    return _selection(spec, _fingerprint(spec.source))


def examples(kept: pd.DataFrame, classes: list[str], *, per_class: int, seed: int) -> pd.DataFrame:
    """A seeded random choice of ``per_class`` kept images per class."""
    parts = []
    for i, cls in enumerate(classes):
        rows = kept[kept["label"] == cls]
        if len(rows):
            parts.append(rows.sample(n=min(per_class, len(rows)), random_state=seed * 1009 + i))
    return pd.concat(parts) if parts else kept.iloc[:0]


@st.cache_data(max_entries=512, show_spinner=False)
def display_image(path: str) -> np.ndarray:
    """An image scaled to [0, 1] for display (north up), in colour where the file has colour."""
    image = read_image(path, rgb=True)
    return for_display(preprocessing.stretch_image(image.data, display_stretch(image)))


THUMBNAIL_SIDE = 256
"""Largest side of a raw image in the preview grid (its pictures are shown 150 px wide)."""


@st.cache_data(max_entries=512, show_spinner=False)
def before_after(
    path: str, config: preprocessing.PreprocessConfig, *, ra: float | None = None, dec: float | None = None
) -> tuple[bytes, bytes]:
    """PNGs of the raw image (display stretch, at most :data:`THUMBNAIL_SIDE` px) and the preprocessed one.

    ``config`` is the build's (:attr:`core.prepare.builder.Selection.preprocess`, its centre resolved for the
    source kind) and ``ra``/``dec`` the catalogue position, so the crop is the one the build makes.
    Encoded once here: every slider step redraws 24 of these, and ``st.image`` of an array re-encodes
    it each time (half the server time of a step), of PNG bytes it only reads the header.
    """
    image = read_image(path, rgb=config.channels == 3)  # as the build reads it: colour for a colour dataset
    processed = preprocessing.preprocess(image, config, ra=ra, dec=dec)
    raw = for_display(preprocessing.stretch_image(image.data, display_stretch(image)))
    return png_bytes(raw, max_side=THUMBNAIL_SIDE), png_bytes(for_display(processed))


def display_stretch(image: Any) -> str:
    """How a raw image is stretched for the screen: a JPEG or PNG is display-ready already (an asinh
    stretch on top amplified its noise), so only a linear one between its percentiles; FITS gets asinh."""
    return "linear" if getattr(image, "format", "fits") in ("jpeg", "png") else "asinh"


def preview_pair(row: pd.Series, config: preprocessing.PreprocessConfig) -> tuple[bytes, bytes]:
    """:func:`before_after` of one row of a selection table, at its catalogue position where it has one."""
    position = {axis: float(row[axis]) if pd.notna(row.get(axis)) else None for axis in ("ra", "dec")}
    return before_after(str(row["path"]), config, **position)


def png_bytes(array: np.ndarray, *, max_side: int | None = None) -> bytes:
    """An 8-bit PNG of a display array in [0, 1] (grey or RGB), shrunk to ``max_side`` if it is larger."""
    from PIL import Image

    picture = Image.fromarray(np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8))
    if max_side is not None and max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def for_display(array: np.ndarray) -> np.ndarray:
    """An array in [0, 1] for ``st.image``: FITS rows run bottom-up, so flip; drop a single channel axis."""
    array = np.nan_to_num(np.asarray(array, dtype=np.float32), nan=0.0)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return np.clip(array[::-1], 0.0, 1.0)


# --------------------------------------------------------------------------- datasets and runs


def list_dataset_paths() -> list[Path]:
    """Dataset folders under ``data_dir/datasets`` (those with a manifest), newest first."""
    root = Path(get_settings().data_dir) / "datasets"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / "manifest.json").exists()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def suggest_dataset_name(source: str, scheme: str) -> str:
    """``sample-hubble4`` and the like."""
    return f"{Path(source).name}-{scheme}"


def submit_build(source: str, scheme: str, name: str, *, force: bool = False) -> jobs.Job:
    """Start ``python -m core build`` of the dashboard's current spec (:func:`build_spec`) into
    ``datasets/name`` as a background job."""
    check_folder_name(name, what="dataset name", example="sample-hubble3")
    return jobs.submit(build_spec(source, scheme), label=f"build {name}",
                       out=str(Path(get_settings().data_dir) / "datasets" / name), force=force)


def runs_table() -> pd.DataFrame:
    """Every run under the runs folder (see :func:`core.learn.runs.list_runs`), newest last."""
    return runs.list_runs(get_settings().runs_dir)


@st.cache_resource(max_entries=8, show_spinner="Loading the model …")
def load_model(run_path: str, mtime: float) -> Any:
    """The trained Keras model of a run, loaded once per server."""
    return runs.load_run(run_path).model()




@st.cache_data(max_entries=32)
def _manifest(path: str, mtime: float) -> dict[str, Any]:
    return dataset.read_manifest(path)


def dataset_manifest(path: str) -> dict[str, Any]:
    """A dataset's checked ``manifest.json`` (classes, counts, parameters); ``{}`` when there is none.

    Raises
    ------
    core.prepare.dataset.DatasetDamagedError
        If the manifest is damaged.
    """
    manifest = Path(path) / "manifest.json"
    return _manifest(str(path), manifest.stat().st_mtime) if manifest.exists() else {}


def _dataset_mtimes(path: str) -> tuple[float, ...]:
    folder = Path(path)
    return tuple(
        (folder / name).stat().st_mtime if (folder / name).exists() else 0.0
        for name in ("manifest.json", "x.npy", "meta.parquet")
    )


@st.cache_data(max_entries=64, show_spinner=False)
def _dataset_problem(path: str, mtimes: tuple[float, ...]) -> str | None:
    try:
        dataset.check_dataset(path)
    except GalaxyMorphError as exc:
        return str(exc)
    return None


def dataset_problem(path: str | Path) -> str | None:
    """Why the dataset at ``path`` cannot be used (the file and what to do), or None when it can.

    Checks headers and the table only (:func:`core.prepare.dataset.check_dataset`), cached until one
    of its files changes.
    """
    return _dataset_problem(str(path), _dataset_mtimes(str(path)))


def checked_datasets() -> tuple[list[Path], list[tuple[Path, str]]]:
    """The usable dataset folders, newest first, and ``(folder, message)`` for each damaged one."""
    good, damaged = [], []
    for path in list_dataset_paths():
        problem = dataset_problem(path)
        if problem is None:
            good.append(path)
        else:
            damaged.append((path, problem))
    return good, damaged


@st.cache_resource(show_spinner=False)
def training_estimate(dataset_path: str, models: list[str], *, protocol: str, epochs: int | None,
                      runs_per_model: int) -> float | None:
    """Seconds a training job should take on a 2-core CPU (:func:`core.learn.estimate.training_seconds`), from the
    dataset's training galaxies and image side and the protocol's epochs; None when the manifest lacks them."""
    from core.learn.estimate import training_seconds  # noqa: PLC0415
    from core.learn.training import model_defaults  # noqa: PLC0415 - imports Keras: only once a form is drawn

    manifest = dataset_manifest(dataset_path)
    counts, shape = manifest.get("counts", {}), manifest.get("image_shape") or [None]
    train = counts.get("train") if isinstance(counts, dict) else None
    n_train = sum(v for v in train.values() if isinstance(v, int)) if isinstance(train, dict) else None
    if not n_train or not isinstance(shape[0], int):
        return None
    per_model = {m: epochs or int(model_defaults(m, protocol=protocol).get("epochs", 40)) for m in models}
    return training_seconds(models, n_train=n_train, side=shape[0], epochs=per_model, runs_per_model=runs_per_model)


def device_label() -> str:
    """Where training would run (``CPU``, or the GPU's name)."""
    return device_name()


# --------------------------------------------------------------------------- comparison


def load_runs(paths: tuple[str, ...]) -> list[runs.Run]:
    """The runs at ``paths`` (read fresh: a few small JSON files)."""
    return [runs.load_run(p) for p in paths]


@st.cache_data(max_entries=256, show_spinner="Checking the dataset the run was trained on …")
def _dataset_change(run_path: str, fingerprint: tuple[float, ...]) -> str | None:
    return provenance.dataset_change(runs.load_run(run_path), verify_data=True)


def dataset_change(run: runs.Run) -> str | None:
    """Why ``run``'s dataset folder no longer holds what it was trained on, data included
    (:func:`core.prepare.provenance.dataset_change`), or None; cached until the run's config or one of the
    dataset's files changes."""
    config_mtime = (run.path / "config.json").stat().st_mtime
    fingerprint = (*_dataset_mtimes(str(run.config["dataset"]["path"])), config_mtime)
    return _dataset_change(str(run.path), fingerprint)


def changed_datasets(table: pd.DataFrame) -> list[tuple[str, str]]:
    """``(run folder, message)`` for each finished run of :func:`runs_table` whose dataset changed
    after training."""
    if table.empty:
        return []
    finished = table[table["status"] == "finished"]
    changes = [(run.path, dataset_change(run)) for run in load_runs(tuple(finished["path"]))]
    return [(str(path), message) for path, message in changes if message is not None]


def styled_summary(summary: pd.DataFrame, *, best: str | None = None) -> Any:
    """:func:`core.learn.report.summary_cells` with model labels; the accuracy of ``best`` (significantly better
    than every other model) in bold green, nothing bold otherwise."""
    table = report.summary_cells(summary)
    table.columns = [model_label(m) for m in table.columns]
    accuracy_row, best_column = table.index[0], model_label(best) if best is not None else None

    def highlight(column: pd.Series) -> list[str]:
        return ["font-weight: bold; color: #1a7f37" if column.name == best_column and row == accuracy_row else ""
                for row in column.index]

    return table.style.apply(highlight, axis=0)


def misclassified_gallery(run_list: list[runs.Run], *, limit: int) -> pd.DataFrame:
    """Test galaxies at least one model got wrong, over the pooled held-out predictions of every fold and seed
    (:func:`core.learn.report.misclassified_gallery`)."""
    return report.misclassified_gallery(run_list, limit=limit)


def dataset_source(run: runs.Run) -> str | None:
    """The source folder a run's dataset was built from (for acknowledgements); None if unknown."""
    path = run.config["dataset"]["path"]
    if dataset_problem(path) is not None:
        return None
    source = dataset_manifest(path).get("source")
    return source if isinstance(source, str) else None


@st.cache_data(max_entries=4, show_spinner=False)
def _dataset_index(path: str) -> tuple[np.ndarray, dict[str, int]]:
    loaded = dataset.load_dataset(path, mmap=True)
    return np.asarray(loaded.x), {str(n): i for i, n in enumerate(loaded.names)}


@st.cache_data(max_entries=4, show_spinner=False)
def _dataset_members(path: str, mtimes: tuple[float, ...]) -> dict[str, tuple[str, str]]:
    meta = dataset.load_dataset(path, mmap=True).meta
    return {str(n): (str(label), str(split)) for n, label, split in zip(meta["name"], meta["label"], meta["split"])}


def dataset_member(path: str, name: str) -> tuple[str, str] | None:
    """``(class, split)`` of galaxy ``name`` in a dataset, or None when the dataset does not hold it
    (or is gone or damaged)."""
    if not Path(path).is_dir() or dataset_problem(path) is not None:
        return None
    return _dataset_members(str(path), _dataset_mtimes(str(path))).get(str(name))


def dataset_image(path: str, name: str, *, raw: bool = False) -> np.ndarray | None:
    """The preprocessed image of ``name`` in a dataset (as the models saw it), or None (also when
    the dataset is gone or damaged)."""
    if not Path(path).is_dir() or dataset_problem(path) is not None:
        return None
    x, index = _dataset_index(str(path))
    if name not in index:
        return None
    image = x[index[name]]
    return image if raw else for_display(image)


def saliency(run_path: str, image: np.ndarray) -> tuple[np.ndarray, int]:
    """Gradient saliency of the predicted class (via :func:`core.learn.models.saliency`), ready for display."""
    model = load_model(str(run_path), (Path(run_path) / "model.keras").stat().st_mtime)
    x = image.astype(np.float32)
    predicted = int(np.argmax(model.predict(x[None], verbose=0)[0]))
    from core.learn import models  # noqa: PLC0415 - Keras loads only where a model is explained

    return for_display(models.saliency(model, x, predicted)), predicted


def grad_cam(run_path: str, image: np.ndarray) -> tuple[np.ndarray, int]:
    """Grad-CAM of the predicted class (via :func:`core.learn.models.grad_cam`), ready for display."""
    model = load_model(str(run_path), (Path(run_path) / "model.keras").stat().st_mtime)
    x = image.astype(np.float32)
    predicted = int(np.argmax(model.predict(x[None], verbose=0)[0]))
    from core.learn import models  # noqa: PLC0415

    return for_display(models.grad_cam(model, x, predicted)), predicted


@st.cache_data(max_entries=8, show_spinner="Writing the report …")
def exports(paths: tuple[str, ...], left_out: tuple[str, ...] = ()) -> dict[str, bytes]:
    """``summary.csv``, ``summary.tex``, ``report.html`` … of these runs, as bytes for download; ``left_out``:
    the runs of the experiment left out by hand, named in the title of every file."""
    with tempfile.TemporaryDirectory() as tmp:
        written = report.write_report(load_runs(paths), tmp, excluded=load_runs(left_out))
        return {name: Path(p).read_bytes() for name, p in written.items()}


@st.cache_data(max_entries=4, show_spinner="Drawing every figure as PNG and SVG …")
def figures_zip(paths: tuple[str, ...], title: str) -> bytes:
    """Every comparison figure as PNG, SVG and HTML in one zip (:func:`core.learn.report.figures_zip`)."""
    payload, _ = report.figures_zip(load_runs(paths), title=title)
    return payload


# --------------------------------------------------------------------------- classify


def read_upload(name: str, payload: bytes, *, max_bytes: int = UPLOAD_LIMIT_BYTES, channels: int = 1) -> Any:
    """Read an uploaded file as an image (:func:`core.images.read_upload`); any name is safe. In colour
    when the model's inputs have 3 channels (a colour JPEG read grey would reach a colour model as grey)."""
    return images.read_upload(name, payload, max_bytes=max_bytes, rgb=channels == 3)


def read_path(path: str, *, channels: int = 1) -> Any:
    """Read an image of the current source, in colour when the model's inputs have 3 channels (as
    the builder reads it)."""
    return read_image(path, rgb=channels == 3)


def fetch_ned_image(name: str) -> Any:
    """Fetch one image of ``name`` from NED (through ``core.acquire.fetch``) into a temporary folder and read it."""
    from core.acquire.fetch import fetch_images  # noqa: PLC0415 - the network path is only needed here

    with tempfile.TemporaryDirectory() as tmp:
        fetch_images(pd.DataFrame({"name": [name]}), out=tmp)
        files = [p for p in Path(tmp).rglob("*") if p.is_file() and p.name.endswith((".fits", ".fits.gz", ".fit"))]
        if not files:
            raise GalaxyMorphError(f"NED has no downloadable FITS image of {name!r} (or NED is unreachable). "
                                   "Upload an image instead.")
        return read_image(files[0])


def trained_preprocessing(run: runs.Run) -> provenance.TrainedPreprocessing:
    """The preprocessing ``run`` was trained with (:func:`core.prepare.provenance.trained_preprocessing`)."""
    return provenance.trained_preprocessing(run)


def steps_for(image: Any, config: preprocessing.PreprocessConfig, *, ra: float | None = None,
              dec: float | None = None) -> dict[str, np.ndarray]:
    """The preprocessing steps of one image (raw, background-subtracted, cropped, stretched, final), centred
    on the catalogue position ``ra``/``dec`` when given, as the builder did."""
    return provenance.input_steps(image, config, ra=ra, dec=dec)


# Steps whose pixels are already in [0, 1]: shown as they are, since that is what the model sees.
STRETCHED_STEPS = ("stretched", "final")


def step_for_display(step: str, array: np.ndarray, *, stretch: str = "asinh") -> tuple[np.ndarray, str]:
    """A preprocessing step's image for the screen, and a caption saying how it is shown.

    Raw, background-subtracted and cropped pixels are in the image's own units (counts, or 0-255),
    which ``st.image`` would clip to [0, 1]: they get a display-only ``stretch`` (:func:`display_stretch`)
    between their 0.5 and 99.5 percentiles. The final image is shown with its pixels enlarged as
    blocks, so it does not look like the stretched one drawn at the same width: it has far fewer.
    """
    name = step.replace("_", " ")
    side = f"{array.shape[1]} × {array.shape[0]} px"
    if step == "final":
        factor = max(1, 256 // max(array.shape[:2]))
        blocks = np.repeat(np.repeat(for_display(array), factor, axis=0), factor, axis=1)
        return blocks, f"final, {side}: what the model sees"
    if step in STRETCHED_STEPS:
        return for_display(array), f"{name}, {side}"
    return for_display(preprocessing.stretch_image(array, stretch)), f"{name}, {side} (display: {stretch})"


def predict(run_path: str, x: np.ndarray) -> dict[str, float]:
    """``{class: probability}`` of one preprocessed image by the run's model."""
    run = runs.load_run(run_path)
    model = load_model(str(run_path), (Path(run_path) / "model.keras").stat().st_mtime)
    return provenance.probabilities(model, run.classes, x)
