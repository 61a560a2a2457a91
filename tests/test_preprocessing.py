"""Preprocessing steps, quality metrics and the filter, on arrays built here and a small sample."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core.errors import ConfigError, GalaxyMorphError
from core.images import ImageData, read_image
from core.prepare.preprocessing import (
    STEP_NAMES,
    PreprocessConfig,
    crop_image,
    preprocess,
    preprocess_steps,
    resize,
    stretch_image,
)
from core.sky import estimate_background, find_centre
from core.prepare.quality import REASONS as REJECTION_REASONS
from core.prepare.quality import QualityThresholds, apply_quality_filter, measure_quality, quality_score


def _galaxy(
    size: int = 128,
    *,
    x: float | None = None,
    y: float | None = None,
    sigma: float = 6.0,
    amplitude: float = 500.0,
    sky: float = 100.0,
    noise: float = 5.0,
    seed: int = 0,
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    x = (size - 1) / 2 if x is None else x
    y = (size - 1) / 2 if y is None else y
    model = amplitude * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / sigma**2)
    return (model + sky + rng.normal(0, noise, (size, size))).astype(np.float32)


def _image(
    data: np.ndarray, *, wcs: WCS | None = None, bitpix: int = -32, header: fits.Header | None = None
) -> ImageData:
    header = header if header is not None else fits.Header()
    header["BITPIX"] = bitpix
    return ImageData(np.asarray(data, np.float32), header, wcs, Path("test.fits"), "fits")


def _wcs(size: int, scale_arcsec: float = 0.5) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [size / 2 + 0.5, size / 2 + 0.5]
    wcs.wcs.cdelt = [-scale_arcsec / 3600, scale_arcsec / 3600]
    return wcs


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop": 1.5}, r"crop must be in \(0, 1\]; got 1.5. Use a fraction of the image side."),
        ({"crop": 0}, r"crop must be in \(0, 1\]; got 0\."),
        ({"crop": float("nan")}, r"crop must be in \(0, 1\]"),
        ({"crop_arcsec": -3.0}, r"crop_arcsec must be None or a positive number; got -3.0"),
        ({"size": 4}, r"size must be an integer in \[8, 512\]; got 4\."),
        ({"size": 64.0}, r"size must be an integer in \[8, 512\]; got 64.0"),
        ({"size": True}, r"size must be an integer"),
        ({"stretch": "gamma"}, r"stretch must be one of 'asinh', 'log', 'sqrt', 'linear'; got 'gamma'"),
        ({"percentiles": (99.0, 1.0)}, r"two numbers with 0 <= low < high <= 100; got \(99.0, 1.0\)"),
        ({"percentiles": (1.0,)}, r"percentiles must be two numbers"),
        ({"subtract_background": "yes"}, r"subtract_background must be True or False; got 'yes'"),
        ({"centre": "middle"}, r"centre must be one of 'auto', 'wcs', 'peak', 'none'; got 'middle'"),
        ({"channels": 2}, r"channels must be 1 or 3; got 2\."),
    ],
)
def test_invalid_config_raises_with_template_message(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PreprocessConfig(**kwargs)


def test_config_round_trips_through_json() -> None:
    config = PreprocessConfig(crop=0.4, crop_arcsec=90, size=32, stretch="log", percentiles=(1, 99),
                              subtract_background=False, centre="peak", channels=3)
    restored = PreprocessConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert restored.percentiles == (1.0, 99.0) and restored.crop_arcsec == 90.0
    with pytest.raises(ConfigError, match="unknown preprocessing option.*zoom"):
        PreprocessConfig.from_dict({"zoom": 2})


# ---------------------------------------------------------------------------- steps


def test_background_ignores_the_galaxy_and_nan() -> None:
    data = _galaxy(256, sigma=20, amplitude=2000)
    data[:40, :40] = np.nan
    level, noise = estimate_background(data)
    assert level == pytest.approx(100.0, abs=0.6)
    assert noise == pytest.approx(5.0, rel=0.08)
    assert estimate_background(np.full((10, 10), np.nan)) == (0.0, 0.0)


def test_peak_centre_finds_off_centre_galaxy_not_a_brighter_star() -> None:
    data = _galaxy(200, x=130.3, y=62.7, sigma=8.0, amplitude=300)
    yy, xx = np.mgrid[:200, :200]
    data += (1500 * np.exp(-0.5 * ((xx - 90) ** 2 + (yy - 110) ** 2) / 1.2**2)).astype(np.float32)
    x, y = find_centre(_image(data), mode="peak")
    assert abs(x - 130.3) < 1.0 and abs(y - 62.7) < 1.0


def test_wcs_centre_uses_the_catalogue_position() -> None:
    wcs = _wcs(100)
    ra, dec = wcs.pixel_to_world_values(30.0, 70.0)
    image = _image(_galaxy(100), wcs=wcs)
    for mode in ("wcs", "auto"):
        centre = find_centre(image, ra=float(ra), dec=float(dec), mode=mode)
        assert centre == pytest.approx((30.0, 70.0), abs=1e-6)
    # Without a position, auto hunts for the galaxy (in the middle here); none is the middle.
    assert find_centre(image, mode="auto") == pytest.approx((49.5, 49.5), abs=1.0)
    assert find_centre(image, mode="none") == (49.5, 49.5)


def test_wcs_mode_without_wcs_warns_and_uses_the_middle(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="core.prepare.preprocessing"):
        centre = find_centre(_image(_galaxy(64, x=10, y=10)), ra=150.0, dec=2.0, mode="wcs")
    assert centre == (31.5, 31.5)
    assert "valid WCS" in caplog.text


def test_crop_is_partial_with_nan_outside() -> None:
    data = np.arange(100, dtype=np.float32).reshape(10, 10)
    crop = crop_image(data, (1.0, 8.0), 5)
    assert crop.shape == (5, 5)
    np.testing.assert_array_equal(crop[:4, 1:], data[6:10, 0:4])
    assert np.isnan(crop[:, 0]).all() and np.isnan(crop[4, :]).all()
    colour = np.stack([data, data + 1, data + 2], axis=-1)
    crop3 = crop_image(colour, (1.0, 8.0), 5)
    assert crop3.shape == (5, 5, 3)
    np.testing.assert_array_equal(crop3[..., 2], crop + 2)
    assert np.isnan(crop_image(data, (50.0, 50.0), 4)).all()


@pytest.mark.parametrize("kind", ["asinh", "log", "sqrt", "linear"])
def test_stretch_range_monotonic_and_nan_to_zero(kind: str) -> None:
    data = np.linspace(-10, 1000, 400, dtype=np.float32).reshape(20, 20)
    data[0, 0] = np.nan
    out = stretch_image(data, kind, (1.0, 99.0))
    assert out.dtype == np.float32 and out.shape == data.shape
    # In [0, 1] exactly (the promise), reaching both ends up to float32 rounding, which differs by CPU.
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert out.min() == pytest.approx(0.0, abs=1e-6) and out.max() == pytest.approx(1.0, abs=1e-6)
    assert out[0, 0] == 0.0
    flat = out.ravel()[1:]
    assert (np.diff(flat) >= 0).all()
    np.testing.assert_array_equal(stretch_image(np.full((5, 5), 7.0), kind), np.zeros((5, 5)))


@pytest.mark.parametrize("side", [96, 128, 200, 333])
def test_resize_does_not_alias_a_checkerboard(side: int) -> None:
    board = (np.indices((side, side)).sum(axis=0) % 2).astype(np.float32)
    small = resize(board, 64)
    assert small.shape == (64, 64)
    assert abs(float(small.mean()) - 0.5) < 0.02
    assert float(small.std()) < 0.05  # nearest-neighbour sampling would give 0.5


def test_resize_upsamples_within_range_and_keeps_constants() -> None:
    rng = np.random.default_rng(0)
    tiny = rng.random((17, 23)).astype(np.float32)
    big = resize(tiny, 64)
    assert big.shape == (64, 64)
    assert big.min() >= tiny.min() - 1e-6 and big.max() <= tiny.max() + 1e-6
    np.testing.assert_allclose(resize(np.full((90, 70), 0.25, np.float32), 32), 0.25, rtol=1e-5)
    colour = resize(np.stack([tiny, 1 - tiny, tiny * 0], axis=-1), 32)
    assert colour.shape == (32, 32, 3)


def test_resize_leaves_nan_out_of_the_means() -> None:
    data = np.ones((100, 100), np.float32)
    data[:, :50] = np.nan
    out = resize(data, 10)
    np.testing.assert_allclose(out[:, 6:], 1.0, rtol=1e-5)
    assert np.isnan(out[:, :3]).all()


# ---------------------------------------------------------------------------- pipeline


def test_preprocess_centres_an_off_centre_galaxy() -> None:
    image = _image(_galaxy(160, x=110.0, y=45.0, sigma=5.0, amplitude=800))
    out = preprocess(image, PreprocessConfig(size=32, crop=0.3, centre="peak"))
    assert out.shape == (32, 32, 1) and out.dtype == np.float32
    iy, ix = np.unravel_index(np.argmax(out[..., 0]), (32, 32))
    assert abs(ix - 15.5) <= 1.5 and abs(iy - 15.5) <= 1.5
    assert out[14:18, 14:18].mean() - out[:4, :4].mean() > 0.5
    uncentred = preprocess(image, PreprocessConfig(size=32, crop=0.3, centre="none"))
    assert abs(uncentred[14:18, 14:18].mean() - uncentred[:4, :4].mean()) < 0.2  # only sky


def test_steps_in_order_and_final_equals_preprocess() -> None:
    image = _image(_galaxy(100))
    config = PreprocessConfig(size=24)
    steps = preprocess_steps(image, config)
    assert tuple(steps) == STEP_NAMES
    np.testing.assert_array_equal(steps["final"], preprocess(image, config))
    assert steps["cropped"].shape == (50, 50)
    assert steps["stretched"].min() >= 0 and steps["stretched"].max() <= 1


def test_background_gradient_is_removed() -> None:
    data = _galaxy(120, noise=1.0)
    data += np.linspace(0, 60, 120, dtype=np.float32)[None, :]
    sub = preprocess_steps(_image(data), PreprocessConfig())["background_subtracted"]
    border = np.concatenate([sub[:15].ravel(), sub[-15:].ravel()])
    assert abs(float(np.median(sub[:15, :15])) - float(np.median(sub[:15, -15:]))) < 1.0
    assert abs(float(np.median(border))) < 1.0


def test_crop_arcsec_uses_the_wcs_or_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    data = _galaxy(200)
    with_wcs = preprocess_steps(_image(data, wcs=_wcs(200, 0.5)), PreprocessConfig(crop_arcsec=40.0))
    assert with_wcs["cropped"].shape == (80, 80)
    with caplog.at_level(logging.WARNING, logger="core.prepare.preprocessing"):
        without = preprocess_steps(_image(data), PreprocessConfig(crop_arcsec=40.0, crop=0.3))
    assert without["cropped"].shape == (60, 60)
    assert "needs a valid WCS" in caplog.text


def test_colour_and_grey_channels() -> None:
    grey = _image(_galaxy(64))
    three = preprocess(grey, PreprocessConfig(channels=3, size=16))
    assert three.shape == (16, 16, 3)
    np.testing.assert_array_equal(three[..., 0], three[..., 2])
    colour = ImageData(np.stack([_galaxy(64), _galaxy(64, sigma=3), _galaxy(64, seed=5)], -1), None, None,
                       Path("c.png"), "png")
    assert preprocess(colour, PreprocessConfig(size=16)).shape == (16, 16, 1)
    out = preprocess(colour, PreprocessConfig(channels=3, size=16))
    assert out.shape == (16, 16, 3) and not np.array_equal(out[..., 0], out[..., 1])


def test_each_colour_loses_its_own_sky() -> None:
    planes = [_galaxy(80, sky=sky, seed=k) for k, sky in enumerate((10.0, 200.0, 50.0))]
    colour = ImageData(np.stack(planes, axis=-1), None, None, Path("c.png"), "png")
    sub = preprocess_steps(colour, PreprocessConfig(channels=3))["background_subtracted"]
    corner = np.median(sub[:15, :15].reshape(-1, 3), axis=0)
    np.testing.assert_allclose(corner, 0.0, atol=1.0)


def test_reusing_metrics_gives_the_same_output() -> None:
    image = _image(_galaxy(128, x=70, y=50), wcs=_wcs(128))
    metrics = measure_quality(image)
    config = PreprocessConfig(size=32)
    np.testing.assert_array_equal(preprocess(image, config, metrics=metrics), preprocess(image, config))
    with pytest.raises(ConfigError, match="metrics must be measure_quality"):
        preprocess(image, config, metrics={"snr": 3.0})


def test_preprocess_rejects_a_bare_array() -> None:
    with pytest.raises(ConfigError, match="image must be an ImageData"):
        preprocess(np.zeros((10, 10)), PreprocessConfig())  # type: ignore[arg-type]


_elements = st.one_of(st.floats(-1e6, 1e6, width=32), st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))
_arrays = st.one_of(
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
               elements=_elements),
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 30), st.integers(1, 30), st.just(3)),
        elements=_elements,
    ),
)
_configs = st.builds(
    PreprocessConfig,
    crop=st.floats(0.01, 1.0),
    crop_arcsec=st.one_of(st.none(), st.floats(0.5, 500)),
    size=st.integers(8, 48),
    stretch=st.sampled_from(["asinh", "log", "sqrt", "linear"]),
    percentiles=st.tuples(st.floats(0, 49), st.floats(51, 100)),
    subtract_background=st.booleans(),
    centre=st.sampled_from(["auto", "wcs", "peak", "none"]),
    channels=st.sampled_from([1, 3]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_arrays, config=_configs, with_wcs=st.booleans())
def test_preprocess_always_gives_a_valid_input(
    data: np.ndarray, config: PreprocessConfig, with_wcs: bool
) -> None:
    wcs = _wcs(max(data.shape[:2])) if with_wcs else None
    image = _image(data, wcs=wcs)
    try:
        out = preprocess(image, config, ra=150.0, dec=2.0)
    except GalaxyMorphError:
        return
    assert out.shape == (config.size, config.size, config.channels)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    metrics = measure_quality(image, ra=150.0, dec=2.0)
    score = quality_score(pd.DataFrame([metrics]))
    assert 0.0 <= float(score.iloc[0]) <= 1.0


# ---------------------------------------------------------------------------- quality


def test_quality_metrics_of_a_gaussian_galaxy() -> None:
    metrics = measure_quality(_image(_galaxy(128, x=80, y=50, sigma=6.0)))
    assert metrics["blank"] is False and metrics["wcs_ok"] is False
    assert metrics["finite_fraction"] == 1.0 and metrics["saturated_fraction"] == 0.0
    assert metrics["source_radius_px"] == pytest.approx(1.1774 * 6.0, rel=0.1)  # half-light radius
    assert metrics["source_radius_frac"] == pytest.approx(metrics["source_radius_px"] / 128)
    assert metrics["centre_offset_frac"] == pytest.approx(np.hypot(80 - 63.5, 50 - 63.5) / 128, abs=0.01)
    assert metrics["background_noise"] == pytest.approx(5.0, rel=0.1)
    assert 0.5 < metrics["background_flatness"] <= 1.0
    # Total flux 2*pi*sigma^2*A over about 5 sigma per sqrt(pixel): hundreds.
    assert 200 < metrics["snr"] < 2000


def test_a_touching_star_does_not_inflate_the_radius() -> None:
    data = _galaxy(128, sigma=6.0, amplitude=300)
    yy, xx = np.mgrid[:128, :128]
    data += (3000 * np.exp(-0.5 * ((xx - 87) ** 2 + (yy - 63.5) ** 2) / 1.5**2)).astype(np.float32)
    radius = measure_quality(_image(data))["source_radius_px"]
    assert radius == pytest.approx(1.1774 * 6.0, rel=0.15)  # joined to the star: 10.8


def test_snr_grows_with_flux() -> None:
    snrs = [measure_quality(_image(_galaxy(96, amplitude=a, seed=1)))["snr"] for a in (5, 40, 400)]
    assert snrs[0] < 25 < snrs[1] < snrs[2]


@pytest.mark.parametrize("data", [np.zeros((40, 40)), np.full((40, 40), 3.0), np.full((40, 40), np.nan)])
def test_blank_images(data: np.ndarray) -> None:
    metrics = measure_quality(_image(data))
    assert metrics["blank"] is True and metrics["snr"] == 0.0
    table = apply_quality_filter(pd.DataFrame([metrics]))
    assert table["quality"].iloc[0] == 0.0 and table["reason"].iloc[0] == "blank"


def test_saturation_from_plateau_and_header() -> None:
    data = _galaxy(100, amplitude=1000)
    data[48:52, 48:53] = data.max() + 10  # a 20-pixel flat core
    plateau = measure_quality(_image(data))
    assert plateau["saturated_fraction"] == pytest.approx(20 / 10000)
    header = fits.Header()
    header["SATURATE"] = 900.0
    clean = _galaxy(100, amplitude=1000)
    by_header = measure_quality(_image(clean, header=header))
    assert by_header["saturated_fraction"] == pytest.approx(float((clean >= 900).sum()) / clean.size)
    assert measure_quality(_image(clean))["saturated_fraction"] == 0.0


def test_missing_pixels_nan_and_zero_filled_gap() -> None:
    data = _galaxy(100)
    data[:, 10:20] = np.nan
    assert measure_quality(_image(data))["finite_fraction"] == pytest.approx(0.9)
    gap = _galaxy(100)
    gap[:, 10:15] = 0.0
    assert measure_quality(_image(gap, bitpix=-32))["finite_fraction"] == pytest.approx(0.95)
    # In integer data, zeros far below the sky are a gap too ...
    assert measure_quality(_image(np.round(gap), bitpix=16))["finite_fraction"] == pytest.approx(0.95)
    # ... but a dark sky quantised and clipped at zero is data (as in many JPEGs).
    dark = np.clip(np.round(_galaxy(100, sky=1.0, noise=3.0)), 0, 255)
    assert (dark == 0).mean() > 0.2
    jpeg = ImageData(dark, None, None, Path("dark.jpg"), "jpeg")
    assert measure_quality(jpeg)["finite_fraction"] == 1.0


def _table(**columns: list) -> pd.DataFrame:
    base = {"snr": 100.0, "finite_fraction": 1.0, "saturated_fraction": 0.0, "background_flatness": 0.8,
            "blank": False, "min_side": 128.0, "source_radius_frac": 0.05}
    n = len(next(iter(columns.values()))) if columns else 1
    return pd.DataFrame({k: columns.get(k, [v] * n) for k, v in base.items()} | {
        k: v for k, v in columns.items() if k not in base})


def test_filter_reports_the_first_failing_rule_in_order() -> None:
    table = _table(
        read_error=["truncated gzip", "", "", "", "", "", "", "", ""],
        blank=[True, True, False, False, False, False, False, False, False],
        min_side=[20, 20, 20, 128, 128, 128, 128, 128, 128],
        finite_fraction=[0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1, 1],
        saturated_fraction=[0.1, 0.1, 0.1, 0.1, 0.1, 0, 0, 0, 0],
        snr=[1, 1, 1, 1, 1, 1, 100, 100, 100],
        background_flatness=[0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.01, 0.8, 0.8],
        source_radius_frac=[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.05],
    )
    out = apply_quality_filter(table, QualityThresholds(min_quality=0.5, min_size=32), 0.5)
    assert list(out["reason"]) == list(REJECTION_REASONS) + [""]
    assert list(out["kept"]) == [False] * 8 + [True]
    assert "quality" not in table  # the input is not modified


def test_filter_on_rows_without_metrics() -> None:
    # As a builder joins them: unreadable files have NaN metrics and an object "blank" column.
    table = _table(snr=[100.0, np.nan], blank=[False, None], min_side=[128.0, np.nan],
                   read_error=["", "not a FITS file"])
    out = apply_quality_filter(table)
    assert list(out["reason"]) == ["", "unreadable"]
    assert list(out["quality"] > 0) == [True, False]


def test_measure_quality_of_a_colour_image_uses_luminance() -> None:
    grey = _galaxy(96)
    colour = ImageData(np.stack([grey, grey, grey], axis=-1), None, None, Path("c.png"), "png")
    metrics = measure_quality(colour)
    assert metrics["snr"] == pytest.approx(measure_quality(_image(grey, bitpix=16))["snr"], rel=1e-3)


def test_filter_crop_rule_follows_the_crop() -> None:
    table = _table(source_radius_frac=[0.3, 0.3])
    assert list(apply_quality_filter(table, QualityThresholds(min_quality=0, min_size=0), 0.5)["kept"]) == [False, False]
    assert list(apply_quality_filter(table, QualityThresholds(min_quality=0, min_size=0), 0.8)["kept"]) == [True, True]


def test_filter_is_vectorised_over_a_big_table() -> None:
    rng = np.random.default_rng(0)
    n = 10_000
    table = pd.DataFrame({
        "snr": rng.lognormal(3, 1.5, n), "finite_fraction": rng.uniform(0.9, 1, n),
        "saturated_fraction": rng.exponential(1e-4, n), "background_flatness": rng.uniform(0, 1, n),
        "blank": rng.random(n) < 0.01, "min_side": rng.integers(16, 300, n).astype(float),
        "source_radius_frac": rng.uniform(0, 0.3, n),
    })
    out = apply_quality_filter(table, QualityThresholds(min_quality=0.4, min_size=32), 0.5)
    assert out["quality"].between(0, 1).all()
    assert set(out["reason"]) <= set(REJECTION_REASONS) | {""}
    assert (out.loc[table["blank"], "reason"] == "blank").all()
    small = ~table["blank"] & (table["min_side"] < 32)
    assert (out.loc[small, "reason"] == "too_small").all()
    assert out["kept"].equals(out["reason"] == "")


_metric = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none())


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.tuples(_metric, _metric, _metric, _metric, st.booleans()), min_size=1, max_size=20))
def test_quality_score_is_always_in_unit_interval(rows: list[tuple]) -> None:
    table = pd.DataFrame(rows, columns=["snr", "finite_fraction", "saturated_fraction", "background_flatness",
                                        "blank"])
    score = quality_score(table)
    assert score.between(0.0, 1.0).all()
    assert (score[table["blank"]] == 0.0).all()


def test_quality_score_formula_and_missing_values() -> None:
    table = _table(snr=[20.0, 100.0, np.nan], background_flatness=[1.0, 1.0, 1.0])
    score = quality_score(table)
    assert score.iloc[0] == pytest.approx(0.5**0.25)
    assert score.iloc[1] == pytest.approx((1e4 / (1e4 + 400)) ** 0.25)
    assert score.iloc[2] == 0.0
    with pytest.raises(ConfigError, match="missing column.*snr"):
        quality_score(pd.DataFrame({"x": [1]}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_quality": 2.0}, r"min_quality must be in \[0, 1\]; got 2.0"),
        ({"min_size": -1}, r"min_size must be a non-negative integer; got -1"),
        ({"crop": 1.5}, r"crop must be in \(0, 1\]; got 1.5. Use a fraction of the image side."),
        ({"thresholds": {"min_quality": 0.3}}, r"thresholds must be a QualityThresholds; got dict"),
    ],
)
def test_filter_validates_its_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        if "crop" in kwargs or "thresholds" in kwargs:
            apply_quality_filter(_table(), kwargs.get("thresholds"), kwargs.get("crop", 0.5))
        else:
            apply_quality_filter(_table(), QualityThresholds(**kwargs))


# ---------------------------------------------------------------------------- on the built-in sample


def test_default_filter_on_a_generated_sample(tmp_path: Path) -> None:
    sample = pytest.importorskip("core.acquire.sample")
    rates = sample.SampleRates(low_snr=0.12, saturated=0.12, nan_region=0.12, blank=0.05, off_centre=0.12,
                               thumbnail=0.08, duplicate=0.0, conflict=0.0)
    sample.generate_sample(tmp_path / "s", n=70, seed=3, rates=rates, n_jobs=1)
    truth = pd.read_csv(tmp_path / "s" / "truth.csv")
    rows = []
    for row in truth.itertuples():
        image = read_image(tmp_path / "s" / row.file)
        metrics = measure_quality(image, ra=row.ra, dec=row.dec)
        peak = find_centre(image, mode="peak")
        error = float(np.hypot(peak[0] - row.centre_x, peak[1] - row.centre_y))
        metrics["peak_error"] = error / max(row.half_light_px, 3.0)
        metrics["clipped_in_crop"] = _clipped_inside(image, (row.centre_x, row.centre_y), crop=0.5)
        rows.append(metrics | {"wart": row.wart})
    out = apply_quality_filter(pd.DataFrame(rows), QualityThresholds(min_quality=0.5, min_size=32), 0.5)
    kept = out.groupby("wart")["kept"].mean()
    assert kept.get("none", 1.0) >= 0.95
    for wart in ("blank", "thumbnail"):
        assert kept.get(wart, 0.0) == 0.0, wart
    # The saturated wart clips the brightest object, sometimes a star far from the galaxy: an image
    # is rejected exactly when clipped pixels fall inside the crop the network sees.
    saturated = out[out["wart"] == "saturated"]
    assert saturated["clipped_in_crop"].any() and not saturated["clipped_in_crop"].all()
    assert (saturated["kept"] == ~saturated["clipped_in_crop"]).all(), saturated[["kept", "clipped_in_crop"]]
    assert kept.get("low_snr", 0.0) <= 0.25
    # A NaN stripe or block is missing pixels only where it crosses the crop.
    holes = out[out["wart"] == "nan_region"]
    holes_in_crop = holes["finite_fraction_c050"] < 0.99
    assert holes_in_crop.any() and (holes.loc[holes_in_crop, "reason"] == "missing_pixels").all()
    assert (holes["finite_fraction"] < 0.99).sum() > holes_in_crop.sum()  # some lie outside the crop only
    assert kept.get("off_centre", 1.0) >= 0.9
    # Centring without the WCS still finds the shifted galaxies (within a half-light radius).
    shifted = out[out["wart"] == "off_centre"]
    assert len(shifted) > 0 and (shifted["peak_error"] < 1.0).all()


def _clipped_inside(image, centre: tuple[float, float], *, crop: float) -> bool:
    """Whether pixels at the header's SATURATE level lie inside the ``crop`` square around ``centre``."""
    data = image.data
    half = crop * min(data.shape) / 2
    ys, xs = np.nonzero(data >= float(image.header["SATURATE"]) * (1 - 1e-6))
    return bool(((np.abs(xs - centre[0]) <= half) & (np.abs(ys - centre[1]) <= half)).any())


def test_quality_filter_takes_one_crop_per_row():
    """A crop of fixed angular size is a different fraction of each image."""
    table = pd.DataFrame({
        "min_side": [100, 100], "source_radius_frac": [0.1, 0.1], "snr": [100.0, 100.0],
        "finite_fraction": [1.0, 1.0], "saturated_fraction": [0.0, 0.0], "background_flatness": [1.0, 1.0],
    })
    judged = apply_quality_filter(table, QualityThresholds(min_quality=0.0), np.array([0.5, 0.15]))
    assert judged["reason"].tolist() == ["", "galaxy_exceeds_crop"]
    with pytest.raises(ConfigError, match="one per row"):
        apply_quality_filter(table, crop=np.array([0.5]))
    with pytest.raises(ConfigError, match="one per row"):
        apply_quality_filter(table, crop=np.array([0.5, 0.0]))
