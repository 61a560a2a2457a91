"""The image fetcher against the local fixture server: inventory, choice, faults, resume, kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest

from core.acquire.catalogue import find_duplicates, load_source
from core.config import get_settings
from core.errors import ConfigError, FetchError, ParseError
from core.acquire.fetch import (
    fetch_images,
    fits_position,
    image_path,
    map_link,
    parse_image_link,
    parse_listing_position,
    safe_stem,
    select_image,
    validate_fits_gz,
)
from core.io import read_jsonl
from tests.fixture_server import DATA, FixtureServer, assert_polite, ned_server  # noqa: F401 - fixture

INTERVAL = 0.05
ROOT = DATA.parent.parent.parent
GOOD = ["NGC 4486", "ESO 540- G 003", "[ABC2001] 12", "UGC 07654/NOTES:..x"]
FAULTY = ["NGC 0001", "NGC 0002", "NGC 0003", "NGC 0004", "NGC 0005", "NGC 0006"]


def _settings(server: FixtureServer, tmp_path, **overrides):
    values = dict(
        ned_base_url=server.url, request_interval=INTERVAL, request_timeout=0.5, max_retries=2, data_dir=tmp_path
    )
    values.update(overrides)
    return get_settings(**values)


def test_parse_image_link_and_survey_names():
    link = parse_image_link("http://h/dss1B2/Bb/MESSIER_001:I:103aE:dss1.fits.gz", name="M 1")
    assert (link.survey, link.band, link.colour, link.refcode) == ("DSS1", "103aE", "red", "dss1")
    xray = parse_image_link("http://h/img5/x/p083n22a:I:0.1-2.4keV:cop1995.fits.gz", name="M 1")
    assert (xray.survey, xray.band, xray.refcode) == ("cop1995", "0.1-2.4keV", "cop1995")
    encoded = parse_image_link("http://h/dss2/NGC_1%3AI%3AIIIaJ%3Adss2.fits.gz", name="NGC 1")
    assert (encoded.survey, encoded.colour) == ("DSS2", "blue")
    with pytest.raises(ParseError, match=r"'NGC_1\.fits\.gz' is not 'OBJECT:I:BAND:REFCODE\.fits\.gz'"):
        parse_image_link("http://h/NGC_1.fits.gz", name="NGC 1")


def test_select_image_follows_the_rule_order_not_the_list_order():
    links = [
        parse_image_link(f"http://h/{f}", name="X")
        for f in ["X:I:103aE:dss1.fits.gz", "X:I:IIIaJ:dss2.fits.gz", "X:I:IIIaF:dss2.fits.gz", "X:I:r:sdss.fits.gz"]
    ]
    assert select_image(links, ["DSS2 red"]).file_name == "X:I:IIIaF:dss2.fits.gz"
    assert select_image(links, ["SDSS r", "DSS2 red"]).file_name == "X:I:r:sdss.fits.gz"
    assert select_image(links, ["DSS2"]).file_name == "X:I:IIIaJ:dss2.fits.gz"
    assert select_image(links, ["2MASS K"]) is None
    with pytest.raises(ConfigError, match="'SURVEY' or 'SURVEY BAND'"):
        select_image(links, ["DSS2 red extra"])


def test_map_link_moves_astroquerys_origin_onto_the_configured_one():
    origin = "http://127.0.0.1:9"
    assert map_link("https://ned.ipac.caltech.edu/dss2/a:I:F:dss2.fits.gz", origin=origin) == origin + "/dss2/a:I:F:dss2.fits.gz"
    assert (
        map_link("https://ned.ipac.caltech.eduhttps://mirror.example/img/a.fits.gz", origin=origin + "/ned/")
        == origin + "/ned/img/a.fits.gz"
    )


@pytest.mark.parametrize("name", ["[ABC2001] 12", "ESO 540- G 003", "A/B", "../../etc/passwd", "x:y", "..", "/", ""])
def test_safe_names_stay_inside_the_folder(name, tmp_path):
    stem = safe_stem(name)
    assert "/" not in stem and ":" not in stem and "." not in stem
    assert image_path(tmp_path, name).parent == tmp_path.resolve()


def test_safe_names_keep_similar_names_apart():
    assert safe_stem("[ABC2001] 12") != safe_stem("ABC2001 12")
    assert safe_stem("NGC 4486").startswith("NGC_4486-")


def test_validate_fits_gz_names_each_problem(tmp_path):
    bad = tmp_path / "x.fits.gz"
    for source, expected in [
        ("NGC_0002_I_IIIaF_dss2.fits.gz", "truncated gzip"),
        ("NGC_0003_I_IIIaF_dss2.fits.gz", "not a FITS file"),
    ]:
        bad.write_bytes((DATA / "img" / source).read_bytes())
        with pytest.raises(FetchError, match=expected):
            validate_fits_gz(bad)
    bad.write_bytes(b"<html>oops</html>")
    with pytest.raises(FetchError, match=r"not gzip data \(no gzip signature, it looks like an HTML page\)"):
        validate_fits_gz(bad)
    validate_fits_gz(DATA / "img" / "NGC_4486_I_IIIaF_dss2.fits.gz")


def test_fetch_every_fault_recorded_and_the_rest_goes_on(ned_server, tmp_path):
    settings = _settings(ned_server, tmp_path, ned_image_origin=ned_server.url.replace("127.0.0.1", "localhost"))
    ned_server.fail("/img/dss2/NGC_0001:I:IIIaF:dss2.fits.gz", "500")
    out = tmp_path / "images"
    summary = fetch_images(pd.DataFrame({"name": GOOD + FAULTY + ["NGC 4486"]}), out=out, settings=settings)
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False).set_index("name")
    assert list(manifest.index) == GOOD + FAULTY
    assert manifest["status"].to_dict() == {
        **dict.fromkeys(GOOD + ["NGC 0001"], "ok"),
        "NGC 0002": "failed",
        "NGC 0003": "failed",
        "NGC 0004": "failed",
        "NGC 0005": "no_image",
        "NGC 0006": "no_image",
    }
    assert "truncated gzip" in manifest.loc["NGC 0002", "reason"]
    assert "not a FITS file" in manifest.loc["NGC 0003", "reason"]
    assert "HTTP 404" in manifest.loc["NGC 0004", "reason"]
    assert manifest.loc["NGC 0005", "reason"] == "NED lists no FITS image"
    assert manifest.loc["NGC 0006", "reason"].startswith("none of 1 images matches prefer")
    assert summary.counts == {"ok": 5, "failed": 3, "no_image": 2}
    # DSS2 red chosen over DSS1, which NED lists first.
    assert manifest.loc["NGC 4486", ["survey", "band"]].tolist() == ["DSS2", "IIIaF"]
    assert manifest.loc["UGC 07654/NOTES:..x", "survey"] == "DSS1"
    for name in GOOD + ["NGC 0001"]:
        assert (out / manifest.loc[name, "file"]).read_bytes()[:2] == b"\x1f\x8b"
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".fits.gz")) == sorted(
        manifest.loc[manifest["status"] == "ok", "file"]
    )
    inventory = pd.read_csv(out / "inventory.csv")
    assert inventory[inventory["name"] == "NGC 4486"]["survey"].tolist() == ["DSS1", "DSS2"]
    names = pd.read_csv(out / "names.csv").set_index("name")["file"]
    assert names["[ABC2001] 12"] == manifest.loc["[ABC2001] 12", "file"]
    # Listings went to the base URL, images to the configured origin (astroquery's links remapped).
    assert {h.host.split(":")[0] for h in ned_server.hits if h.path == "/cgi-bin/imgdata"} == {"127.0.0.1"}
    assert {h.host.split(":")[0] for h in ned_server.hits if h.path.startswith("/img/")} == {"localhost"}
    assert_polite(ned_server.hits, INTERVAL)

    # A rerun asks nothing; --retry-failed asks again only for the failures' images.
    before = len(ned_server.hits)
    assert fetch_images(pd.DataFrame({"name": GOOD + FAULTY}), out=out, settings=settings).requests == 0
    assert len(ned_server.hits) == before
    retry = fetch_images(pd.DataFrame({"name": GOOD + FAULTY}), out=out, settings=settings, retry_failed=True)
    assert retry.processed == 3
    assert sorted(p for p in ned_server.paths()[before:]) == [
        "/img/dss2/NGC_0002:I:IIIaF:dss2.fits.gz",
        "/img/dss2/NGC_0003:I:IIIaF:dss2.fits.gz",
        "/img/dss2/NGC_0004:I:IIIaF:dss2.fits.gz",
    ]


def test_a_stalled_image_times_out_and_is_retried(tmp_path):
    server = FixtureServer(stall_seconds=1.5).start()
    try:
        server.fail("/img/dss2/NGC_0007:I:IIIaF:dss2.fits.gz", "stall")
        summary = fetch_images(pd.DataFrame({"name": ["NGC 0007"]}), out=tmp_path / "i", settings=_settings(server, tmp_path))
        assert summary.counts["ok"] == 1
        # Listing, the stalled try (still asleep on the server: it is logged when it wakes), the retry.
        assert summary.requests == 3
        assert [h.path for h in server.hits] == ["/cgi-bin/imgdata", "/img/dss2/NGC_0007:I:IIIaF:dss2.fits.gz"]
    finally:
        server.stop()


def test_a_removed_image_is_fetched_again_and_limit_is_obeyed(ned_server, tmp_path):
    settings = _settings(ned_server, tmp_path)
    out = tmp_path / "images"
    first = fetch_images(pd.DataFrame({"name": GOOD}), out=out, settings=settings, limit=2)
    assert first.processed == 2 and first.counts["ok"] == 2
    manifest = pd.read_csv(out / "manifest.csv")
    (out / manifest["file"][0]).unlink()
    second = fetch_images(pd.DataFrame({"name": GOOD}), out=out, settings=settings)
    assert second.processed == 3 and second.counts["ok"] == 4


def test_bad_options_are_clear_errors(tmp_path):
    settings = get_settings(data_dir=tmp_path)
    with pytest.raises(ConfigError, match="limit must be >= 1; got 0"):
        fetch_images(pd.DataFrame({"name": ["x"]}), out=tmp_path, settings=settings, limit=0)
    with pytest.raises(ConfigError, match="has no 'name' column"):
        fetch_images(pd.DataFrame({"object": ["x"]}), out=tmp_path, settings=settings)
    with pytest.raises(ConfigError, match="catalog .* does not exist"):
        fetch_images(tmp_path / "missing.csv", out=tmp_path, settings=settings)


def test_killed_cli_run_resumes_and_loses_nothing(ned_server, tmp_path):
    names = [f"KRT {n:03d}" for n in range(1, 13)]
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame({"name": names, "classification": "E"}).to_csv(catalog, index=False)
    out = tmp_path / "images"
    env = dict(
        os.environ,
        GALAXY_MORPH_NED_BASE_URL=ned_server.url,
        GALAXY_MORPH_REQUEST_INTERVAL="0.1",
        GALAXY_MORPH_DATA_DIR=str(tmp_path),
    )
    command = [sys.executable, "-m", "core", "fetch", "--catalog", str(catalog), "--out", str(out)]
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(read_jsonl(out / "manifest.jsonl")) < 4:
        assert proc.poll() is None, "fetch finished before it could be killed"
        assert time.monotonic() < deadline, "no progress in 60 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before_kill = len(read_jsonl(out / "manifest.jsonl"))
    assert done_before_kill < len(names)

    rerun = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    journal = read_jsonl(out / "manifest.jsonl")
    assert Counter(r["name"] for r in journal) == Counter(names)
    assert {r["status"] for r in journal} == {"ok"}
    files = sorted(p.name for p in out.iterdir() if p.name.endswith(".fits.gz"))
    assert files == sorted(safe_stem(n) + ".fits.gz" for n in names)
    assert [p.name for p in out.iterdir() if ".tmp" in p.name] == []
    for name in files:
        validate_fits_gz(out / name)
    # At most the object in flight at the kill is asked for twice.
    listings = Counter(h.query for h in ned_server.hits if h.path == "/cgi-bin/imgdata")
    assert sum(listings.values()) <= len(names) + 1
    assert sum(h.path.startswith("/img/") for h in ned_server.hits) <= len(names) + 1
    assert_polite(ned_server.hits, 0.1)


@pytest.mark.remote
def test_real_ned_lists_and_fetches_m87(tmp_path):
    summary = fetch_images(pd.DataFrame({"name": ["MESSIER 087"]}), out=tmp_path / "i", settings=get_settings(data_dir=tmp_path))
    assert summary.counts["ok"] + summary.counts["no_image"] == 1
    assert (tmp_path / "i" / "inventory.csv").exists()


# MESSIER 001's position in astroquery's real NED listing (its Aladin links) and in the real DSS1
# cutout astroquery ships (OBJCTRA / OBJCTDEC), in degrees.
M1_LISTING = (15 * (5 + 34 / 60 + 31.97097 / 3600), 22 + 0 / 60 + 52.0564 / 3600)
M1_HEADER = (15 * (5 + 34 / 60 + 31.970 / 3600), 22 + 0 / 60 + 52.06 / 3600)


def test_position_from_ned_listing_and_fits_header():
    listing = (DATA / "imgdata" / "MESSIER_001.html").read_text()
    assert parse_listing_position(listing) == pytest.approx(M1_LISTING, abs=1e-9)
    # The same listing without its Aladin column, and the project's own fixture pages, carry none.
    assert parse_listing_position((DATA / "imgdata" / "Crab_Nebula.html").read_text()) is None
    assert parse_listing_position((DATA / "imgdata" / "NGC_4486.html").read_text()) is None
    ra, dec, where = fits_position(DATA / "img" / "MESSIER_001_I_103aE_dss1.fits.gz")
    assert (ra, dec) == pytest.approx(M1_HEADER, abs=1e-9) and where == "fits_header"
    assert fits_position(DATA / "img" / "NGC_4486_I_IIIaF_dss2.fits.gz") is None  # no WCS, no OBJCTRA


def test_fetch_records_positions_without_extra_requests_and_duplicates_are_found(ned_server, tmp_path):
    root = tmp_path / "ned"
    root.mkdir()
    names = ["MESSIER 001", "Crab Nebula", "NGC 4486"]  # M1 twice: under its Messier and its common name
    pd.DataFrame({"name": names, "classification": ["Pec", "Pec", "E+0-1 pec;NLRG Sy"]}).to_csv(
        root / "catalog.csv", index=False
    )
    summary = fetch_images(root / "catalog.csv", out=root / "images", prefer=["DSS1"], settings=_settings(ned_server, tmp_path))
    assert summary.counts["ok"] == 3
    assert summary.requests == 6 and len(ned_server.hits) == 6  # a listing and an image each, nothing more
    manifest = pd.read_csv(root / "images" / "manifest.csv", keep_default_na=False).set_index("name")
    assert manifest["position_from"].to_dict() == {"MESSIER 001": "listing", "Crab Nebula": "fits_header", "NGC 4486": ""}
    assert manifest.loc["MESSIER 001", ["ra", "dec"]].astype(float).tolist() == pytest.approx(M1_LISTING, abs=1e-9)
    assert manifest.loc["Crab Nebula", ["ra", "dec"]].astype(float).tolist() == pytest.approx(M1_HEADER, abs=1e-9)
    # The source has the positions the scraped catalogue lacked: one galaxy under two names is found.
    table = load_source(root).table
    assert table["ra"].notna().tolist() == [True, True, False]
    assert find_duplicates(table, tolerance_arcsec=3.0) == [["MESSIER 001", "Crab Nebula"]]


def test_images_fetched_before_positions_get_them_from_their_file_without_a_request(ned_server, tmp_path):
    out = tmp_path / "images"
    settings = _settings(ned_server, tmp_path)
    fetch_images(pd.DataFrame({"name": ["MESSIER 001"]}), out=out, prefer=["DSS1"], settings=settings)
    # The journal line an earlier version wrote: no position columns.
    old = {k: v for k, v in list(read_jsonl(out / "manifest.jsonl"))[-1].items() if k not in ("ra", "dec", "position_from")}
    (out / "manifest.jsonl").write_text(json.dumps(old) + "\n")
    before = len(ned_server.hits)
    summary = fetch_images(pd.DataFrame({"name": ["MESSIER 001"]}), out=out, prefer=["DSS1"], settings=settings)
    assert summary.requests == 0 and len(ned_server.hits) == before
    row = pd.read_csv(out / "manifest.csv", keep_default_na=False).iloc[0]
    assert row["position_from"] == "fits_header" and (row["ra"], row["dec"]) == pytest.approx(M1_HEADER, abs=1e-9)
    assert list(read_jsonl(out / "manifest.jsonl"))[-1]["position_from"] == "fits_header"  # not read again


def test_survey_names_come_from_neds_listing_not_reference_codes(ned_server, tmp_path):
    from core.acquire.fetch import listing_telescopes

    telescopes = listing_telescopes((DATA / "imgdata" / "MESSIER_001.html").read_text())
    assert telescopes["p083n22a:I:0.1-2.4keV:cop1995.fits.gz"] == "ROSAT_PSPC"
    assert telescopes["h083n22a:I:0.1-2.4keV:cps1998.fits.gz"] == "ROSAT_HRI"
    assert listing_telescopes("<html><body>no table</body></html>") == {}
    xray = parse_image_link("http://h/img5/x/p083n22a:I:0.1-2.4keV:cop1995.fits.gz", name="M 1", telescope="ROSAT PSPC")
    assert (xray.survey, xray.refcode) == ("ROSAT_PSPC", "cop1995")
    # A survey the refcode names keeps its name: the DSS plate is DSS1, not "Palomar 48-inch Schmidt".
    dss = parse_image_link("http://h/MESSIER_001:I:103aE:dss1.fits.gz", name="M 1", telescope="Palomar 48-inch Schmidt")
    assert dss.survey == "DSS1"
    out = tmp_path / "images"
    fetch_images(pd.DataFrame({"name": ["MESSIER 001"]}), out=out, prefer=["DSS1"], settings=_settings(ned_server, tmp_path))
    inventory = pd.read_csv(out / "inventory.csv", keep_default_na=False)
    assert sorted(set(inventory["survey"])) == ["DSS1", "ROSAT_HRI", "ROSAT_PSPC"]
    assert "cop1995" in set(inventory["refcode"])
    # A --prefer rule can name the instrument.
    links = [parse_image_link(u, name="M 1", telescope=t) for u, t in (
        ("http://h/MESSIER_001:I:103aE:dss1.fits.gz", ""), ("http://h/h083n22a:I:0.1-2.4keV:cps1998.fits.gz", "ROSAT_HRI"))]
    assert select_image(links, ["ROSAT_HRI"]).refcode == "cps1998"
