"""Catalogue tables, name prefixes, sources and positional duplicates."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.acquire.catalogue import (
    catalogue_prefix,
    find_duplicates,
    list_sources,
    load_source,
    read_catalogue,
)
from core.errors import ConfigError, ParseError

CONTRACT = ["name", "redshift", "classification", "requested", "file", "ra", "dec"]


def test_reads_the_original_studys_ned_list(tmp_path):
    # The header and quoting of the original study's NED_list.csv.
    path = tmp_path / "NED_list.csv"
    path.write_text(
        "Name,Redshift,Classification,Requested\n"
        '"NGC 4486",0.004283,"E+0-1 pec;NLRG Sy",E\n'
        '"NGC 4486",0.004283,"E+0-1 pec;NLRG Sy",S0\n'
        '"2MASX J12304942+1223279",,"SAB(rs)bc",SAB\n'
        ',0.1,Sb,SA\n',
        encoding="utf-8",
    )
    df = read_catalogue(path)
    assert list(df.columns) == CONTRACT
    assert df["name"].tolist() == ["NGC 4486", "NGC 4486", "2MASX J12304942+1223279"]
    assert df["requested"].tolist() == ["E", "S0", "SAB"]
    assert df["redshift"].iloc[0] == pytest.approx(0.004283)
    assert np.isnan(df["redshift"].iloc[2])
    assert df["file"].tolist() == ["", "", ""]
    assert df["ra"].isna().all()


def test_aliases_any_case_and_sexagesimal_positions(tmp_path, caplog):
    path = tmp_path / "mine.csv"
    path.write_text(
        "OBJNAME,Morph,z,RA,DEC,filename,Survey\n"
        "M 87,E0,0.0043,12h30m49.42s,+12d23m28.0s,img/m87.fits,SDSS\n"
        "NGC 224,SA(s)b,-0.001,10.6847,41.2690,img/m31.fits,DSS\n"
        "NGC 1,Sb,x,999,0,,DSS\n"
    )
    with caplog.at_level(logging.WARNING, logger="core.acquire.catalogue"):
        df = read_catalogue(path)
    assert list(df.columns) == CONTRACT + ["survey"]
    assert df["classification"].tolist() == ["E0", "SA(s)b", "Sb"]
    assert df["ra"].iloc[0] == pytest.approx(187.70592, abs=1e-4)
    assert df["dec"].iloc[0] == pytest.approx(12.39111, abs=1e-4)
    assert df["ra"].iloc[1] == pytest.approx(10.6847)
    assert np.isnan(df["redshift"].iloc[2]) and np.isnan(df["ra"].iloc[2])
    assert "out of range on lines 4" in caplog.text
    assert df["survey"].tolist() == ["SDSS", "DSS", "DSS"]


def test_missing_required_column_names_file_found_and_expected(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("Galaxy,Redshift\nNGC 1,0.01\n")
    with pytest.raises(ParseError) as err:
        read_catalogue(path)
    message = str(err.value)
    assert str(path) in message and "no classification column" in message
    assert "['Galaxy', 'Redshift']" in message and "morph" in message


def test_empty_and_missing_files_are_user_errors(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ParseError, match="is empty"):
        read_catalogue(tmp_path / "empty.csv")
    with pytest.raises(ConfigError, match="does not exist"):
        read_catalogue(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("NGC 4486", "NGC"),
        ("NGC4486B", "NGC"),
        ("UGC 12345", "UGC"),
        ("UGCA 086", "UGCA"),
        ("IC 342", "IC"),
        ("IC0342", "IC"),
        ("PGC 000123", "PGC"),
        ("2MASX J12304942+1223279", "2MASX"),
        ("2MASXJ12304942+1223279", "2MASX"),
        ("ESO 123-G 045", "ESO"),
        ("ESO123-G045", "ESO"),
        ("SDSS J123049.41+122328.1", "SDSS"),
        ("SDSSJ123049.41+122328.1", "SDSS"),
        ("SDSS 588017704017068165", "SDSS"),
        ("MCG -01-02-003", "MCG"),
        ("MCG-01-02-003", "MCG"),
        ("MCG +08-23-097", "MCG"),
        ("CGCG 012-034", "CGCG"),
        ("ABELL 1656:[GMP83] 3329", "ABELL"),
        ("Abell 2199", "ABELL"),
        ("[ABC2001] 123", "[ABC2001]"),
        ("[VV2006] J123-45", "[VV2006]"),
        ("Mrk 421", "MRK"),
        ("MESSIER 087", "MESSIER"),
        ("6dF J1234567-123456", "6DF"),
        ("12345", "OTHER"),
        ("", "OTHER"),
    ],
)
def test_catalogue_prefix(name, prefix):
    assert catalogue_prefix(name) == prefix


def _write_catalogue(root: Path, text: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "catalog.csv").write_text(text)


def test_load_source_resolves_paths_and_kinds(tmp_path):
    sample = tmp_path / "sample"
    _write_catalogue(sample, "name,classification,file\nNGC 1,E3,images/a.png\nNGC 2,Sb,\n")
    (sample / "SAMPLE.json").write_text("{}")
    source = load_source(sample)
    assert source.kind == "sample"
    assert source.table["path"].tolist() == [str(sample.resolve() / "images/a.png"), None]

    folder = tmp_path / "other"
    inside = folder.resolve() / "images" / "abs.fits"
    _write_catalogue(folder, f"name,classification,file\nNGC 3,E,{inside}\nNGC 4,E,{tmp_path / 'abs.fits'}\n")
    table = load_source(folder / "catalog.csv").table
    assert table["path"].tolist() == [str(inside), None]  # absolute is fine inside the folder, refused outside
    assert table["image_reason"].tolist() == ["", f"file outside the source folder {folder.resolve()} (refused)"]
    assert load_source(folder).kind == "folder"

    gz = tmp_path / "zoo"
    _write_catalogue(gz, "name,classification,file\nSDSS 1,EdgeOn,a.jpeg\nSDSS 2,Spiral,b.jpeg\n")
    assert load_source(gz).kind == "gz1"

    with pytest.raises(ConfigError, match="has no catalog.csv or labels.csv"):
        load_source(tmp_path / "nothing")


def test_ned_source_joins_the_image_manifest(tmp_path):
    ned = tmp_path / "ned"
    _write_catalogue(
        ned,
        "name,redshift,classification,requested\n"
        "NGC 1,0.01,E3,E\nNGC 1,0.01,E3,S0\nNGC 2,0.02,Sb,SA\nNGC 3,0.03,SB0,S0\n",
    )
    (ned / "images").mkdir()
    (ned / "images" / "ngc1.fits").write_bytes(b"x")
    (ned / "images" / "manifest.csv").write_text(
        "name,status,file,survey,band,refcode,url,reason\n"
        "NGC 1,failed,,DSS,R,,http://x,HTTP 404\n"
        "NGC 1,ok,ngc1.fits,SDSS,r,,http://y,\n"
        "NGC 2,failed,,,,,,no image in NED\n"
    )
    source = load_source(ned)
    assert source.kind == "ned"
    table = source.table
    assert len(table) == 4  # one row per catalogue row
    assert table["path"].tolist()[:2] == [str(ned.resolve() / "images" / "ngc1.fits")] * 2
    assert table["path"].tolist()[2:] == [None, None]
    assert table["survey"].tolist() == ["SDSS", "SDSS", "", ""]
    assert table["image_status"].tolist() == ["ok", "ok", "failed", "not_fetched"]
    assert table["image_reason"].tolist()[2] == "no image in NED"


def test_list_sources_in_selector_order(tmp_path):
    _write_catalogue(tmp_path / "ned", "name,classification\nNGC 1,E\n")
    _write_catalogue(tmp_path / "sample", "name,classification\nA,E\nB,S0\n")
    (tmp_path / "sample" / "SAMPLE.json").write_text("{}")
    for name in ("zeta", "alpha"):  # what `core import` writes: a catalogue and its import report
        _write_catalogue(tmp_path / "imported" / name, "name,classification\nA,E\n")
        (tmp_path / "imported" / name / "import_report.json").write_text("{}")
    (tmp_path / "imported" / "empty").mkdir()
    summaries = list_sources(tmp_path)
    assert [(s.root.relative_to(tmp_path).as_posix(), s.kind, s.n_rows) for s in summaries] == [
        ("sample", "sample", 2),
        ("ned", "folder", 1),
        ("imported/alpha", "imported", 1),
        ("imported/zeta", "imported", 1),
    ]
    assert list_sources(tmp_path / "missing") == []


def test_find_duplicates_groups_close_positions_transitively():
    arcsec = 1 / 3600
    df = pd.DataFrame(
        {
            "name": ["NGC 1", "UGC 1", "PGC 1", "NGC 2", "NGC 3", "IC 3", "NGC 4", "NGC 1"],
            # NGC 1 ~ UGC 1 (2") ~ PGC 1 (2" further, 4" from NGC 1); NGC 3 ~ IC 3 across RA=0.
            "ra": [10.0, 10.0 + 2 * arcsec, 10.0 + 4 * arcsec, 50.0, 359.9999 + 0.5 * arcsec, 0.0001, np.nan, 10.0],
            "dec": [0.0, 0.0, 0.0, 0.0, 20.0, 20.0, 0.0, 0.0],
        }
    )
    # 0.0001 deg of RA at dec 20 = 0.34"; the two sides of RA=0 are 0.0001 + 0.0001 - 0.5" apart.
    assert find_duplicates(df, tolerance_arcsec=3.0) == [["NGC 1", "UGC 1", "PGC 1"], ["NGC 3", "IC 3"]]
    assert find_duplicates(df, tolerance_arcsec=1.0) == [["NGC 3", "IC 3"]]
    with pytest.raises(ConfigError, match="tolerance_arcsec must be > 0"):
        find_duplicates(df, tolerance_arcsec=0)


def test_find_duplicates_distance_near_the_pole():
    # At dec 89.99 one degree of RA is 0.63"; a KD-tree on RA/Dec in degrees would miss this pair.
    df = pd.DataFrame({"name": ["A", "B", "C"], "ra": [0.0, 1.0, 180.0], "dec": [89.99, 89.99, 89.0]})
    assert find_duplicates(df, tolerance_arcsec=1.0) == [["A", "B"]]


def _offset(ra: float, dec: float, *, arcsec: float, position_angle: float) -> tuple[float, float]:
    """A point ``arcsec`` from (ra, dec) towards ``position_angle`` degrees (astropy's spherical offset)."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    moved = SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(position_angle * u.deg, arcsec * u.arcsec)
    return float(moved.ra.deg), float(moved.dec.deg)


@pytest.mark.parametrize(("separation", "same_galaxy"), [(0.5, True), (2.9, True), (3.1, False)])
@pytest.mark.parametrize(("dec", "position_angle"), [(12.39, 0.0), (12.39, 90.0), (-71.2, 45.0), (85.0, 90.0)])
def test_the_3_arcsec_radius_on_the_sky(separation, same_galaxy, dec, position_angle):
    # M87's RA; offsets north, east and diagonal, near a pole too, where RA degrees are short.
    ra2, dec2 = _offset(187.70593, dec, arcsec=separation, position_angle=position_angle)
    df = pd.DataFrame({"name": ["NGC 4486", "2MASX J12304942+1223279"], "ra": [187.70593, ra2], "dec": [dec, dec2]})
    expected = [["NGC 4486", "2MASX J12304942+1223279"]] if same_galaxy else []
    assert find_duplicates(df, tolerance_arcsec=3.0) == expected


def test_two_real_neighbours_5_arcsec_apart_stay_two_objects():
    # Two real NED objects 5.02" apart, with NED's positions (astroquery's real cone-search answer,
    # astroquery/ipac/ned/tests/data/query_near_position.xml).
    df = pd.DataFrame(
        {
            "name": ["CXO J053514.8-052346", "CXO J053515.1-052346"],
            "ra": [83.81179, 83.81319],
            "dec": [-5.3962, -5.39627],
        }
    )
    assert find_duplicates(df, tolerance_arcsec=3.0) == []
    assert find_duplicates(df, tolerance_arcsec=5.1) == [list(df["name"])]


def test_ned_source_takes_positions_from_the_fetch_where_the_catalogue_has_none(tmp_path):
    ned = tmp_path / "ned"
    _write_catalogue(ned, "name,classification,ra,dec\nNGC 4486,E+0-1 pec;NLRG Sy,,\nNGC 1,E3,10.0,5.0\nNGC 2,Sb,,\n")
    (ned / "images").mkdir()
    (ned / "images" / "manifest.csv").write_text(
        "name,status,file,survey,band,refcode,url,reason,ra,dec,position_from\n"
        "NGC 4486,ok,m87.fits.gz,DSS2,IIIaF,dss2,http://x,,187.705930,12.391123,listing\n"
        "NGC 1,ok,n1.fits.gz,DSS2,IIIaF,dss2,http://y,,10.5,5.5,fits_header\n"
        "NGC 2,no_image,,,,,,NED lists no FITS image,,,\n"
    )
    table = load_source(ned).table.set_index("name")
    assert table.loc["NGC 4486", ["ra", "dec"]].tolist() == [187.70593, 12.391123]
    assert table.loc["NGC 1", ["ra", "dec"]].tolist() == [10.0, 5.0]  # the catalogue's own position wins
    assert np.isnan(table.loc["NGC 2", "ra"])
    assert table["position_from"].tolist() == ["listing", "catalogue", ""]


def test_survey_and_band_columns_of_an_import(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("Name,Type,Survey,Filter\nNGC 1,E3,SDSS, r \nNGC 2,Sb,DSS2 red,\n")
    table = read_catalogue(path)
    assert table["survey"].tolist() == ["SDSS", "DSS2 red"] and table["band"].tolist() == ["r", ""]
    assert "survey" not in read_catalogue(_write_minimal(tmp_path)).columns


def _write_minimal(tmp_path: Path) -> Path:
    path = tmp_path / "minimal.csv"
    path.write_text("name,classification\nNGC 1,E3\n")
    return path
