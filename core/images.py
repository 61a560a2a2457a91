"""Reading galaxy images (FITS, JPEG, PNG) into one float32 array type.

Every reader returns an :class:`ImageData` whose ``data`` is native-endian float32 in the FITS
orientation (row 0 is the bottom of the picture, so JPEG/PNG rows are flipped), with NaN wherever
a pixel has no value (NaN, inf, or the header's ``BLANK``). A file that cannot be read raises
:class:`core.errors.ImageReadError` naming the file and the reason, so batch code can record the
reason and go on (see :func:`read_images`).
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import ImageReadError

logger = logging.getLogger(__name__)

ImageFormat = Literal["fits", "jpeg", "png"]

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.fz", ".fz")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

_GZIP_MAGIC = b"\x1f\x8b"
_FITS_MAGIC = b"SIMPLE  ="
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

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


def read_image(path: str | os.PathLike[str], *, rgb: bool = False) -> ImageData:
    """Read a FITS (optionally gzipped), JPEG or PNG file as a float32 image.

    FITS: the first HDU with at least 2-D data is used (primary, extension or tile-compressed
    ``.fits.fz``); singleton axes are squeezed, and a real cube gives its first plane (logged).
    ``BSCALE``/``BZERO`` are applied, ``BLANK`` and non-finite pixels become NaN. Gzip is
    detected by its magic bytes, whatever the file is called. All-zero or tiny images are
    returned: judging them is :func:`core.preprocessing.measure_quality`'s job.

    Parameters
    ----------
    path : path-like
        The file.
    rgb : bool, default False
        Keep the three colour channels of a colour JPEG/PNG; otherwise colour is reduced to
        luminance. FITS images are always single-channel.

    Returns
    -------
    ImageData

    Raises
    ------
    ImageReadError
        The file is missing, empty, truncated, not an image, or has no 2-D data; the message
        names the file and the reason.

    Examples
    --------
    >>> image = read_image("data/sample/images/NGC_0001.fits.gz")  # doctest: +SKIP
    >>> image.data.shape, image.format
    ((128, 128), 'fits')
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found. Check the path or fetch the image again.") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory, not an image file.") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot be opened ({exc.strerror or exc}).") from exc
    if not raw:
        raise ImageReadError(path, "empty file (0 bytes). Delete it and fetch the image again.")

    compressed = raw.startswith(_GZIP_MAGIC)
    if compressed:
        raw = _gunzip(path, raw)
    if raw.startswith(_FITS_MAGIC):
        return _read_fits(path, raw)
    if raw.startswith(_JPEG_MAGIC):
        return _read_pillow(path, raw, "jpeg", rgb=rgb)
    if raw.startswith(_PNG_MAGIC):
        return _read_pillow(path, raw, "png", rgb=rgb)

    name = path.name.lower()
    if compressed or name.endswith(FITS_SUFFIXES):
        what = "gzip-compressed data" if compressed else "data"
        raise ImageReadError(
            path, f"not a FITS file ({what} starts with {raw[:16]!r}, not 'SIMPLE  ='). "
            "It may be an HTML error page saved by mistake; fetch it again."
        )
    if name.endswith(IMAGE_SUFFIXES):
        raise ImageReadError(path, f"not a valid JPEG or PNG file (starts with {raw[:8]!r}).")
    raise ImageReadError(
        path, f"unsupported format (starts with {raw[:8]!r}). Use FITS (.fits, .fits.gz), JPEG or PNG."
    )


def read_images(
    paths: Iterable[str | os.PathLike[str]], *, rgb: bool = False
) -> list[ImageData | ImageReadError]:
    """Read many files; a file that fails gives its :class:`ImageReadError` in its place.

    The result is aligned with ``paths``, so a batch can record each failure's reason and go on.
    """
    results: list[ImageData | ImageReadError] = []
    for path in paths:
        try:
            results.append(read_image(path, rgb=rgb))
        except ImageReadError as exc:
            logger.info("skipping %s", exc)
            results.append(exc)
    return results


def _gunzip(path: Path, raw: bytes) -> bytes:
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise ImageReadError(
            path, "truncated gzip file (the download was cut off). Delete it and fetch the image again."
        ) from None
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise ImageReadError(
            path, f"corrupt gzip data ({exc}). Delete it and fetch the image again."
        ) from None


