"""The reader, import and build over real FITS files that no one on this project wrote.

``tests/data/fits_corpus`` holds files from astroquery's, astropy's and reproject's test data (DSS,
CFHT, UKIDSS, VLA FIRST, tile-compressed, random groups, tables only, NaN borders, cubes) and a few
files made from them with one fault each; ``expected.csv`` says what each must give. See the
folder's README for origins and licences.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import ImageReadError
from core.images import read_image

CORPUS = Path(__file__).resolve().parent / "data" / "fits_corpus"
EXPECTED = pd.read_csv(CORPUS / "expected.csv", dtype=str, keep_default_na=False)


def test_every_corpus_file_has_an_expected_outcome() -> None:
    shipped = {p.name for p in CORPUS.iterdir()} - {"README.md", "expected.csv", "make_crafted.py"}
    assert shipped == set(EXPECTED["file"])


@pytest.mark.parametrize("row", EXPECTED.to_dict("records"), ids=list(EXPECTED["file"]))
def test_corpus_file_reads_as_expected(row: dict[str, str]) -> None:
    path = CORPUS / row["file"]
    if row["outcome"] == "refused":
        with pytest.raises(ImageReadError) as caught:
            read_image(path)
        message = str(caught.value)
        assert message.startswith(str(path) + ": ")
        assert row["reason"] in message
        assert "\n" not in message
        return
    image = read_image(path)
    assert image.data.shape == (int(row["height"]), int(row["width"]))
    assert image.data.dtype == np.float32
    assert not np.isinf(image.data).any()
    assert (image.wcs is not None) == (row["wcs"] == "yes")


def test_bz2_frame_reads_the_same_pixels_as_the_plain_file() -> None:
    plain = read_image(CORPUS / "cadc_query_images.fits")
    packed = read_image(CORPUS / "cadc_query_images.fits.bz2")
    np.testing.assert_array_equal(plain.data, packed.data)
    # CFHT's int16 with BZERO = 32768: the unsigned values, as astropy gives them
    from astropy.io import fits

    np.testing.assert_array_equal(plain.data, fits.getdata(CORPUS / "cadc_query_images.fits").astype(np.float32))


def test_bz2_bomb_is_refused_by_the_inflate_cap(tmp_path: Path) -> None:
    import bz2

    # A JPEG signature then 20 MB of zeros: the scan count reads the whole stream, through the cap.
    bomb = tmp_path / "bomb.jpg.bz2"
    bomb.write_bytes(bz2.compress(b"\xff\xd8\xff\xe0" + bytes(20 * 2**20)))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ImageReadError, match="bzip2 data inflates to more than"):
        read_image(bomb, max_pixels=100 * 100)


def test_corrupt_bz2_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "frame.fits.bz2"
    path.write_bytes(b"BZh9" + bytes(range(256)) * 4)
    with pytest.raises(ImageReadError, match=r"corrupt bzip2 data|truncated bzip2"):
        read_image(path)


def test_nan_border_of_a_reprojected_image_is_nan_not_zero() -> None:
    image = read_image(CORPUS / "reproject_2d_gal2equ.fits")
    missing = ~np.isfinite(image.data)
    assert 0 < missing.sum() < image.data.size / 2
    h, w = image.data.shape
    assert not missing[h // 2 - 5 : h // 2 + 5, w // 2 - 5 : w // 2 + 5].any()  # the centre is whole


# -- import and build over the corpus --------------------------------------------------------------

# Names under several catalogues, so --catalog all has to find one galaxy under two names. The
# pairs: NED's DSS1 plate of MESSIER 001 and UKIDSS's WFCAM image of the Crab (0.5" apart), and
# CFHT's frame of SA 110 served plain and as .fits.bz2.
NAMES = {
    "ned_dss1_query_images.fits": "MESSIER 001",
    "ukidss_image.fits": "UKIDSS J053432+220052",
    "cadc_query_images.fits": "SA 110",
    "cadc_query_images.fits.bz2": "CFHT SA110-A",
    "astropy_comp.fits": "NGC 1316",
    "first_image.fits": "FIRST J105007+304037",
}
CLASSES = ("E", "S0", "Sb")
# Every readable file is kept (the quality rules are tested elsewhere), in a split that has room for 3 classes.
LOOSE = ["--min-quality", "0", "--min-size", "0", "--min-snr", "0", "--min-finite", "0", "--max-saturated", "1",
         "--extent", "0", "--size", "16", "--val", "0.25", "--test", "0.25"]


def _corpus_catalogue(path: Path, files: list[str]) -> Path:
    readable = [f for f in files if f in set(EXPECTED.loc[EXPECTED["outcome"] == "image", "file"])]
    rows = [
        {"name": NAMES.get(file, f"CORPUS {i:02d}"), "file": file,
         "classification": CLASSES[readable.index(file) % 3] if file in readable else "E"}
        for i, file in enumerate(files)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_import_then_build_over_the_whole_corpus_gives_one_line_per_bad_file(tmp_path, caplog, capsys) -> None:
    from core.cli import main

    files = sorted(EXPECTED["file"])
    catalogue = _corpus_catalogue(tmp_path / "corpus.csv", files)
    assert main(["import", "--catalog", str(catalogue), "--images", str(CORPUS), "--out", str(tmp_path / "src")]) == 0
    imported = pd.read_csv(tmp_path / "src" / "catalog.csv", keep_default_na=False).set_index("file")
    assert len(imported) == len(files)  # import matches files; reading them is build's job
    caplog.clear()
    code = main(["build", "--source", str(tmp_path / "src"), "--catalog", "all", "--allow-duplicates",
                 *LOOSE, "--out", str(tmp_path / "ds")])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert "Traceback" not in captured.err
    lines = [r.getMessage() for r in caplog.records if " left out: " in r.getMessage()]
    refused = EXPECTED[EXPECTED["outcome"] == "refused"]
    assert len(lines) == len(refused)
    for file, reason in zip(refused["file"], refused["reason"]):
        mine = [line for line in lines if f"/{file}: " in line]  # the copy under the source, named as the file
        assert len(mine) == 1 and reason in mine[0] and "\n" not in mine[0], (file, mine)
    images = pd.read_parquet(tmp_path / "ds" / "images.parquet")
    images["file"] = images["path"].map(lambda p: Path(p).name)
    readable = images[images["file"].isin(set(EXPECTED.loc[EXPECTED["outcome"] == "image", "file"]))]
    # Every readable file is kept, but one of each pair of the same galaxy (those have positions).
    assert readable.loc[~readable["kept"], "reason"].str.startswith("duplicate_of:").tolist() == [True, True]
    assert readable["kept"].sum() == len(readable) - 2


def test_imported_fits_positions_find_each_duplicate_pair_and_build_keeps_it_once(tmp_path, capsys) -> None:
    from core.cli import main
    from core.images import header_position

    placed = [f for f in EXPECTED.loc[EXPECTED["outcome"] == "image", "file"]
              if header_position(read_image(CORPUS / f)) is not None]
    assert len(placed) == 13  # all but the cube without WCS and two maps without a sky WCS
    catalogue = _corpus_catalogue(tmp_path / "placed.csv", placed)
    assert main(["import", "--catalog", str(catalogue), "--images", str(CORPUS), "--out", str(tmp_path / "src")]) == 0
    out = capsys.readouterr().out
    assert "positions: 3 from fits_header, 10 from fits_wcs" in out
    imported = pd.read_csv(tmp_path / "src" / "catalog.csv", keep_default_na=False).set_index("name")
    assert imported.loc["MESSIER 001", "position_from"] == "fits_header"  # OBJCTRA/OBJCTDEC
    assert imported.loc["UKIDSS J053432+220052", "position_from"] == "fits_wcs"
    assert imported.loc["MESSIER 001", ["ra", "dec"]].astype(float).tolist() == pytest.approx([83.63321, 22.01446], abs=1e-5)
    # NGC 1316's header is B1950 (FK4): the position is ICRS, as NED gives it (50.674, -37.208).
    assert imported.loc["NGC 1316", ["ra", "dec"]].astype(float).tolist() == pytest.approx([50.674, -37.208], abs=0.02)
    # Without --allow-duplicates: every object has a position now.
    code = main(["build", "--source", str(tmp_path / "src"), "--catalog", "all", *LOOSE, "--out", str(tmp_path / "ds")])
    assert code == 0, capsys.readouterr().err[-2000:]
    images = pd.read_parquet(tmp_path / "ds" / "images.parquet").set_index("name")
    for first, second in (("MESSIER 001", "UKIDSS J053432+220052"), ("SA 110", "CFHT SA110-A")):
        pair = images.loc[[first, second]]
        assert pair["kept"].sum() == 1, pair[["kept", "reason"]]
        loser = pair[~pair["kept"]]
        assert loser["reason"].iloc[0] == f"duplicate_of:{pair[pair['kept']].index[0]}"
    assert images["kept"].sum() == 11
