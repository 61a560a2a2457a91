"""What a build spec keeps of a source, and why each other object is left out, from its metrics alone.

:func:`select` runs the selection chain: labels (a class scheme) -> label conflicts -> one
catalogue -> positional duplicates -> one survey and band -> quality filter, and gives a
:class:`Selection` (kept / reason per object). The build (:func:`core.prepare.builder.build`) and
the dashboard's preview call it alike, so the preview's counts are the build's; :func:`split_sizes`
gives the split the build will make (:func:`split_by_object`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.acquire.catalogue import Source, catalogue_prefix, find_duplicates, load_source
from core.acquire.labels import (
    UNCLASSIFIED,
    ConflictReport,
    Scheme,
    exclusion_reasons,
    get_scheme,
    label_table,
    resolve_conflicts,
)
from core.acquire.sources import get_source_kind
from core.errors import ConfigError, GalaxyMorphError
from core.images import IMAGE_SUFFIXES
from core.prepare.preprocessing import PreprocessConfig
from core.prepare.quality import QualityThresholds, apply_quality_filter
from core.prepare.spec import BuildSpec

logger = logging.getLogger(__name__)


def resolve_catalog(source: Source, catalog: str) -> str:
    """``"auto"`` -> the most common name prefix of the source; ``"all"`` and prefixes pass through.

    Raises
    ------
    ConfigError
        If a prefix is given that no name of the source has.
    """
    prefixes = source.table["name"].drop_duplicates().map(catalogue_prefix)
    counts = prefixes.value_counts()
    if catalog == "all":
        return "all"
    if catalog == "auto":
        return str(counts.index[0]) if len(counts) else "all"
    wanted = catalogue_prefix(catalog) if not catalog.startswith("[") else catalog
    if wanted not in counts.index:
        top = ", ".join(f"{p} ({n})" for p, n in counts.head(8).items())
        raise ConfigError(
            f"catalog {catalog!r} matches no name in {source.root}; its catalogues are {top}. "
            "Use one of them, 'auto' or 'all'."
        )
    return wanted


def image_surveys(table: pd.DataFrame, metrics: pd.DataFrame | None = None) -> pd.DataFrame:
    """``table`` with ``survey`` and ``band`` per row: the source's own, else the image header's.

    A NED source has them from the fetch manifest, an import from its catalogue columns; the
    built-in sample (and any FITS with ``SURVEY`` / ``FILTER`` cards) from the headers, which
    :func:`~core.prepare.quality.compute_metrics` reads once (``header_survey``, ``header_band``, joined on ``path``).
    Unknown is ``""``.
    """
    out = table.copy()
    header = pd.DataFrame(columns=["path", "header_survey", "header_band"])
    if metrics is not None and {"header_survey", "header_band"} <= set(metrics.columns):
        header = metrics[["path", "header_survey", "header_band"]].drop_duplicates("path")
    found = header.set_index("path").reindex(out["path"])
    for column in ("survey", "band"):
        own = out[column].astype(object).fillna("").astype(str).str.strip() if column in out else pd.Series("", index=out.index)
        from_header = found[f"header_{column}"].fillna("").astype(str).to_numpy()
        out[column] = np.where(own.to_numpy() != "", own.to_numpy(), from_header).astype(object)
    return out


def survey_mix(table: pd.DataFrame) -> pd.DataFrame:
    """``survey, band, objects``: how many objects have an image of each survey and band, most first."""
    if not len(table):
        return pd.DataFrame(columns=["survey", "band", "objects"])
    rows = table.drop_duplicates("name")
    mix = rows.groupby(["survey", "band"], sort=False).size().rename("objects").reset_index()
    return mix.sort_values("objects", ascending=False, kind="stable").reset_index(drop=True)


def resolve_survey(table: pd.DataFrame, *, survey: str = "auto", band: str = "auto") -> tuple[str, str]:
    """``"auto"`` -> the most common survey of ``table`` (and its most common band); names pass through.

    ``"all"`` keeps every survey (band); so does ``"auto"`` when no image records one. A given
    name is matched without regard to case and returned as the source writes it.

    Raises
    ------
    ConfigError
        If a survey or band is named that no image of the table has.
    """
    _check_survey_names(survey, band)
    mix = survey_mix(table)
    known = mix[mix["survey"] != ""]
    chosen_survey = _pick(known.groupby("survey", sort=False)["objects"].sum(), survey, what="survey", mix=mix)
    in_survey = known if chosen_survey == "all" else known[known["survey"] == chosen_survey]
    in_survey = in_survey[in_survey["band"] != ""]
    if chosen_survey == "all" and band == "auto":
        return "all", "all"  # the most common band across surveys would pick a survey by the back door
    chosen_band = _pick(in_survey.groupby("band", sort=False)["objects"].sum(), band, what="band", mix=mix)
    return chosen_survey, chosen_band


def _check_survey_names(survey: object, band: object) -> None:
    for name, value in (("survey", survey), ("band", band)):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{name} must be 'auto', 'all' or a {name} name; got {value!r}. Use e.g. 'auto'.")


def _pick(counts: pd.Series, wanted: str, *, what: str, mix: pd.DataFrame) -> str:
    if wanted == "all":
        return "all"
    if wanted == "auto":
        return str(counts.sort_values(ascending=False, kind="stable").index[0]) if len(counts) else "all"
    matches = [name for name in counts.index if str(name).lower() == wanted.strip().lower()]
    if not matches:
        listed = ", ".join(f"{r.survey or '?'} / {r.band or '?'} ({r.objects})" for r in mix.head(8).itertuples())
        raise ConfigError(
            f"{what} {wanted!r} matches no image of this source; its surveys / bands are {listed or 'not recorded'}. "
            f"Use one of them, 'auto' (the most common) or 'all'."
        )
    return str(matches[0])


def is_colour_source(source: Source) -> bool:
    """Whether most images of ``source`` are colour cutouts (JPEG/PNG) rather than FITS."""
    paths = [str(p).lower() for p in source.table["path"] if isinstance(p, str) and p]
    return bool(paths) and 2 * sum(p.endswith(IMAGE_SUFFIXES) for p in paths) > len(paths)


def preprocess_defaults(source: Source) -> PreprocessConfig:
    """The preprocessing a source gets for every option the user leaves out: its kind's
    (:class:`core.acquire.sources.SourceKind`) for colour cutouts (:func:`is_colour_source`; by default
    :data:`~core.acquire.sources.COLOUR_CUTOUT_DEFAULTS`), else its kind's for FITS images (by default
    ``PreprocessConfig()``: grey, crop 0.5, asinh, since FITS images are single-band and linear).
    Override single fields with ``dataclasses.replace(preprocess_defaults(source), crop=...)``.
    """
    kind = get_source_kind(source.kind)
    return PreprocessConfig(**(kind.colour_preprocess if is_colour_source(source) else kind.grey_preprocess))


def resolve_scheme(spec: BuildSpec, source: Source) -> Scheme:
    """The spec's class scheme; ``None`` is the source kind's default (``gz1`` for Galaxy Zoo, else ``hubble3``)."""
    return get_scheme(spec.scheme if spec.scheme is not None else get_source_kind(source.kind).default_scheme)


@dataclasses.dataclass(frozen=True)
class Selection:
    """What a :class:`~core.prepare.spec.BuildSpec` keeps of a source, one row per object, before preprocessing.

    Attributes
    ----------
    table : DataFrame
        One row per object (name): ``label``, ``kept``, ``reason`` (``""`` when kept; the first rule
        it fails, ``duplicate_of:<name>`` for another name of a kept galaxy), ``quality``, the metrics.
    scheme : Scheme
    catalog, survey, band : str
        The resolved choices (``auto`` replaced by the source's most common).
    survey_mix : DataFrame
        Objects per survey and band among those eligible before the survey choice.
    conflicts : ConflictReport
    objects_without_position : int
    preprocess : PreprocessConfig
        The spec's preprocessing with ``centre="auto"`` resolved for the source kind.
    """

    table: pd.DataFrame
    scheme: Scheme
    catalog: str
    survey: str
    band: str
    survey_mix: pd.DataFrame
    conflicts: ConflictReport
    objects_without_position: int
    preprocess: PreprocessConfig

    def kept_per_class(self) -> dict[str, int]:
        """Objects kept per class of the scheme (every class, zeros included)."""
        counts = self.table.loc[self.table["kept"], "label"].value_counts()
        return {c: int(counts.get(c, 0)) for c in self.scheme.classes}

    def reasons(self) -> dict[str, int]:
        """Objects left out per reason (``duplicate_of:<name>`` counted as ``duplicate_of``), as the manifest has them."""
        left = self.table.loc[~self.table["kept"], "reason"].map(lambda r: r.split(":")[0])
        return {str(k): int(v) for k, v in left.value_counts().items()}

    def reasons_per_class(self) -> pd.DataFrame:
        """Objects left out, reasons by row and labels by column (``unclassified`` included)."""
        left = self.table[~self.table["kept"]]
        return pd.crosstab(left["reason"].map(lambda r: r.split(":")[0]), left["label"]).rename_axis(
            index="reason", columns="label"
        )


@dataclasses.dataclass(frozen=True)
class LabelStage:
    """What :func:`select` decides from the catalogue alone (labels, conflicts, catalogue,
    duplicates): the part no quality slider, crop or survey changes, so a preview can keep it."""

    scheme: Scheme
    catalog: str
    candidates: pd.DataFrame
    conflicts: ConflictReport
    key: tuple[Any, ...]
    """The spec fields it was computed from (:func:`label_stage_key`)."""


def label_stage_key(spec: BuildSpec) -> tuple[Any, ...]:
    """The fields of ``spec`` that :func:`label_stage` reads."""
    return (spec.source, spec.scheme, spec.label_from, spec.conflicts, spec.exclude_dwarfs, spec.exclude_uncertain,
            spec.catalog, spec.duplicate_arcsec)


def label_stage(spec: BuildSpec, source: Source) -> LabelStage:
    """The catalogue-only stage of :func:`select` for ``spec`` over ``source``."""
    scheme = resolve_scheme(spec, source)
    catalog = resolve_catalog(source, spec.catalog)
    candidates, report = select_candidates(
        source, scheme=scheme, label_from=spec.label_from, conflicts=spec.conflicts,
        exclude_dwarfs=spec.exclude_dwarfs, exclude_uncertain=spec.exclude_uncertain, catalog=catalog,
        duplicate_arcsec=spec.duplicate_arcsec,
    )
    return LabelStage(scheme=scheme, catalog=catalog, candidates=candidates, conflicts=report,
                      key=label_stage_key(spec))


def select(spec: BuildSpec, metrics: pd.DataFrame, *, source: Source | None = None,
           labels: LabelStage | None = None) -> Selection:
    """Which objects a build of ``spec`` keeps, and why each other one is left out, from metrics alone.

    :func:`core.prepare.builder.build` calls this, and so does the dashboard's preview, so the preview's counts are
    the build's counts (before preprocessing errors, which only reading every image can find).

    Parameters
    ----------
    spec : BuildSpec
    metrics : DataFrame
        :func:`~core.prepare.quality.compute_metrics` of the source (all its images, or at least those of the objects
        the labels leave eligible).
    source : Source, optional
        ``spec.source`` loaded already.
    labels : LabelStage, optional
        :func:`label_stage` of a spec with the same :func:`label_stage_key` (a preview keeps it
        while only sliders move); not changed here.

    Raises
    ------
    GalaxyMorphError
        For a catalogue, survey or band the source does not have, and for ``catalog="all"`` over
        several catalogues with objects that have no position (unless ``allow_duplicates``).
    """
    source = source if source is not None else load_source(spec.source)
    labels = labels if labels is not None else label_stage(spec, source)
    if labels.key != label_stage_key(spec):
        raise ConfigError(f"labels were computed for {labels.key}, not for this spec's {label_stage_key(spec)}. "
                          "Pass the label_stage() of this spec, or none.")
    scheme, catalog, conflict_report = labels.scheme, labels.catalog, labels.conflicts
    config = resolve_centre(spec.preprocess, source.kind)
    unplaced = check_positions(labels.candidates, catalog=catalog, allow_duplicates=spec.allow_duplicates)
    candidates = image_surveys(labels.candidates, metrics)
    eligible = candidates[candidates["reason"] == ""]
    mix = survey_mix(eligible)
    chosen_survey, chosen_band = resolve_survey(eligible, survey=spec.survey, band=spec.band)
    _mark_surveys(candidates, metrics, survey=chosen_survey, band=chosen_band)
    candidates = _apply_quality(candidates, metrics, config=config, thresholds=spec.thresholds)
    candidates = resolve_duplicates(candidates)
    return Selection(
        table=candidates, scheme=scheme, catalog=catalog, survey=chosen_survey, band=chosen_band, survey_mix=mix,
        conflicts=conflict_report, objects_without_position=unplaced, preprocess=config,
    )


def resolve_centre(config: PreprocessConfig, kind: str) -> PreprocessConfig:
    """``config`` with its ``centre="auto"`` resolved for a source kind.

    Cutouts of a :attr:`~core.acquire.sources.SourceKind.centred` kind (Galaxy Zoo) are centred on
    the galaxy already, so ``"auto"`` becomes ``"none"`` (the image centre) there; elsewhere ``"auto"``
    stays the catalogue position through the WCS, else the brightest source. An explicit mode is kept.
    """
    if config.centre == "auto" and get_source_kind(kind).centred:
        return dataclasses.replace(config, centre="none")
    return config


def select_candidates(
    source: Source,
    *,
    scheme: Scheme,
    label_from: str = "classification",
    conflicts: str = "drop",
    exclude_dwarfs: bool = False,
    exclude_uncertain: bool = False,
    catalog: str = "all",
    duplicate_arcsec: float = 3.0,
) -> tuple[pd.DataFrame, ConflictReport]:
    """One row per object of the source with its ``label`` and the first label-side ``reason`` it fails.

    Reasons, in order: ``conflict``, ``dwarf`` / ``uncertain`` (a type the scheme would classify,
    left out by ``exclude_dwarfs`` / ``exclude_uncertain``), ``unclassified``, ``other_catalogue``, ``no_image``,
    ``duplicate_of:<name>`` (the other name of the same galaxy that is kept). ``""`` means the
    object goes on to the quality filter. ``catalog`` is a prefix or ``"all"`` (already resolved).

    Names of one galaxy share a ``duplicate_group`` number (-1: no duplicate). Only the names of
    the selected catalogue (the most common one for ``"all"``) stay eligible, or all of them when
    none is; several eligible names of one group are settled after the quality metrics by
    :func:`resolve_duplicates`, so ``duplicate_of`` here names the provisional keeper.

    Returns
    -------
    candidates : DataFrame
    report : ConflictReport
    """
    table = source.table.copy()
    table["label"] = label_table(table, scheme, label_from=label_from)
    excluded = exclusion_reasons(table["classification"].tolist(), dwarfs=exclude_dwarfs, uncertain=exclude_uncertain)
    # Only a type the scheme would classify is "excluded"; the rest stays plainly unclassified.
    table["excluded"] = np.where(table["label"] != UNCLASSIFIED, excluded, "")
    table.loc[table["excluded"] != "", "label"] = UNCLASSIFIED
    resolved, report = resolve_conflicts(table, policy=conflicts)
    candidates = table.drop_duplicates("name").reset_index(drop=True)
    candidates = candidates.drop(columns="label").merge(
        resolved[["name", "label", "labels_seen", "conflict", "n_rows"]], on="name", how="left"
    )
    candidates["prefix"] = candidates["name"].map(catalogue_prefix)
    reason = np.full(len(candidates), "", dtype=object)

    def mark(mask: np.ndarray, why: str) -> None:
        reason[(reason == "") & mask] = why

    mark(candidates["label"].isna().to_numpy(), "conflict")
    candidates["label"] = candidates["label"].fillna(UNCLASSIFIED)
    unclassified = (candidates["label"] == UNCLASSIFIED).to_numpy()
    for why in ("dwarf", "uncertain"):
        mark(unclassified & (candidates["excluded"] == why).to_numpy(), why)
    mark(unclassified, "unclassified")
    if catalog != "all":
        mark((candidates["prefix"] != catalog).to_numpy(), "other_catalogue")
    mark(candidates["path"].isna().to_numpy(), "no_image")
    alive = candidates[reason == ""]
    group_of = np.full(len(candidates), -1, dtype=np.int64)
    if len(alive):
        top_prefix = catalog if catalog != "all" else alive["prefix"].value_counts().index[0]
        position = {name: i for i, name in enumerate(candidates["name"])}
        for number, group in enumerate(find_duplicates(alive, tolerance_arcsec=duplicate_arcsec)):
            preferred = [n for n in group if catalogue_prefix(n) == top_prefix] or group
            for name in group:
                group_of[position[name]] = number
                if name not in preferred:
                    reason[position[name]] = f"duplicate_of:{preferred[0]}"
    candidates["reason"] = reason
    candidates["duplicate_group"] = group_of
    candidates["conflict"] = candidates["conflict"].fillna(True).astype(bool)
    return candidates, report


def _mark_surveys(candidates: pd.DataFrame, metrics: pd.DataFrame, *, survey: str, band: str) -> None:
    """Give ``other_survey`` / ``other_band`` to the still eligible images of another survey or band.

    An unreadable file has no header to tell its survey: it is left to be called ``unreadable``.
    """
    errors = metrics.set_index("path")["read_error"] if len(metrics) else pd.Series(dtype=object)
    error = candidates["path"].map(errors)
    readable = error.isna() | error.eq("")
    for column, chosen, why in (("survey", survey, "other_survey"), ("band", band, "other_band")):
        if chosen == "all":
            continue
        eligible = (candidates["reason"] == "") & readable
        other = candidates[column].astype(str).str.lower() != chosen.lower()
        candidates.loc[eligible & other, "reason"] = why


def check_positions(candidates: pd.DataFrame, *, catalog: str, allow_duplicates: bool) -> int:
    """How many candidates with an image lack RA/Dec; with ``catalog="all"`` over several catalogues
    that is an error unless allowed.

    One catalogue's names rarely name one galaxy twice, but across catalogues (``NGC 4486`` and
    ``2MASX J12304942+1223279``) they often do, and only positions can tell.
    """
    alive = candidates[(candidates["reason"] == "") | candidates["reason"].str.startswith("duplicate_of:")]
    unplaced = alive[alive["ra"].isna() | alive["dec"].isna()]
    # All names from one catalogue (the Galaxy Zoo cutouts' SDSS ids): "all" is that catalogue.
    if catalog != "all" or not len(unplaced) or alive["prefix"].nunique() <= 1:
        return len(unplaced)
    examples = ", ".join(repr(n) for n in unplaced["name"].head(3))
    if allow_duplicates:
        logger.warning("%d of %d objects have no position: duplicates among them are not found (allowed)",
                       len(unplaced), len(alive))
        return len(unplaced)
    raise GalaxyMorphError(
        f"--catalog all needs a position (ra, dec) for every object, to find one galaxy listed under two names; "
        f"{len(unplaced)} of {len(alive)} objects with an image have none (e.g. {examples}), so such a galaxy "
        "could land in two splits and inflate the test accuracy. Positions can come from: `python -m core fetch` "
        "again (NED's listing and the FITS headers, also for earlier downloads, without a request); "
        "`python -m core import` again for imported FITS files (it reads OBJCTRA/OBJCTDEC, the WCS or RA/DEC "
        "from each header; JPEG and PNG carry none); ra, dec columns in the catalogue; `python -m core scrape` "
        "again (NED's result pages carry RA and Dec). Or keep one catalogue (--catalog auto), or pass "
        "--allow-duplicates."
    )


def _apply_quality(
    candidates: pd.DataFrame, metrics: pd.DataFrame, *, config: PreprocessConfig, thresholds: QualityThresholds
) -> pd.DataFrame:
    """Join metrics to candidates and apply the quality filter to those still eligible.

    Adds ``crop_fraction``: the crop side over the image's shorter side, the same for every image
    with ``crop``, per image with ``crop_arcsec`` (``crop`` where the image has no WCS, as
    preprocessing does).
    """
    candidates = candidates.merge(metrics, on="path", how="left") if len(metrics) else candidates.assign(read_error="")
    candidates["read_error"] = candidates["read_error"].fillna("").astype(str)
    eligible = (candidates["reason"] == "").to_numpy()
    unreadable = eligible & (candidates["read_error"] != "").to_numpy()
    candidates.loc[unreadable, "reason"] = "unreadable"
    # Unreadable files have no metric columns at all when no file of the batch was readable.
    eligible = eligible & ~unreadable
    candidates["kept"] = False
    candidates["quality"] = np.where(unreadable, 0.0, np.nan)
    candidates["crop_fraction"] = _crop_fractions(candidates, config)
    if eligible.any():
        rows = candidates[eligible]
        judged = apply_quality_filter(rows, thresholds, rows["crop_fraction"].to_numpy(dtype=float))
        reason = judged["reason"].to_numpy(dtype=object)
        candidates.loc[eligible, "quality"] = judged["quality"].to_numpy()
        candidates.loc[eligible, "reason"] = reason
        candidates.loc[eligible, "kept"] = reason == ""
    candidates["kept"] = candidates["kept"].astype(bool)
    return candidates


def _crop_fractions(candidates: pd.DataFrame, config: PreprocessConfig) -> np.ndarray:
    if config.crop_arcsec is None or "pixel_scale_arcsec" not in candidates:
        return np.full(len(candidates), config.crop)
    scale = pd.to_numeric(candidates["pixel_scale_arcsec"], errors="coerce").to_numpy(dtype=float)
    side = pd.to_numeric(candidates["min_side"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = config.crop_arcsec / (scale * side)
    return np.where(np.isfinite(fraction) & (fraction > 0), fraction, config.crop)


def resolve_duplicates(candidates: pd.DataFrame) -> pd.DataFrame:
    """Keep one image per galaxy with several eligible names; the others become ``duplicate_of``.

    Among a group's names left eligible by :func:`select_candidates` (those of the selected
    catalogue), the keeper is the one that passed the quality filter, then the best ``quality``,
    then the first in the catalogue. Needs the ``kept``, ``quality`` and ``reason`` columns of the
    quality filter; every other name of the group (whatever its own reason) points to the keeper.
    """
    grouped = candidates[candidates["duplicate_group"] >= 0]
    if not len(grouped):
        return candidates
    contenders = grouped[~grouped["reason"].str.startswith("duplicate_of:")]
    ranked = contenders.assign(_order=np.arange(len(contenders))).sort_values(
        ["kept", "quality", "_order"], ascending=[False, False, True], na_position="last", kind="stable"
    )
    keeper = ranked.drop_duplicates("duplicate_group").set_index("duplicate_group")["name"]
    candidates = candidates.copy()
    keep_name = candidates["duplicate_group"].map(keeper)
    losers = (keep_name.notna() & (candidates["name"] != keep_name)).to_numpy()
    candidates.loc[losers, "reason"] = "duplicate_of:" + keep_name[losers]
    candidates.loc[losers, "kept"] = False
    return candidates


REASON_TEXT: dict[str, str] = {
    "conflict": "listed under types of different classes (Class balance: label conflicts)",
    "dwarf": "a dwarf type, excluded by the Class balance switch",
    "uncertain": "an uncertain type (E?, Sb:), excluded by the Class balance switch",
    "unclassified": "a type the class scheme puts in no class",
    "other_catalogue": "named from another catalogue than the one chosen (Catalogue selector)",
    "no_image": "no image file",
    "duplicate_of": "another name of a galaxy already counted",
    "other_survey": "imaged by another survey than the one chosen (Survey selector)",
    "other_band": "imaged in another band than the one chosen",
    "unreadable": "the image file cannot be read",
    "blank": "the image is blank (no finite pixel, or all equal)",
    "too_small": "the image side is below the minimum",
    "missing_pixels": "too many missing (NaN) pixels",
    "saturated": "a saturated patch (a bright core or star)",
    "low_snr": "too faint against the sky noise (signal-to-noise)",
    "low_quality": "quality score below the minimum",
    "galaxy_exceeds_crop": "the galaxy is bigger than the crop (more than half its light would be cut off)",
    "preprocess_error": "the image failed to preprocess",
}
"""What each reason a build leaves an object out for means, in words (``duplicate_of:<name>`` as ``duplicate_of``)."""


def check_classes(
    kept: pd.DataFrame, classes: Sequence[str], *, val_fraction: float, test_fraction: float,
    reasons: dict[str, int] | None = None,
) -> None:
    """A class with too few images for the split is the user's problem to fix: say how, and what
    removed the galaxies (``reasons``: names left out per reason, :meth:`Selection.reasons`)."""
    need = 1 + (val_fraction > 0) + (test_fraction > 0)
    counts = kept["label"].value_counts()
    short = {c: int(counts.get(c, 0)) for c in classes if counts.get(c, 0) < need}
    if not short:
        return
    removed = ""
    if reasons:
        top = sorted(reasons.items(), key=lambda item: -item[1])[:4]
        removed = " Left out: " + ", ".join(f"{n:,} {why}" for why, n in top) + "."
    remedy = ("Lower --min-quality or --min-size, use --catalog all or --survey all, or pick a scheme without "
              "that class.")
    listed = ", ".join(f"{c!r} has {n}" for c, n in short.items())
    if len(kept) == 0:
        raise GalaxyMorphError(
            f"these settings keep no galaxy (class {listed} kept image(s)), so there is nothing to build.{removed} {remedy}"
        )
    raise GalaxyMorphError(
        f"after filtering, class {listed} kept image(s); a train/val/test split needs at least {need} per "
        f"class.{removed} {remedy}"
    )


def split_sizes(selection: Selection, spec: BuildSpec) -> dict[str, int]:
    """How many galaxies a build of ``spec`` puts in ``train``, ``val`` and ``test``, from its selection.

    The build's own split (:func:`split_by_object`, same seed, same order), so the counts are
    exact unless an image then fails to preprocess.

    Raises
    ------
    GalaxyMorphError
        When the build would refuse the selection (no galaxy kept, a class too small to split);
        the message names what left the galaxies out.
    """
    kept = selection.table[selection.table["kept"]].reset_index(drop=True)
    check_classes(kept, selection.scheme.classes, val_fraction=spec.val_fraction, test_fraction=spec.test_fraction,
                   reasons=selection.reasons())
    split = split_by_object(kept["label"], seed=spec.seed, val_fraction=spec.val_fraction,
                            test_fraction=spec.test_fraction)
    return {name: int((split == name).sum()) for name in ("train", "val", "test")}


def split_by_object(labels: pd.Series, *, seed: int, val_fraction: float, test_fraction: float) -> np.ndarray:
    """``train``/``val``/``test`` per row, stratified by label, reproducible for a seed.

    Rows must be distinct objects (the builder removes duplicate names and positions first), so
    no galaxy is in two splits.
    """
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    y = labels.to_numpy()
    split = np.full(len(labels), "train", dtype=object)
    rest = index
    try:
        if test_fraction > 0:
            rest, test = train_test_split(index, test_size=test_fraction, stratify=y, random_state=seed)
            split[test] = "test"
        if val_fraction > 0:
            share = val_fraction / (1 - test_fraction)
            _, val = train_test_split(rest, test_size=share, stratify=y[rest], random_state=seed)
            split[val] = "val"
    except ValueError as exc:
        counts = labels.value_counts().to_dict()
        raise GalaxyMorphError(
            f"cannot split {len(labels)} images stratified by class ({counts}) with val_fraction={val_fraction}, "
            f"test_fraction={test_fraction}: {exc}. Use more images or larger fractions."
        ) from exc
    return split


