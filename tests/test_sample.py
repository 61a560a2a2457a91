"""The built-in synthetic sample: determinism, file formats, WCS, warts, physics, resume, CLI."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from core.acquire import sample as sample_mod
from core.cli import main
from core.errors import ConfigError, GalaxyMorphError
from core.acquire.sample import (
    CATALOG_COLUMNS,
    IMAGE_WARTS,
    REQUIRED_TYPES,
    TRUTH_COLUMNS,
    SampleRates,
    ensure_sample,
    generate_sample,
    safe_file_stem,
    sample_is_current,
)

N_BIG = 400


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _pixels(path: Path) -> np.ndarray:
    with fits.open(path) as hdul:
        return np.asarray(hdul[0].data, dtype=np.float32)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 400-galaxy sample shared by the read-only tests (rendered on 2 workers)."""
    config = tmp_path_factory.mktemp("cfg") / "galaxy-morph.toml"
    config.write_text("")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GALAXY_MORPH_CONFIG", str(config))
        return generate_sample(tmp_path_factory.mktemp("big"), n=N_BIG, seed=3, n_jobs=2)


@pytest.fixture(scope="module")
def truth(big: Path) -> list[dict[str, str]]:
    return _rows(big / "truth.csv")


@pytest.fixture(scope="module")
def catalog(big: Path) -> list[dict[str, str]]:
    return _rows(big / "catalog.csv")


@pytest.fixture(scope="module")
def images(big: Path, truth: list[dict[str, str]]) -> dict[str, tuple[fits.Header, np.ndarray]]:
    """Header (as stored: read before astropy scales the data) and pixels of every image, read once."""
    loaded = {}
    for t in truth:
        with fits.open(big / t["file"]) as hdul:
            header = hdul[0].header.copy()
            loaded[t["file"]] = (header, np.asarray(hdul[0].data, dtype=np.float32))
    return loaded


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_files_whatever_the_workers(tmp_path: Path) -> None:
    a = generate_sample(tmp_path / "a", n=30, seed=11, n_jobs=1)
    b = generate_sample(tmp_path / "b", n=30, seed=11, n_jobs=2)
    assert (a / "catalog.csv").read_bytes() == (b / "catalog.csv").read_bytes()
    assert (a / "truth.csv").read_bytes() == (b / "truth.csv").read_bytes()
    files = sorted(p.name for p in (a / "images").iterdir())
    assert files == sorted(p.name for p in (b / "images").iterdir())
    assert len(files) >= 30
    for name in files:
        assert (a / "images" / name).read_bytes() == (b / "images" / name).read_bytes(), name
        np.testing.assert_array_equal(_pixels(a / "images" / name), _pixels(b / "images" / name))


def test_other_seed_gives_other_sample(tmp_path: Path) -> None:
    a = generate_sample(tmp_path / "a", n=20, seed=1, n_jobs=1)
    b = generate_sample(tmp_path / "b", n=20, seed=2, n_jobs=1)
    assert (a / "catalog.csv").read_bytes() != (b / "catalog.csv").read_bytes()
    first_a = _rows(a / "truth.csv")[0]
    first_b = _rows(b / "truth.csv")[0]
    assert first_a["true_type"] != first_b["true_type"] or first_a["size_px"] != first_b["size_px"]


# --- catalogue and truth tables ------------------------------------------------------------------


def test_catalog_has_ned_columns_and_row_counts(big: Path, catalog: list[dict[str, str]],
                                                truth: list[dict[str, str]]) -> None:
    with open(big / "catalog.csv", encoding="utf-8") as handle:
        assert handle.readline().strip().split(",") == list(CATALOG_COLUMNS)
    assert list(truth[0]) == list(TRUTH_COLUMNS)
    meta = json.loads((big / "SAMPLE.json").read_text())
    warts = meta["counts"]["warts"]
    assert meta["n"] == N_BIG and meta["seed"] == 3 and meta["version"] == sample_mod.SAMPLE_VERSION
    assert len(truth) == N_BIG + warts["duplicate"] == meta["counts"]["images"]
    assert len(catalog) == N_BIG + warts["duplicate"] + warts["conflict"]
    assert sum(meta["counts"]["families"].values()) == N_BIG
    for row in catalog:
        assert (big / row["file"]).is_file(), row["name"]
        assert 0.0 <= float(row["ra"]) < 360.0 and -90.0 <= float(row["dec"]) <= 90.0
    redshifts = [float(r["redshift"]) for r in catalog if r["redshift"]]
    assert 0 < len(redshifts) < len(catalog)  # a few rows have no redshift, as in NED
    assert all(0.0 < z < 0.6 for z in redshifts)


