"""What the Data page's commands get: :class:`ScrapeSpec` (NED's classification search),
:class:`FetchSpec` (the images of a scraped catalogue) and :class:`ImportSpec` (a user's catalogue
and image folder).

Each field is written once with its help in :func:`core.fields.option` metadata; the flags, command
line and spec file come from the fields (:mod:`core.fields`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, ClassVar

from core.errors import ConfigError
from core.fields import option, plain_fields, spec_argv, spec_from_args


#: What `scrape` searches when ``--classes`` is left out.
DEFAULT_NED_CLASSES: tuple[str, ...] = ("E", "S0", "S0/a", "SA", "SAB", "SB")


class _FieldsSpec:
    """What each spec of this stage does with its fields: a plain dict, a command line, and back."""

    def to_dict(self) -> dict[str, Any]:
        return plain_fields(self)

    def to_argv(self) -> list[str]:
        return spec_argv(self)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Any:
        """The spec of parsed arguments (or of their ``--spec FILE``)."""
        return spec_from_args(cls, args)


@dataclass(frozen=True)
class ScrapeSpec(_FieldsSpec):
    """``python -m core scrape``: NED's classification search for ``classes`` into ``out``."""

    kind: ClassVar[str] = "scrape"

    classes: tuple[str, ...] = field(default=DEFAULT_NED_CLASSES, metadata=option(
        "class terms: E S0 S0/a S Irr, bar families A AB B, spirals S[A|AB|B][a..d]",
            label="Classes to search"))
    out: str | None = field(default=None, metadata=option("output folder", default_help="<data_dir>/ned"))
    max_pages: int = field(default=0, metadata=option("stop each class after this many pages (0: all)",
        label="Max pages per class (0 = all)"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if self.out is not None:
            object.__setattr__(self, "out", str(self.out))
        if not self.classes:
            raise ConfigError("classes must name at least one NED class; got none. Use e.g. ('E', 'S0').")
        if isinstance(self.max_pages, bool) or not isinstance(self.max_pages, int) or self.max_pages < 0:
            raise ConfigError(f"max_pages must be an integer >= 0 (0: all); got {self.max_pages!r}.")


@dataclass(frozen=True)
class FetchSpec(_FieldsSpec):
    """``python -m core fetch``: the images of a scraped catalogue into ``out``."""

    kind: ClassVar[str] = "fetch"

    catalog: str | None = field(default=None, metadata=option(
        "catalogue CSV with a name column", default_help="<data_dir>/ned/catalog.csv"))
    out: str | None = field(default=None, metadata=option("image folder", default_help="<data_dir>/ned/images"))
    retry_failed: bool = field(default=False, metadata=option("process only objects that failed before"))

    def __post_init__(self) -> None:
        for name in ("catalog", "out"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, str(getattr(self, name)))


@dataclass(frozen=True)
class ImportSpec(_FieldsSpec):
    """``python -m core import``: a user's catalogue CSV and image folder as a source."""

    kind: ClassVar[str] = "import"

    catalog: str = field(metadata=option("catalogue CSV", label="Catalogue CSV (path on this machine)"))
    images: str = field(metadata=option(
        "folder of images (searched recursively), or a fetch output folder (matched through its manifest)",
            label="Image folder"))
    name: str | None = field(default=None, metadata=option("source name", default_help="the CSV's file name",
        label="Source name"))

    def __post_init__(self) -> None:
        for name in ("catalog", "images"):
            object.__setattr__(self, name, str(getattr(self, name)))
