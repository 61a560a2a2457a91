"""Importing a user's catalogue and image folder as a source."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.acquire.catalogue import load_source
from core.config import get_settings
from core.errors import ConfigError, ParseError
from core.acquire.importer import import_source, name_key
from tests.fixture_server import ned_server  # noqa: F401 - fixture

DATA = Path(__file__).parent / "data" / "ned"
ROOT = Path(__file__).parent.parent
GZ1 = Path("/work/shared/real-gz1-sample")


def _images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DATA / "img" / "NGC_4486_I_IIIaF_dss2.fits.gz", folder / name)


def test_ned_list_columns_and_file_names_match(tmp_path):
    images = tmp_path / "imgs"
    _images(images, ["NGC_4486.fits.gz", "ngc-1023.fits.gz", "sub/ESO540-G003.fits.gz", "stray.fits.gz"])
    (images / "notes.txt").write_text("not an image")
    csv = tmp_path / "NED_list.csv"
    csv.write_text(
        "Name,Redshift,Classification,Requested\n"
        "NGC 4486,0.004283,E+0-1 pec,E\n"
        "NGC 4486,0.004283,E+0-1 pec,SAB\n"
        "NGC 1023,0.00212,SB0-(rs),S0\n"
        "ESO 540- G 003,0.02431,E?,E\n"
        "NGC 9999,0.1,E,E\n"
        "NGC 1,0.1,,E\n"
    )
    result = import_source(csv, images, settings=get_settings(data_dir=tmp_path))
    assert result.out == tmp_path / "imported" / "NED_list"
    written = pd.read_csv(result.out / "catalog.csv")
    assert written["name"].tolist() == ["NGC 4486", "NGC 4486", "NGC 1023", "ESO 540- G 003"]
    assert written["requested"].tolist() == ["E", "SAB", "S0", "E"]
    assert written["redshift"].tolist() == [0.004283, 0.004283, 0.00212, 0.02431]
    assert [Path(f).name for f in written["file"]] == ["NGC_4486.fits.gz"] * 2 + ["ngc-1023.fits.gz", "ESO540-G003.fits.gz"]
    assert result.unmatched_rows == [("NGC 9999", "no image file named like it"), ("NGC 1", "empty classification")]
    assert result.unmatched_files == ["stray.fits.gz"]
    report = json.loads((result.out / "import_report.json").read_text())
    assert report["rows"] == 6 and report["matched_rows"] == 4 and report["unmatched_files"] == ["stray.fits.gz"]
    source = load_source(result.out)
    assert all(Path(p).is_file() for p in source.table["path"])


def test_file_column_relative_to_csv_or_images_but_inside_the_image_folder(tmp_path):
    images = tmp_path / "imgs"
    _images(images, ["a.fits.gz", "b.fits.gz", "sub/c.fits.gz"])
    csv = tmp_path / "cat" / "my.csv"
    csv.parent.mkdir()
    shutil.copy(images / "a.fits.gz", csv.parent / "local.fits.gz")
    inner = images / "sub" / "inner.csv"  # a CSV inside the image folder names files beside it
    csv.write_text("object,type,file\nX1,E,local.fits.gz\nX2,Sb,b.fits.gz\nX3,S0,gone.fits\n")
    result = import_source(csv, images, name="mine", out=tmp_path / "src")
    assert [Path(f).name for f in result.catalog["file"]] == ["b.fits.gz"]
    assert result.unmatched_rows[0][0] == "X1" and "'local.fits.gz' lies outside the image folder" in result.unmatched_rows[0][1]
    assert result.unmatched_rows[1][0] == "X3" and "'gone.fits' not found" in result.unmatched_rows[1][1]
    assert result.unmatched_files == ["a.fits.gz", "sub/c.fits.gz"]
    inner.write_text(f"object,type,file\nY1,E,c.fits.gz\nY2,E,{images / 'a.fits.gz'}\n")
    result = import_source(inner, images, name="inner", out=tmp_path / "src2")
    assert [Path(f).name for f in result.catalog["file"]] == ["c.fits.gz", "a.fits.gz"]


def test_several_files_for_one_name_prefer_fits(tmp_path):
    images = tmp_path / "imgs"
    _images(images, ["NGC_4486.png", "NGC_4486.fits.gz"])
    csv = tmp_path / "c.csv"
    csv.write_text("name,classification\nNGC 4486,E\n")
    result = import_source(csv, images, out=tmp_path / "o")
    assert Path(result.catalog["file"][0]).name == "NGC_4486.fits.gz"
    assert result.ambiguous == [("NGC 4486", ["NGC_4486.fits.gz", "NGC_4486.png"])]


def test_clear_errors(tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text("name,classification\nNGC 1,E\n")
    with pytest.raises(ConfigError, match="images must be a folder"):
        import_source(csv, tmp_path / "nope")
    (tmp_path / "imgs").mkdir()
    with pytest.raises(ConfigError, match=r"no row of .* matched an image .*1 rows, 0 image files"):
        import_source(csv, tmp_path / "imgs", out=tmp_path / "o")
    with pytest.raises(ConfigError, match="name must be letters"):
        import_source(csv, tmp_path / "imgs", name="../x")
    bad = tmp_path / "bad.csv"
    bad.write_text("object\nNGC 1\n")
    with pytest.raises(ParseError, match="no classification column"):
        import_source(bad, tmp_path / "imgs", out=tmp_path / "o")


def test_name_key():
    assert name_key("ESO 540- G 003") == name_key("eso_540-g_003") == "eso540g003"


@pytest.mark.skipif(not (GZ1 / "labels.csv").exists(), reason="the real GZ1 sample is not on this machine")
def test_cli_imports_the_real_gz1_sample(tmp_path):
    env = dict(os.environ, GALAXY_MORPH_DATA_DIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "core", "import", "--catalog", str(GZ1 / "labels.csv"), "--images", str(GZ1 / "images"),
         "--name", "gz1"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "imported 600 rows" in proc.stdout
    catalog = pd.read_csv(tmp_path / "imported" / "gz1" / "catalog.csv")
    assert catalog["classification"].value_counts().to_dict() == {"Spiral": 200, "EdgeOn": 200, "E": 200}
    # The images are placed under the source (issue 22, row 4), named relative to it.
    assert all((tmp_path / "imported" / "gz1" / f).is_file() for f in catalog["file"])
    assert json.loads((tmp_path / "imported" / "gz1" / "import_report.json").read_text())["unmatched_files"] == []


def test_import_reads_a_fetch_folder_by_name_and_reports_failed_fetches(ned_server, tmp_path):
    """A real fetch output folder (files named with a hash suffix, some fetches failed) imports directly."""
    from core.acquire.fetch import fetch_images
    from core.acquire.importer import import_source

    names = ["MESSIER 001", "NGC 0001", "NGC 0003", "NGC 0005"]
    settings = get_settings(ned_base_url=ned_server.url, request_interval=0.0, request_timeout=0.5, max_retries=0,
                            data_dir=tmp_path)
    fetch_images(pd.DataFrame({"name": names}), out=tmp_path / "fetched", prefer=["DSS1", "DSS2"], settings=settings)
    manifest = pd.read_csv(tmp_path / "fetched" / "manifest.csv", keep_default_na=False).set_index("name")
    assert manifest["status"].tolist() == ["ok", "ok", "failed", "no_image"]
    assert not (tmp_path / "fetched" / "MESSIER_001.fits.gz").exists()  # hash-suffixed names: no name match
    # The fetch's own names.csv, with classifications added, is the catalogue; it lists every name.
    catalogue = pd.read_csv(tmp_path / "fetched" / "names.csv").assign(classification=["Pec", "Sb", "E", "E"])
    catalogue.to_csv(tmp_path / "classes.csv", index=False)
    result = import_source(tmp_path / "classes.csv", tmp_path / "fetched", out=tmp_path / "src", settings=settings)
    assert result.catalog["name"].tolist() == ["MESSIER 001", "NGC 0001"]
    reasons = dict(result.unmatched_rows)
    assert reasons["NGC 0003"].startswith("fetch failed: ") and "not a FITS file" in reasons["NGC 0003"]
    assert reasons["NGC 0005"] == "fetch no_image: NED lists no FITS image"
    # The positions fetch recorded come along, with their origin.
    table = result.catalog.set_index("name")
    assert table.loc["MESSIER 001", "position_from"] == "listing"
    assert table.loc["MESSIER 001", ["ra", "dec"]].astype(float).tolist() == pytest.approx([83.63321, 22.01446], abs=1e-4)
    report = json.loads((tmp_path / "src" / "import_report.json").read_text())
    assert report["fetch_folder"] is True and report["unmatched_files"] == []