def test_population_fractions_near_rates(truth: list[dict[str, str]]) -> None:
    rates = SampleRates()
    galaxies = [t for t in truth if t["wart"] != "duplicate"]
    for family, p in rates.families().items():
        k = sum(t["family"] == family for t in galaxies)
        assert abs(k - N_BIG * p) <= 4 * math.sqrt(N_BIG * p * (1 - p)) + 1, (family, k)


def test_raw_types_cover_neds_variety(catalog: list[dict[str, str]], truth: list[dict[str, str]]) -> None:
    types = {r["classification"] for r in catalog}
    assert set(REQUIRED_TYPES) <= types
    assert len(types) > 60
    assert {r["requested"] for r in catalog} <= {"E", "S0", "S0/a", "SA", "SAB", "SB", "S", "Irr"}
    expected_hubble3 = {"E": "E", "S0": "S0", "S0/a": "S0", "S": "Spiral", "Irr": "unclassified"}
    for t in truth:
        expected = "Spiral" if t["true_type"] == "Sc pec" else expected_hubble3[t["family"]]
        assert t["hubble3"] == expected, t["name"]
        if t["family"] == "S" and t["true_type"].startswith(("SA(", "SAB", "SB")):
            assert t["bar"] in ("A", "AB", "B")
    by_type = {t["true_type"]: t for t in truth}
    assert by_type["SB0"]["family"] == "S0" and by_type["SB0"]["bar"] == "B"
    assert by_type["SAB(rs)bc"]["stage"] == "bc" and by_type["SAB(rs)bc"]["bar"] == "AB"
    assert by_type["E0"]["family"] == "E" and by_type["IBm"]["hubble3"] == "unclassified"


def test_names_varied_and_file_names_safe_and_unique(catalog: list[dict[str, str]],
                                                     truth: list[dict[str, str]]) -> None:
    names = [t["name"] for t in truth]
    assert len(set(names)) == len(names)
    prefixes = [n.split()[0] for n in names]
    assert 0.45 < prefixes.count("NGC") / len(names) < 0.75
    for prefix in ("UGC", "IC", "PGC", "2MASX", "ESO"):
        assert prefix in prefixes, prefix
    assert any("/" in n for n in names)
    assert any(re.fullmatch(r"\[[A-Z]{3}\d{4}\] \d+", n) for n in names)
    assert any(re.fullmatch(r"2MASX J\d{8}[+-]\d{7}", n) for n in names)
    assert any(re.fullmatch(r"ESO \d{3}- G \d{3}", n) for n in names)
    files = [t["file"] for t in truth]
    assert len({f.lower() for f in files}) == len(files)
    for t in truth:
        assert re.fullmatch(r"images/[A-Za-z0-9._+-]+\.fits(\.gz)?", t["file"]), t["file"]
        assert t["file"].startswith("images/" + safe_file_stem(t["name"]))
    plain = sum(f.endswith(".fits") for f in files) / len(files)
    assert 0.04 < plain < 0.18


def test_safe_file_stem() -> None:
    assert safe_file_stem("NGC 2207/IC 2163") == "NGC_2207_IC_2163"
    assert safe_file_stem("[ABC2001] 12") == "_ABC2001__12"
    assert safe_file_stem("2MASX J12304942+1223279") == "2MASX_J12304942+1223279"


# --- FITS headers and WCS ------------------------------------------------------------------------


