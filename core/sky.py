"""An image's sky and the centre of its galaxy, measured the same way wherever they are needed.

The quality metrics (:mod:`core.acquire.measure`) and the preprocessing
(:mod:`core.prepare.preprocessing`) both measure with this module's sky (:func:`fit_background`)
and centring (:func:`locate_centre`), so the metrics and the network input see the same galaxy,
and the preprocessing reuses the sky the metrics stored. Every function is a pure function of
arrays; it sits below the stages, since the sample measures its images as it writes them.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from astropy.stats import sigma_clip
from scipy import ndimage

from core.errors import ConfigError
from core.images import ImageData, luminance

logger = logging.getLogger(__name__)

#: Where to centre the crop (:class:`core.prepare.preprocessing.PreprocessConfig` explains each).
CentreMode = Literal["auto", "wcs", "peak", "none"]
CENTRE_MODES: tuple[str, ...] = ("auto", "wcs", "peak", "none")


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float, or None for a missing or non-finite catalogue position."""
    return float(value) if value is not None and np.isfinite(value) else None


# --------------------------------------------------------------------------------------------
# background


@dataclass(frozen=True)
class Background:
    """The sky of an image: level and noise per pixel, the fitted plane, and how flat the border is."""

    level: float
    noise: float
    plane: tuple[float, float, float]  # level = a + b * x + c * y at pixel (x, y)
    flatness: float


def estimate_background(data: np.ndarray) -> tuple[float, float]:
    """Sky level and noise (per pixel) from sigma-clipped border tiles.

    Only the twelve border tiles of a 4 x 4 grid are sampled (at most 256 pixels each), so the
    galaxy in the middle barely matters and a 4-Mpx image costs as much as a small one. The
    level is the median of the tiles' clipped medians, the noise the median of their clipped
    MAD standard deviations.

    Parameters
    ----------
    data : numpy.ndarray
        2-D image; NaN pixels are ignored.

    Returns
    -------
    level, noise : float
        ``(0.0, 0.0)`` when the image has no finite pixel.
    """
    background = fit_background(_as_2d(data))
    return background.level, background.noise


def fit_background(data: np.ndarray) -> Background:
    """The sky of a 2-D image from its border tiles (:func:`estimate_background`), with its plane and flatness."""
    xs, ys, medians, noises = _border_tiles(data)
    good = np.isfinite(medians)
    if not good.any():
        finite = data[np.isfinite(data)]
        if finite.size == 0:
            return Background(0.0, 0.0, (0.0, 0.0, 0.0), 0.0)
        level = float(np.median(finite))
        return Background(level, 0.0, (level, 0.0, 0.0), 1.0)
    level = float(np.median(medians[good]))
    noise = float(np.median(noises[good])) if np.isfinite(noises[good]).any() else 0.0
    noise = 0.0 if not math.isfinite(noise) else noise
    plane = _fit_plane(xs[good], ys[good], medians[good], level, noise)
    # Flatness judges what the plane leaves: a smooth gradient is removed, bumps are not.
    residual = medians[good] - (plane[0] + plane[1] * xs[good] + plane[2] * ys[good])
    spread = float(np.ptp(residual))
    spread = spread / noise if noise > 0 else (0.0 if spread < 1e-12 else math.inf)
    return Background(level, noise, plane, 1.0 / (1.0 + spread))


