"""Source kinds: one entry per kind of source folder, and everything that follows from the kind.

A source is a folder with a catalogue (:mod:`core.acquire.catalogue`); its *kind* says what made
it: the built-in sample, the shipped Galaxy Zoo cutouts, a NED scrape, a user's import. The builder,
the dashboard's selectors and its Data page read what a kind means from its :class:`SourceKind`
here, never from a folder's name:

- how a folder is recognised (its marker file, or where it sits, or its labels);
- where the dashboard looks for such folders under the data folder;
- its label, its default class scheme, whether its cutouts are centred on the galaxy already;
- the preprocessing a build gives it for every option the user leaves out (colour, crop, stretch);
- the credit to show under its images.

Adding a source kind is one module that writes such folders and one :func:`register_source_kind`
call with its entry. Cheap to import: no image or table library.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from core.errors import ConfigError
from core.paths import DataLayout

GZ1_LABELS = frozenset({"E", "EdgeOn", "Spiral"})
"""Galaxy Zoo 1's three classes, as the shipped sample's catalogue writes them."""
GZ1_MARKER = "GZ1.json"
"""The file that marks a folder as the shipped SDSS / Galaxy Zoo 1 source, wherever it sits and whatever
its name (a copy keeps it; a folder merely named ``gz1`` is not one)."""

COLOUR_CUTOUT_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {"channels": 3, "crop": 0.3, "stretch": "linear", "centre": "none"})
"""Preprocessing of a source of colour cutouts (JPEG/PNG, like Galaxy Zoo's SDSS gri images) when the
user leaves an option out. From the validation study ``benchmarks/study_gz1.py`` (docs/DATA.md, section
"The shipped real sample"): colour separates ellipticals from spirals (grey loses ~5 points);
the galaxy fills only the central 10–20 % of such a frame, so a 0.3 crop; the JPEG is already
stretched, so a linear map of its percentiles; survey cutout services centre on the object."""

GZ1_CREDIT = (
    "Images: Sloan Digital Sky Survey (SDSS DR7); labels: Galaxy Zoo 1 (Lintott et al. 2008, "
    "MNRAS 389, 1179; Lintott et al. 2011, MNRAS 410, 166). Funding for the SDSS and SDSS-II has "
    "been provided by the Alfred P. Sloan Foundation, the Participating Institutions, the NSF, "
    "the U.S. DOE, NASA, the Japanese Monbukagakusho, the Max Planck Society and HEFCE."
)


def _no_folders(layout: DataLayout) -> list[Path]:
    return []


@dataclasses.dataclass(frozen=True)
class SourceKind:
    """What one kind of source folder is, and the defaults a build gives it.

    Attributes
    ----------
    name : str
        The kind, as :attr:`core.acquire.catalogue.Source.kind` and a dataset's manifest name it.
    label : str
        How the dashboard names it (``"NED cache"``).
    marker : str
        How a folder of this kind is recognised, in words (for the docs and error messages).
    has_marker : callable, optional
        ``has_marker(root) -> bool``: a file the tool writes, or a place it writes to. Checked for
        every kind, in registration order, before any :attr:`looks_like`.
    looks_like : callable, optional
        ``looks_like(root, labels) -> bool``: a weaker rule from the folder's content, with
        ``labels`` the catalogue's distinct classifications (empty when not read).
    folders : callable
        ``folders(layout) -> [Path]``: where the dashboard looks for sources of this kind under a
        data folder (:class:`core.paths.DataLayout`); a folder that does not hold a catalogue is skipped.
    default_scheme : str
        The class scheme a build uses when none is given.
    centred : bool
        Whether its cutouts are centred on the galaxy already: ``centre="auto"`` is then the image
        centre, since peak-centring lands on a bright star in about 5 of the 600 Galaxy Zoo JPEGs.
    grey_preprocess, colour_preprocess : mapping
        :class:`~core.prepare.preprocessing.PreprocessConfig` fields a build gives a source of this
        kind whose images are mostly FITS (single band, linear), or mostly colour cutouts (JPEG/PNG);
        empty means the config's own defaults.
    credit : str
        Acknowledgement to show under its images (``""``: none).
    """

    name: str
    label: str
    marker: str
    has_marker: Callable[[Path], bool] | None = None
    looks_like: Callable[[Path, frozenset[str]], bool] | None = None
    folders: Callable[[DataLayout], list[Path]] = _no_folders
    default_scheme: str = "hubble3"
    centred: bool = False
    grey_preprocess: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    colour_preprocess: Mapping[str, Any] = dataclasses.field(default_factory=lambda: COLOUR_CUTOUT_DEFAULTS)
    credit: str = ""


SOURCE_KINDS: dict[str, SourceKind] = {}
"""The registered kinds by name, in the order the dashboard lists their folders (:func:`register_source_kind`)."""

FOLDER = SourceKind(
    name="folder", label="catalogue folder",
    marker="any other folder with a catalog.csv (or labels.csv)",
)
"""The kind of a source no registered kind recognises."""


def register_source_kind(kind: SourceKind) -> SourceKind:
    """Add ``kind`` to :data:`SOURCE_KINDS` (after those registered before it); return it.

    Raises
    ------
    ConfigError
        If its name is taken or it has no rule to recognise a folder.
    """
    if kind.name in SOURCE_KINDS or kind.name == FOLDER.name:
        raise ConfigError(f"source kind {kind.name!r} is registered already; got a second one. Choose another name.")
    if kind.has_marker is None and kind.looks_like is None:
        raise ConfigError(f"source kind {kind.name!r} has neither has_marker nor looks_like; got neither. "
                          "Give a rule that recognises its folders.")
    SOURCE_KINDS[kind.name] = kind
    return kind


def get_source_kind(name: str) -> SourceKind:
    """The entry of kind ``name``; :data:`FOLDER` for a kind no longer (or never) registered, so a
    manifest written by another version still reads."""
    return SOURCE_KINDS.get(name, FOLDER)


def detect_kind(root: Path, *, labels: frozenset[str] = frozenset()) -> SourceKind:
    """The kind of the source folder ``root``: the first whose marker it has, else the first it looks
    like (``labels``: its catalogue's distinct classifications, where read), else :data:`FOLDER`."""
    for kind in SOURCE_KINDS.values():
        if kind.has_marker is not None and kind.has_marker(root):
            return kind
    for kind in SOURCE_KINDS.values():
        if kind.looks_like is not None and kind.looks_like(root, labels):
            return kind
    return FOLDER


def candidate_folders(layout: DataLayout) -> list[Path]:
    """Every folder the registered kinds would have sources in, in registration order, each once."""
    return list(dict.fromkeys(folder for kind in SOURCE_KINDS.values() for folder in kind.folders(layout)))


def _imported_folders(layout: DataLayout) -> list[Path]:
    return sorted(p for p in layout.imported.iterdir() if p.is_dir()) if layout.imported.is_dir() else []


# "EdgeOn" is no NED type: with it, a table of only Galaxy Zoo labels is a Galaxy Zoo source.
register_source_kind(SourceKind(
    name="sample", label="built-in synthetic sample", marker="SAMPLE.json (written by `python -m core sample`)",
    has_marker=lambda root: (root / "SAMPLE.json").is_file(), folders=lambda layout: [layout.sample],
))
register_source_kind(SourceKind(
    name="gz1", label="built-in SDSS / Galaxy Zoo 1 sample",
    marker=f"{GZ1_MARKER} (shipped in data/gz1), or a catalogue of only E / EdgeOn / Spiral labels with EdgeOn "
           "among them",
    has_marker=lambda root: (root / GZ1_MARKER).is_file(),
    looks_like=lambda root, labels: "EdgeOn" in labels and labels <= GZ1_LABELS,
    folders=lambda layout: [layout.gz1], default_scheme="gz1", centred=True, credit=GZ1_CREDIT,
))
register_source_kind(SourceKind(
    name="ned", label="NED cache", marker="images/manifest.csv (written by `python -m core fetch`)",
    has_marker=lambda root: (root / "images" / "manifest.csv").is_file(), folders=lambda layout: [layout.ned],
))
register_source_kind(SourceKind(
    name="imported", label="imported folder", marker="import_report.json (written by `python -m core import`)",
    has_marker=lambda root: (root / "import_report.json").is_file(), folders=_imported_folders,
))
