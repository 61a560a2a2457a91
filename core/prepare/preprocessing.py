"""From a raw galaxy image to a network input.

The pipeline (:func:`preprocess`, step by step in :func:`preprocess_steps`) is: background
subtraction, centring on the galaxy, a square crop, an intensity stretch to [0, 1], and an
anti-aliased resize to ``size x size``. Every step is a pure function of arrays.

Quality is measured apart, once per image, by :mod:`core.acquire.measure`; it and this module
both measure with :mod:`core.sky`'s sky (:func:`~core.sky.fit_background`) and centring
(:func:`~core.sky.locate_centre`), so the metrics and the network input see the same galaxy, and
:func:`preprocess` reuses the sky it stored.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from astropy.nddata import Cutout2D
from astropy.nddata.utils import NoOverlapError
from astropy.visualization import AsinhStretch, LinearStretch, LogStretch, ManualInterval, SqrtStretch
from scipy import sparse

from core.errors import ConfigError
from core.images import ImageData, luminance
from core.fields import option
from core.sky import (
    CENTRE_MODES,
    Background,
    CentreMode,
    as_image,
    fit_background,
    locate_centre,
    plane_values,
    sky_subtracted,
    working_data,
)

logger = logging.getLogger(__name__)

Stretch = Literal["asinh", "log", "sqrt", "linear"]

STRETCHES: tuple[str, ...] = ("asinh", "log", "sqrt", "linear")
STEP_NAMES: tuple[str, ...] = ("raw", "background_subtracted", "cropped", "stretched", "final")

@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes a network input. Validated on construction.

    Attributes
    ----------
    crop : float, default 0.5
        Side of the square crop as a fraction of the image's shorter side, in (0, 1].
    crop_arcsec : float or None, default None
        Side of the crop in arcseconds; used when the image has a valid WCS, otherwise ``crop``
        is used and a warning is logged.
    size : int, default 64
        Output side in pixels, 8 to 512.
    stretch : {"asinh", "log", "sqrt", "linear"}, default "asinh"
        Intensity stretch applied after the percentile interval.
    percentiles : (float, float), default (0.5, 99.5)
        Pixel percentiles of the crop mapped to 0 and 1 before stretching.
    subtract_background : bool, default True
        Subtract the sky plane fitted to the border tiles. A constant sky does not change the
        output (the percentile interval absorbs it); a sky gradient does.
    centre : {"auto", "wcs", "peak", "none"}, default "auto"
        "wcs": the catalogue position through the WCS (image centre when impossible);
        "peak": the brightest smoothed source near the centre; "auto": "wcs" when the WCS and
        the position are valid, else "peak"; "none": the image centre.
    channels : {1, 3}, default 1
        1: luminance; 3: colour (a grey image is repeated in the three channels).
    """

    crop: float = field(default=0.5, metadata=option("crop side as a fraction of the image side",
        label="Crop (fraction of the image side)"))
    crop_arcsec: float | None = field(default=None, metadata=option("crop side in arcsec where the WCS allows"))
    size: int = field(default=64, metadata=option("output side in pixels", label="Output size (pixels)"))
    stretch: Stretch = field(default="asinh", metadata=option("intensity stretch", label="Stretch"))
    percentiles: tuple[float, float] = field(default=(0.5, 99.5), metadata=option(
        "pixel percentiles mapped to 0 and 1", cli=False))
    subtract_background: bool = field(default=True, metadata=option("subtract the sky plane", cli=False))
    centre: CentreMode = field(default="auto", metadata=option(
        "crop centre: wcs (catalogue position), peak (brightest source), none (image centre); auto = none for "
        "Galaxy Zoo cutouts, else wcs where the WCS allows, else peak"))
    channels: Literal[1, 3] = field(default=1, metadata=option("1 grey, 3 colour", label="Colour"))

    def __post_init__(self) -> None:
        if not is_number(self.crop) or not 0 < self.crop <= 1:
            raise ConfigError(f"crop must be in (0, 1]; got {self.crop!r}. Use a fraction of the image side.")
        if self.crop_arcsec is not None and (
            not is_number(self.crop_arcsec) or not 0 < self.crop_arcsec < math.inf
        ):
            raise ConfigError(
                f"crop_arcsec must be None or a positive number; got {self.crop_arcsec!r}. "
                "Use the crop side in arcseconds, e.g. 120."
            )
        if not is_integer(self.size) or not 8 <= self.size <= 512:
            raise ConfigError(
                f"size must be an integer in [8, 512]; got {self.size!r}. "
                "Use the output side in pixels, e.g. 64."
            )
        if self.stretch not in STRETCHES:
            raise ConfigError(
                f"stretch must be one of {', '.join(map(repr, STRETCHES))}; got {self.stretch!r}. "
                "Use 'asinh' for galaxies."
            )
        low_high = _as_percentiles(self.percentiles)
        if low_high is None:
            raise ConfigError(
                f"percentiles must be two numbers with 0 <= low < high <= 100; got {self.percentiles!r}. "
                "Use e.g. (0.5, 99.5)."
            )
        if not isinstance(self.subtract_background, (bool, np.bool_)):
            raise ConfigError(
                f"subtract_background must be True or False; got {self.subtract_background!r}."
            )
        if self.centre not in CENTRE_MODES:
            raise ConfigError(
                f"centre must be one of {', '.join(map(repr, CENTRE_MODES))}; got {self.centre!r}. "
                "Use 'auto' to centre on the catalogue position or the galaxy."
            )
        if isinstance(self.channels, bool) or self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3; got {self.channels!r}. Use 1 (grey) or 3 (colour).")
        # Normalise types so equal configs compare and serialise equal (lists from JSON, numpy ints).
        object.__setattr__(self, "percentiles", low_high)
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "channels", int(self.channels))
        object.__setattr__(self, "crop", float(self.crop))
        object.__setattr__(self, "subtract_background", bool(self.subtract_background))
        if self.crop_arcsec is not None:
            object.__setattr__(self, "crop_arcsec", float(self.crop_arcsec))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, for a dataset manifest."""
        values = dataclasses.asdict(self)
        values["percentiles"] = list(self.percentiles)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PreprocessConfig:
        """Rebuild a config from :meth:`to_dict`'s output; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown preprocessing option(s) {', '.join(unknown)}; "
                f"known options: {', '.join(sorted(known))}."
            )
        kwargs = dict(values)
        if "percentiles" in kwargs and isinstance(kwargs["percentiles"], list):
            kwargs["percentiles"] = tuple(kwargs["percentiles"])
        return cls(**kwargs)


