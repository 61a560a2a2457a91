"""read_image on files built here: every FITS layout we meet from NED, JPEG/PNG, and broken files."""

from __future__ import annotations

import gzip
import io
import logging
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from core.errors import GalaxyMorphError, ImageReadError
from core.images import ImageData, read_image, read_images


def _wcs_header(shape: tuple[int, int], scale_arcsec: float = 0.4) -> fits.Header:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    wcs.wcs.cdelt = [-scale_arcsec / 3600, scale_arcsec / 3600]
    return wcs.to_header()


def _fits_bytes(hdus: list[fits.hdu.base.ExtensionHDU] | fits.PrimaryHDU) -> bytes:
    buffer = io.BytesIO()
    (fits.HDUList(hdus) if isinstance(hdus, list) else hdus).writeto(buffer)
    return buffer.getvalue()


def _table_hdu() -> fits.BinTableHDU:
    return fits.BinTableHDU.from_columns([fits.Column("a", "E", array=[1.0])])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_big_endian_float_becomes_native_float32(tmp_path: Path) -> None:
    values = np.arange(20, dtype=">f4").reshape(4, 5) * 1.5
    image = read_image(_write(tmp_path / "a.fits", _fits_bytes(fits.PrimaryHDU(values))))
    assert image.data.dtype == np.float32
    assert image.data.dtype.byteorder in ("=", "<" if np.little_endian else ">")
    np.testing.assert_array_equal(image.data, values.astype(np.float32))
    assert image.format == "fits" and image.path == tmp_path / "a.fits"
    assert image.header["NAXIS1"] == 5


def test_bscale_bzero_and_blank_on_int16(tmp_path: Path) -> None:
    raw = np.array([[0, 1, 2], [3, -32768, 5]], dtype=">i2")
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"] = 0.5
    hdu.header["BZERO"] = 100.0
    hdu.header["BLANK"] = -32768
    image = read_image(_write(tmp_path / "s.fits", _fits_bytes(hdu)))
    expected = np.array([[100.0, 100.5, 101.0], [101.5, np.nan, 102.5]], dtype=np.float32)
    np.testing.assert_array_equal(image.data, expected)


def test_unsigned_16_bit_through_bzero(tmp_path: Path) -> None:
    values = np.array([[0, 40000], [65535, 12]], dtype=np.uint16)
    image = read_image(_write(tmp_path / "u.fits", _fits_bytes(fits.PrimaryHDU(values))))
    np.testing.assert_array_equal(image.data, values.astype(np.float32))


def test_singleton_axes_squeezed_and_wcs_kept(tmp_path: Path) -> None:
    plane = np.random.default_rng(0).normal(size=(6, 7)).astype(np.float32)
    hdu = fits.PrimaryHDU(plane[None, None], header=_wcs_header((6, 7)))
    image = read_image(_write(tmp_path / "c.fits", _fits_bytes(hdu)))
    np.testing.assert_array_equal(image.data, plane)
    assert image.wcs is not None
    assert image.pixel_scale_arcsec == pytest.approx(0.4)


def test_real_cube_gives_first_plane_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cube = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    with caplog.at_level(logging.INFO, logger="core.fits"):
        image = read_image(_write(tmp_path / "cube.fits", _fits_bytes(fits.PrimaryHDU(cube))))
    np.testing.assert_array_equal(image.data, cube[0])
    assert "first plane" in caplog.text


def test_image_in_extension_when_primary_is_empty(tmp_path: Path) -> None:
    values = np.full((8, 9), 3.0, dtype=np.float32)
    data = _fits_bytes([fits.PrimaryHDU(), _table_hdu(), fits.ImageHDU(values, name="SCI")])
    image = read_image(_write(tmp_path / "ext.fits", data))
    np.testing.assert_array_equal(image.data, values)
    assert image.header["EXTNAME"] == "SCI"


def test_tile_compressed_fits(tmp_path: Path) -> None:
    raw = (np.arange(1200).reshape(40, 30) % 300).astype(np.int16)
    hdu = fits.CompImageHDU(raw, compression_type="RICE_1")
    hdu.header["BSCALE"] = 2.0
    hdu.header["BZERO"] = 5.0
    image = read_image(_write(tmp_path / "c.fits.fz", _fits_bytes([fits.PrimaryHDU(), hdu])))
    np.testing.assert_array_equal(image.data, raw * 2.0 + 5.0)


