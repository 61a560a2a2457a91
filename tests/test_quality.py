"""The polars quality filter (core/prepare/quality.py): numpy's NaN semantics, and counts equal to decisions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from core.prepare import quality
from core.prepare.quality import apply_quality_filter
from core.prepare.quality import QualityThresholds

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
    decided = apply_quality_filter(metrics, thresholds, 0.4)
    expected = decided.groupby(["label", "reason"]).size().sort_index()
    scored = quality.with_quality(pl.from_pandas(metrics).lazy())
    counted = quality.count_lazy(scored, thresholds=thresholds, crop=0.4).collect().to_pandas()
    counted = counted.set_index(["label", "reason"])["n"].sort_index()
    assert counted.astype(int).to_dict() == expected.astype(int).to_dict()
    assert set(decided["reason"]) == {"", *quality.REASONS}


# -- metrics inside the crop in use (issue 21) ------------------------------------------------------


def test_a_nan_border_outside_the_crop_is_not_missing_pixels_of_that_crop(monkeypatch):
    """reproject's reference image has NaN borders; its centre, the crop, has none."""
    from core.images import read_image
    from core.prepare.quality import crop_column, measure_quality

    path = Path(__file__).parent / "data" / "fits_corpus" / "reproject_2d_gal2equ.fits"
    metrics = measure_quality(read_image(path))
    assert metrics["finite_fraction"] < 0.9  # 300 of 1,849 pixels are NaN
    assert metrics[crop_column("finite_fraction", 0.5)] == 1.0
    assert metrics[crop_column("finite_fraction", 1.0)] < 0.9
    table = pd.DataFrame([metrics])
    # The sliders move over the stored table: no image is read again.
    monkeypatch.setattr("core.images.read_image", lambda *a, **k: pytest.fail("an image was read"))
    loose = QualityThresholds(min_quality=0.0, min_snr=0.0, min_size=0, extent=0.0)
    assert apply_quality_filter(table, loose, 0.5)["reason"].tolist() == [""]
    assert apply_quality_filter(table, loose, 1.0)["reason"].tolist() == ["missing_pixels"]
    # An older cache without the crop columns: the whole frame's value, as before.
    old = table.drop(columns=[c for c in table.columns if "_c0" in c or "_c1" in c])
    assert apply_quality_filter(old, loose, 0.5)["reason"].tolist() == ["missing_pixels"]


def test_a_saturated_star_and_blank_rows_far_from_the_galaxy_do_not_reject_a_small_crop():
    from core.images import ImageData
    from core.prepare.quality import crop_column, measure_quality

    rng = np.random.default_rng(5)
    yy, xx = np.indices((200, 200))
    data = 100 + rng.normal(0, 2, (200, 200)) + 400 * np.exp(-((xx - 100) ** 2 + (yy - 100) ** 2) / (2 * 8.0**2))
    data[5:15, 180:190] = 5000.0  # a saturated star plateau in a corner
    data[190:, :] = np.nan  # blank rows at the top
    image = ImageData(data=data.astype(np.float32), header=None, wcs=None, path=Path("synthetic"), format="fits")
    metrics = measure_quality(image)
    assert metrics["saturated_fraction"] > 1e-3 and metrics["finite_fraction"] < 0.99
    assert metrics[crop_column("saturated_fraction", 0.4)] == 0.0
    assert metrics[crop_column("finite_fraction", 0.4)] == 1.0
    # The S/N of the crop counts the part of the galaxy's footprint inside it: all of it at 0.4.
    assert metrics[crop_column("snr", 0.4)] == pytest.approx(metrics["snr"], rel=1e-6)
    assert metrics[crop_column("snr", 0.2)] > 0
    table = pd.DataFrame([metrics])
    judged = {crop: apply_quality_filter(table, QualityThresholds(min_quality=0.0, extent=0.0), crop)["reason"].iloc[0]
              for crop in (0.4, 0.45, 1.0)}
    assert judged == {0.4: "", 0.45: "", 1.0: "missing_pixels"}


def test_an_8_bit_cutouts_core_repeating_its_top_value_is_not_saturated_inside_a_crop():
    """A JPEG cutout's core repeats the crop's brightest value by quantisation; only the frame's own
    clipped plateau (or the header's SATURATE) counts as saturation, in every crop as in the frame."""
    from core.images import ImageData
    from core.prepare.quality import CROP_FRACTIONS, crop_column, measure_quality

    rng = np.random.default_rng(3)
    yy, xx = np.indices((120, 120))
    galaxy = 20 + rng.normal(0, 0.2, (120, 120)) + 150 * np.exp(-((xx - 60) ** 2 + (yy - 60) ** 2) / (2 * 15.0**2))
    galaxy[10, 110] = 255.0  # one bright star pixel, far out: the frame's top, no plateau
    quantised = np.clip(np.round(galaxy), 0, 255)
    assert (quantised[50:70, 50:70] == quantised[50:70, 50:70].max()).sum() >= 4  # the core's plateau
    image = ImageData(data=quantised.astype(np.float32), header=None, wcs=None, path=Path("cutout"), format="jpeg")
    metrics = measure_quality(image)
    assert metrics["saturated_fraction"] == 0.0
    assert all(metrics[crop_column("saturated_fraction", f)] == 0.0 for f in CROP_FRACTIONS)
    # A core clipped at the frame's top is saturation, and the crop sees all of it.
    clipped = quantised.copy()
    clipped[58:63, 58:63] = 255.0
    metrics = measure_quality(ImageData(data=clipped.astype(np.float32), header=None, wcs=None,
                                        path=Path("clipped"), format="jpeg"))
    assert metrics["saturated_fraction"] == pytest.approx(26 / 120**2)
    assert metrics[crop_column("saturated_fraction", 0.5)] == pytest.approx(25 / 60**2)  # the star lies outside
