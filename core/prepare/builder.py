"""The dataset builder: from a source folder to a dataset folder every model trains on.

:func:`build` (and :func:`build_dataset`, its keyword form) runs the whole chain, recording why each
candidate was left out: quality metrics -> :func:`core.prepare.selection.select` (labels, conflicts,
one catalogue, positional duplicates, one survey and band, quality filter) -> preprocessing ->
stratified split by object -> save.

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

from core.acquire.catalogue import Source, load_source
from core.prepare.dataset import is_dataset
from core.prepare.save import NAME_OVERHEAD, dataset_writer, save_dataset, staging_folder
from core.errors import ConfigError, ImageReadError
from core.io import DATASET, check_output_path, check_replaceable, out_of_space_as_error, preallocate
from core.parallel import resolve_jobs, run_parallel
from core.paths import data_layout
from core.acquire.labels import Scheme, unclassified_types
from core.acquire.measure import METRICS_VERSION, QUALITY_VERSION, file_key
from core.prepare import preprocessing, provenance
from core.prepare.preprocessing import PreprocessConfig
from core.prepare.quality import QUALITY_FIELDS, QualityThresholds, apply_quality_filter, compute_metrics
from core.prepare.selection import (
    check_classes,
    check_positions,
    preprocess_defaults,
    resolve_catalog,
    resolve_centre,
    resolve_scheme,
    select,
    select_candidates,
    split_by_object,
)
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


def _auto_name(source: Source, params: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    catalog = params["catalog"].strip("[]").replace("/", "_")
    return f"{source.root.name}-{params['scheme']}-{catalog}-{params['preprocess']['size']}px-{digest}"


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

    The chain is :func:`~core.prepare.selection.select` (labels, conflicts, catalogue, duplicates, survey, quality),
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
        (:class:`core.prepare.save.DatasetBusyError`), and when a class has too few images left to
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
    check_positions(candidates, catalog=params["catalog"], allow_duplicates=spec.allow_duplicates)
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
    check_classes(kept, the_scheme.classes, val_fraction=val_fraction, test_fraction=test_fraction,
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
            check_classes(kept, the_scheme.classes, val_fraction=val_fraction, test_fraction=test_fraction)
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


def _file_sha(scheme: str | Path) -> str | None:
    path = Path(str(scheme))
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


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
