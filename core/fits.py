"""Reading a FITS file's first image: its layout scanned from the headers alone, then its pixels, scaling and WCS.

:func:`read_fits` is what :func:`core.images.read_image` calls for a FITS file (plain, gzip or
bzip2). Every HDU the scan walks is refused before decoding when it is larger than
``max_image_pixels`` (:func:`too_large`), or ends further into the file than such an image can
need (:func:`inflate_limit`), so a hostile header costs a few blocks of I/O.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from core.errors import ImageReadError, one_line

logger = logging.getLogger(__name__)

# Pixels converted at a time (whole rows) when scaling the data, and bytes copied at a time out of
# a gzip stream.
_BAND = 1 << 20
_COPY_CHUNK = 1 << 20
# Gunzipped FITS up to this size is parsed in memory: a temporary file costs ~10 ms to create and
# remove, and astropy's three in-memory copies are still small here.
_IN_MEMORY = 64 * 2**20

# -- FITS layout, read from the headers alone --------------------------------------------------

_BLOCK = 2880
_CARD = 80
# 3,600 cards: ten times a DSS plate's header, and little enough to hold in memory.
_MAX_HEADER_BLOCKS = 100
_HEADER_SLACK = 4 * 2**20
_MAX_BYTES_PER_PIXEL = 8  # BITPIX = -64


def _header_cards(path: Path, stream: Any, index: int) -> dict[str, str] | None:
    """The keywords of the next header (values as text), or None at the end of the file."""
    cards: dict[str, str] = {}
    for _ in range(_MAX_HEADER_BLOCKS):
        block = stream.read(_BLOCK)
        if len(block) < _BLOCK:
            return None  # the end, or a truncated file astropy will name
        for start in range(0, _BLOCK, _CARD):
            card = block[start : start + _CARD]
            keyword = card[:8].decode("ascii", "replace").strip()
            if keyword == "END":
                return cards
            if card[8:10] == b"= " and keyword not in cards:
                value = card[10:].decode("ascii", "replace").strip()
                quoted = value.startswith("'")
                cards[keyword] = value[1:].split("'", 1)[0].strip() if quoted else value.split("/", 1)[0].strip()
    raise ImageReadError(
        path, f"HDU {index} has a header of more than {_MAX_HEADER_BLOCKS} blocks without an END card. "
        "The file is damaged or hostile; fetch it again."
    )


def _header_int(path: Path, cards: dict[str, str], key: str, index: int, *, default: int | None = None) -> int:
    text = cards.get(key)
    if text is None and default is not None:
        return default
    try:
        return int(text or "")
    except ValueError:
        raise ImageReadError(
            path, f"corrupt FITS header: {key} of HDU {index} is missing or not an integer. Fetch the file again."
        ) from None


def _scan_fits(path: Path, stream: Any, *, max_pixels: int, file_size: int | None = None) -> int | None:
    """Walk the headers up to the first HDU with 2-D data, refusing any HDU too large to decode.

    Data between headers is skipped (a seek, or a capped gunzip for compressed files). Returns the
    offset where that HDU's data ends, or None when the file has no such HDU (astropy names why).
    With ``file_size`` (an uncompressed file), data cut off before its end is refused by name; a
    last block short of its padding is not (astropy reads it, and real archives write such files).
    """
    for index in itertools.count():
        cards = _header_cards(path, stream, index)
        if cards is None:
            return None
        header_end = stream.tell()
        naxis = _header_int(path, cards, "NAXIS", index, default=0)
        axes = [_header_int(path, cards, f"NAXIS{n}", index) for n in range(1, naxis + 1)]
        bitpix = abs(_header_int(path, cards, "BITPIX", index, default=8))
        if naxis < 0 or any(n < 0 for n in axes) or bitpix not in (8, 16, 32, 64):
            raise ImageReadError(
                path, f"corrupt FITS header in HDU {index}: NAXIS = {naxis}, axes {axes}, BITPIX = {bitpix}; "
                "axes must be >= 0 and BITPIX one of 8, 16, 32, 64, -32, -64. Fetch the file again."
            )
        extension = cards.get("XTENSION", "").upper()
        compressed_image = extension == "BINTABLE" and cards.get("ZIMAGE", "").strip() == "T"
        groups = cards.get("GROUPS", "").strip() == "T" and axes[:1] == [0]
        pixel_axes = axes
        if compressed_image:
            znaxis = _header_int(path, cards, "ZNAXIS", index)
            pixel_axes = [_header_int(path, cards, f"ZNAXIS{n}", index) for n in range(1, znaxis + 1)]
        image = (index == 0 or extension == "IMAGE" or compressed_image) and not groups and bool(pixel_axes)
        if image and math.prod(pixel_axes) > max_pixels:
            raise too_large(path, pixel_axes, max_pixels, what="image" if naxis <= 2 else f"{naxis}-D cube")
        elements = math.prod(n for n in axes if not (groups and n == 0)) if axes else 0
        data_bytes = bitpix // 8 * _header_int(path, cards, "GCOUNT", index, default=1) * (
            _header_int(path, cards, "PCOUNT", index, default=0) + elements
        )
        end = header_end + -(-data_bytes // _BLOCK) * _BLOCK
        if end > inflate_limit(max_pixels):
            raise ImageReadError(
                path, f"HDU {index} ends {end / 2**20:,.0f} MB into the file, more than an image of "
                f"max_image_pixels = {max_pixels:,} can need. It may be hostile; if it is real, raise max_image_pixels."
            )
        if image and sum(n > 1 for n in pixel_axes) >= 2:
            if file_size is not None and not compressed_image and header_end + data_bytes > file_size:
                raise ImageReadError(
                    path, f"truncated FITS file: the data of HDU {index} needs {header_end + data_bytes:,} bytes "
                    f"and the file has {file_size:,} (the download was cut off). Fetch the image again."
                )
            return end
        stream.seek(end)
    raise AssertionError("unreachable")  # pragma: no cover - itertools.count never ends


def read_fits(path: Path, stream: Any, *, compressed: bool, max_pixels: int,
              file_size: int | None) -> tuple[np.ndarray, fits.Header, WCS | None]:
    """The pixels (float32, NaN for missing), header and celestial WCS (or None) of the first 2-D
    HDU of the FITS file ``stream`` (``path`` names it; ``file_size`` when it is not compressed).

    Raises
    ------
    ImageReadError
        For a file that is damaged, holds no image, or is larger than ``max_pixels`` allows.
    """
    end = _scan_fits(path, stream, max_pixels=max_pixels, file_size=file_size)
    stream.seek(0)
    if not compressed:
        return _parse_fits(path, path, max_pixels=max_pixels)
    if end is not None and end <= _IN_MEMORY:
        return _parse_fits(path, io.BytesIO(stream.read(end)), max_pixels=max_pixels)
    # A large image goes to a temporary file, only up to the chosen HDU's end, so astropy reads it
    # with one copy (np.fromfile) instead of the three it makes from an in-memory buffer.
    with tempfile.TemporaryDirectory(prefix="galaxy-morph-") as tmp:
        source = Path(tmp) / "image.fits"
        with open(source, "wb") as target:
            _copy(stream, target, end)
        return _parse_fits(path, source, max_pixels=max_pixels)


def _copy(stream: Any, target: Any, size: int | None) -> None:
    left = size if size is not None else -1
    while left:
        chunk = stream.read(_COPY_CHUNK if left < 0 else min(left, _COPY_CHUNK))
        if not chunk:
            return
        target.write(chunk)
        left = left - len(chunk) if left > 0 else left


def _parse_fits(path: Path, source: Any, *, max_pixels: int) -> tuple[np.ndarray, fits.Header, WCS | None]:
    # Everything astropy may raise on a damaged file (OSError, ValueError, VerifyError, IndexError,
    # KeyError, TypeError...) becomes one ImageReadError naming the file.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(source, memmap=False, do_not_scale_image_data=True, ignore_missing_simple=False) as hdul:
                hdu, reason = _first_image_hdu(hdul)
                if hdu is None:
                    raise ImageReadError(path, reason)
                # The scan checked the HDUs it walked; this holds whichever HDU astropy settles on.
                if math.prod(hdu.shape) > max_pixels:
                    raise too_large(path, hdu.shape[::-1], max_pixels)
                header = hdu.header.copy()
                data, squeezed_ok = _image_plane(path, hdu)
                data = _scale(data, header)
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - see comment above
        raise ImageReadError(path, f"corrupt FITS file ({type(exc).__name__}: {one_line(str(exc))}).") from exc
    wcs = _celestial_wcs(path, header, data.shape) if squeezed_ok else None
    return data, header, wcs


def _first_image_hdu(hdul: fits.HDUList) -> tuple[fits.hdu.base.ExtensionHDU | None, str]:
    """The first HDU with 2-D pixels, or None and the reason, naming what the file holds instead."""
    seen = []
    found: set[str] = set()
    for index, hdu in enumerate(hdul):
        if isinstance(hdu, fits.GroupsHDU):  # a kind of PrimaryHDU to astropy, but visibilities
            seen.append(f"{index}:random groups")
            found.add("random-groups data (interferometer visibilities, not pixels)")
            continue
        if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            seen.append(f"{index}:{type(hdu).__name__}")
            if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
                found.add("tables only")
            continue
        shape = tuple(int(n) for n in (hdu.shape or ()))
        big = [n for n in shape if n > 1]
        if len(big) >= 2:
            return hdu, ""
        if shape and 0 in shape:
            found.add("zero-size data (an axis of length 0)")
        elif shape and not big:
            found.add(f"a single pixel ({' x '.join(str(n) for n in shape[::-1])}), not an image")
        elif shape:
            found.add("1-D data (a spectrum or a list), not an image")
        seen.append(f"{index}:{type(hdu).__name__}{list(shape) or ' (no data)'}")
    what = "; ".join(sorted(found)) or "no image HDU with 2-D data"
    return None, f"{what} (HDUs: {', '.join(seen)})."


def _image_plane(path: Path, hdu: fits.hdu.base.ExtensionHDU) -> tuple[np.ndarray, bool]:
    """The 2-D pixels; the flag says whether they are the last two FITS axes (so the WCS applies)."""
    data = np.asarray(hdu.data)
    big_axes = [axis for axis, n in enumerate(data.shape) if n > 1]
    wcs_ok = big_axes[-2:] == [data.ndim - 2, data.ndim - 1]
    if len(big_axes) > 2:
        logger.info(
            "%s: %d-D cube %s; using its first plane", path, len(big_axes), tuple(data.shape)
        )
        index = tuple(slice(None) if axis in big_axes[-2:] else 0 for axis in range(data.ndim))
        return data[index], wcs_ok
    return data.reshape([data.shape[axis] for axis in big_axes]), wcs_ok


def _scale(data: np.ndarray, header: fits.Header) -> np.ndarray:
    integer = data.dtype.kind in "iu"
    bscale = _header_float(header, "BSCALE", 1.0)
    bzero = _header_float(header, "BZERO", 0.0)
    blank = header.get("BLANK") if integer else None
    try:
        blank = int(blank) if blank is not None else None
    except (TypeError, ValueError):
        logger.debug("ignoring non-integer BLANK %r", blank)
        blank = None
    # float64 for the arithmetic keeps int32 + BZERO exact enough before the final cast. Done in
    # bands of rows, so the float64 copy of a large image is never held whole.
    # So does a BSCALE or BZERO beyond float32's range (1e300 would be inf, and 0 * inf NaN).
    huge = max(abs(bscale), abs(bzero)) > np.finfo(np.float32).max
    work_dtype = np.float64 if integer and (data.dtype.itemsize >= 4 or huge) else np.float32
    out = np.empty(data.shape, dtype=np.float32)
    rows = max(1, _BAND // max(1, data.shape[1]))
    for start in range(0, len(data), rows):
        raw = data[start : start + rows]
        band = raw.astype(work_dtype)
        if blank is not None:
            band[raw == blank] = np.nan
        with np.errstate(over="ignore", invalid="ignore"):
            if bscale != 1.0:
                band *= bscale
            if bzero != 0.0:
                band += bzero
        scaled = out[start : start + rows]
        with np.errstate(over="ignore", invalid="ignore"):
            scaled[...] = band
        # After the cast: a value beyond float32's range became inf there, from float data or from
        # an integer times a huge BSCALE (BSCALE = 1e300 on int16).
        scaled[~np.isfinite(scaled)] = np.nan
    return out


def _header_float(header: fits.Header, key: str, default: float) -> float:
    try:
        value = float(header.get(key, default))
    except (TypeError, ValueError):
        return default
    return value if np.isfinite(value) and value != 0.0 else default


def _celestial_wcs(path: Path, header: fits.Header, shape: tuple[int, ...]) -> WCS | None:
    """The header's celestial WCS when it maps this image's centre to a finite sky position."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header).celestial
            if wcs.naxis != 2 or not wcs.has_celestial:
                return None
            scales = proj_plane_pixel_scales(wcs)
            centre = wcs.pixel_to_world_values((shape[1] - 1) / 2, (shape[0] - 1) / 2)
    except Exception as exc:  # noqa: BLE001 - a broken WCS is common and only means "no WCS"
        logger.debug("%s: no usable WCS (%s: %s)", path, type(exc).__name__, exc)
        return None
    if not (np.all(np.isfinite(scales)) and np.all(scales > 0) and np.all(np.isfinite(centre))):
        logger.debug("%s: WCS present but degenerate; ignored", path)
        return None
    return wcs


def inflate_limit(max_pixels: int) -> int:
    """Most bytes a gzip image of at most ``max_pixels`` pixels may inflate to (8 bytes a pixel + headers)."""
    return max_pixels * _MAX_BYTES_PER_PIXEL + _HEADER_SLACK


def too_large(path: Path, shape: Sequence[int], max_pixels: int, *, what: str = "image") -> ImageReadError:
    """The refusal of an image of ``shape`` (width first, as FITS axes and people give it)."""
    pixels = math.prod(shape)
    size = " x ".join(str(n) for n in shape)
    return ImageReadError(
        path, f"{what} of {size} = {pixels:,} pixels is larger than max_image_pixels = {max_pixels:,}. "
        "It may be a decompression bomb; if it is a real image, use a cutout or raise max_image_pixels."
    )


