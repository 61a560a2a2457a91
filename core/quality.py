"""The quality filter as polars expressions: the slider rules evaluated lazily, so they scale to a
full NED scrape's million-row metrics table.

:func:`filter_lazy` is the one implementation of the rules; :func:`core.preprocessing.apply_quality_filter`
(pandas in, pandas out) calls it, and so does everything that decides which images a dataset keeps.
"""

from __future__ import annotations

import pandas as pd
import polars as pl

from core.spec import QualityThresholds

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


def from_pandas(metrics: pd.DataFrame) -> pl.LazyFrame:
    """The :data:`COLUMNS` of a pandas metrics table as a lazy frame (numbers coerced, as pandas would)."""
    data: dict[str, object] = {}
    for name in COLUMNS:
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
    (see :func:`core.preprocessing.quality_score`); 0 for blank rows and rows with a missing metric."""
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
    frame = metrics.with_columns(fill) if fill else metrics
    numeric = [name for name in COLUMNS if name not in ("blank", "read_error")]
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

    def below(name: str, limit: float) -> pl.Expr:
        return ~(pl.col(name) >= limit).fill_null(False)

    rules = [
        pl.col("read_error").str.len_chars() > 0,
        pl.col("blank").fill_null(True),
        below("min_side", t.min_size),
        below("finite_fraction", t.min_finite),
        (pl.col("saturated_fraction") > t.max_saturated).fill_null(False),
        below("snr", t.min_snr),
        pl.col("quality") < t.min_quality,
        (t.extent * pl.col("source_radius_frac") > crop_value / 2).fill_null(False),
    ]
    code = pl.when(rules[0]).then(pl.lit(1, pl.UInt8))
    for number, rule in enumerate(rules[1:], start=2):
        code = code.when(rule).then(pl.lit(number, pl.UInt8))
    return code.otherwise(pl.lit(0, pl.UInt8)).alias("reason_code")


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
