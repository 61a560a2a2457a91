"""Image quality of a source: the metrics table, its cache, the score and the filter.

Every image is measured once (:func:`compute_metrics`: :func:`core.prepare.preprocessing.measure_quality`
per image, cached per source in ``<source>/.cache/metrics.parquet``, keyed by file, size,
modification time, :data:`METRICS_VERSION` and :data:`core.prepare.preprocessing.QUALITY_VERSION`); after
that the sliders only filter the table. The filter's rules are polars expressions evaluated lazily,
so they scale to a full NED scrape's million-row metrics table: :func:`filter_lazy` is the one
implementation of the rules; :func:`apply_quality_filter` (pandas in, pandas out) calls it, and so
does everything that decides which images a dataset keeps.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from core.acquire.catalogue import Source, load_source
from core.errors import ConfigError, ImageReadError
from core.io import atomic_path, check_regular
from core.parallel import resolve_jobs, run_parallel
from core.prepare.preprocessing import (
    CROP_FRACTIONS,
    CROP_METRICS,
    QUALITY_VERSION,
    _is_integer,
    _is_number,
    crop_column,
    measure_quality,
)
from core.progress import Progress
from core.spec import QualityThresholds

logger = logging.getLogger(__name__)

REASONS: tuple[str, ...] = (
    "unreadable",
    "blank",
    "too_small",
    "missing_pixels",
    "saturated",
    "low_snr",
    "low_quality",
    "galaxy_exceeds_crop",
)
"""Rejection reasons in the order the rules are tried (the first that fails is the reason)."""
COLUMNS: dict[str, float | bool | str] = {
    "min_side": float("nan"),
    "finite_fraction": float("nan"),
    "saturated_fraction": 0.0,
    "snr": float("nan"),
    "background_flatness": float("nan"),
    "source_radius_frac": 0.0,
    "blank": False,
    "read_error": "",
}
"""The metric columns the rules read, and the value a missing column stands for."""
CROP_COLUMNS: tuple[str, ...] = tuple(crop_column(m, f) for m in CROP_METRICS for f in CROP_FRACTIONS)
"""The same metrics measured inside each crop of :data:`core.prepare.preprocessing.CROP_FRACTIONS`; a rule
reads the one of the crop in use (a table without them, from an older cache, falls back to the
whole frame's)."""


def from_pandas(metrics: pd.DataFrame) -> pl.LazyFrame:
    """The :data:`COLUMNS` of a pandas metrics table as a lazy frame (numbers coerced, as pandas would)."""
    data: dict[str, object] = {}
    for name in (*COLUMNS, *CROP_COLUMNS):
        if name not in metrics:
            continue
        column = metrics[name]
        if name == "read_error":
            data[name] = column.where(column.notna(), "").astype(str).to_numpy()
        elif name == "blank":
            data[name] = pl.Series(name, column.astype(object).where(column.notna(), None).tolist(), dtype=pl.Boolean)
        else:
            data[name] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    return pl.DataFrame(data, height=len(metrics)).lazy() if data else pl.DataFrame(height=len(metrics)).lazy()


def quality_expr() -> pl.Expr:
    """``quality`` in [0, 1]: the geometric mean of the S/N, completeness, saturation and sky scores
    (see :func:`quality_score`); 0 for blank rows and rows with a missing metric."""
    snr = pl.col("snr").clip(0, 1e6)
    s_snr = snr**2 / (snr**2 + 400.0)
    s_finite = pl.col("finite_fraction").clip(0, 1) ** 4
    s_saturated = (-pl.col("saturated_fraction").clip(0, 1) / 0.002).exp()
    s_flat = pl.col("background_flatness").clip(0, 1)
    score = (s_snr * s_finite * s_saturated * s_flat) ** 0.25
    score = pl.when(score.is_finite().fill_null(False) & ~pl.col("blank").fill_null(False)).then(score).otherwise(0.0)
    return score.clip(0.0, 1.0).alias("quality")


def _prepared(metrics: pl.LazyFrame) -> pl.LazyFrame:
    present = set(metrics.collect_schema().names())
    fill = [pl.lit(value).alias(name) for name, value in COLUMNS.items() if name not in present]
    fill += [pl.lit(None, pl.Float64).alias(name) for name in CROP_COLUMNS if name not in present]
    frame = metrics.with_columns(fill) if fill else metrics
    numeric = [name for name in (*COLUMNS, *CROP_COLUMNS) if name not in ("blank", "read_error")]
    # Polars orders NaN above every number (NaN >= 32 is true), numpy compares it false: as null,
    # a missing metric fails every ">= limit" rule and no "> limit" rule, as apply_quality_filter documents.
    return frame.with_columns(
        pl.col("blank").cast(pl.Boolean),
        pl.col("read_error").fill_null("").cast(pl.String),
        *(pl.col(name).cast(pl.Float64).fill_nan(None) for name in numeric),
    )


def reason_code(thresholds: QualityThresholds, *, crop: float | str = 0.5) -> pl.Expr:
    """``reason_code`` (UInt8): 0 when kept, else 1 + the index in :data:`REASONS` of the first rule failed.

    Reads the :data:`COLUMNS` (prepared: NaN as null) and ``quality``. A small integer, not a
    string, so a slider move over a million rows builds no million strings.
    """
    crop_value = pl.col(crop) if isinstance(crop, str) else pl.lit(float(crop))
    t = thresholds

    def below(column: pl.Expr, limit: float) -> pl.Expr:
        return ~(column >= limit).fill_null(False)

    rules = [
        pl.col("read_error").str.len_chars() > 0,
        pl.col("blank").fill_null(True),
        below(pl.col("min_side"), t.min_size),
        below(at_crop("finite_fraction", crop_value), t.min_finite),
        (at_crop("saturated_fraction", crop_value) > t.max_saturated).fill_null(False),
        below(at_crop("snr", crop_value), t.min_snr),
        pl.col("quality") < t.min_quality,
        (t.extent * pl.col("source_radius_frac") > crop_value / 2).fill_null(False),
    ]
    code = pl.when(rules[0]).then(pl.lit(1, pl.UInt8))
    for number, rule in enumerate(rules[1:], start=2):
        code = code.when(rule).then(pl.lit(number, pl.UInt8))
    return code.otherwise(pl.lit(0, pl.UInt8)).alias("reason_code")


def at_crop(metric: str, crop: pl.Expr) -> pl.Expr:
    """``metric`` as measured inside the crop of :data:`~core.prepare.preprocessing.CROP_FRACTIONS` nearest ``crop``.

    A lookup, not a measurement: each metric was measured once per crop fraction, so a slider
    move re-reads a column. Rows without that column's value (an older cache) use the whole
    frame's. A crop beyond the largest fraction uses the largest.
    """
    fractions = sorted(CROP_FRACTIONS)
    chain = pl.when(crop < (fractions[0] + fractions[1]) / 2).then(pl.col(crop_column(metric, fractions[0])))
    for low, high in zip(fractions[1:-1], fractions[2:]):
        chain = chain.when(crop < (low + high) / 2).then(pl.col(crop_column(metric, low)))
    chain = chain.otherwise(pl.col(crop_column(metric, fractions[-1])))
    return pl.coalesce(chain, pl.col(metric))


def with_quality(metrics: pl.LazyFrame) -> pl.LazyFrame:
    """``metrics`` prepared for :func:`reason_code` (missing columns filled, NaN as null), with ``quality``.

    The score does not depend on any slider: compute it once and filter the result many times.
    """
    return _prepared(metrics).with_columns(quality_expr())


def filter_lazy(metrics: pl.LazyFrame, *, thresholds: QualityThresholds, crop: float | str = 0.5) -> pl.LazyFrame:
    """``metrics`` with ``quality``, ``reason`` (``""`` when kept, else one of :data:`REASONS`) and ``kept``.

    Parameters
    ----------
    metrics : polars.LazyFrame
        The :data:`COLUMNS` (a missing one is filled with its stand-in value; NaN fails its rule).
    thresholds : QualityThresholds
    crop : float or str
        The crop fraction, or the name of a column with one fraction per row.
    """
    return with_quality(metrics).with_columns(reason_code(thresholds, crop=crop)).with_columns(
        _reason_name(),
        (pl.col("reason_code") == 0).alias("kept"),
    ).drop("reason_code")


def _reason_name() -> pl.Expr:
    return pl.col("reason_code").replace_strict(
        list(range(len(REASONS) + 1)), ["", *REASONS], return_dtype=pl.String
    ).alias("reason")


def count_lazy(
    metrics: pl.LazyFrame, *, thresholds: QualityThresholds, crop: float | str = 0.5, by: str = "label"
) -> pl.LazyFrame:
    """``by, reason, n``: rows per group and reason (``""`` kept), from :func:`with_quality` output.

    What a slider move needs: a table of counts, not a million decisions.
    """
    return (
        metrics.group_by(by, reason_code(thresholds, crop=crop)).len("n")
        .with_columns(_reason_name())
        .select(by, "reason", "n")
    )


# --------------------------------------------------------------------------- the metrics table

METRICS_VERSION = 3
"""Bump when the builder's own cached columns change (2: ``pixel_scale_arcsec``; 3: ``header_survey``,
``header_band``); changes to
:func:`~core.prepare.preprocessing.measure_quality` bump :data:`core.prepare.preprocessing.QUALITY_VERSION`."""
CACHE_FILE = Path(".cache") / "metrics.parquet"
_KEY_COLUMNS = ("path", "size", "mtime_ns", "ra", "dec", "metrics_version", "quality_version")
SURVEY_KEYWORDS = ("SURVEY",)
BAND_KEYWORDS = ("FILTER", "BAND")
def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _file_key(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a file, (-1, -1) when it is missing (then the read error is cached too)."""
    try:
        stat = os.stat(path)
    except OSError:
        return -1, -1
    return int(stat.st_size), int(stat.st_mtime_ns)


def measure_images(items: Sequence[tuple[str, float, float]]) -> list[dict[str, Any]]:
    """Quality metrics of a few ``(path, ra, dec)`` images, as the metrics cache stores them.

    A file that cannot be read gets its reason in ``read_error`` instead.
    """
    return _measure_chunk(items)


def _measure_chunk(items: Sequence[tuple[str, float, float]]) -> list[dict[str, Any]]:
    """Quality metrics of a few images; a file that cannot be read gets its reason instead."""
    from core.images import read_image  # looked up per call, so a test can prove no image is read

    rows = []
    for path, ra, dec in items:
        row: dict[str, Any] = {"path": path, "read_error": ""}
        try:
            image = read_image(path)
            row.update(measure_quality(image, ra=_finite(ra), dec=_finite(dec)))
            # Cached so a crop in arcsec can be turned into each image's crop fraction without a read.
            scale = image.pixel_scale_arcsec
            row["pixel_scale_arcsec"] = scale if scale is not None and np.isfinite(scale) and scale > 0 else np.nan
            # Where the catalogue does not say which survey an image is from, its header may.
            row["header_survey"] = _header_text(image.header, SURVEY_KEYWORDS)
            row["header_band"] = _header_text(image.header, BAND_KEYWORDS)
        except ImageReadError as exc:
            row["read_error"] = exc.reason
        except Exception as exc:  # noqa: BLE001 - a readable file with pathological pixels: one line, go on
            row["read_error"] = f"metrics failed ({type(exc).__name__}: {exc})"
        rows.append(row)
    return rows


def _header_text(header: Any, keywords: Sequence[str]) -> str:
    for keyword in keywords:
        value = header.get(keyword) if header is not None else None
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def compute_metrics(
    source: Source | str | Path,
    *,
    paths: Sequence[str] | None = None,
    n_jobs: int | None = None,
    backend: str | None = None,
    progress: Progress | None = None,
    chunk_size: int = 16,
    measured: dict[str, dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Quality metrics of every image of a source (or of ``paths``), cached on disk.

    Parameters
    ----------
    source : Source or path
        The source; its cache lives in ``<root>/.cache/metrics.parquet``.
    paths : sequence of str, optional
        Only these images (absolute paths from ``source.table["path"]``); default all.
    n_jobs : int, optional
        Worker processes; default ``settings.n_workers``.
    backend : str, optional
        joblib backend; default ``settings.joblib_backend``. With the ``dask_scheduler``
        setting the work goes to a dask cluster (:func:`core.parallel.run_parallel`).
    progress : Progress, optional
        Advanced once per image measured (cached images are not counted).
    chunk_size : int
        Images per task; the cache is saved after every round of tasks, so a killed run
        resumes with what was done.
    measured : dict, optional
        Rows of :func:`measure_images` already taken elsewhere (the sample renderer measures each
        image it writes), by absolute path: stored as they are instead of reading those images.

    Returns
    -------
    DataFrame
        One row per path: :func:`~core.prepare.preprocessing.measure_quality` columns and
        ``read_error`` (``""`` when the file was read). A bad file never stops the batch.
    """
    source = source if isinstance(source, Source) else load_source(source)
    n_jobs = resolve_jobs(n_jobs)
    table = source.table[source.table["path"].notna()].drop_duplicates("path")
    if paths is not None:
        table = table[table["path"].isin(set(paths))]
    wanted = pd.DataFrame(
        {
            "path": table["path"].astype(str).to_numpy(),
            "ra": table["ra"].to_numpy(dtype=float),
            "dec": table["dec"].to_numpy(dtype=float),
        }
    )
    keys = [_file_key(p) for p in wanted["path"]]
    # Typed even when empty: a source whose every file was refused still merges with the cache.
    wanted["size"] = np.array([k[0] for k in keys], dtype=np.int64)
    wanted["mtime_ns"] = np.array([k[1] for k in keys], dtype=np.int64)
    wanted["metrics_version"] = METRICS_VERSION
    wanted["quality_version"] = QUALITY_VERSION

    cache_path = source.root / CACHE_FILE
    cache = _read_cache(cache_path)
    merged = wanted.merge(cache, on=list(_KEY_COLUMNS), how="left", indicator=True)
    todo = wanted[(merged["_merge"] == "left_only").to_numpy()]
    logger.info("metrics: %d images, %d cached, %d to measure", len(wanted), len(wanted) - len(todo), len(todo))
    if len(todo):
        measured = measured or {}
        fresh: list[dict[str, Any]] = [{**measured[p], "path": p} for p in todo["path"] if p in measured]
        items = [item for item in zip(todo["path"], todo["ra"], todo["dec"]) if item[0] not in measured]
        if progress is not None:
            progress.total = (progress.total or 0) + len(items)
        tasks = list(_chunks(items, chunk_size))
        saved_at = time.monotonic()
        for rows in run_parallel(_measure_chunk, tasks, n_jobs=n_jobs, backend=backend):
            fresh.extend(rows)
            if progress is not None:
                failed = sum(bool(r["read_error"]) for r in rows)
                progress.update(len(rows), failed=failed, step="metrics")
            if time.monotonic() - saved_at > 10:
                cache = _save_cache(cache_path, cache, todo, fresh)
                saved_at = time.monotonic()
        cache = _save_cache(cache_path, cache, todo, fresh)
        merged = wanted.merge(cache, on=list(_KEY_COLUMNS), how="left")
    else:
        merged = merged.drop(columns="_merge")
    merged["read_error"] = merged["read_error"].fillna("").astype(str) if "read_error" in merged else ""
    return merged.drop(columns=["size", "mtime_ns", "metrics_version", "quality_version", "ra", "dec"]).reset_index(
        drop=True
    )


def _read_cache(path: Path) -> pd.DataFrame:
    if not path.exists():
        return _empty_cache()
    try:
        check_regular(path)  # a named pipe would block the read
        cache = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable cache is rebuilt, never fatal
        logger.warning("metrics cache %s unreadable (%s); measuring again", path, exc)
        return _empty_cache()
    if not set(_KEY_COLUMNS) <= set(cache.columns):
        return _empty_cache()
    return cache


def _empty_cache() -> pd.DataFrame:
    """A cache with no rows whose key columns have the types :func:`compute_metrics` merges on."""
    return pd.DataFrame({
        "path": pd.Series(dtype=object), "size": pd.Series(dtype=np.int64),
        "mtime_ns": pd.Series(dtype=np.int64), "ra": pd.Series(dtype=float), "dec": pd.Series(dtype=float),
        "metrics_version": pd.Series(dtype=np.int64), "quality_version": pd.Series(dtype=np.int64),
    })


def _save_cache(path: Path, cache: pd.DataFrame, todo: pd.DataFrame, fresh: list[dict[str, Any]]) -> pd.DataFrame:
    """Add the measured rows to the cache (replacing older entries of those paths) and write it."""
    measured = pd.DataFrame(fresh)
    keys = todo[list(_KEY_COLUMNS)].drop_duplicates("path")
    measured = keys.merge(measured, on="path", how="inner")
    stale = cache["path"].isin(measured["path"]) if len(cache) else np.zeros(0, dtype=bool)
    parts = [frame for frame in (cache[~stale], measured) if len(frame)]
    updated = pd.concat(parts, ignore_index=True) if parts else measured
    updated["read_error"] = updated["read_error"].fillna("").astype(str) if "read_error" in updated else ""
    with atomic_path(path) as tmp:
        updated.to_parquet(tmp, index=False)
    return updated


def quality_score(metrics: pd.DataFrame) -> pd.Series:
    """One number in [0, 1] per image: the geometric mean of four component scores.

    - S/N: ``snr**2 / (snr**2 + 20**2)`` (0.5 at S/N 20, 0.96 at 100);
    - completeness: ``finite_fraction**4`` (0.81 with 5 % of the pixels missing);
    - saturation: ``exp(-saturated_fraction / 0.002)``;
    - sky: ``background_flatness``.

    Blank images and rows with a missing metric score 0. Vectorised (no per-row Python).
    """
    _require_columns(metrics, ("snr", "finite_fraction", "saturated_fraction", "background_flatness"))
    score = with_quality(from_pandas(metrics)).select("quality").collect()["quality"]
    return pd.Series(score.to_numpy(), index=metrics.index, name="quality")


def apply_quality_filter(
    metrics: pd.DataFrame,
    *,
    min_quality: float = QualityThresholds.min_quality,
    min_size: int = QualityThresholds.min_size,
    crop: float | np.ndarray | pd.Series = 0.5,
    min_snr: float = QualityThresholds.min_snr,
    min_finite: float = QualityThresholds.min_finite,
    max_saturated: float = QualityThresholds.max_saturated,
    extent: float = QualityThresholds.extent,
) -> pd.DataFrame:
    """Decide which images to keep, from the metrics table alone.

    Each row gets ``quality`` (:func:`quality_score`), ``kept`` and ``reason``: the first rule it
    fails, in this order (``""`` when kept):

    1. ``unreadable``: the ``read_error`` column (if any) is set;
    2. ``blank``: no finite pixel, or all equal;
    3. ``too_small``: ``min_side < min_size``;
    4. ``missing_pixels``: ``finite_fraction < min_finite``;
    5. ``saturated``: ``saturated_fraction > max_saturated``;
    6. ``low_snr``: ``snr < min_snr``;

    Rules 4-6 read the metric measured inside the crop in use (:func:`at_crop`): a NaN border
    or a saturated star outside the crop is not what the network sees. The quality score of
    rule 7 stays the whole frame's, so it ranks images the same whatever the crop.
    7. ``low_quality``: ``quality < min_quality``;
    8. ``galaxy_exceeds_crop``: ``extent * source_radius_frac > crop / 2`` (the galaxy, taken as
       ``extent`` half-light radii, would not fit in the crop; with the default ``extent=1``,
       more than half its light would fall outside). Half-light radii measured on stretched
       JPEGs come out larger than the physical ones, which is why the default is not stricter.

    Parameters
    ----------
    metrics : pandas.DataFrame
        Rows of :func:`measure_quality` output (plus an optional ``read_error`` column).
    min_quality : float, default 0.5
        In [0, 1].
    min_size : int, default 32
        Smallest acceptable image side in pixels.
    crop : float or array-like, default 0.5
        The crop fraction the dataset will use, in (0, 1]; or one fraction per row (> 0), for a
        crop of fixed angular size, which is a different fraction of each image.
    min_snr, min_finite, max_saturated, extent : float
        Thresholds of rules 6, 4, 5 and 8. The defaults were set on the built-in sample
        (2,057 images): they keep all its clean and off-centre images and reject all blank and
        tiny ones, 99 % of the saturated, 98 % of the NaN-striped and 91 % of the low-S/N ones.
        ``max_saturated=1e-4`` rejects any image with a saturated patch bigger than a few
        pixels, a saturated star included.

    Returns
    -------
    pandas.DataFrame
        A copy of ``metrics`` with ``quality``, ``kept`` and ``reason``.
    """
    if not _is_number(min_quality) or not 0 <= min_quality <= 1:
        raise ConfigError(f"min_quality must be in [0, 1]; got {min_quality!r}. Use e.g. 0.3.")
    if not _is_integer(min_size) or min_size < 0:
        raise ConfigError(
            f"min_size must be a non-negative integer; got {min_size!r}. Use a side in pixels, e.g. 32."
        )
    if np.ndim(crop) == 0:
        if not _is_number(crop) or not 0 < crop <= 1:
            raise ConfigError(f"crop must be in (0, 1]; got {crop!r}. Use a fraction of the image side.")
    else:
        crop = np.asarray(crop, dtype=float)
        if crop.shape != (len(metrics),) or not (np.isfinite(crop) & (crop > 0)).all():
            raise ConfigError(
                f"crop per row must be {len(metrics)} positive fractions, one per row of metrics; got shape "
                f"{crop.shape}. Pass one float, or the crop fraction of each image."
            )
    thresholds = {
        "min_snr": min_snr, "min_finite": min_finite, "max_saturated": max_saturated, "extent": extent
    }
    for name, value in thresholds.items():
        if not _is_number(value) or value < 0:
            raise ConfigError(f"{name} must be a non-negative number; got {value!r}.")
    _require_columns(metrics, ("min_side", "source_radius_frac"))
    frame = from_pandas(metrics)
    if np.ndim(crop) == 0:
        crop_arg: float | str = float(crop)
    else:
        frame, crop_arg = frame.with_columns(pl.Series("_crop", crop)), "_crop"
    chosen = QualityThresholds(min_quality=min_quality, min_size=int(min_size), **thresholds)
    judged = filter_lazy(frame, thresholds=chosen, crop=crop_arg).select("quality", "reason").collect()
    out = metrics.copy()
    out["quality"] = judged["quality"].to_numpy()
    out["reason"] = judged["reason"].to_numpy().astype(object)
    out["kept"] = out["reason"] == ""
    return out


def _require_columns(metrics: pd.DataFrame, names: tuple[str, ...]) -> None:
    missing = [name for name in names if name not in metrics]
    if missing:
        raise ConfigError(
            f"metrics is missing column(s) {', '.join(missing)}; got {', '.join(map(str, metrics.columns))}. "
            "Build it from measure_quality() rows."
        )

