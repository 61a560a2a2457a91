"""The classification scraper: parsing, multi-page search, faults, politeness, cache, CLI."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pandas as pd
import pytest

from core.config import get_settings
from core.errors import ConfigError, ParseError
from core.acquire.ned import class_codes, parse_result_page, scrape, search_params
from tests.fixture_server import DATA, FixtureServer, assert_polite, ned_server  # noqa: F401 - fixture

INTERVAL = 0.05
ROOT = DATA.parent.parent.parent


def _settings(server: FixtureServer, tmp_path, **overrides):
    values = dict(
        ned_base_url=server.url, request_interval=INTERVAL, request_timeout=0.5, max_retries=2, data_dir=tmp_path
    )
    values.update(overrides)
    return get_settings(**values)


@pytest.mark.parametrize(
    ("term", "codes"),
    [
        ("E", [1010]),
        ("S0", [1234]),
        ("S0/a", [1250]),
        ("Irr", [1157]),
        ("AB", [1006]),
        ("SA", [1168, 1327]),
        ("SAB", [1168, 1576]),
        ("SBc", [1168, 1924, 2341]),
        ("Sab", [1168, 2312]),
    ],
)
def test_class_codes(term, codes):
    assert class_codes(term) == codes


def test_unknown_class_term_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"got 'Sx'\. Use NED's spelling"):
        class_codes("Sx")


def test_search_params_carry_neds_fixed_parameters():
    assert search_params("SAB", 2) == [
        ("delimeter", "bar"),
        ("NO_LINKS", "1"),
        ("crosid", "objname"),
        ("position", "z"),
        ("gadata", "morphol"),
        ("page", "2"),
        ("M", "1168"),
        ("M", "1576"),
    ]


def test_parse_result_page_exact_rows():
    page = parse_result_page((DATA / "objatt" / "1010_p2.html").read_text(), url="u")
    assert (page.page, page.n_pages) == (2, 3)
    assert page.rows[0][:3] == ("NGC 1399", 0.004755, "E1 pec")
    assert page.rows[1][0] == "[ABC2001] 12" and math.isnan(page.rows[1][1]) and page.rows[1][2] == "E"
    assert page.rows[2][:3] == ("ESO 540- G 003", 0.02431, "E?")
    assert not page.has_positions and all(math.isnan(row[3]) and math.isnan(row[4]) for row in page.rows)


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ((DATA / "objatt" / "1168-1924_p1.html").read_text(), r"http://x/p: no <pre> block in the first <table>"),
        ("<html><body><p>Service down</p></body></html>", r"http://x/p: no <pre> block in the page \(and no <table>\)"),
        (
            "<table><tr><td><pre><strong>Name | Redshift | Type</strong>\nNGC 1 | abc | E\n</pre></td></tr></table>"
            "<form>Page 1 of 1</form>",
            r"redshift 'abc' of 'NGC 1' is not a number",
        ),
        (
            "<table><tr><td><pre><strong>Name | Velocity | Type</strong>\n</pre></td></tr></table><form>Page 1 of 1</form>",
            r"the header 'Name \| Velocity \| Type' has no redshift column",
        ),
        (
            "<table><tr><td><pre><strong>Name | Redshift | Type</strong>\nNGC 1 | 0.1 | E\n</pre></td></tr></table>",
            r"no 'Page N of M' in the page",
        ),
    ],
)
def test_changed_layout_raises_naming_the_url(html, expected):
    with pytest.raises(ParseError, match=expected):
        parse_result_page(html, url="http://x/p")


def test_multi_page_search_keeps_one_row_per_term_and_reruns_from_cache(ned_server, tmp_path):
    settings = _settings(ned_server, tmp_path)
    out = tmp_path / "ned"
    result = scrape(["E", "S0", "SAB", "Irr"], out=out, settings=settings)
    assert result.failures == {}
    assert result.requests == 6  # E: 3 pages, S0, SAB, Irr: 1 each
    catalog = pd.read_csv(out / "catalog.csv")
    assert list(catalog.columns[:4]) == ["name", "redshift", "classification", "requested"]
    assert catalog.groupby("requested").size().to_dict() == {"E": 8, "S0": 2, "SAB": 3}
    m87 = catalog[catalog["name"] == "NGC 4486"]
    assert m87[["requested", "classification"]].values.tolist() == [["E", "E+0-1 pec;NLRG Sy"], ["SAB", "SAB?"]]
    assert catalog.loc[catalog["name"] == "NGC 4649", "page"].item() == 3
    assert catalog["query_url"].str.startswith(ned_server.url + "cgi-bin/OBJatt?delimeter=bar").all()
    assert catalog["fetched_at"].str.match(r"\d{4}-\d\d-\d\dT").all()
    assert pd.read_parquet(out / "catalog.parquet")["name"].tolist() == catalog["name"].tolist()
    assert_polite(ned_server.hits, INTERVAL)

    before = len(ned_server.hits)
    again = scrape(["E", "S0", "SAB", "Irr"], out=out, settings=settings)
    assert again.requests == 0 and len(ned_server.hits) == before
    assert again.catalog["name"].tolist() == catalog["name"].tolist()


def test_a_broken_term_is_left_out_whole_and_the_rest_goes_on(ned_server, tmp_path):
    settings = _settings(ned_server, tmp_path)
    result = scrape(["SA", "SB", "S0"], out=tmp_path / "ned", settings=settings)
    assert set(result.failures) == {"SA", "SB"}
    assert "page=2&M=1168&M=1327: line 2" in result.failures["SA"]
    assert "no <pre> block in the first <table>" in result.failures["SB"]
    # SA's good first page is not half-included.
    assert result.catalog["requested"].unique().tolist() == ["S0"]
    # Pages that failed to parse are not cached: a rerun asks for them (and only them) again.
    ned_server.reset()
    scrape(["SA", "SB", "S0"], out=tmp_path / "ned", settings=settings)
    assert sorted(p.split("page=")[1] for p in ned_server.paths()) == ["1&M=1168&M=1924", "2&M=1168&M=1327"]


def test_500_then_success_and_a_timeout_are_retried(tmp_path):
    server = FixtureServer(stall_seconds=1.5).start()
    try:
        server.fail("/cgi-bin/OBJatt", "500", "stall")
        result = scrape(["S0"], out=tmp_path / "ned", settings=_settings(server, tmp_path))
        assert result.failures == {} and result.catalog["name"].tolist() == ["NGC 4382", "NGC 1023"]
        assert [h.status for h in server.hits if not h.stalled] == [500, 200]
    finally:
        server.stop()


def test_cli_scrape_against_the_configured_server(ned_server, tmp_path):
    env = dict(
        os.environ,
        GALAXY_MORPH_NED_BASE_URL=ned_server.url,
        GALAXY_MORPH_REQUEST_INTERVAL=str(INTERVAL),
        GALAXY_MORPH_DATA_DIR=str(tmp_path),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "core", "scrape", "--classes", "E", "S0/a", "--out", str(tmp_path / "ned")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "wrote 8 rows (8 objects)" in proc.stdout
    assert "failed: class S0/a:" in proc.stderr and "HTTP 404" in proc.stderr


def test_scrape_rejects_an_unknown_term_before_any_request(ned_server, tmp_path):
    with pytest.raises(ConfigError, match="got 'Sbx'"):
        scrape(["E", "Sbx"], out=tmp_path / "ned", settings=_settings(ned_server, tmp_path))
    assert ned_server.hits == []


@pytest.mark.remote
def test_real_ned_first_page_of_s0a(tmp_path):
    settings = get_settings(data_dir=tmp_path)
    result = scrape(["S0/a"], out=tmp_path / "ned", settings=settings, max_pages=1)
    assert result.failures == {}
    assert len(result.catalog) > 0
    assert result.catalog["classification"].str.contains("S0", regex=False).mean() > 0.5


# -- NED's default layout (eleven columns, RA and Dec) -------------------------------------------


def test_default_layout_page_parses_by_header_names_and_keeps_positions():
    page = parse_result_page((DATA / "objatt_default" / "1010_p1.html").read_text(), url="u")
    assert (page.page, page.n_pages) == (1, 3) and page.has_positions
    assert [row[:3] for row in page.rows] == [
        ("NGC 4486", 0.004283, "E+0-1 pec;NLRG Sy"),
        ("NGC 4472", 0.003272, "E2"),
        ("MESSIER 105", 0.003008, "E1"),
    ]
    # 12h30m49.4s +12d23m28s
    assert page.rows[0][3:] == pytest.approx((187.705833, 12.391111), abs=1e-6)
    missing = parse_result_page((DATA / "objatt_default" / "1010_p2.html").read_text(), url="u").rows[1]
    assert missing[0] == "[ABC2001] 12" and math.isnan(missing[3]) and math.isnan(missing[4])


@pytest.mark.parametrize(
    "header",
    [
        "Object Name | Redshift | Classification",  # the seed's
        "|No.|Essential Note|Object Name|RA|DEC|Object Type|Redshift|z Qual|Galaxy Morphology|Activity Type|No.|",
        "Classification | Object Name | Redshift (z)",  # another order
    ],
)
def test_columns_are_found_by_name_whatever_precedes_the_header(header):
    fields = [f.strip() for f in header.strip("|").split("|")]
    values = {"Object Name": "NGC 1", "Redshift": "0.1", "Redshift (z)": "0.1", "Classification": "Sb",
              "Galaxy Morphology": "Sb", "RA": "00h07m15.8s", "DEC": "+27d42m29s"}
    row = "|".join(values.get(f, "x") for f in fields)
    if header.startswith("|"):
        row = f"|{row}|"
    html = f"<table><tr><td><pre>NED says hello\nSome preamble\n{header}\n{row}\n</pre></td></tr></table>Page 1 of 1"
    parsed = parse_result_page(html, url="u").rows
    assert [r[:3] for r in parsed] == [("NGC 1", 0.1, "Sb")]


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("|Object Name|RA|DEC|Redshift|Object Type|", "classification"),  # G, QSO...: not a morphology
        ("|Object Name|RA|DEC|Redshift Qualifier|Galaxy Morphology|", "redshift"),
        ("|Object Name|RA|DEC|Activity Type|Redshift|", "classification"),
    ],
)
def test_a_needed_column_missing_is_one_line_naming_it(header, missing):
    html = f"<table><tr><td><pre>{header}\n</pre></td></tr></table>Page 1 of 1"
    with pytest.raises(ParseError, match=rf"^u: the header .* has no {missing} column; NED's result layout"):
        parse_result_page(html, url="u")


def test_both_layouts_scrape_to_the_same_catalogue_rows_and_the_default_one_has_positions(tmp_path):
    import shutil

    default_root = tmp_path / "default"
    shutil.copytree(DATA, default_root)
    shutil.rmtree(default_root / "objatt")
    shutil.copytree(DATA / "objatt_default", default_root / "objatt")
    catalogs = {}
    for layout, root in (("seed", DATA), ("default", default_root)):
        server = FixtureServer(root).start()
        try:
            result = scrape(["E"], out=tmp_path / layout, settings=_settings(server, tmp_path / layout),
                            cache_dir=tmp_path / layout / "cache")
        finally:
            server.stop()
        assert result.failures == {}
        catalogs[layout] = result.catalog
    columns = ["name", "redshift", "classification", "requested", "page"]
    pd.testing.assert_frame_equal(catalogs["seed"][columns], catalogs["default"][columns])
    assert catalogs["seed"][["ra", "dec"]].isna().all().all()
    default = catalogs["default"].set_index("name")
    assert default["ra"].notna().sum() == 5
    assert default.loc["MESSIER 105", ["ra", "dec"]].tolist() == pytest.approx([161.956667, 12.581667], abs=1e-6)
    # The scraped catalogue is a source with positions: build can find duplicates without a request.
    from core.acquire.catalogue import read_catalogue

    written = read_catalogue(tmp_path / "default" / "catalog.csv")
    assert written["ra"].notna().sum() == 5