def test_headers_are_real_and_wcs_puts_catalogue_position_on_the_galaxy(
    images: dict[str, tuple[fits.Header, np.ndarray]], truth: list[dict[str, str]]
) -> None:
    bitpix = []
    surveys = set()
    for t in truth:
        header, data = images[t["file"]]
        for key in ("OBJECT", "SURVEY", "TELESCOP", "FILTER", "BUNIT", "SATURATE", "CTYPE1", "CRVAL1"):
            assert key in header, (t["file"], key)
        assert "DATE-OBS" in header or "EPOCH" in header
        assert header["OBJECT"] == t["name"]
        assert data.shape == (int(t["size_px"]), int(t["size_px"]))
        bitpix.append(header["BITPIX"])
        surveys.add(header["SURVEY"])
        if header["BITPIX"] == 16:
            assert "BSCALE" in header and "BZERO" in header
        wcs = WCS(header)
        assert wcs.has_celestial and wcs.wcs.ctype[0] == "RA---TAN"
        scale = float(np.mean(np.abs(wcs.proj_plane_pixel_scales()[0].to_value("arcsec"))))
        assert scale == pytest.approx(float(t["pixel_scale"]), rel=1e-3)
        assert 0.39 <= scale <= 1.71
        galaxy = SkyCoord(float(t["ra"]), float(t["dec"]), unit="deg")
        at_centre = wcs.pixel_to_world(float(t["centre_x"]), float(t["centre_y"]))
        assert at_centre.separation(galaxy).arcsec < scale, t["name"]
        if t["wart"] != "off_centre":
            middle = (int(t["size_px"]) - 1) / 2
            crval = SkyCoord(header["CRVAL1"], header["CRVAL2"], unit="deg")
            assert header["CRPIX1"] == pytest.approx(middle + 1)
            assert crval.separation(galaxy).arcsec < scale, t["name"]
    assert set(bitpix) == {16, -32}
    assert surveys == {"DSS2 red", "SDSS r", "2MASS K", "GALEX NUV"}


def test_sizes_and_galaxy_extent_suit_a_half_crop(truth: list[dict[str, str]]) -> None:
    clean = [t for t in truth if t["wart"] in ("none", "duplicate")]
    sizes = [int(t["size_px"]) for t in clean]
    assert min(sizes) >= 96 and max(sizes) <= 256 and len(set(sizes)) > 50
    fractions = np.array([float(t["half_light_px"]) / int(t["size_px"]) for t in clean])
    assert np.median(fractions) == pytest.approx(0.09, abs=0.03)
    assert np.quantile(fractions, 0.05) > 0.03 and np.quantile(fractions, 0.95) < 0.2


# --- warts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("wart", [*IMAGE_WARTS, "duplicate", "conflict"])
def test_each_wart_occurs_near_its_rate(truth: list[dict[str, str]], wart: str) -> None:
    p = getattr(SampleRates(), wart)
    if wart == "conflict":
        k = sum(t["conflict"] == "True" for t in truth)
    else:
        k = sum(t["wart"] == wart for t in truth)
    assert k >= 1, wart
    assert abs(k - N_BIG * p) <= 4 * math.sqrt(N_BIG * p * (1 - p)) + 1, (wart, k)


def test_image_warts_are_in_the_pixels(images: dict[str, tuple[fits.Header, np.ndarray]],
                                      truth: list[dict[str, str]]) -> None:
    for t in truth:
        header, data = images[t["file"]]
        data = data.astype(np.float64)
        size = int(t["size_px"])
        wart = t["wart"]
        if wart == "blank":
            assert np.all(data == 0.0), t["name"]
            continue
        assert np.std(data[np.isfinite(data)]) > 0, t["name"]
        if wart == "nan_region":
            zero_columns = np.all(data == 0.0, axis=0).sum()
            assert np.isnan(data).sum() >= size or zero_columns >= 1, t["name"]
        else:
            assert np.isfinite(data).all(), t["name"]
        step = header.get("BSCALE", 0.0)
        if wart == "saturated":
            assert data.max() == pytest.approx(header["SATURATE"], abs=step + 1e-3 * abs(header["SATURATE"]))
            assert (data >= data.max() - step).sum() >= 4  # a flat-topped core, not one pixel
        elif wart != "nan_region":
            assert data.max() < header["SATURATE"], t["name"]
        if wart == "thumbnail":
            assert 16 <= size <= 28
        offset = math.hypot(float(t["centre_x"]) - (size - 1) / 2, float(t["centre_y"]) - (size - 1) / 2)
        if wart == "off_centre":
            assert 0.15 * size - 1e-6 <= offset <= 0.30 * size + 1e-6
        else:
            assert offset < 0.5


