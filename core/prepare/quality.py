"""Image quality, in one place: the thresholds, the score and the filter, over the metrics measured once per image.

:class:`QualityThresholds` owns the filter's defaults; the builder, the CLI and the sliders read
them from here. Every image is measured once (:func:`compute_metrics`: :func:`measure_quality`
per image, cached per source in ``<source>/.cache/metrics.parquet``; both live in
:mod:`core.acquire.measure`, since the sample measures its images as it writes them, and are
imported from here by the stages above); after that the sliders only filter the table. The
filter's rules are polars expressions evaluated lazily, so they scale to a full NED scrape's
million-row metrics table: :func:`filter_lazy` is the one implementation of the rules;
:func:`apply_quality_filter` (pandas in, pandas out) calls it, and so does everything that
decides which images a dataset keeps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import polars as pl

from core.acquire.measure import CROP_FRACTIONS, CROP_METRICS, compute_metrics, crop_column, measure_quality
from core.errors import ConfigError
from core.fields import option
from core.prepare.preprocessing import PreprocessConfig, is_integer, is_number

__all__ = [  # the measuring (core.acquire.measure) too: the filter's callers measure through here
    "COLUMNS", "CROP_COLUMNS", "QUALITY_FIELDS", "REASONS", "QualityThresholds", "apply_quality_filter", "at_crop",
    "compute_metrics", "count_lazy", "filter_lazy", "from_pandas", "measure_quality", "quality_expr",
    "quality_score", "reason_code", "with_quality",
]




# --------------------------------------------------------------------------- the thresholds


@dataclass(frozen=True)
class QualityThresholds:
    """The quality filter's thresholds (:func:`apply_quality_filter` explains each rule).

    The defaults were set on the built-in sample (2,057 images): they keep all its clean and
    off-centre images and reject all blank and tiny ones, 99 % of the saturated, 98 % of the
    NaN-striped and 91 % of the low-S/N ones. Each field's metadata is its ``build`` flag (:func:`core.fields.option`).

    Attributes
    ----------
    min_quality : float
        Quality score threshold in [0, 1] (rule 7).
    min_size : int
        Smallest image side in pixels (rule 3).
    min_snr : float
        Smallest galaxy signal-to-noise (rule 6).
    min_finite : float
        Smallest fraction of valid pixels (rule 4).
    max_saturated : float
        Largest fraction of saturated pixels (rule 5): any saturated patch bigger than a few
        pixels, a saturated star included.
    extent : float
        Half-light radii of the galaxy that must fit in the crop (rule 8; 0 turns the rule off).
    """

    min_quality: float = field(default=0.5, metadata=option("quality score threshold in [0, 1]",
        label="Minimum quality score"))
    min_size: int = field(default=32, metadata=option("smallest image side in pixels",
        label="Minimum image side (pixels)"))
    min_snr: float = field(default=25.0, metadata=option("smallest galaxy S/N"))
    min_finite: float = field(default=0.99, metadata=option("smallest fraction of valid pixels"))
    max_saturated: float = field(default=1e-4, metadata=option("largest fraction of saturated pixels"))
    extent: float = field(default=1.0, metadata=option(
        "drop a galaxy whose EXTENT half-light radii do not fit in the crop; larger is stricter, 0 turns the rule off"))

    def __post_init__(self) -> None:
        if not is_number(self.min_quality) or not 0 <= self.min_quality <= 1:
            raise ConfigError(f"min_quality must be in [0, 1]; got {self.min_quality!r}. Use e.g. 0.3.")
        if not is_integer(self.min_size) or self.min_size < 0:
            raise ConfigError(
                f"min_size must be a non-negative integer; got {self.min_size!r}. Use a side in pixels, e.g. 32."
            )
        for name in ("min_snr", "min_finite", "max_saturated", "extent"):
            value = getattr(self, name)
            if not is_number(value) or value < 0:
                raise ConfigError(f"{name} must be a non-negative number; got {value!r}.")
        object.__setattr__(self, "min_size", int(self.min_size))
        for name in ("min_quality", "min_snr", "min_finite", "max_saturated", "extent"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def to_dict(self) -> dict[str, float | int]:
        """``{name: value}`` in field order (``min_size`` an int, the rest floats)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