def _border_tiles(data: np.ndarray, *, grid: int = 4, per_tile: int = 256) -> tuple[np.ndarray, ...]:
    """Centres, clipped medians and clipped noise of the border tiles of a ``grid x grid`` split.

    The image is first sampled on a regular lattice of about ``grid * sqrt(per_tile)`` points a
    side, so the cost does not grow with the image.
    """
    height, width = data.shape
    if min(height, width) < 2 * grid:
        xs, ys = np.array([(width - 1) / 2]), np.array([(height - 1) / 2])
        stack = data.reshape(1, -1)
    else:
        side = grid * int(math.sqrt(per_tile))
        step_y, step_x = math.ceil(height / side), math.ceil(width / side)
        lattice = data[::step_y, ::step_x]
        tile_h, tile_w = lattice.shape[0] // grid, lattice.shape[1] // grid
        blocks = (
            lattice[: tile_h * grid, : tile_w * grid]
            .reshape(grid, tile_h, grid, tile_w)
            .transpose(0, 2, 1, 3)
            .reshape(grid * grid, tile_h * tile_w)
        )
        edge = (0, grid - 1)
        ring = np.array([k for k in range(grid * grid) if k // grid in edge or k % grid in edge])
        stack = blocks[ring]
        ys = ((ring // grid) * tile_h + (tile_h - 1) / 2) * step_y
        xs = ((ring % grid) * tile_w + (tile_w - 1) / 2) * step_x
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        clipped = sigma_clip(
            stack, sigma=3.0, maxiters=3, axis=1, cenfunc="median", stdfunc="mad_std", masked=False
        )
        medians = _row_nanmedian(clipped)
        noises = 1.4826 * _row_nanmedian(np.abs(clipped - medians[:, None]))
    return xs.astype(float), ys.astype(float), medians.astype(float), noises.astype(float)


def _row_nanmedian(values: np.ndarray) -> np.ndarray:
    """Median of each row ignoring NaN (NaN for an all-NaN row); numpy's nanmedian is slow on small rows."""
    ordered = np.sort(values, axis=1)  # NaN sort last
    counts = np.isfinite(ordered).sum(axis=1)
    rows = np.arange(ordered.shape[0])
    low = ordered[rows, np.maximum((counts - 1) // 2, 0)]
    high = ordered[rows, np.maximum(counts // 2, 0)]
    high = np.where(counts % 2 == 1, low, high)
    return np.where(counts > 0, 0.5 * (low.astype(float) + high.astype(float)), np.nan)


def _fit_plane(
    xs: np.ndarray, ys: np.ndarray, levels: np.ndarray, level: float, noise: float
) -> tuple[float, float, float]:
    """Least-squares sky plane through the tile levels, refitted once without outlying tiles.

    A galaxy reaching a border tile raises that tile's level; dropping tiles more than three
    robust deviations off the first fit keeps it from tilting the plane.
    """
    if levels.size < 4 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return level, 0.0, 0.0
    design = np.column_stack([np.ones_like(xs), xs, ys])
    keep = np.ones(levels.size, dtype=bool)
    coef = np.array([level, 0.0, 0.0])
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(design[keep], levels[keep], rcond=None)
        residual = levels - design @ coef
        scale = max(1.4826 * float(np.median(np.abs(residual[keep]))), noise / 16, 1e-12)
        new_keep = np.abs(residual) <= 3 * scale
        if new_keep.sum() < 4 or (new_keep == keep).all():
            break
        keep = new_keep
    return float(coef[0]), float(coef[1]), float(coef[2])


def plane_values(
    plane: tuple[float, float, float], x0: float, y0: float, shape: tuple[int, ...]
) -> np.ndarray:
    """The sky ``plane`` over a ``shape`` window whose pixel (0, 0) sits at ``(x0, y0)`` in the image (float32)."""
    a, b, c = plane
    ys = (y0 + np.arange(shape[0], dtype=np.float32)) * np.float32(c)
    xs = (x0 + np.arange(shape[1], dtype=np.float32)) * np.float32(b)
    return np.float32(a) + ys[:, None] + xs[None, :]


# --------------------------------------------------------------------------------------------
# centring


def find_centre(
    image: ImageData | np.ndarray,
    *,
    ra: float | None = None,
    dec: float | None = None,
    mode: CentreMode = "auto",
) -> tuple[float, float]:
    """Pixel position ``(x, y)`` (0-based, x = column) of the galaxy to centre the crop on.

    Parameters
    ----------
    image : ImageData or numpy.ndarray
        The image; a bare array has no WCS, so "wcs" falls back to the image centre.
    ra, dec : float, optional
        Catalogue position in degrees.
    mode : {"auto", "wcs", "peak", "none"}
        See :class:`core.prepare.preprocessing.PreprocessConfig`.

    Returns
    -------
    x, y : float
    """
    if mode not in CENTRE_MODES:
        raise ConfigError(
            f"mode must be one of {', '.join(map(repr, CENTRE_MODES))}; got {mode!r}. Use 'auto'."
        )
    data, wcs = _luminance_and_wcs(image)
    background = fit_background(data)
    return locate_centre(sky_subtracted(data, background), wcs, ra, dec, mode, background.noise)


def locate_centre(
    sub: np.ndarray, wcs: Any, ra: float | None, dec: float | None, mode: str, noise: float
) -> tuple[float, float]:
    """Where to centre on a sky-subtracted image: :func:`find_centre` once the sky is known."""
    height, width = sub.shape
    middle = ((width - 1) / 2, (height - 1) / 2)
    if mode == "none":
        return middle
    if mode in ("auto", "wcs"):
        position = _wcs_position(wcs, ra, dec, sub.shape)
        if position is not None:
            return position
        if mode == "wcs":
            logger.warning(
                "centre='wcs' needs a valid WCS and a catalogue position inside the image; "
                "using the image centre"
            )
            return middle
    return _peak_centre(sub, noise)


def _wcs_position(
    wcs: Any, ra: float | None, dec: float | None, shape: tuple[int, ...]
) -> tuple[float, float] | None:
    if wcs is None or ra is None or dec is None or not (math.isfinite(ra) and math.isfinite(dec)):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x, y = wcs.world_to_pixel_values(ra, dec)
    except Exception:  # noqa: BLE001 - an odd WCS that cannot invert simply means "no position"
        return None
    x, y = float(x), float(y)
    inside = -0.5 <= x <= shape[1] - 0.5 and -0.5 <= y <= shape[0] - 0.5
    if not (math.isfinite(x) and math.isfinite(y) and inside):
        return None
    return x, y


def sky_subtracted(data: np.ndarray, background: Background) -> np.ndarray:
    """``data`` minus the sky plane, with missing pixels set to the sky (0) for the detectors."""
    sub = data - plane_values(background.plane, 0.0, 0.0, data.shape)
    missing = np.isnan(sub)
    if missing.any():
        sub[missing] = 0.0
    return sub


def block_average(filled: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """Block-mean a NaN-free image to at most ``max_side`` pixels a side."""
    block = max(1, int(math.ceil(max(filled.shape) / max_side)))
    if block == 1:
        return filled, 1
    height, width = (filled.shape[0] // block) * block, (filled.shape[1] // block) * block
    trimmed = filled[:height, :width]
    # Strided sums: ten times faster than reshape(...).mean(axis=(1, 3)), which numpy reduces
    # over non-contiguous axes.
    rows = trimmed[0::block].copy()
    for i in range(1, block):
        rows += trimmed[i::block]
    out = rows[:, 0::block].copy()
    for j in range(1, block):
        out += rows[:, j::block]
    out *= np.float32(1.0 / (block * block))
    return out, block


def _peak_centre(sub: np.ndarray, noise: float) -> tuple[float, float]:
    """The brightest smoothed source, weighted towards the middle, refined by a centroid.

    Tuned on the built-in sample (every off-centre galaxy found, up to 30 % of the side away)
    and on the Galaxy Zoo JPEGs (6 of 600 centred on a bright star instead).
    """
    height, width = sub.shape
    if min(height, width) < 3:
        return (width - 1) / 2, (height - 1) / 2
    reduced, block = block_average(sub, 64)
    rh, rw = reduced.shape
    # Capping the brightest 1 % of the pixels and smoothing with a kernel wider than most
    # galaxies both favour extended light: a bright star's flux sits in a few capped pixels.
    reduced = np.minimum(reduced, np.percentile(reduced, 99))
    sigma = max(1.0, min(rh, rw) / 12)
    smooth = ndimage.gaussian_filter(reduced, sigma, mode="constant")
    yy = (np.arange(rh) - (rh - 1) / 2) / max(rh, 1)
    xx = (np.arange(rw) - (rw - 1) / 2) / max(rw, 1)
    prior = np.exp(-0.5 * (yy[:, None] ** 2 + xx[None, :] ** 2) / 0.25**2)
    iy, ix = np.unravel_index(int(np.argmax(smooth * prior)), smooth.shape)
    x0, y0 = (ix + 0.5) * block - 0.5, (iy + 0.5) * block - 0.5
    # Centroid of the upper half of the light in a small window at full resolution.
    radius = int(2 * block + 2)
    y_lo, y_hi = max(0, int(y0) - radius), min(height, int(y0) + radius + 1)
    x_lo, x_hi = max(0, int(x0) - radius), min(width, int(x0) + radius + 1)
    window = sub[y_lo:y_hi, x_lo:x_hi]
    if window.size == 0:
        return float(x0), float(y0)
    weights = window - 0.5 * float(window.max())
    np.clip(weights, 0, None, out=weights)
    total = float(weights.sum())
    if total <= 0:
        return float(x0), float(y0)
    wy, wx = np.indices(window.shape)
    return float(x_lo + (weights * wx).sum() / total), float(y_lo + (weights * wy).sum() / total)


def as_image(image: ImageData | np.ndarray) -> ImageData:
    """``image`` itself; anything but an :class:`~core.images.ImageData` is refused with a message."""
    if isinstance(image, ImageData):
        return image
    raise ConfigError(
        f"image must be an ImageData from core.images.read_image; got {type(image).__name__}."
    )


def working_data(image: ImageData, *, colour: bool) -> np.ndarray:
    """float32 pixels with zero-filled gaps and inf as NaN; colour reduced to luminance unless kept."""
    data = np.asarray(image.data, dtype=np.float32)
    if data.ndim == 3 and not colour:
        data = luminance(data)
    if np.isinf(data).any():  # read_image never leaves inf, but an ImageData built by hand may
        data = np.where(np.isinf(data), np.float32(np.nan), data)
    zeros = data == 0 if data.ndim == 2 else (data == 0).all(axis=-1)
    n_zeros = int(zeros.sum())
    many = max(4, 0.005 * zeros.size) <= n_zeros < zeros.size
    if many and _zeros_are_a_gap(image, data, zeros):
        data = np.where(zeros if data.ndim == 2 else zeros[..., None], np.float32(np.nan), data)
    return data


def _zeros_are_a_gap(image: ImageData, data: np.ndarray, zeros: np.ndarray) -> bool:
    """Whether the image's many exact zeros are a zero-filled gap rather than real values.

    In a float image exact zeros are practically impossible as data, so they are a gap (a chip
    gap, an edge outside the survey). In integer data (int16 FITS, JPEG) zero is an ordinary
    value, and counts as a gap only when it lies far below the other pixels: more than five
    robust deviations under their median.
    """
    header = image.header
    if header is not None and int(header.get("BITPIX", 16)) < 0:
        return True
    others = data[~zeros] if data.ndim == 2 else data[~zeros].ravel()
    others = others[:: max(1, others.size // 4096)]
    others = others[np.isfinite(others)]
    if others.size < 16:
        return False
    median = float(np.median(others))
    spread = 1.4826 * float(np.median(np.abs(others - median)))
    return spread > 0 and median > 5 * spread


def _luminance_and_wcs(image: ImageData | np.ndarray) -> tuple[np.ndarray, Any]:
    if isinstance(image, ImageData):
        return working_data(image, colour=False), image.wcs
    data = np.asarray(image, dtype=np.float32)
    return _as_2d(data), None


def _as_2d(data: np.ndarray) -> np.ndarray:
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 3 and data.shape[2] == 3:
        return luminance(data)
    if data.ndim != 2:
        raise ConfigError(f"data must be a 2-D image or (H, W, 3) colour image; got shape {data.shape}.")
    return data
