"""The project's exceptions.

Every error a user can cause derives from :class:`GalaxyMorphError`; its message names the item
(file, URL, object, parameter) and says what to do. The CLI prints it as one line, no traceback.
"""

from __future__ import annotations


class GalaxyMorphError(Exception):
    """Base class for errors caused by input, data or the network rather than by a bug."""


class ConfigError(GalaxyMorphError, ValueError):
    """A setting or parameter has a value that cannot be used."""


class ImageReadError(GalaxyMorphError):
    """An image file could not be read as a 2-D image."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ParseError(GalaxyMorphError):
    """A remote page or a catalogue file does not have the layout the parser expects."""


class FetchError(GalaxyMorphError):
    """A request failed after its retries (timeout, HTTP error, invalid payload)."""
