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
