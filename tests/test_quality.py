"""The polars quality filter (core/quality.py): numpy's NaN semantics, and counts equal to decisions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import polars as pl

from core import quality
from core.quality import apply_quality_filter
from core.spec import QualityThresholds

CLEAN = {"min_side": 100.0, "finite_fraction": 1.0, "saturated_fraction": 0.0, "snr": 100.0,
         "background_flatness": 1.0, "source_radius_frac": 0.05, "blank": False, "read_error": ""}


def test_a_missing_metric_fails_its_lower_limit_but_no_upper_limit() -> None:
    # Polars alone orders NaN above every number, so NaN >= 32 would pass: each row must still fail.
    rows = [{**CLEAN, "min_side": math.nan}, {**CLEAN, "finite_fraction": math.nan}, {**CLEAN, "snr": math.nan},
            {**CLEAN, "saturated_fraction": math.nan}, {**CLEAN, "source_radius_frac": math.nan}, CLEAN]
    out = apply_quality_filter(pd.DataFrame(rows))
    assert list(out["reason"]) == ["too_small", "missing_pixels", "low_snr", "low_quality", "", ""]
    assert out["quality"].iloc[3] == 0.0 and out["quality"].iloc[5] > 0.9


def test_counts_per_move_are_the_decisions_counted() -> None:
    rng = np.random.default_rng(1)
    n = 5_000
    metrics = pd.DataFrame({
        "label": rng.choice(["E", "S0", "Spiral"], n),
        "min_side": rng.integers(8, 300, n).astype(float), "finite_fraction": rng.uniform(0.95, 1.0, n),
        "saturated_fraction": np.abs(rng.normal(0, 1e-4, n)), "snr": rng.lognormal(3.5, 1.0, n),
        "background_flatness": rng.uniform(0.3, 1.0, n), "source_radius_frac": rng.uniform(0.0, 0.4, n),
        "blank": rng.random(n) < 0.02, "read_error": np.where(rng.random(n) < 0.02, "bad", ""),
    })
    metrics.loc[rng.random(n) < 0.05, "snr"] = np.nan
    thresholds = QualityThresholds(min_quality=0.8, min_size=48, extent=1.5)
    decided = apply_quality_filter(metrics, crop=0.4, **thresholds.to_dict())
    expected = decided.groupby(["label", "reason"]).size().sort_index()
    scored = quality.with_quality(pl.from_pandas(metrics).lazy())
    counted = quality.count_lazy(scored, thresholds=thresholds, crop=0.4).collect().to_pandas()
    counted = counted.set_index(["label", "reason"])["n"].sort_index()
    assert counted.astype(int).to_dict() == expected.astype(int).to_dict()
    assert set(decided["reason"]) == {"", *quality.REASONS}