def test_low_snr_images_are_noisier_than_clean_ones(images: dict[str, tuple[fits.Header, np.ndarray]],
                                                    truth: list[dict[str, str]]) -> None:
    def central_snr(t: dict[str, str]) -> float:
        data = images[t["file"]][1].astype(np.float64)
        size = data.shape[0]
        y, x = np.indices(data.shape)
        r = np.hypot(x - float(t["centre_x"]), y - float(t["centre_y"]))
        sky = data[r > 0.4 * size]
        noise = 1.4826 * np.median(np.abs(sky - np.median(sky)))
        return float((np.mean(data[r < float(t["half_light_px"])]) - np.median(sky)) / noise)

    low = [central_snr(t) for t in truth if t["wart"] == "low_snr"]
    clean = [central_snr(t) for t in truth if t["wart"] == "none" and t["family"] != "Irr"][:60]
    assert np.median(low) < 0.3 * np.median(clean)
    assert np.median(clean) > 5


def test_duplicates_and_conflicts_look_like_merged_catalogues(catalog: list[dict[str, str]],
                                                               truth: list[dict[str, str]]) -> None:
    by_name = {t["name"]: t for t in truth}
    duplicates = [t for t in truth if t["wart"] == "duplicate"]
    for d in duplicates:
        first = by_name[d["duplicate_of"]]
        assert first["duplicate_of"] == d["name"]
        assert first["true_type"] == d["true_type"] and first["survey"] != d["survey"]
        sep = SkyCoord(float(d["ra"]), float(d["dec"]), unit="deg").separation(
            SkyCoord(float(first["ra"]), float(first["dec"]), unit="deg"))
        assert sep.arcsec < 1.0
    rows_by_name: dict[str, list[dict[str, str]]] = {}
    for row in catalog:
        rows_by_name.setdefault(row["name"], []).append(row)
    conflicted = {name: rows for name, rows in rows_by_name.items() if len(rows) > 1}
    assert set(conflicted) == {t["name"] for t in truth if t["conflict"] == "True"}
    different_type = 0
    for name, rows in conflicted.items():
        assert len(rows) == 2 and rows[0]["requested"] != rows[1]["requested"], name
        assert rows[0]["file"] == rows[1]["file"] and rows[0]["classification"] == by_name[name]["true_type"]
        different_type += rows[0]["classification"] != rows[1]["classification"]
    assert 0 < different_type < len(conflicted)


# --- physics -------------------------------------------------------------------------------------


def _noiseless(spec: dict) -> np.ndarray:
    image = spec["image"]
    cx, cy = image["centre"]
    return sample_mod._galaxy_model(spec["morph"], image["size"], cx, cy, spec["theta_e"] / image["scale"],
                                    oversample=2)


def _radius_enclosing(model: np.ndarray, cx: float, cy: float, fraction: float) -> float:
    y, x = np.indices(model.shape)
    r = np.hypot(x - cx, y - cy).ravel()
    order = np.argsort(r)
    cum = np.cumsum(model.ravel()[order])
    return float(r[order][np.searchsorted(cum, fraction * cum[-1])])


def _axis_ratio(model: np.ndarray, cx: float, cy: float) -> float:
    """Axis ratio of the isophote enclosing half the light (second moments of a uniform ellipse)."""
    values = np.sort(model.ravel())[::-1]
    level = values[np.searchsorted(np.cumsum(values), 0.5 * values.sum())]
    y, x = np.nonzero(model >= level)
    dx, dy = x - cx, y - cy
    cov = np.array([[np.mean(dx * dx), np.mean(dx * dy)], [np.mean(dx * dy), np.mean(dy * dy)]])
    low, high = np.linalg.eigvalsh(cov)
    return float(math.sqrt(low / high))


@pytest.fixture(scope="module")
def plan() -> list[dict]:
    _, specs = sample_mod._plan(n=300, seed=8, rates=SampleRates())
    return [s for s in specs if s["wart"] == "none"]


def test_ellipticals_are_more_centrally_concentrated_than_discs(plan: list[dict]) -> None:
    def concentration(spec: dict) -> float:
        model = _noiseless(spec)
        cx, cy = spec["image"]["centre"]
        return _radius_enclosing(model, cx, cy, 0.8) / max(_radius_enclosing(model, cx, cy, 0.2), 0.5)

    e = [concentration(s) for s in plan if s["family"] == "E"][:25]
    late = [concentration(s) for s in plan if s["family"] == "S" and s["stage"] in ("c", "cd", "d", "m")][:25]
    assert len(e) >= 15 and len(late) >= 10
    assert np.median(e) > 1.4 * np.median(late)


