"""The project's exceptions.

Every error a user can cause derives from :class:`GalaxyMorphError`; its message names the item
(file, URL, object, parameter) and says what to do. The CLI prints it as one line, no traceback.
"""

from __future__ import annotations

import re


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


#: How much of a name (galaxy, class, model, file) a message quotes.
NAME_LIMIT = 200
#: Longest message line a command prints: a catalogue of 50 MB names must not become 100 MB of stderr.
MESSAGE_LIMIT = 2_000


def shorten(text: object, *, limit: int = NAME_LIMIT) -> str:
    """``text`` as a string, cut to its first ``limit`` characters with how much was cut.

    >>> shorten("N" * 250, limit=3)
    'NNN… (247 more characters)'
    """
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def shorten_message(message: object) -> str:
    """A message line with every run of more than :data:`NAME_LIMIT` characters without spaces (a
    name quoted whole) shortened by :func:`shorten`, then the line itself cut at :data:`MESSAGE_LIMIT`."""
    text = str(message)
    if len(text) <= NAME_LIMIT:
        return text
    text = _LONG_RUN.sub(lambda match: shorten(match.group(0)), text)
    return shorten(text, limit=MESSAGE_LIMIT)


_LONG_RUN = re.compile(rf"[^\s'\",()\[\]{{}}]{{{NAME_LIMIT + 1},}}")


def one_line(text: str, width: int = 200) -> str:
    """One line of at most ``width`` characters of a library's message (it may quote file content)."""
    line = " ".join(text.split())
    return line if len(line) <= width else f"{line[:width]}… ({len(line) - width} more characters)"
