"""Images for the screen: raw and preprocessed thumbnails, uploads, NED look-ups, a preprocessing's steps."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core import images
from core.errors import GalaxyMorphError
from core.images import UPLOAD_LIMIT_BYTES, read_image
from core.prepare import preprocessing, provenance

THUMBNAIL_SIDE = 256
"""Largest side of a raw image in the preview grid (its pictures are shown 150 px wide)."""
STRETCHED_STEPS = ("stretched", "final")
"""Steps whose pixels are already in [0, 1]: shown as they are, since that is what the model sees."""


def for_display(array: np.ndarray) -> np.ndarray:
    """An array in [0, 1] for ``st.image``: FITS rows run bottom-up, so flip; drop a single channel axis."""
    array = np.nan_to_num(np.asarray(array, dtype=np.float32), nan=0.0)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return np.clip(array[::-1], 0.0, 1.0)


def display_stretch(image: Any) -> str:
    """How a raw image is stretched for the screen: a JPEG or PNG is display-ready already (an asinh
    stretch on top amplified its noise), so only a linear one between its percentiles; FITS gets asinh."""
    return "linear" if getattr(image, "format", "fits") in ("jpeg", "png") else "asinh"


@st.cache_data(max_entries=512, show_spinner=False)
def display_image(path: str) -> np.ndarray:
    """An image scaled to [0, 1] for display (north up), in colour where the file has colour."""
    image = read_image(path, rgb=True)
    return for_display(preprocessing.stretch_image(image.data, display_stretch(image)))


def png_bytes(array: np.ndarray, *, max_side: int | None = None) -> bytes:
    """An 8-bit PNG of a display array in [0, 1] (grey or RGB), shrunk to ``max_side`` if it is larger."""
    from PIL import Image

    picture = Image.fromarray(np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8))
    if max_side is not None and max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


@st.cache_data(max_entries=512, show_spinner=False)
def before_after(
    path: str, config: preprocessing.PreprocessConfig, *, ra: float | None = None, dec: float | None = None
) -> tuple[bytes, bytes]:
    """PNGs of the raw image (display stretch, at most :data:`THUMBNAIL_SIDE` px) and the preprocessed one.

    ``config`` is the build's (:attr:`core.prepare.selection.Selection.preprocess`, its centre resolved for the
    source kind) and ``ra``/``dec`` the catalogue position, so the crop is the one the build makes.
    Encoded once here: every slider step redraws 24 of these, and ``st.image`` of an array re-encodes
    it each time (half the server time of a step), of PNG bytes it only reads the header.
    """
    image = read_image(path, rgb=config.channels == 3)  # as the build reads it: colour for a colour dataset
    processed = preprocessing.preprocess(image, config, ra=ra, dec=dec)
    raw = for_display(preprocessing.stretch_image(image.data, display_stretch(image)))
    return png_bytes(raw, max_side=THUMBNAIL_SIDE), png_bytes(for_display(processed))


def preview_pair(row: pd.Series, config: preprocessing.PreprocessConfig) -> tuple[bytes, bytes]:
    """:func:`before_after` of one row of a selection table, at its catalogue position where it has one."""
    position = {axis: float(row[axis]) if pd.notna(row.get(axis)) else None for axis in ("ra", "dec")}
    return before_after(str(row["path"]), config, **position)


def read_upload(name: str, payload: bytes, *, max_bytes: int = UPLOAD_LIMIT_BYTES, channels: int = 1) -> Any:
    """Read an uploaded file as an image (:func:`core.images.read_upload`); any name is safe. In colour
    when the model's inputs have 3 channels (a colour JPEG read grey would reach a colour model as grey)."""
    return images.read_upload(name, payload, max_bytes=max_bytes, rgb=channels == 3)


def read_path(path: str, *, channels: int = 1) -> Any:
    """Read an image of the current source, in colour when the model's inputs have 3 channels (as
    the builder reads it)."""
    return read_image(path, rgb=channels == 3)


def fetch_ned_image(name: str) -> Any:
    """Fetch one image of ``name`` from NED (through ``core.acquire.fetch``) into a temporary folder and read it."""
    from core.acquire.fetch import fetch_images  # noqa: PLC0415 - the network path is only needed here

    with tempfile.TemporaryDirectory() as tmp:
        fetch_images(pd.DataFrame({"name": [name]}), out=tmp)
        files = [p for p in Path(tmp).rglob("*") if p.is_file() and p.name.endswith((".fits", ".fits.gz", ".fit"))]
        if not files:
            raise GalaxyMorphError(f"NED has no downloadable FITS image of {name!r} (or NED is unreachable). "
                                   "Upload an image instead.")
        return read_image(files[0])


def steps_for(image: Any, config: preprocessing.PreprocessConfig, *, ra: float | None = None,
              dec: float | None = None) -> dict[str, np.ndarray]:
    """The preprocessing steps of one image (raw, background-subtracted, cropped, stretched, final), centred
    on the catalogue position ``ra``/``dec`` when given, as the builder did."""
    return provenance.input_steps(image, config, ra=ra, dec=dec)


def step_for_display(step: str, array: np.ndarray, *, stretch: str = "asinh") -> tuple[np.ndarray, str]:
    """A preprocessing step's image for the screen, and a caption saying how it is shown.

    Raw, background-subtracted and cropped pixels are in the image's own units (counts, or 0-255),
    which ``st.image`` would clip to [0, 1]: they get a display-only ``stretch`` (:func:`display_stretch`)
    between their 0.5 and 99.5 percentiles. The final image is shown with its pixels enlarged as
    blocks, so it does not look like the stretched one drawn at the same width: it has far fewer.
    """
    name = step.replace("_", " ")
    side = f"{array.shape[1]} × {array.shape[0]} px"
    if step == "final":
        factor = max(1, 256 // max(array.shape[:2]))
        blocks = np.repeat(np.repeat(for_display(array), factor, axis=0), factor, axis=1)
        return blocks, f"final, {side}: what the model sees"
    if step in STRETCHED_STEPS:
        return for_display(array), f"{name}, {side}"
    return for_display(preprocessing.stretch_image(array, stretch)), f"{name}, {side} (display: {stretch})"