def test_edge_on_discs_are_elongated_and_face_on_round(plan: list[dict]) -> None:
    discs = [s for s in plan if s["family"] == "S" and "bar" not in s["morph"]]
    edge = [s for s in discs if s["morph"]["disc"]["cos_i"] < 0.2]
    face = [s for s in discs if s["morph"]["disc"]["cos_i"] > 0.9]
    assert edge and face
    edge_q = [_axis_ratio(_noiseless(s), *s["image"]["centre"]) for s in edge]
    face_q = [_axis_ratio(_noiseless(s), *s["image"]["centre"]) for s in face]
    assert max(edge_q) < 0.45
    assert max(edge_q) < min(face_q)  # arms make face-on isophotes irregular, never that flat


def test_elliptical_axis_ratio_follows_the_e_number(plan: list[dict]) -> None:
    checked = 0
    for s in plan:
        if s["family"] == "E" and re.fullmatch(r"E[0-7]", s["type"]):
            q = _axis_ratio(_noiseless(s), *s["image"]["centre"])
            # NED rounds 10 (1 - q) to the type number: +-0.05, plus the pixelised isophote
            assert q == pytest.approx(1 - int(s["type"][1]) / 10, abs=0.08), s["type"]
            checked += 1
    assert checked >= 10


def test_spiral_arms_are_strong_and_s0a_arms_faint(plan: list[dict]) -> None:
    def arm_contrast(spec: dict) -> float:
        """Scatter of the galaxy over its arm-less twin along the disc's half-light ellipse."""
        smooth = {**spec, "morph": {k: v for k, v in spec["morph"].items() if k != "arms"}}
        ratio = _noiseless(spec) / _noiseless(smooth)
        cx, cy = spec["image"]["centre"]
        y, x = np.indices(ratio.shape)
        r = np.hypot(x - cx, y - cy) / (spec["theta_e"] / spec["image"]["scale"])
        return float(np.std(ratio[(r > 0.6) & (r < 1.2)]))

    spirals = [s for s in plan if s["family"] == "S" and s["stage"] != "m"][:12]
    s0a = [s for s in plan if s["family"] == "S0/a"][:6]
    assert len(spirals) >= 8 and len(s0a) >= 3
    assert all("arms" not in s["morph"] for s in plan if s["family"] in ("E", "S0"))
    assert min(arm_contrast(s) for s in spirals) > 0.25
    assert max(arm_contrast(s) for s in s0a) < min(arm_contrast(s) for s in spirals)


def test_apparent_size_shrinks_with_redshift(truth: list[dict[str, str]]) -> None:
    clean = [t for t in truth if t["wart"] == "none"]
    z = np.log([float(t["redshift"]) for t in clean])
    theta = np.log([float(t["half_light_px"]) * float(t["pixel_scale"]) for t in clean])
    assert np.corrcoef(z, theta)[0, 1] < -0.5


# --- ensure, resume, validation ------------------------------------------------------------------