def is_number(value: object) -> bool:
    """A finite real number (numpy scalars included), not a bool."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return real and math.isfinite(value)  # type: ignore[arg-type]


def is_integer(value: object) -> bool:
    """An integer (numpy integers included), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)



def _as_percentiles(value: object) -> tuple[float, float] | None:
    try:
        low, high = value  # type: ignore[misc]
    except (TypeError, ValueError):
        return None
    if not (is_number(low) and is_number(high) and 0 <= low < high <= 100):
        return None
    return float(low), float(high)


def crop_image(data: np.ndarray, centre: tuple[float, float], side_px: float) -> np.ndarray:
    """Square ``side_px`` crop around ``centre`` (x, y); the part outside the image is NaN.

    Uses :class:`astropy.nddata.Cutout2D` with ``mode="partial"``, so the crop always has the
    requested shape; works on ``(H, W)`` and ``(H, W, C)`` arrays.
    """
    return _cutout(data, centre, side_px)[0]


def _cutout(
    data: np.ndarray, centre: tuple[float, float], side_px: float
) -> tuple[np.ndarray, tuple[int, int]]:
    """The crop and the original-image position (x, y) of its pixel (0, 0)."""
    side = max(1, int(round(side_px)))
    data = np.asarray(data, dtype=np.float32)
    plane = data if data.ndim == 2 else data[..., 0]
    out_shape = (side, side) + data.shape[2:]
    try:
        cutout = Cutout2D(
            plane, position=centre, size=(side, side), mode="partial", fill_value=np.nan, copy=False
        )
    except NoOverlapError:
        return np.full(out_shape, np.nan, dtype=np.float32), (0, 0)
    origin = (
        int(cutout.position_original[0] - cutout.position_cutout[0]),
        int(cutout.position_original[1] - cutout.position_cutout[1]),
    )
    if data.ndim == 2:
        return np.array(cutout.data, dtype=np.float32, copy=True), origin
    out = np.full(out_shape, np.nan, dtype=np.float32)
    out[cutout.slices_cutout] = data[cutout.slices_original]
    return out, origin


