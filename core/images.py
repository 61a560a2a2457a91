"""Reading galaxy images (FITS, JPEG, PNG) into one float32 array type.

Every reader returns an :class:`ImageData` whose ``data`` is native-endian float32 in the FITS
orientation (row 0 is the bottom of the picture, so JPEG/PNG rows are flipped), with NaN wherever
a pixel has no value (NaN, inf, or the header's ``BLANK``). A file that cannot be read raises
:class:`core.errors.ImageReadError` naming the file and the reason, so batch code can record the
reason and go on (see :func:`read_images`).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import logging
import os
import tempfile
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from PIL import Image, ImageOps, UnidentifiedImageError

from core.config import get_settings
from core.errors import ImageReadError, one_line
from core.fits import inflate_limit, read_fits, too_large
from core.io import RefusedFileError, open_regular

logger = logging.getLogger(__name__)

ImageFormat = Literal["fits", "jpeg", "png"]

FITS_SUFFIXES = (
    ".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.bz2", ".fit.bz2", ".fts.bz2", ".fits.fz", ".fz"
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Longest first, so ".fits.gz" wins over ".gz".
_KNOWN_SUFFIXES = sorted(FITS_SUFFIXES + IMAGE_SUFFIXES, key=len, reverse=True)
#: The dashboard's upload limit, as ``server.maxUploadSize`` in ``.streamlit/config.toml``.
UPLOAD_LIMIT_BYTES = 50 * 2**20

_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"  # SDSS serves its frames as .fits.bz2
_FITS_MAGIC = b"SIMPLE  ="
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Pixels converted at a time (whole rows) when converting a Pillow image, and bytes read at a time
# when counting a JPEG's scans.
_BAND = 1 << 20
_COPY_CHUNK = 1 << 20

# Scans (SOS markers) a JPEG may hold. libjpeg's default progressive script writes 10 scans for
# colour and 6 for grey, mozjpeg's optimised scripts a few more; each scan costs a full pass over
# the coefficients, so a file that repeats one scan thousands of times costs minutes of CPU.
MAX_JPEG_SCANS = 100
_JPEG_SOS = b"\xff\xda"  # inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker

# ITU-R BT.601 luma, the weights Pillow's "L" mode uses, applied in float to keep 16-bit depth.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class ImageData:
    """One image as read from disk.

    Attributes
    ----------
    data : numpy.ndarray
        float32, native byte order, shape ``(H, W)``, or ``(H, W, 3)`` for a colour JPEG/PNG read
        with ``rgb=True``. Row 0 is the bottom (FITS convention). Missing pixels are NaN.
    header : astropy.io.fits.Header or None
        The header of the HDU the pixels came from (FITS only).
    wcs : astropy.wcs.WCS or None
        The celestial WCS, only when it is valid for these pixels.
    path : Path
        The file that was read.
    format : {"fits", "jpeg", "png"}
        What the file turned out to be (detected from its first bytes, not its name).
    """

    data: np.ndarray
    header: fits.Header | None
    wcs: WCS | None
    path: Path
    format: ImageFormat

    @property
    def height(self) -> int:
        """Number of rows."""
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        """Number of columns."""
        return int(self.data.shape[1])

    @property
    def pixel_scale_arcsec(self) -> float | None:
        """Mean side of a pixel in arcseconds from the WCS, or None without a valid WCS."""
        if self.wcs is None:
            return None
        scales = proj_plane_pixel_scales(self.wcs)
        return float(np.mean(scales) * 3600.0)


def read_image(
    path: str | os.PathLike[str], *, rgb: bool = False, max_pixels: int | None = None
) -> ImageData:
    """Read a FITS (optionally gzip- or bzip2-compressed), JPEG or PNG file as a float32 image.

    FITS: the first HDU with at least 2-D data is used (primary, extension or tile-compressed
    ``.fits.fz``); singleton axes are squeezed, and a real cube gives its first plane (logged).
    ``BSCALE``/``BZERO`` are applied, ``BLANK`` and non-finite pixels become NaN (also those that
    scaling pushes past float32). Gzip and bzip2 are detected by their magic bytes, whatever the
    file is called. All-zero or tiny images are
    returned: judging them is :func:`core.prepare.quality.measure_quality`'s job.

    Nothing is decoded before the image's size is known from its header: an image (or cube)
    of more than ``max_pixels`` pixels is refused, compressed data is inflated as a stream that
    stops at :func:`inflate_limit` bytes, and a JPEG of more than :data:`MAX_JPEG_SCANS` scans is
    refused, so a decompression or scan bomb costs neither memory nor time.

    Parameters
    ----------
    path : path-like
        The file.
    rgb : bool, default False
        Keep the three colour channels of a colour JPEG/PNG; otherwise colour is reduced to
        luminance. FITS images are always single-channel.
    max_pixels : int or None
        Largest image accepted; ``None`` reads the ``max_image_pixels`` setting now.

    Returns
    -------
    ImageData

    Raises
    ------
    ImageReadError
        The file is missing, empty, truncated, not an image, too large, or has no 2-D data
        (random groups, tables only, 1-D, a single pixel, zero-size axes). This is the only
        exception: whatever else a library raises on an odd file becomes one, naming the file.

    Examples
    --------
    >>> image = read_image("data/sample/images/NGC_0001.fits.gz")  # doctest: +SKIP
    >>> image.data.shape, image.format
    ((128, 128), 'fits')
    """
    path = Path(path)
    limit = get_settings().max_image_pixels if max_pixels is None else int(max_pixels)
    # One contract for every caller: whatever the file holds, the only exception is ImageReadError,
    # so a batch records one line for an odd file and goes on.
    try:
        return _read_any(path, rgb=rgb, max_pixels=limit)
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError(path, "not enough memory to read it. Use a smaller cutout.") from None
    except RecursionError as exc:
        raise ImageReadError(path, "cannot be read (its structure nests too deeply).") from exc
    except Exception as exc:  # noqa: BLE001 - see comment above
        logger.debug("%s: unexpected %s while reading", path, type(exc).__name__, exc_info=True)
        raise ImageReadError(path, f"cannot be read ({type(exc).__name__}: {one_line(str(exc))}).") from exc


def _read_any(path: Path, *, rgb: bool, max_pixels: int) -> ImageData:
    limit = max_pixels
    try:
        handle = open_regular(path)  # a named pipe would block open(); closed by the with below
    except FileNotFoundError:
        raise ImageReadError(path, "file not found. Check the path or fetch the image again.") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory, not an image file.") from None
    except RefusedFileError as exc:
        reason = "is a directory, not an image file." if path.is_dir() else f"{exc.reason}; refused."
        raise ImageReadError(path, reason) from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot be opened ({exc.strerror or exc}).") from exc
    with handle:
        head = handle.read(len(_FITS_MAGIC))
        if not head:
            raise ImageReadError(path, "empty file (0 bytes). Delete it and fetch the image again.")
        handle.seek(0)
        codec = "gzip" if head.startswith(_GZIP_MAGIC) else "bzip2" if head.startswith(_BZIP2_MAGIC) else ""
        compressed = bool(codec)
        with _decompression_errors(path, codec):
            stream: Any = handle
            if codec == "gzip":
                stream = _Capped(path, gzip.GzipFile(fileobj=handle, mode="rb"), max_pixels=limit, codec=codec)
            elif codec == "bzip2":
                stream = _Capped(path, bz2.BZ2File(handle, mode="rb"), max_pixels=limit, codec=codec)
            head = stream.read(len(_FITS_MAGIC))
            stream.seek(0)
            if head.startswith(_FITS_MAGIC):
                file_size = None if compressed else os.fstat(handle.fileno()).st_size
                data, header, wcs = read_fits(path, stream, compressed=compressed, max_pixels=limit, file_size=file_size)
                return ImageData(data=data, header=header, wcs=wcs, path=path, format="fits")
            if head.startswith(_JPEG_MAGIC):
                _check_jpeg_scans(path, stream)
                return _read_pillow(path, stream, "jpeg", rgb=rgb, max_pixels=limit)
            if head.startswith(_PNG_MAGIC):
                return _read_pillow(path, stream, "png", rgb=rgb, max_pixels=limit)

    # What the file holds is never quoted: it may be any file the user can read, not an image.
    name = path.name.lower()
    if compressed or name.endswith(FITS_SUFFIXES):
        what = f"its {codec}-compressed data" if compressed else "it"
        looks = ", and looks like an HTML or XML page" if head.lstrip().startswith(b"<") else ""
        raise ImageReadError(
            path, f"not a FITS file ({what} does not start with 'SIMPLE  ='{looks}). "
            "It may be an error page saved by mistake; fetch it again."
        )
    if name.endswith(IMAGE_SUFFIXES):
        raise ImageReadError(path, "not a valid JPEG or PNG file (it does not start with a JPEG or PNG signature).")
    raise ImageReadError(
        path, "unsupported format (not FITS, JPEG or PNG). Use FITS (.fits, .fits.gz, .fits.bz2), JPEG or PNG."
    )


def _check_jpeg_scans(path: Path, stream: Any) -> None:
    """Refuse a JPEG with more than :data:`MAX_JPEG_SCANS` scans before Pillow decodes any of them.

    Counting SOS markers is exact: entropy-coded data never holds 0xFF 0xDA (an 0xFF there is
    followed by a stuffed 0x00 or a restart marker). Read in chunks, so it costs one pass of I/O.
    """
    scans, previous = 0, b""
    while chunk := stream.read(_COPY_CHUNK):
        scans += (previous[-1:] + chunk).count(_JPEG_SOS)
        previous = chunk
        if scans > MAX_JPEG_SCANS:
            raise ImageReadError(
                path, f"JPEG with more than {MAX_JPEG_SCANS} scans; a camera or survey writes at most a few "
                "dozen. Each scan costs a full decoding pass, so this may be a scan bomb; re-save it as a "
                "baseline JPEG or PNG."
            )
    stream.seek(0)


def read_upload(
    name: str, payload: bytes, *, max_bytes: int = UPLOAD_LIMIT_BYTES, max_pixels: int | None = None,
    rgb: bool = False,
) -> ImageData:
    """Read an uploaded file, given the name the browser sent and its bytes, as an image.

    ``rgb`` keeps a colour JPEG or PNG in colour (:func:`read_image`), for a model trained on colour.

    The name is only shown, never used as a path: the bytes go to a temporary file whose suffix
    is taken from the name only when it is one :func:`read_image` knows, so a name of any length
    or content (a NUL, a 300-character suffix, ``../``) cannot fail the write.

    Raises
    ------
    ImageReadError
        Too large, empty, or not readable by :func:`read_image`; the message starts with the name
        (control characters replaced, long names shortened) and ends with what to upload instead.
    """
    shown = display_name(name)
    if len(payload) > max_bytes:
        raise ImageReadError(
            shown, f"file is {len(payload) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB. Upload a cutout."
        )
    if not payload:
        raise ImageReadError(shown, "the file is empty. Upload a FITS, JPEG or PNG image.")
    lower = name.lower()
    suffix = next((s for s in _KNOWN_SUFFIXES if lower.endswith(s)), ".bin")
    with tempfile.TemporaryDirectory(prefix="galaxy-morph-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(payload)
        try:
            return read_image(path, max_pixels=max_pixels, rgb=rgb)
        except ImageReadError as exc:
            raise ImageReadError(
                shown, f"{_first_sentence(exc.reason)}. Upload a FITS, JPEG or PNG cutout of a galaxy."
            ) from exc


def display_name(name: str, *, width: int = 80) -> str:
    """``name`` safe to show in one line: control characters as ``?``, the middle of a long name cut."""
    printable = "".join(c if c.isprintable() else "?" for c in name)
    if len(printable) <= width:
        return printable
    tail = width // 4
    return f"{printable[: width - tail - 1]}…{printable[-tail:]}"


def _first_sentence(text: str) -> str:
    """The first sentence of a reason, without its full stop (parenthesised details kept whole)."""
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "." and depth <= 0 and text[i + 1 : i + 2] in ("", " "):
            return text[:i]
    return text.rstrip(".")


def read_images(
    paths: Iterable[str | os.PathLike[str]], *, rgb: bool = False, max_pixels: int | None = None
) -> list[ImageData | ImageReadError]:
    """Read many files; a file that fails gives its :class:`ImageReadError` in its place.

    The result is aligned with ``paths``, so a batch can record each failure's reason and go on.
    """
    limit = get_settings().max_image_pixels if max_pixels is None else max_pixels
    results: list[ImageData | ImageReadError] = []
    for path in paths:
        try:
            results.append(read_image(path, rgb=rgb, max_pixels=limit))
        except ImageReadError as exc:
            logger.info("skipping %s", exc)
            results.append(exc)
    return results


@contextlib.contextmanager
def _decompression_errors(path: Path, codec: str) -> Iterator[None]:
    try:
        yield
    except EOFError:
        raise ImageReadError(
            path, f"truncated {codec or 'FITS'} file (the download was cut off). Delete it and fetch the image again."
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise ImageReadError(
            path, f"corrupt gzip data ({exc}). Delete it and fetch the image again."
        ) from None
    except OSError as exc:
        if codec == "bzip2" and exc.errno is None:  # bz2 reports bad data as a bare OSError
            raise ImageReadError(path, f"corrupt bzip2 data ({exc}). Delete it and fetch the image again.") from None
        # the disk, not the data: EIO, a file removed under a network mount
        raise ImageReadError(path, f"cannot be read ({exc.strerror or exc}).") from exc


class _Capped(io.RawIOBase):
    """A read-only decompressing stream that refuses to go past :func:`inflate_limit` of ``max_pixels``."""

    def __init__(self, path: Path, raw: gzip.GzipFile | bz2.BZ2File, *, max_pixels: int, codec: str) -> None:
        super().__init__()
        self._path, self._raw, self._max_pixels, self._codec = path, raw, max_pixels, codec
        self._cap = inflate_limit(max_pixels)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._raw.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: 0, io.SEEK_CUR: self._raw.tell()}.get(whence)
        if target is None:  # SEEK_END would inflate the whole stream to find its end
            raise io.UnsupportedOperation("seeking from the end of a compressed stream is not supported")
        self._check(target + offset)
        return self._raw.seek(target + offset)

    def readinto(self, buffer: Any) -> int:
        position = self._raw.tell()
        data = self._raw.read(min(len(buffer), max(0, self._cap - position)))
        # Stopped by the cap rather than by the end of the data: refuse instead of a short read,
        # which a reader would take for a truncated file.
        if len(data) < len(buffer) and position + len(data) >= self._cap and self._raw.read(1):
            self._check(self._cap + 1)
        buffer[: len(data)] = data
        return len(data)

    def _check(self, end: int) -> None:
        if end > self._cap:
            raise ImageReadError(
                self._path, f"{self._codec} data inflates to more than {self._cap / 2**20:,.0f} MB, more than an image of "
                f"max_image_pixels = {self._max_pixels:,} can need. It may be a decompression bomb; if it is "
                "a real image, raise max_image_pixels."
            )


def _read_pillow(path: Path, stream: Any, fmt: ImageFormat, *, rgb: bool, max_pixels: int) -> ImageData:
    kind = "JPEG" if fmt == "jpeg" else "PNG"
    try:
        with warnings.catch_warnings():
            # max_image_pixels, checked below before any decoding, is the one limit that counts;
            # Pillow only warns below twice its own MAX_IMAGE_PIXELS, and raises above.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(stream, formats=[fmt.upper()])
    except Image.DecompressionBombError:
        raise ImageReadError(
            path, f"image is larger than Pillow's limit of {2 * Image.MAX_IMAGE_PIXELS:,} pixels and than "
            f"max_image_pixels = {max_pixels:,}. It may be a decompression bomb; use a cutout."
        ) from None
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as exc:
        raise ImageReadError(path, f"corrupt {kind} file ({exc}). Delete it and fetch the image again.") from exc
    with opened:
        # Image.open has read only the header: refuse a bomb before a pixel is decoded.
        if opened.width * opened.height > max_pixels:
            raise too_large(path, opened.size, max_pixels)
        try:
            opened.load()
            ImageOps.exif_transpose(opened, in_place=True)  # in place: no copy of a large image
            array = _pillow_to_array(opened, rgb=rgb)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageReadError(
                path, f"corrupt or truncated {kind} file ({exc}). Delete it and fetch the image again."
            ) from exc
    if min(array.shape[:2]) < 1:
        raise ImageReadError(path, f"image has no pixels (shape {array.shape}).")
    return ImageData(data=array, header=None, wcs=None, path=path, format=fmt)


#: Where :func:`header_position` found a position, in the order it looks.
POSITION_ORIGINS = {
    "fits_header": "OBJCTRA/OBJCTDEC keywords (the object's position, as DSS and FIRST cutouts carry it)",
    "fits_wcs": "the WCS at the image centre",
    "fits_ra_dec": "RA/DEC keywords (the pointing: the object's position for a cutout, not for a wide frame)",
}


def header_position(image: ImageData) -> tuple[float, float, str] | None:
    """(RA, Dec in degrees, origin) of what a FITS image shows, from its header; None without one.

    ``OBJCTRA``/``OBJCTDEC`` first (``"fits_header"``), then the WCS at the image centre
    (``"fits_wcs"``), then the ``RA``/``DEC`` keywords (``"fits_ra_dec"``), in degrees or
    sexagesimal. The origin is recorded with the position, so a user can tell how far to trust
    it (see :data:`POSITION_ORIGINS`). A value that does not parse or lies outside the sky is skipped.
    """
    header = image.header
    if header is None:
        return None
    found = _keyword_position(header.get("OBJCTRA"), header.get("OBJCTDEC"), sexagesimal_only=True)
    if found is not None:
        return (*found, "fits_header")
    if image.wcs is not None:
        height, width = image.data.shape[:2]
        try:  # through SkyCoord, so a galactic (GLON/GLAT) or FK4 WCS gives ICRS RA/Dec too
            from astropy.wcs.utils import pixel_to_skycoord

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                centre = pixel_to_skycoord((width - 1) / 2, (height - 1) / 2, image.wcs.celestial).icrs
            ra, dec = float(centre.ra.degree), float(centre.dec.degree)
        except Exception:  # noqa: BLE001 - any failing WCS just gives no position from it
            ra, dec = np.nan, np.nan
        if np.isfinite(ra) and np.isfinite(dec) and -90 <= dec <= 90:
            return float(ra) % 360.0, float(dec), "fits_wcs"
    found = _keyword_position(header.get("RA"), header.get("DEC"), sexagesimal_only=False)
    return (*found, "fits_ra_dec") if found is not None else None


def _keyword_position(ra: object, dec: object, *, sexagesimal_only: bool) -> tuple[float, float] | None:
    """Degrees from two header values: numbers are degrees, text is ``HH MM SS`` / ``DD MM SS``."""
    if ra is None or dec is None or isinstance(ra, bool) or isinstance(dec, bool):
        return None
    try:
        if isinstance(ra, (int, float)) and isinstance(dec, (int, float)):
            if sexagesimal_only:
                return None
            ra_deg, dec_deg = float(ra), float(dec)
        else:
            from astropy import units as u
            from astropy.coordinates import Angle

            ra_deg = float(Angle(str(ra).strip(), unit=u.hourangle).degree)
            dec_deg = float(Angle(str(dec).strip(), unit=u.deg).degree)
    except Exception:  # noqa: BLE001 - a header's text is anything; an unreadable one gives no position
        return None
    if not (np.isfinite(ra_deg) and np.isfinite(dec_deg) and 0 <= ra_deg < 360 and -90 <= dec_deg <= 90):
        return None
    return ra_deg, dec_deg


def luminance(rgb: np.ndarray) -> np.ndarray:
    """float32 luma (ITU-R BT.601 weights, as Pillow's "L") of an ``(H, W, 3)`` array."""
    rgb = np.asarray(rgb, dtype=np.float32)
    # A weighted sum rather than ``rgb @ weights``: that goes to a multithreaded BLAS call that is
    # slow on a busy machine for no gain.
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is a missing pixel: NaN
        return _LUMA[0] * rgb[..., 0] + _LUMA[1] * rgb[..., 1] + _LUMA[2] * rgb[..., 2]


def _pillow_to_array(img: Image.Image, *, rgb: bool) -> np.ndarray:
    """float32 pixels flipped to the FITS orientation, converted in bands of rows.

    A band at a time keeps the temporaries (8-bit copy, RGB conversion, luminance) small next to
    the float32 result, so a large image costs little more than its result.
    """
    mode = img.mode
    grey = mode in ("I", "I;16", "I;16B", "I;16L", "F", "L", "1", "LA")
    colour = not grey and rgb
    width, height = img.size
    out = np.empty((height, width, 3) if colour else (height, width), dtype=np.float32)
    rows = max(1, _BAND // max(1, width))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        band = img.crop((0, top, width, bottom))
        if mode == "LA":
            band = band.getchannel("L")
        elif not grey:
            band = band.convert("RGB")
        values = np.asarray(band, dtype=np.float32)
        if not grey and not rgb:
            values = luminance(values)
        out[height - bottom : height - top] = values[::-1]
    return out