def test_nan_and_inf_become_nan(tmp_path: Path) -> None:
    values = np.array([[1.0, np.nan], [np.inf, -np.inf]], dtype=np.float32)
    image = read_image(_write(tmp_path / "n.fits", _fits_bytes(fits.PrimaryHDU(values))))
    assert image.data[0, 0] == 1.0
    assert np.isnan(image.data[[0, 1, 1], [1, 0, 1]]).all()


@pytest.mark.parametrize("values", [np.zeros((50, 50), np.float32), np.ones((3, 3), np.float32)])
def test_blank_and_tiny_images_are_returned(tmp_path: Path, values: np.ndarray) -> None:
    image = read_image(_write(tmp_path / "z.fits", _fits_bytes(fits.PrimaryHDU(values))))
    np.testing.assert_array_equal(image.data, values)


def test_gzip_detected_by_magic_whatever_the_name(tmp_path: Path) -> None:
    values = np.random.default_rng(1).normal(size=(16, 12)).astype(np.float32)
    plain = _fits_bytes(fits.PrimaryHDU(values, header=_wcs_header((16, 12))))
    packed = gzip.compress(plain)
    for name, payload in [("a.fits", plain), ("b.fits.gz", packed), ("c.fits", packed), ("d.dat", packed)]:
        image = read_image(_write(tmp_path / name, payload))
        np.testing.assert_array_equal(image.data, values)
        assert image.wcs is not None


def test_degenerate_wcs_is_dropped(tmp_path: Path) -> None:
    header = _wcs_header((10, 10))
    header["CDELT1"] = 0.0
    payload = _fits_bytes(fits.PrimaryHDU(np.ones((10, 10)), header=header))
    image = read_image(_write(tmp_path / "w.fits", payload))
    assert image.wcs is None
    assert image.pixel_scale_arcsec is None


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("empty.fits", b"", "empty file"),
        ("random.fits", bytes(range(256)) * 20, "not a FITS file"),
        ("page.fits.gz", b"<html><body>Error 500</body></html>", "not a FITS file"),
        ("html.fits.gz", gzip.compress(b"<html>not found</html>", mtime=0), "not a FITS file"),
        ("thing.xyz", b"\x00\x01\x02hello", "unsupported format"),
        ("bad.jpg", b"GIF89a.....", "not a valid JPEG or PNG"),
    ],
)
def test_bad_files_raise_with_a_reason(tmp_path: Path, name: str, payload: bytes, reason: str) -> None:
    path = _write(tmp_path / name, payload)
    with pytest.raises(ImageReadError, match=reason) as info:
        read_image(path)
    assert info.value.path == str(path)
    assert isinstance(info.value, GalaxyMorphError)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nope.fits")
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


