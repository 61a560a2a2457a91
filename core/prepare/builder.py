"""The dataset builder: from a source folder to a dataset folder every model trains on.

:func:`build_dataset` runs the whole chain, recording why each candidate was left out:

labels (a class scheme) -> label conflicts -> one catalogue -> positional duplicates ->
quality metrics -> one survey and band -> quality filter -> preprocessing -> stratified split by
object -> save.

Quality metrics are the slow part (every image is read); :func:`core.prepare.quality.compute_metrics` caches them
per source in ``<source>/.cache/metrics.parquet``, keyed by file, size, modification time,
:data:`core.acquire.measure.METRICS_VERSION` and :data:`core.acquire.measure.QUALITY_VERSION`, so moving a quality slider
or rebuilding with another crop never reads an unchanged image twice, and a change to
:func:`~core.prepare.quality.measure_quality` measures everything again. Preprocessing reuses each
image's stored sky and centre. A build with the same parameters over an unchanged source returns
the existing dataset folder without reading any image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.acquire.catalogue import Source, catalogue_prefix, find_duplicates, load_source
from core.acquire.sources import get_source_kind
from core.prepare.dataset import NAME_OVERHEAD, dataset_writer, is_dataset, save_dataset, staging_folder
from core.errors import ConfigError, GalaxyMorphError, ImageReadError
from core.images import IMAGE_SUFFIXES
from core.io import DATASET, check_output_path, check_replaceable, out_of_space_as_error, preallocate
from core.parallel import resolve_jobs, run_parallel
from core.paths import data_layout
from core.acquire.labels import (
    UNCLASSIFIED,
    ConflictReport,
    Scheme,
    exclusion_reasons,
    get_scheme,
    label_table,
    resolve_conflicts,
    unclassified_types,
)
from core.acquire.measure import METRICS_VERSION, QUALITY_VERSION, file_key
from core.prepare import preprocessing, provenance
from core.prepare.preprocessing import PreprocessConfig
from core.prepare.quality import QUALITY_FIELDS, QualityThresholds, apply_quality_filter, compute_metrics
from core.sky import finite_or_none
from core.progress import Progress
from core.prepare.spec import BuildSpec
from core.prepare.splits import SPLIT_FILE, read_split_file, split_around_test

logger = logging.getLogger(__name__)

BUILDER_VERSION = 3
"""Bump when the selection or split logic changes, so identical parameters no longer hit old datasets
(3: NED notes after ';', ranges and luminosity classes are read)."""
UNCLASSIFIED_TYPES_SHOWN = 50
"""How many of the type strings a scheme leaves unclassified the manifest lists (most frequent first)."""

_FILTER_COLUMNS = ("min_side", "source_radius_frac", "snr", "finite_fraction", "saturated_fraction", "background_flatness")


# --------------------------------------------------------------------------- building


def source_hash(source: Source) -> str:
    """SHA-256 of the catalogue (and NED image manifest) bytes and each image's (path, size, mtime)."""
    digest = hashlib.sha256(source.catalogue_path.read_bytes())
    manifest = source.root / "images" / "manifest.csv"
    if source.kind == "ned" and manifest.exists():
        digest.update(manifest.read_bytes())
    for path in sorted(set(source.table["path"].dropna().astype(str))):
        digest.update(f"{path}\x1f{file_key(path)}\n".encode())
    return digest.hexdigest()


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
    :func:`compute_metrics` reads once (``header_survey``, ``header_band``, joined on ``path``).
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