def test_ensure_sample_skips_when_present_and_regenerates_on_change(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "s"
    ensure_sample(out, n=12, seed=1)
    assert sample_is_current(out, n=12, seed=1) and not sample_is_current(out, n=12, seed=2)
    before = (out / "catalog.csv").read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("ensure_sample regenerated a current sample")

    with monkeypatch.context() as mp:
        mp.setattr(sample_mod, "generate_sample", fail)
        assert ensure_sample(out, n=12, seed=1) == out
    old_images = set((out / "images").iterdir())
    ensure_sample(out, n=12, seed=2)
    assert json.loads((out / "SAMPLE.json").read_text())["seed"] == 2
    assert (out / "catalog.csv").read_bytes() != before
    listed = {out / r["file"] for r in _rows(out / "truth.csv")}
    assert set((out / "images").iterdir()) == listed  # images of the old seed are gone
    assert old_images != listed
    (out / "SAMPLE.json").unlink()
    assert not sample_is_current(out, n=12, seed=2)


def test_interrupted_run_resumes_to_the_same_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = generate_sample(tmp_path / "ref", n=15, seed=4, n_jobs=1)
    real = sample_mod._render_and_write
    calls = {"n": 0}

    def crash_after_five(spec: dict, out: Path) -> dict:
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(spec, out)

    out = tmp_path / "resumed"
    with monkeypatch.context() as mp:
        mp.setattr(sample_mod, "_render_and_write", crash_after_five)
        with pytest.raises(KeyboardInterrupt):
            generate_sample(out, n=15, seed=4, n_jobs=1)
    assert not (out / "catalog.csv").exists() and len(list((out / "images").iterdir())) == 5
    rendered = []
    with monkeypatch.context() as mp:
        mp.setattr(sample_mod, "_render_and_write", lambda spec, o: rendered.append(spec) or real(spec, o))
        generate_sample(out, n=15, seed=4, n_jobs=1)
    assert len(rendered) == len(_rows(reference / "truth.csv")) - 5
    for name in ("catalog.csv", "truth.csv"):
        assert (out / name).read_bytes() == (reference / name).read_bytes()
    assert not list(out.glob(".sample*"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be a positive integer; got 0"),
        ({"n": 2.5}, "n must be a positive integer"),
        ({"seed": -1}, "seed must be a non-negative integer; got -1"),
        ({"n_jobs": 0}, "n_jobs must be a positive integer; got 0"),
    ],
)
def test_bad_parameters_are_named(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        generate_sample(tmp_path / "s", **{"n": 5, **kwargs})


def test_refuses_a_folder_that_is_not_a_sample(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not a sample.*thesis.tex"):
        generate_sample(tmp_path, n=3)
    assert (tmp_path / "thesis.tex").read_text() == "precious"
    file_out = tmp_path / "afile"
    file_out.write_text("x")
    with pytest.raises(ConfigError, match="out must be a folder"):
        generate_sample(file_out, n=3)


def test_rates_are_validated() -> None:
    with pytest.raises(ConfigError, match="family fractions must sum to 1"):
        SampleRates(spiral=0.5)
    with pytest.raises(ConfigError, match=r"rate blank must be in \[0, 1\]; got 1.5"):
        SampleRates(blank=1.5)
    assert issubclass(ConfigError, GalaxyMorphError)


def test_custom_rates_change_the_population(tmp_path: Path) -> None:
    rates = SampleRates(elliptical=1.0, lenticular=0.0, s0a=0.0, spiral=0.0, irregular=0.0, blank=0.5,
                        low_snr=0.0, saturated=0.0, nan_region=0.0, off_centre=0.0, thumbnail=0.0)
    out = generate_sample(tmp_path, n=20, seed=0, n_jobs=1, rates=rates)
    truth = _rows(out / "truth.csv")
    assert {t["family"] for t in truth} == {"E"}
    assert 4 <= sum(t["wart"] == "blank" for t in truth) <= 16


# --- command line --------------------------------------------------------------------------------


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--n", "--seed", "--if-missing", "--workers"):
        assert flag in text


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sample"
    events = tmp_path / "events.jsonl"
    assert main(["sample", "--out", str(out), "--n", "10", "--seed", "2", "--workers", "1",
                 "--progress-file", str(events)]) == 0
    captured = capsys.readouterr()
    assert "wrote 10 galaxies" in captured.out and "sample:" in captured.err
    assert len(_rows(out / "catalog.csv")) >= 10
    last = [json.loads(line) for line in events.read_text().splitlines()][-1]
    assert last["status"] == "done" and last["done"] == last["total"] == len(_rows(out / "truth.csv"))
    mtime = (out / "catalog.csv").stat().st_mtime_ns
    assert main(["sample", "--out", str(out), "--n", "10", "--seed", "2", "--if-missing"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (out / "catalog.csv").stat().st_mtime_ns == mtime
    assert main(["sample", "--out", str(out), "--n", "0"]) == 2
    assert "n must be a positive integer" in capsys.readouterr().err


def test_a_sample_larger_than_the_ngc_still_gets_unique_names() -> None:
    """60 % of the galaxies are NGC, which has 7,840 numbers: 16,000 galaxies used to fail to plan."""
    from core.acquire.sample import _assign_names

    galaxies = [{"ra": (i * 0.0225) % 360, "dec": -60 + (i * 0.0075) % 120, "duplicate": None} for i in range(16_000)]
    names = [primary for primary, _ in _assign_names(galaxies, seed=0)]
    assert len(set(names)) == 16_000
    assert sum(re.fullmatch(r"NGC \d+", n) is not None for n in names) <= 7_840  # "NGC 1/IC 2" apart