def test_truncated_gzip(tmp_path: Path) -> None:
    packed = gzip.compress(_fits_bytes(fits.PrimaryHDU(np.random.default_rng(2).normal(size=(64, 64)))))
    with pytest.raises(ImageReadError, match="truncated gzip"):
        read_image(_write(tmp_path / "t.fits.gz", packed[: len(packed) // 2]))


def test_truncated_fits_data(tmp_path: Path) -> None:
    plain = _fits_bytes(fits.PrimaryHDU(np.ones((64, 64), np.float32)))
    with pytest.raises(ImageReadError, match=r"truncated FITS file: the data of HDU 0 needs 19,264 bytes and the file has 2,980"):
        read_image(_write(tmp_path / "t.fits", plain[:2880 + 100]))


def test_no_image_hdu_and_one_d(tmp_path: Path) -> None:
    table = _fits_bytes([fits.PrimaryHDU(), _table_hdu()])
    with pytest.raises(ImageReadError, match=r"tables only \(HDUs: 0:PrimaryHDU \(no data\), 1:BinTableHDU\)"):
        read_image(_write(tmp_path / "table.fits", table))
    with pytest.raises(ImageReadError, match="1-D data"):
        read_image(_write(tmp_path / "spec.fits", _fits_bytes(fits.PrimaryHDU(np.arange(10.0)))))


def _pillow_bytes(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def test_png_grey_16_bit_keeps_depth_and_flips_to_fits_orientation(tmp_path: Path) -> None:
    values = np.zeros((4, 6), dtype=np.uint16)
    values[0, :] = 60000  # top row of the picture
    image = read_image(_write(tmp_path / "g.png", _pillow_bytes(values, "PNG")))
    assert image.format == "png" and image.header is None and image.wcs is None
    assert image.data.shape == (4, 6)
    np.testing.assert_array_equal(image.data[-1], 60000.0)  # FITS row 0 is the bottom
    np.testing.assert_array_equal(image.data[0], 0.0)


def test_rgb_png_luminance_or_colour(tmp_path: Path) -> None:
    colour = np.zeros((5, 7, 3), dtype=np.uint8)
    colour[..., 0] = 200
    colour[..., 2] = 100
    path = _write(tmp_path / "c.png", _pillow_bytes(colour, "PNG"))
    grey = read_image(path)
    assert grey.data.shape == (5, 7)
    np.testing.assert_allclose(grey.data, 0.299 * 200 + 0.114 * 100, rtol=1e-6)
    rgb = read_image(path, rgb=True)
    assert rgb.data.shape == (5, 7, 3) and rgb.data.dtype == np.float32
    np.testing.assert_array_equal(rgb.data[0, 0], [200.0, 0.0, 100.0])


def test_grey_jpeg_with_rgb_stays_single_channel(tmp_path: Path) -> None:
    values = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (16, 1))
    image = read_image(_write(tmp_path / "g.jpg", _pillow_bytes(values, "JPEG")), rgb=True)
    assert image.format == "jpeg"
    assert image.data.shape == (16, 32)
    assert abs(float(image.data[:, -1].mean()) - 255) < 6  # lossy, but the ramp survives


def test_truncated_jpeg(tmp_path: Path) -> None:
    noise = np.random.default_rng(3).integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    payload = _pillow_bytes(noise, "JPEG")
    with pytest.raises(ImageReadError, match="corrupt or truncated JPEG"):
        read_image(_write(tmp_path / "t.jpg", payload[: len(payload) // 2]))


def test_read_images_records_failures_in_place(tmp_path: Path) -> None:
    good = _write(tmp_path / "ok.fits", _fits_bytes(fits.PrimaryHDU(np.ones((4, 4)))))
    empty = _write(tmp_path / "empty.fits", b"")
    results = read_images([good, empty, tmp_path / "missing.png", good])
    assert [type(r) for r in results] == [ImageData, ImageReadError, ImageReadError, ImageData]
    assert "empty file" in results[1].reason
    assert "file not found" in results[2].reason


def test_scaling_in_bands_matches_whole_array_arithmetic(tmp_path: Path) -> None:
    """More rows than one band holds: BLANK, BSCALE and BZERO apply across the band boundaries."""
    rng = np.random.default_rng(5)
    values = rng.integers(-30000, 30000, size=(1500, 1000), dtype=np.int16)
    values[::7, ::3] = -32768
    header = fits.Header({"BSCALE": 0.5, "BZERO": 1000.0, "BLANK": -32768})
    hdu = fits.PrimaryHDU(values, header=header)
    hdu.header.update(header)
    image = read_image(_write(tmp_path / "b.fits", _fits_bytes(hdu)))
    expected = values.astype(np.float64) * 0.5 + 1000.0
    expected[values == -32768] = np.nan
    np.testing.assert_array_equal(image.data, expected.astype(np.float32))


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    picture = np.zeros((20, 30), dtype=np.uint8)
    picture[:4, :] = 255  # a white band along the top of the stored pixels
    img = Image.fromarray(picture)
    exif = img.getexif()
    exif[0x0112] = 6  # the camera was turned: show the stored pixels rotated 90 degrees clockwise
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", exif=exif, quality=95)
    image = read_image(_write(tmp_path / "o.jpg", buffer.getvalue()))
    assert image.data.shape == (30, 20)
    # Rotated clockwise, the top band becomes the right-hand column (the same in FITS orientation).
    assert image.data[:, -4:].mean() > 200 and image.data[:, :-4].mean() < 30


def test_gzip_inflating_past_the_byte_cap_is_refused(tmp_path: Path) -> None:
    """A gzipped JPEG whose header is 5 MB of application segments, which Pillow would keep in memory."""
    segment = b"\xff\xef" + (65535).to_bytes(2, "big") + bytes(65533)
    payload = b"\xff\xd8" + segment * 80 + _pillow_bytes(np.zeros((8, 8), np.uint8), "JPEG")[2:]
    path = _write(tmp_path / "padded.jpg.gz", gzip.compress(payload))
    assert read_image(path, max_pixels=10**6).data.shape == (8, 8)  # a cap of 12 MB lets it through
    with pytest.raises(ImageReadError, match=r"gzip data inflates to more than 4 MB, more than an image of "
                       r"max_image_pixels = 16 can need"):
        read_image(path, max_pixels=16)