def _crop_side(image: ImageData, config: PreprocessConfig) -> float:
    min_side = min(image.data.shape[:2])
    if config.crop_arcsec is not None:
        scale = image.pixel_scale_arcsec if isinstance(image, ImageData) else None
        if scale:
            return config.crop_arcsec / scale
        logger.warning(
            "%s: crop_arcsec=%s needs a valid WCS, which this image lacks; using crop=%s of the side instead",
            getattr(image, "path", "image"), config.crop_arcsec, config.crop,
        )
    return config.crop * min_side


# --------------------------------------------------------------------------------------------
# stretch and resize


def stretch_image(
    data: np.ndarray, kind: Stretch = "asinh", percentiles: tuple[float, float] = (0.5, 99.5)
) -> np.ndarray:
    """Map pixel values to [0, 1]: percentile interval, then the stretch; NaN become 0.

    The interval is computed over all finite pixels (all channels together, so colours keep
    their balance; a strided sample of at most about 65,000 pixels on big crops).

    Parameters
    ----------
    data : numpy.ndarray
        Any shape.
    kind : {"asinh", "log", "sqrt", "linear"}
    percentiles : (float, float)
        Percentiles mapped to 0 and 1.

    Returns
    -------
    numpy.ndarray
        float32, same shape, in [0, 1]; all zeros when the image is constant or empty.
    """
    if kind not in STRETCHES:
        raise ConfigError(
            f"kind must be one of {', '.join(map(repr, STRETCHES))}; got {kind!r}. Use 'asinh'."
        )
    low_high = _as_percentiles(percentiles)
    if low_high is None:
        raise ConfigError(
            f"percentiles must be two numbers with 0 <= low < high <= 100; got {percentiles!r}. "
            "Use e.g. (0.5, 99.5)."
        )
    data = np.asarray(data, dtype=np.float32)
    flat = data.ravel()
    sample = flat[:: max(1, flat.size // 65536)]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return np.zeros(data.shape, dtype=np.float32)
    low, high = np.percentile(sample, low_high)
    if not high > low:
        return np.zeros(data.shape, dtype=np.float32)
    stretch = {"asinh": AsinhStretch, "log": LogStretch, "sqrt": SqrtStretch, "linear": LinearStretch}[kind]()
    with np.errstate(invalid="ignore"):
        scaled = ManualInterval(float(low), float(high))(data, clip=True)
        out = stretch(scaled, clip=True)
    out = np.nan_to_num(out.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=0.0)
    # float32 rounding of the stretch differs between CPUs (numpy picks its vector path by CPU):
    # the top can come out at 1 - 6e-8 on one and a hair above 1 on another. The range is a promise.
    return np.clip(out, 0.0, 1.0, out=out)


@functools.lru_cache(maxsize=128)
def _resample_matrix(n_in: int, n_out: int) -> sparse.csr_array:
    """Rows of weights mapping ``n_in`` samples to ``n_out`` (separable resampling).

    Downsampling by ``f = n_in / n_out`` uses Gaussian weights of sigma ``f / 2`` input pixels,
    which attenuates everything above the output's Nyquist frequency (a checkerboard by more than
    15x even at f = 1.5, where plain area averaging leaves a third of it). Upsampling is linear
    interpolation. Rows are normalised, so outputs are convex combinations: [0, 1] stays [0, 1].
    """
    factor = n_in / n_out
    centres = (np.arange(n_out) + 0.5) * factor - 0.5
    positions = np.arange(n_in, dtype=float)
    if factor > 1:
        sigma = 0.5 * factor
        distance = (positions[None, :] - centres[:, None]) / sigma
        weights = np.exp(-0.5 * distance**2)
        weights[np.abs(distance) > 3.5] = 0.0
    else:
        centres = np.clip(centres, 0, n_in - 1)
        weights = np.clip(1.0 - np.abs(positions[None, :] - centres[:, None]), 0.0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    # Sparse, because each output pixel reads only a few inputs, and because a dense float32
    # matmul goes to a multithreaded BLAS that, for matrices this small, spends milliseconds
    # waking threads on a busy machine (measured: 4 ms instead of 0.04 ms for 128 -> 64).
    return sparse.csr_array(weights.astype(np.float32))


def resize(data: np.ndarray, size: int) -> np.ndarray:
    """Resample a ``(H, W)`` or ``(H, W, C)`` image to exactly ``(size, size[, C])``, anti-aliased.

    NaN pixels are left out of the weighted means (an output pixel with no finite input is NaN).
    See :func:`_resample_matrix` for the kernel.
    """
    if not is_integer(size) or size < 1:
        raise ConfigError(
            f"size must be a positive integer; got {size!r}. Use the output side in pixels, e.g. 64."
        )
    data = np.asarray(data, dtype=np.float32)
    if data.ndim not in (2, 3) or min(data.shape[:2]) < 1:
        raise ConfigError(f"data must be a non-empty (H, W) or (H, W, C) array; got shape {data.shape}.")
    height, width = data.shape[:2]
    if height == size and width == size:
        return data.copy()
    rows = _resample_matrix(height, size)
    cols = _resample_matrix(width, size)

    def apply(plane: np.ndarray) -> np.ndarray:
        return rows @ (cols @ plane.T).T

    missing = ~np.isfinite(data)
    channels = [data] if data.ndim == 2 else [data[..., k] for k in range(data.shape[2])]
    out = []
    for k, plane in enumerate(channels):
        if missing.any():
            mask = ~(missing if data.ndim == 2 else missing[..., k])
            numerator = apply(np.where(mask, plane, 0.0).astype(np.float32))
            denominator = apply(mask.astype(np.float32))
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(np.where(denominator > 1e-3, numerator / denominator, np.nan))
        else:
            out.append(apply(plane))
    result = out[0] if data.ndim == 2 else np.stack(out, axis=-1)
    return result.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# the pipeline


def preprocess(
    image: ImageData,
    config: PreprocessConfig | None = None,
    *,
    ra: float | None = None,
    dec: float | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Turn an image into a network input.

    Parameters
    ----------
    image : ImageData
        As returned by :func:`core.images.read_image`.
    config : PreprocessConfig, optional
        Defaults to ``PreprocessConfig()``.
    ra, dec : float, optional
        Catalogue position in degrees, for ``centre="auto"``/``"wcs"``.
    metrics : mapping, optional
        :func:`core.prepare.quality.measure_quality`'s result for this image and position (a dict or a table row):
        its sky and its ``"auto"`` centre are reused instead of measured again, which halves the
        cost. (Colour images still measure the sky of each channel.)

    Returns
    -------
    numpy.ndarray
        float32 ``(size, size, channels)``, finite, in [0, 1].

    Examples
    --------
    >>> x = preprocess(read_image("ngc1.fits"), PreprocessConfig(size=32))  # doctest: +SKIP
    >>> x.shape, x.dtype
    ((32, 32, 1), dtype('float32'))
    """
    return _run(image, config or PreprocessConfig(), ra, dec, metrics, keep_steps=False)["final"]


def preprocess_steps(
    image: ImageData,
    config: PreprocessConfig | None = None,
    *,
    ra: float | None = None,
    dec: float | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """The intermediate images of :func:`preprocess`, for a step-by-step view.

    Returns
    -------
    dict
        ``"raw"`` (the image as read), ``"background_subtracted"``, ``"cropped"`` (may contain NaN
        where the crop leaves the image), ``"stretched"`` (in [0, 1]) and ``"final"`` (exactly what
        :func:`preprocess` returns), in that order. 2-D arrays except ``"final"`` and colour data.
        Parameters are those of :func:`preprocess`.
    """
    return _run(image, config or PreprocessConfig(), ra, dec, metrics, keep_steps=True)


def _run(
    image: ImageData,
    config: PreprocessConfig,
    ra: float | None,
    dec: float | None,
    metrics: Mapping[str, Any] | None,
    *,
    keep_steps: bool,
) -> dict[str, np.ndarray]:
    if not isinstance(config, PreprocessConfig):
        raise ConfigError(
            f"config must be a PreprocessConfig; got {type(config).__name__}. "
            "Build one with PreprocessConfig(...)."
        )
    image = as_image(image)
    data = working_data(image, colour=config.channels == 3)
    lum = data if data.ndim == 2 else luminance(data)
    known = _known_background(metrics)
    background = known if known is not None else fit_background(lum)
    steps: dict[str, np.ndarray] = {}
    if keep_steps:
        steps["raw"] = image.data
    if config.centre == "none":
        centre = ((lum.shape[1] - 1) / 2, (lum.shape[0] - 1) / 2)
    elif known is not None and config.centre == "auto":
        centre = (float(metrics["centre_x"]), float(metrics["centre_y"]))  # type: ignore[index]
    else:
        sub = sky_subtracted(lum, background)
        centre = locate_centre(sub, image.wcs, ra, dec, config.centre, background.noise)
    if not config.subtract_background:
        planes = []
    elif data.ndim == 2:
        planes = [background.plane]
    else:  # each colour has its own sky; one plane for all would tint the stretched image
        planes = [fit_background(data[..., k]).plane for k in range(data.shape[2])]
    if keep_steps:
        steps["background_subtracted"] = _minus_sky(data, planes, (0, 0))
    cropped, origin = _cutout(data, centre, _crop_side(image, config))
    cropped = _minus_sky(cropped, planes, origin)
    stretched = stretch_image(cropped, config.stretch, config.percentiles)
    final = np.clip(resize(stretched, config.size), 0.0, 1.0)
    if final.ndim == 2:
        final = final[..., None]
    if config.channels == 3 and final.shape[-1] == 1:
        final = np.repeat(final, 3, axis=-1)
    final = np.ascontiguousarray(final, dtype=np.float32)
    if keep_steps:
        steps["cropped"] = cropped
        steps["stretched"] = stretched
    steps["final"] = final
    return steps


def _minus_sky(
    data: np.ndarray, planes: list[tuple[float, float, float]], origin: tuple[int, int]
) -> np.ndarray:
    """``data`` (whose pixel (0, 0) is ``origin`` in the image) minus one sky plane per channel."""
    if not planes:
        return data
    if data.ndim == 2:
        return data - plane_values(planes[0], float(origin[0]), float(origin[1]), data.shape)
    skies = [plane_values(plane, float(origin[0]), float(origin[1]), data.shape[:2]) for plane in planes]
    return data - np.stack(skies, axis=-1)


def _known_background(metrics: Mapping[str, Any] | None) -> Background | None:
    """The sky stored by :func:`core.prepare.quality.measure_quality`, when ``metrics`` has it."""
    if metrics is None:
        return None
    try:
        values = [float(metrics[key]) for key in _REUSED_METRICS]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"metrics must be measure_quality()'s result for this image; it lacks a usable {exc}. "
            "Pass metrics=None to measure again."
        ) from None
    if not all(math.isfinite(v) for v in values):
        return None
    level, noise, flatness, a, b, c, _, _ = values
    return Background(level, noise, (a, b, c), flatness)


_REUSED_METRICS = (
    "background_level", "background_noise", "background_flatness",
    "background_plane_a", "background_plane_b", "background_plane_c", "centre_x", "centre_y",
)