QUALITY_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(QualityThresholds))
"""The thresholds' names, in the order the manifest and the CLI list them."""


# --------------------------------------------------------------------------- the score and the rules

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
"""The same metrics measured inside each crop of :data:`CROP_FRACTIONS`; a rule
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


def reason_code(thresholds: QualityThresholds, *, crop: float | str) -> pl.Expr:
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
    """``metric`` as measured inside the crop of :data:`CROP_FRACTIONS` nearest ``crop``.

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


def filter_lazy(metrics: pl.LazyFrame, *, thresholds: QualityThresholds, crop: float | str) -> pl.LazyFrame:
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
    metrics: pl.LazyFrame, *, thresholds: QualityThresholds, crop: float | str, by: str = "label"
) -> pl.LazyFrame:
    """``by, reason, n``: rows per group and reason (``""`` kept), from :func:`with_quality` output.

    What a slider move needs: a table of counts, not a million decisions.
    """
    return (
        metrics.group_by(by, reason_code(thresholds, crop=crop)).len("n")
        .with_columns(_reason_name())
        .select(by, "reason", "n")
    )


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
    thresholds: QualityThresholds | None = None,
    crop: float | np.ndarray | pd.Series = PreprocessConfig.crop,
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
    7. ``low_quality``: ``quality < min_quality``;
    8. ``galaxy_exceeds_crop``: ``extent * source_radius_frac > crop / 2`` (the galaxy, taken as
       ``extent`` half-light radii, would not fit in the crop; with the default ``extent=1``,
       more than half its light would fall outside). Half-light radii measured on stretched
       JPEGs come out larger than the physical ones, which is why the default is not stricter.

    Rules 4-6 read the metric measured inside the crop in use (:func:`at_crop`): a NaN border
    or a saturated star outside the crop is not what the network sees. The quality score of
    rule 7 stays the whole frame's, so it ranks images the same whatever the crop.

    Parameters
    ----------
    metrics : pandas.DataFrame
        Rows of :func:`measure_quality` output (plus an optional ``read_error`` column).
    thresholds : QualityThresholds, optional
        A build spec's ``thresholds``; default ``QualityThresholds()``.
    crop : float or array-like, default ``PreprocessConfig.crop``
        A build spec's ``preprocess.crop``, in (0, 1]; or one fraction per row (> 0), for a crop
        of fixed angular size, which is a different fraction of each image.

    Returns
    -------
    pandas.DataFrame
        A copy of ``metrics`` with ``quality``, ``kept`` and ``reason``.

    Examples
    --------
    >>> apply_quality_filter(metrics, spec.thresholds, spec.preprocess.crop)  # doctest: +SKIP
    """
    thresholds = QualityThresholds() if thresholds is None else thresholds
    if not isinstance(thresholds, QualityThresholds):
        raise ConfigError(
            f"thresholds must be a QualityThresholds; got {type(thresholds).__name__}. "
            "Use e.g. QualityThresholds(min_quality=0.3)."
        )
    if np.ndim(crop) == 0:
        if not is_number(crop) or not 0 < crop <= 1:
            raise ConfigError(f"crop must be in (0, 1]; got {crop!r}. Use a fraction of the image side.")
    else:
        crop = np.asarray(crop, dtype=float)
        if crop.shape != (len(metrics),) or not (np.isfinite(crop) & (crop > 0)).all():
            raise ConfigError(
                f"crop per row must be {len(metrics)} positive fractions, one per row of metrics; got shape "
                f"{crop.shape}. Pass one float, or the crop fraction of each image."
            )
    _require_columns(metrics, ("min_side", "source_radius_frac"))
    frame = from_pandas(metrics)
    if np.ndim(crop) == 0:
        crop_arg: float | str = float(crop)
    else:
        frame, crop_arg = frame.with_columns(pl.Series("_crop", crop)), "_crop"
    judged = filter_lazy(frame, thresholds=thresholds, crop=crop_arg).select("quality", "reason").collect()
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