def _read_fits(path: Path, raw: bytes) -> ImageData:
    # Everything astropy may raise on a damaged file (OSError, ValueError, VerifyError, IndexError,
    # KeyError, TypeError...) becomes one ImageReadError naming the file.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(
                io.BytesIO(raw), memmap=False, do_not_scale_image_data=True, ignore_missing_simple=False
            ) as hdul:
                hdu, reason = _first_image_hdu(hdul)
                if hdu is None:
                    raise ImageReadError(path, reason)
                header = hdu.header.copy()
                data, squeezed_ok = _image_plane(path, hdu)
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - see comment above
        raise ImageReadError(path, f"corrupt FITS file ({type(exc).__name__}: {exc}).") from exc
    data = _scale(data, header)
    wcs = _celestial_wcs(path, header, data.shape) if squeezed_ok else None
    return ImageData(data=data, header=header, wcs=wcs, path=path, format="fits")


def _first_image_hdu(hdul: fits.HDUList) -> tuple[fits.hdu.base.ExtensionHDU | None, str]:
    seen = []
    one_d = False
    for index, hdu in enumerate(hdul):
        if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            seen.append(f"{index}:{type(hdu).__name__}")
            continue
        shape = tuple(int(n) for n in (hdu.shape or ()))
        big = [n for n in shape if n > 1]
        if len(big) >= 2:
            return hdu, ""
        if shape and all(n > 0 for n in shape):
            one_d = True
        seen.append(f"{index}:{type(hdu).__name__}{list(shape) or ' (no data)'}")
    if one_d:
        return None, f"1-D data, not an image (HDUs: {', '.join(seen)})."
    return None, f"no image HDU with 2-D data (HDUs: {', '.join(seen)})."


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
    # float64 for the arithmetic keeps int32 + BZERO exact enough before the final cast.
    work_dtype = np.float64 if integer and data.dtype.itemsize >= 4 else np.float32
    out = data.astype(work_dtype)
    if blank is not None:
        try:
            out[data == int(blank)] = np.nan
        except (TypeError, ValueError):
            logger.debug("ignoring non-integer BLANK %r", blank)
    if bscale != 1.0:
        out *= bscale
    if bzero != 0.0:
        out += bzero
    out = out.astype(np.float32, copy=False)
    if not integer:
        out[~np.isfinite(out)] = np.nan
    return np.ascontiguousarray(out)


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


def _read_pillow(path: Path, raw: bytes, fmt: ImageFormat, *, rgb: bool) -> ImageData:
    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            array = _pillow_to_array(img, rgb=rgb)
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        kind = "JPEG" if fmt == "jpeg" else "PNG"
        raise ImageReadError(
            path, f"corrupt or truncated {kind} file ({exc}). Delete it and fetch the image again."
        ) from exc
    if array.ndim < 2 or min(array.shape[:2]) < 1:
        raise ImageReadError(path, f"image has no pixels (shape {array.shape}).")
    return ImageData(
        data=np.ascontiguousarray(array[::-1]), header=None, wcs=None, path=path, format=fmt
    )


def luminance(rgb: np.ndarray) -> np.ndarray:
    """float32 luma (ITU-R BT.601 weights, as Pillow's "L") of an ``(H, W, 3)`` array."""
    rgb = np.asarray(rgb, dtype=np.float32)
    # A weighted sum rather than ``rgb @ weights``: that goes to a multithreaded BLAS call that is
    # slow on a busy machine for no gain.
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is a missing pixel: NaN
        return _LUMA[0] * rgb[..., 0] + _LUMA[1] * rgb[..., 1] + _LUMA[2] * rgb[..., 2]


def _pillow_to_array(img: Image.Image, *, rgb: bool) -> np.ndarray:
    mode = img.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "F", "L", "1"):
        return np.asarray(img, dtype=np.float32)
    if mode == "LA":
        return np.asarray(img.getchannel("L"), dtype=np.float32)
    colour = np.asarray(img.convert("RGB"), dtype=np.float32)
    if rgb:
        return colour
    return luminance(colour)