def _auto_name(source: Source, params: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    catalog = params["catalog"].strip("[]").replace("/", "_")
    return f"{source.root.name}-{params['scheme']}-{catalog}-{params['preprocess']['size']}px-{digest}"


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

    :func:`build` calls this, and so does the dashboard's preview, so the preview's counts are
    the build's counts (before preprocessing errors, which only reading every image can find).

    Parameters
    ----------
    spec : BuildSpec
    metrics : DataFrame
        :func:`compute_metrics` of the source (all its images, or at least those of the objects
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
    unplaced = _check_positions(labels.candidates, catalog=catalog, allow_duplicates=spec.allow_duplicates)
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


def _params(spec: BuildSpec, source: Source, scheme: Scheme, *, catalog: str, config: PreprocessConfig) -> dict[str, Any]:
    """The manifest's ``params``: the spec with its choices resolved, and the code versions."""
    return {
        "source": str(source.root),
        "scheme": scheme.name,
        "scheme_file_sha256": _file_sha(spec.scheme) if spec.scheme is not None else None,
        "label_from": spec.label_from,
        "conflicts": spec.conflicts,
        "exclude_dwarfs": bool(spec.exclude_dwarfs),
        "exclude_uncertain": bool(spec.exclude_uncertain),
        "catalog": catalog,
        "catalog_requested": spec.catalog,
        "duplicate_arcsec": float(spec.duplicate_arcsec),
        "allow_duplicates": bool(spec.allow_duplicates),
        "survey": spec.survey,
        "band": spec.band,
        **spec.thresholds.to_dict(),
        "preprocess": config.to_dict(),
        "seed": int(spec.seed),
        "val_fraction": float(spec.val_fraction),
        "test_fraction": float(spec.test_fraction),
        "builder_version": BUILDER_VERSION,
        **({"split_file_sha256": sha} if (sha := _file_sha(source.root / SPLIT_FILE)) else {}),
        "metrics_version": METRICS_VERSION,
        "quality_version": QUALITY_VERSION,
    }


def build(
    spec: BuildSpec,
    *,
    out: str | Path | None = None,
    n_jobs: int | None = None,
    backend: str | None = None,
    progress: Progress | None = None,
    force: bool = False,
    source: Source | None = None,
    replace_trained: bool = False,
    force_while_training: bool = False,
) -> Path:
    """Build (or find) the dataset of ``spec``; return its folder.

    The chain is :func:`select` (labels, conflicts, catalogue, duplicates, survey, quality),
    then preprocessing, a stratified split by object and the save.

    Parameters
    ----------
    spec : BuildSpec
        What to build (:class:`core.prepare.spec.BuildSpec` documents each choice).
    out : path, optional
        Dataset folder; default ``<data_dir>/datasets/<name from the parameters>``. It must be
        absent, empty, or a dataset this tool wrote with the same parameters (or ``force``);
        anything else is refused before an image is read (:func:`core.io.check_replaceable`).
    n_jobs, backend : optional
        Parallelism of metrics and preprocessing (default from the settings).
    progress : Progress, optional
        Advanced per image measured and per image preprocessed.
    force : bool
        Rebuild even when an identical dataset exists; replace a dataset built with other parameters.
    source : Source, optional
        ``spec.source`` loaded already.
    replace_trained : bool
        Also replace a dataset that finished runs (in the settings' runs folder) were trained on.
        Without it such a rebuild is refused before an image is read: the runs would then describe
        a dataset that no longer exists (:func:`core.prepare.provenance.dataset_change` flags them).
    force_while_training : bool
        Also replace a dataset that a running training (a run in status ``running`` whose process
        is alive) reads. Without it that is refused before an image is read.

    Returns
    -------
    Path
        The dataset folder (:func:`core.prepare.dataset.load_dataset` reads it).

    Raises
    ------
    GalaxyMorphError
        For bad parameters, an ``out`` that may not be replaced (or too long a name for the file
        system, or under a file), when another build is writing ``out``
        (:class:`core.prepare.dataset.DatasetBusyError`), and when a class has too few images left to
        split (the message names the class and what to change).
    """
    if not isinstance(spec, BuildSpec):
        raise ConfigError(f"spec must be a BuildSpec; got {type(spec).__name__}. Build one with core.prepare.spec.BuildSpec(...).")
    source = source if source is not None else load_source(spec.source)
    config = resolve_centre(spec.preprocess, source.kind)
    # Checked now, before any image is read; apply_quality_filter's messages name the parameter.
    apply_quality_filter(pd.DataFrame(columns=list(_FILTER_COLUMNS)), spec.thresholds, config.crop)
    the_scheme = resolve_scheme(spec, source)
    frozen = read_split_file(source.root)  # a damaged split file is refused before any image is read
    params = _params(spec, source, the_scheme, catalog=resolve_catalog(source, spec.catalog), config=config)
    out = Path(out) if out is not None else data_layout().dataset(_auto_name(source, params))
    check_output_path(out, option="--out", extra_chars=NAME_OVERHEAD)
    # Held until the new version is in place: a second build into the same folder is refused. On a
    # full disk the staging folder goes with the error, so nothing partial is left.
    with out_of_space_as_error(out), dataset_writer(out):
        saved, n_kept, n_candidates = _build_locked(
            spec, source=source, config=config, the_scheme=the_scheme, params=params, out=out, n_jobs=n_jobs,
            backend=backend, progress=progress, force=force, replace_trained=replace_trained,
            force_while_training=force_while_training, frozen=frozen)
    if n_kept is not None:
        logger.info("dataset %s: %d images kept of %d candidates", saved, n_kept, n_candidates)
    return saved


def _build_locked(spec: BuildSpec, *, source: Source, config: PreprocessConfig, the_scheme: Scheme, params: dict[str, Any],
                  out: Path, n_jobs: int | None, backend: str | None, progress: Progress | None, force: bool,
                  replace_trained: bool, force_while_training: bool,
                  frozen: Any) -> tuple[Path, int | None, int | None]:
    """:func:`build` from the output check on, under the dataset's writer lock."""
    # Before any image is read: a folder that is not a dataset of ours is refused at once.
    manifest = check_replaceable(
        out, kind=DATASET, force=force, protect=[source.root],
        same=lambda old: _choices(old.get("params")) == _choices(params),
    )
    current_hash = source_hash(source)
    if not force and manifest is not None and is_dataset(out):
        if manifest.get("params") == params and manifest.get("source_hash") == current_hash:
            logger.info("cache hit: %s already holds this dataset (same parameters, unchanged source)", out)
            return out, None, None
    if manifest is not None and not force_while_training:
        _refuse_if_training(out)
    if manifest is not None and not replace_trained:
        _refuse_if_trained(out)

    # Only the images of objects the labels leave eligible are measured (and cached) here.
    candidates, _ = select_candidates(
        source, scheme=the_scheme, label_from=spec.label_from, conflicts=spec.conflicts,
        exclude_dwarfs=spec.exclude_dwarfs, exclude_uncertain=spec.exclude_uncertain, catalog=params["catalog"],
        duplicate_arcsec=spec.duplicate_arcsec,
    )
    _check_positions(candidates, catalog=params["catalog"], allow_duplicates=spec.allow_duplicates)
    n_jobs = resolve_jobs(n_jobs)
    metrics = compute_metrics(
        source, paths=candidates.loc[candidates["reason"] == "", "path"].tolist(), n_jobs=n_jobs, backend=backend,
        progress=progress,
    )
    selection = select(spec, metrics, source=source)
    candidates = selection.table
    val_fraction, test_fraction = spec.val_fraction, spec.test_fraction
    unreadable = candidates[candidates["reason"] == "unreadable"]
    for name, path, error in zip(unreadable["name"], unreadable["path"], unreadable["read_error"]):
        logger.warning("%s left out: %s: %s", name, path, error)  # one line per bad file; the batch goes on

    kept = candidates[candidates["kept"]].reset_index(drop=True)
    _check_classes(kept, the_scheme.classes, val_fraction=val_fraction, test_fraction=test_fraction,
                   reasons=selection.reasons())
    metric_columns = [c for c in metrics.columns if c not in ("path", "read_error")]
    # The array is written in a marked staging folder: a build killed meanwhile leaves nothing
    # the next build of this target cannot recognise as its own and remove.
    with staging_folder(out) as stage:
        x_path = stage / "x.npy"
        failures = _preprocess_all(
            kept, config, x_path=x_path, metric_columns=metric_columns, n_jobs=n_jobs, backend=backend,
            progress=progress,
        )
        if failures:
            for name, error in failures.items():
                logger.warning("%s left out: %s", name, error)  # one line per bad file; the batch goes on
            failed = candidates["name"].isin(list(failures)).to_numpy()
            candidates.loc[failed, "kept"] = False
            candidates.loc[failed, "reason"] = "preprocess_error"
            candidates.loc[failed, "read_error"] = candidates.loc[failed, "name"].map(failures)
            keep_rows = ~kept["name"].isin(list(failures)).to_numpy()
            _drop_rows(x_path, keep_rows)
            kept = kept[keep_rows].reset_index(drop=True)
            _check_classes(kept, the_scheme.classes, val_fraction=val_fraction, test_fraction=test_fraction)
        if frozen is None:
            kept["split"] = split_by_object(kept["label"], seed=spec.seed, val_fraction=val_fraction, test_fraction=test_fraction)
        else:  # the source's own test set, whatever crop or threshold kept the rest
            kept["split"] = split_around_test(kept["label"], kept["name"].str.strip().isin(frozen), seed=spec.seed,
                                              val_fraction=val_fraction, test_fraction=test_fraction)
        classes = list(the_scheme.classes)
        kept["y"] = kept["label"].map({c: i for i, c in enumerate(classes)}).astype(np.int64)
        candidates["split"] = candidates["name"].map(dict(zip(kept["name"], kept["split"]))).fillna("")
        reasons = candidates.loc[~candidates["kept"], "reason"].map(lambda r: r.split(":")[0]).value_counts()
        manifest = {
            "params": params,
            "spec": spec.to_dict(),
            "spec_sha256": spec.digest(),
            "source": str(source.root),
            "source_kind": source.kind,
            "source_hash": current_hash,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "n_candidates": int(len(candidates)),
            "reasons": {str(k): int(v) for k, v in reasons.items()},
            "conflicts": selection.conflicts.to_dict(),
            "objects_without_position": selection.objects_without_position,
            "survey": selection.survey,
            "band": selection.band,
            "survey_mix": selection.survey_mix.to_dict("records"),
            # A list, not a mapping: the manifest is written with sorted keys, and the order is the point.
            "unclassified_types": [
                {"type": str(k), "objects": int(v)}
                for k, v in unclassified_types(
                    candidates[candidates["reason"] == "unclassified"], top=UNCLASSIFIED_TYPES_SHOWN
                ).items()
            ],
            "scheme_description": the_scheme.description,
        }
        meta = kept[["name", "label", "y", "split", "path"]]
        saved = save_dataset(out, x=x_path, meta=meta, classes=classes, manifest=manifest, images=_images_table(candidates))
    return saved, len(kept), len(candidates)


def build_dataset(
    source: Source | str | Path,
    *,
    scheme: str | Path | None = None,
    preprocess: PreprocessConfig | None = None,
    out: str | Path | None = None,
    n_jobs: int | None = None,
    backend: str | None = None,
    progress: Progress | None = None,
    force: bool = False,
    replace_trained: bool = False,
    force_while_training: bool = False,
    **choices: Any,
) -> Path:
    """:func:`build` with the spec's fields as keywords (tests and scripts build from Python this way).

    ``choices`` are :class:`~core.prepare.spec.BuildSpec` fields (``catalog="all"``, ``seed=1``, ...) and
    :class:`~core.prepare.quality.QualityThresholds` fields (``min_quality=0.0``); the rest is as in :func:`build`.
    """
    thresholds = {name: choices.pop(name) for name in QUALITY_FIELDS if name in choices}
    unknown = sorted(set(choices) - {f.name for f in dataclasses.fields(BuildSpec)})
    if unknown:
        raise ConfigError(
            f"build_dataset got unknown option(s) {', '.join(unknown)}; allowed are the fields of BuildSpec and "
            "QualityThresholds. Check the spelling."
        )
    loaded = source if isinstance(source, Source) else load_source(source)
    if isinstance(choices.get("seed"), np.integer):
        choices["seed"] = int(choices["seed"])
    spec = BuildSpec(
        source=str(loaded.root), scheme=None if scheme is None else str(scheme),
        preprocess=preprocess if preprocess is not None else preprocess_defaults(loaded),
        thresholds=QualityThresholds(**thresholds), **choices,
    )
    return build(spec, out=out, n_jobs=n_jobs, backend=backend, progress=progress, force=force, source=loaded,
                 replace_trained=replace_trained, force_while_training=force_while_training)


def _first_run_ids(runs: list) -> str:
    """The first three run ids, for a refusal that names the runs in the way."""
    return ", ".join(run.id for run in runs[:3]) + (" ..." if len(runs) > 3 else "")


def _refuse_if_training(out: Path) -> None:
    training = provenance.training_runs(out)
    if training:
        raise ConfigError(
            f"--out {out} holds a dataset that {len(training)} running training(s) read "
            f"({_first_run_ids(training)}); replacing it now "
            "would change their data under them. Wait for them to finish, build under another --out, or pass "
            "--force-while-training to replace it anyway."
        )


def _refuse_if_trained(out: Path) -> None:
    dependent = provenance.dependent_runs(out)
    if dependent:
        raise ConfigError(
            f"--out {out} holds a dataset that {len(dependent)} finished run(s) were trained on "
            f"({_first_run_ids(dependent)}); "
            "rebuilding it would leave them describing images that are gone. Build under another name with "
            "--out, or pass --replace-trained to replace it anyway (those runs are then flagged as stale)."
        )


def _choices(params: Any) -> Any:
    """The user's parameters without the code versions: a rebuild after an upgrade is the same choice."""
    if not isinstance(params, dict):
        return params
    return {k: v for k, v in params.items() if not k.endswith("_version")}


def resolve_centre(config: PreprocessConfig, kind: str) -> PreprocessConfig:
    """``config`` with its ``centre="auto"`` resolved for a source kind.

    Cutouts of a :attr:`~core.acquire.sources.SourceKind.centred` kind (Galaxy Zoo) are centred on
    the galaxy already, so ``"auto"`` becomes ``"none"`` (the image centre) there; elsewhere ``"auto"``
    stays the catalogue position through the WCS, else the brightest source. An explicit mode is kept.
    """
    if config.centre == "auto" and get_source_kind(kind).centred:
        return dataclasses.replace(config, centre="none")
    return config


def _file_sha(scheme: str | Path) -> str | None:
    path = Path(str(scheme))
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


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


def _check_positions(candidates: pd.DataFrame, *, catalog: str, allow_duplicates: bool) -> int:
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


def _check_classes(
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
    _check_classes(kept, selection.scheme.classes, val_fraction=spec.val_fraction, test_fraction=spec.test_fraction,
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


def _preprocess_chunk(task: tuple[str, int, list[tuple[str, float, float, dict[str, Any]]], dict[str, Any]]) -> list[str]:
    """Preprocess a few images into their rows of the ``.npy`` file; an error text per image (``""`` if it worked).

    The worker writes the pixels itself (through a memory map of ``x_path``, from ``start`` on),
    so only the error texts travel back; an image that fails leaves its row at zero. Each
    image's stored metrics give preprocessing its sky and centre, which are then not measured
    a second time.
    """
    from core.images import read_image

    x_path, start, items, config_dict = task
    config = PreprocessConfig.from_dict(config_dict)
    x = np.lib.format.open_memmap(x_path, mode="r+")
    errors = []
    for i, (path, ra, dec, metrics) in enumerate(items):
        try:
            image = read_image(path, rgb=config.channels == 3)
            x[start + i] = preprocessing.preprocess(image, config, ra=finite_or_none(ra), dec=finite_or_none(dec), metrics=metrics)
            errors.append("")
        except (ImageReadError, ValueError) as exc:
            errors.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - one odd image is one line, never the end of the batch
            errors.append(f"preprocessing failed ({type(exc).__name__}: {exc})")
    x.flush()
    return errors


def _preprocess_all(
    kept: pd.DataFrame,
    config: PreprocessConfig,
    *,
    x_path: Path,
    metric_columns: Sequence[str],
    n_jobs: int,
    backend: str | None,
    progress: Progress | None,
    chunk_size: int = 32,
) -> dict[str, str]:
    """Preprocess all kept images into the float32 ``.npy`` file ``x_path``; return the failures by name.

    The array is never held whole: the workers write their chunks into a memory map of the file.
    """
    shape = (len(kept), config.size, config.size, config.channels)
    _reserve(np.lib.format.open_memmap(x_path, mode="w+", dtype=np.float32, shape=shape), x_path)
    metrics = kept[list(metric_columns)].to_dict("records")
    items = list(zip(kept["path"], kept["ra"], kept["dec"], metrics))
    tasks = [(str(x_path), start, items[start : start + chunk_size], config.to_dict())
             for start in range(0, len(items), chunk_size)]
    if progress is not None:
        progress.total = (progress.total or 0) + len(items)
    failures: dict[str, str] = {}
    for (_, start, chunk, _), errors in zip(tasks, run_parallel(_preprocess_chunk, tasks, n_jobs=n_jobs, backend=backend)):
        for offset, error in enumerate(errors):
            if error:
                failures[str(kept["name"].iloc[start + offset])] = error
        if progress is not None:
            progress.update(len(chunk), failed=sum(bool(e) for e in errors), step="preprocess")
    return failures


def _reserve(array: np.memmap, path: Path) -> None:
    """Flush the new memory-mapped ``.npy`` file ``path`` and reserve its blocks on disk.

    A worker writing through the map into a file the full disk cannot back dies of SIGBUS;
    reserved blocks make the full disk an ``OSError`` here, before any image is written.
    """
    array.flush()
    with open(path, "r+b") as handle:
        preallocate(handle, os.fstat(handle.fileno()).st_size, path=path)


def _drop_rows(x_path: Path, keep: np.ndarray, *, rows_per_copy: int = 1024) -> None:
    """Rewrite the ``.npy`` file ``x_path`` with only the rows where ``keep`` is true, a slab at a time."""
    x = np.load(x_path, mmap_mode="r")
    kept_path = x_path.with_name(x_path.name + ".kept")
    y = np.lib.format.open_memmap(kept_path, mode="w+", dtype=x.dtype, shape=(int(keep.sum()), *x.shape[1:]))
    _reserve(y, kept_path)
    at = 0
    for start in range(0, len(x), rows_per_copy):
        slab = x[start : start + rows_per_copy][keep[start : start + rows_per_copy]]
        y[at : at + len(slab)] = slab
        at += len(slab)
    y.flush()
    del x, y
    os.replace(kept_path, x_path)


def _images_table(candidates: pd.DataFrame) -> pd.DataFrame:
    """``images.parquet``: every candidate, identifying columns first, metrics after."""
    first = ["name", "label", "kept", "reason", "split", "quality", "path", "prefix", "classification", "requested",
             "duplicate_group", "crop_fraction"]
    return candidates[[c for c in first if c in candidates] + [c for c in candidates if c not in first]]
