"""Image inventory and download for NED objects (``python -m core fetch``).

For each object of a scraped catalogue, astroquery's ``Ned.get_image_list`` lists NED's images.
astroquery builds that listing URL from ``Ned.IMG_DATA_URL``, frozen at import from its own
configuration, and prefixes the fixed origin ``https://ned.ipac.caltech.edu`` to every link: here
a :class:`NedClass` subclass sends the listing request to the configured server, through this
package's polite client (shared limiter, retries, page cache; astroquery's own disk cache is never
used, so reruns against different servers cannot mix), and the links are mapped onto the
configured image origin.

Every link is parsed into survey / band / reference and stored (``inventory.csv``); one image per
object is chosen by an ordered preference rule (``"DSS2 red"``, ``"SDSS r"``, ...), downloaded with
streaming into a temporary file, checked (gzip integrity, FITS validity) and renamed into place.
Each finished object appends one line to ``manifest.jsonl``, so a killed run resumes where it
stopped; ``manifest.csv`` is rewritten from it at the end.

The manifest also records each object's position (``ra``, ``dec``, ``position_from``) without an
extra request: NED's listing carries it in its Aladin links, and where it does not, the FITS
file's ``OBJCTRA``/``OBJCTDEC`` or its WCS at the image centre (NED's cutouts are centred on the
object) give it. The scraper's catalogue has no positions, and without them one galaxy listed
under two names cannot be recognised (:func:`core.acquire.catalogue.find_duplicates`).
"""

from __future__ import annotations

import fcntl
import functools
import gzip
import hashlib
import logging
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, unquote_plus, urljoin, urlsplit

import pandas as pd
import requests
from astroquery.ipac.ned import NedClass

from core.config import Settings, get_settings
from core.errors import ConfigError, FetchError, GalaxyMorphError, ImageReadError, ParseError
from core.acquire.http import PoliteClient
from core.images import header_position, inflate_limit, read_image
from core.io import append_jsonl, atomic_path, read_jsonl
from core.paths import data_layout
from core.progress import Progress

logger = logging.getLogger(__name__)

#: The origin astroquery prefixes to every image link, whatever server it asked.
ASTROQUERY_ORIGIN = "https://ned.ipac.caltech.edu"
DEFAULT_PREFER = ("DSS2 red", "DSS2", "DSS1", "SDSS r", "SDSS", "2MASS K")
MANIFEST_COLUMNS = ["name", "status", "file", "survey", "band", "refcode", "url", "reason", "ra", "dec", "position_from"]
INVENTORY_COLUMNS = ["name", "survey", "band", "colour", "refcode", "file_name", "url"]
STATUSES = ("ok", "failed", "no_image")
IMAGE_SUFFIX = ".fits.gz"

# Photographic emulsions / filters of the Digitized Sky Surveys and their colour names, so a rule
# can say "DSS2 red" instead of "DSS2 IIIaF".
_DSS_COLOURS = {
    "103ae": "red",
    "iiiaf": "red",
    "rg610": "red",
    "f": "red",
    "r": "red",
    "103ao": "blue",
    "iiiaj": "blue",
    "gg395": "blue",
    "j": "blue",
    "b": "blue",
    "iv-n": "ir",
    "ivn": "ir",
    "rg9": "ir",
    "n": "ir",
}
_SURVEY_REFCODES = [
    (re.compile(r"^dss(\d)", re.IGNORECASE), "DSS{0}"),
    (re.compile(r"^2mass", re.IGNORECASE), "2MASS"),
    (re.compile(r"^sdss", re.IGNORECASE), "SDSS"),
    (re.compile(r"^galex", re.IGNORECASE), "GALEX"),
    (re.compile(r"^wise", re.IGNORECASE), "WISE"),
]
_GZIP_MAGIC = b"\x1f\x8b"
# NED's Aladin links end their script with the object's J2000 position: "...) HH MM SS.ss +DD MM SS.s;sync;..."
_ALADIN_POSITION = re.compile(
    r"nph-aladin\?script=[^\"'>]*?\)\s+(\d{1,2})\s+(\d{1,2})\s+(\d{1,2}(?:\.\d*)?)"
    r"\s+([+-])(\d{1,2})\s+(\d{1,2})\s+(\d{1,2}(?:\.\d*)?)\s*;"
)


@dataclass(frozen=True)
class ImageLink:
    """One image NED lists for an object, parsed from its file name ``NAME:I:BAND:REFCODE.fits.gz``.

    Attributes
    ----------
    name : str
        The catalogue object it was listed for.
    url : str
        Download URL on the configured image origin.
    file_name : str
        The link's last path segment, URL-decoded.
    band : str
        Band or emulsion as NED writes it (``103aE``, ``IIIaF``, ``r``, ``0.1-2.4keV``).
    refcode : str
        NED's short reference code (``dss1``, ``cop1995``).
    survey : str
        ``DSS1``, ``DSS2``, ``2MASS``, ``SDSS``... when the refcode names one, else the telescope
        NED's listing gives for the image (``ROSAT_PSPC``, spaces as ``_``), else the refcode.
    colour : str
        ``red``/``blue``/``ir`` for the DSS emulsions, else the band in lower case.
    """

    name: str
    url: str
    file_name: str
    band: str
    refcode: str
    survey: str
    colour: str


def parse_image_link(url: str, *, name: str, telescope: str = "") -> ImageLink:
    """Parse one image link of ``name``'s listing; ``telescope`` is the listing's Telescope cell for it.

    A refcode such as ``cop1995`` names a paper, not a survey: without a known survey in the
    refcode, the survey is the telescope (``ROSAT_PSPC``), so ``--prefer`` rules and the
    dashboard's survey filter see the instrument.

    Raises
    ------
    ParseError
        If the file name is not ``OBJECT:I:BAND:REFCODE.fits.gz``.
    """
    file_name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    stem = file_name[: -len(IMAGE_SUFFIX)] if file_name.lower().endswith(IMAGE_SUFFIX) else ""
    parts = stem.split(":")
    if len(parts) != 4 or parts[1] != "I" or not parts[2] or not parts[3]:
        raise ParseError(
            f"image link {url!r} of {name!r}: file name {file_name!r} is not "
            "'OBJECT:I:BAND:REFCODE.fits.gz'; NED's link format may have changed."
        )
    _, _, band, refcode = parts
    survey = "_".join(telescope.split()) or refcode
    for pattern, label in _SURVEY_REFCODES:
        match = pattern.match(refcode)
        if match:
            survey = label.format(*match.groups())
            break
    colour = _DSS_COLOURS.get(band.lower(), band.lower()) if survey.startswith("DSS") else band.lower()
    return ImageLink(name=name, url=url, file_name=file_name, band=band, refcode=refcode, survey=survey, colour=colour)


def parse_preference(rule: str) -> tuple[str, str | None]:
    """``"DSS2 red"`` -> ``("dss2", "red")``; ``"SDSS"`` -> ``("sdss", None)``.

    Raises
    ------
    ConfigError
        If the rule is empty or has more than a survey and a band.
    """
    words = rule.split()
    if not 1 <= len(words) <= 2:
        raise ConfigError(
            f"prefer rule must be 'SURVEY' or 'SURVEY BAND'; got {rule!r}. Use e.g. 'DSS2 red' or 'SDSS r'."
        )
    return words[0].lower(), (words[1].lower() if len(words) == 2 else None)


def select_image(links: Sequence[ImageLink], prefer: Sequence[str]) -> ImageLink | None:
    """The first link matching the earliest rule of ``prefer``, or ``None`` when none matches.

    A rule matches a link when its survey equals the link's (or its refcode) and, if the rule has
    a band, the band equals the link's band or colour (all case-insensitive). Ties keep NED's order.
    """
    rules = [parse_preference(rule) for rule in prefer]
    for survey, band in rules:
        for link in links:
            if survey not in {link.survey.lower(), link.refcode.lower()}:
                continue
            if band is None or band in {link.band.lower(), link.colour}:
                return link
    return None


def safe_stem(name: str) -> str:
    """A file-name stem for any NED name: letters, digits, ``+``, ``-``, ``_`` and a hash of the name.

    The hash keeps names that differ only in punctuation (``[ABC2001] 12``, ``ABC2001 12``) apart;
    no stem contains a path separator, a dot or a colon, so nothing lands outside its folder.
    """
    readable = re.sub(r"[^A-Za-z0-9+-]+", "_", name).strip("_-+")[:80] or "object"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{readable}-{digest}"


def image_path(images_dir: str | Path, name: str) -> Path:
    """Where ``name``'s image goes, checked to be directly inside ``images_dir``."""
    folder = Path(images_dir).resolve()
    path = (folder / (safe_stem(name) + IMAGE_SUFFIX)).resolve()
    if path.parent != folder:
        raise FetchError(f"object {name!r}: file name would leave {folder}; refusing to write it.")
    return path


def validate_fits_gz(path: str | Path, *, max_pixels: int | None = None) -> None:
    """Check a downloaded file: gzip magic, a readable FITS image, then a complete gzip stream.

    The image is checked from its header first (:func:`core.images.read_image` with
    ``max_pixels``, default the ``max_image_pixels`` setting), and the stream is inflated in chunks
    only up to :func:`core.images.inflate_limit` bytes, so a decompression bomb is refused without
    being inflated whole.

    Raises
    ------
    FetchError
        Naming the problem (not gzip, truncated gzip, corrupt gzip, too large, not FITS); the
        reason never quotes the file's content.
    """
    path = Path(path)
    limit = get_settings().max_image_pixels if max_pixels is None else max_pixels
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head.startswith(_GZIP_MAGIC):
        looks = ", it looks like an HTML page" if head.lstrip().startswith(b"<") else ""
        raise FetchError(f"not gzip data (no gzip signature{looks}); the server may have sent an error page.")
    # The image first: a decompression bomb is refused from its header, before any inflating.
    try:
        read_image(path, max_pixels=limit)
    except ImageReadError as exc:
        raise FetchError(exc.reason) from None
    cap = inflate_limit(limit)
    inflated = 0
    try:
        # The rest of the stream, past the image, and its CRC: in chunks, never held in memory.
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                inflated += len(chunk)
                if inflated > cap:
                    raise FetchError(
                        f"gzip data inflates to more than {cap / 2**20:,.0f} MB, more than an image of "
                        f"max_image_pixels = {limit:,} can need; it may be a decompression bomb."
                    )
    except EOFError:
        raise FetchError("truncated gzip (the download was cut off before the end of the stream).") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise FetchError(f"corrupt gzip data ({exc}).") from None


def parse_listing_position(html: str) -> tuple[float, float] | None:
    """The object's (RA, Dec) in degrees from an image listing's Aladin links; ``None`` without one.

    Examples
    --------
    >>> ra, dec = parse_listing_position('<a href="/cgi-bin/nph-aladin?script=get+Local(x)+05+34+31.97097+%2B22+00+52.0564%3bsync">')
    >>> round(ra, 5), round(dec, 5)
    (83.63321, 22.01446)
    """
    match = _ALADIN_POSITION.search(unquote_plus(html))
    if match is None:
        return None
    hours, minutes, seconds, sign, degrees, arcmin, arcsec = match.groups()
    ra = 15.0 * (int(hours) + int(minutes) / 60 + float(seconds) / 3600)
    dec = (-1 if sign == "-" else 1) * (int(degrees) + int(arcmin) / 60 + float(arcsec) / 3600)
    if not (0 <= ra < 360 and -90 <= dec <= 90):
        return None
    return ra, dec


def fits_position(path: str | Path) -> tuple[float, float, str] | None:
    """(RA, Dec, where) of the object a FITS cutout shows, from its header; ``None`` when it has none.

    See :func:`core.images.header_position` for the keywords and their order.
    """
    try:
        return header_position(read_image(path))
    except ImageReadError:
        return None


class RoutedNed(NedClass):
    """astroquery's NED client with its requests sent to the configured server through ``client``.

    ``get_image_list`` asks for ``Ned.IMG_DATA_URL`` (NED's, frozen at import); this class answers
    that request from ``<ned_base_url>cgi-bin/imgdata`` instead, via the polite client and its page
    cache, and refuses any other request so nothing reaches a server unannounced.
    """

    def __init__(self, client: PoliteClient, *, settings: Settings) -> None:
        super().__init__()
        self._client = client
        self._imgdata_url = urljoin(settings.ned_base_url.rstrip("/") + "/", "cgi-bin/imgdata")
        self.last_listing = ""
        """The text of the last listing fetched: astroquery keeps only the links, we want the position too."""

    def _request(self, method: str, url: str, params: Any = None, **kwargs: Any) -> requests.Response:
        if method.upper() != "GET" or not url.rstrip("/").endswith("/imgdata"):
            raise FetchError(f"unexpected astroquery request {method} {url}; only image listings are routed.")
        page = self._client.get_page(self._imgdata_url, params=params)
        self.last_listing = page.text
        response = requests.Response()
        response.status_code = 200
        response.url = page.url
        response.encoding = "utf-8"
        response._content = page.text.encode("utf-8")
        return response


def map_link(link: str, *, origin: str) -> str:
    """Move a link astroquery prefixed with NED's origin onto the configured ``origin``."""
    rest = link[len(ASTROQUERY_ORIGIN) :] if link.startswith(ASTROQUERY_ORIGIN) else link
    if re.match(r"^[a-z][a-z0-9+.-]*://", rest, re.IGNORECASE):
        # The page held an absolute link: keep its path, put it on the configured origin.
        parts = urlsplit(rest)
        rest = parts.path + ("?" + parts.query if parts.query else "")
    return origin.rstrip("/") + "/" + rest.lstrip("/")


def listing_telescopes(html: str) -> dict[str, str]:
    """File name -> the Telescope cell of its row, from NED's image listing (empty when it has no such column)."""
    import lxml.html

    try:
        root = lxml.html.fromstring(html.encode("utf-8") if isinstance(html, str) else html)
    except (ValueError, lxml.etree.ParserError):
        return {}
    telescopes: dict[str, str] = {}
    for table in root.xpath("//table"):
        headers = [" ".join(th.text_content().split()).lower() for th in table.xpath(".//th")]
        if "telescope" not in headers:
            continue
        column = headers.index("telescope")
        for row in table.xpath(".//tr[td]"):
            cells = row.xpath("./td")
            if len(cells) <= column:
                continue
            telescope = " ".join(cells[column].text_content().split())
            for href in row.xpath(".//a/@href"):
                file_name = unquote(urlsplit(href).path.rsplit("/", 1)[-1])
                if file_name.lower().endswith(IMAGE_SUFFIX) and telescope and telescope != "N/A":
                    telescopes.setdefault(file_name, telescope)
    return telescopes


def list_images(name: str, *, ned: RoutedNed, settings: Settings) -> list[ImageLink]:
    """Every FITS image NED lists for ``name``, links on the configured origin, in NED's order.

    Links whose file name cannot be parsed are logged and left out.
    """
    links = []
    raws = ned.get_image_list(name)
    telescopes = listing_telescopes(ned.last_listing) if ned.last_listing else {}
    for raw in raws:
        url = map_link(raw, origin=settings.image_origin)
        file_name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        try:
            links.append(parse_image_link(url, name=name, telescope=telescopes.get(file_name, "")))
        except ParseError as exc:
            logger.warning("%s", exc)
    return links


@dataclass
class FetchSummary:
    """Counts of a fetch run (this run's work, plus what earlier runs had finished)."""

    counts: dict[str, int] = field(default_factory=dict)
    processed: int = 0
    skipped: int = 0
    requests: int = 0
    manifest: Path | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)


def fetch_images(
    catalog: str | Path | pd.DataFrame,
    *,
    out: str | Path,
    prefer: Sequence[str] = DEFAULT_PREFER,
    limit: int | None = None,
    retry_failed: bool = False,
    settings: Settings | None = None,
    cache_dir: str | Path | None = None,
    progress_stream: TextIO | None = None,
    events_path: str | Path | None = None,
) -> FetchSummary:
    """List, choose and download one image per catalogue object into ``out``.

    Parameters
    ----------
    catalog : path or DataFrame
        A catalogue with a ``name`` column (several rows per name are fetched once).
    out : path
        Image folder; also holds ``manifest.csv``/``.jsonl``, ``inventory.csv``/``.jsonl``,
        ``names.csv`` (name -> file) and ``progress.jsonl``.
    prefer : sequence of str
        Ordered rules ``"SURVEY [BAND]"``; an object none of whose images matches is recorded as
        ``no_image`` with the reason, so every image of a dataset comes from a preferred survey.
    limit : int or None
        Process at most this many objects in this run.
    retry_failed : bool
        Process only the objects an earlier run recorded as failed.
    settings : Settings or None
        Server, origin, limiter and retry settings; ``None`` reads them now.
    cache_dir : path or None
        Page cache for the listings; default ``<data_dir>/cache/http``.
    progress_stream : file or None
        Where the progress bar goes (``None``: no bar).
    events_path : path or None
        Progress events (JSON lines); default ``<out>/progress.jsonl``.

    Returns
    -------
    FetchSummary

    Raises
    ------
    ConfigError
        Bad options, a catalogue without ``name``, or another fetch already writing to ``out``.
    """
    settings = settings if settings is not None else get_settings()
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1; got {limit}. Leave it out to fetch every object.")
    prefer = list(prefer)
    if not prefer:
        raise ConfigError("prefer must hold at least one rule; got none. Use e.g. 'DSS2 red'.")
    for rule in prefer:
        parse_preference(rule)
    names = _catalog_names(catalog)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else data_layout(settings).http_cache
    journal = out / "manifest.jsonl"

    with _FolderLock(out / ".fetch.lock"):
        _remove_partial_files(out)
        records = _latest_records(journal)
        _add_positions(records, out)
        todo = _plan(names, records, out, retry_failed=retry_failed)
        skipped = len(names) - len(todo) if not retry_failed else 0
        if limit is not None:
            todo = todo[:limit]
        summary = FetchSummary(skipped=skipped, manifest=out / "manifest.csv")
        with PoliteClient(settings=settings, cache_dir=cache) as client, Progress(
            len(todo), desc="fetch", stream=progress_stream, events_path=events_path or out / "progress.jsonl"
        ) as progress:
            ned = RoutedNed(client, settings=settings)
            try:
                _fetch_all(todo, records, summary, progress=progress, ned=ned, client=client, out=out,
                           prefer=prefer, settings=settings)
            finally:
                summary.requests = client.requests_made
                # Also after an interruption, so the tables match the journal.
                _write_tables(out, names, records)
    summary.counts = {status: sum(r["status"] == status for r in records.values()) for status in STATUSES}
    return summary


def _fetch_all(
    todo: list[str],
    records: dict[str, dict[str, Any]],
    summary: FetchSummary,
    *,
    progress: Progress,
    ned: RoutedNed,
    client: PoliteClient,
    out: Path,
    prefer: list[str],
    settings: Settings,
) -> None:
    journal = out / "manifest.jsonl"
    for name in todo:
        record, inventory = _fetch_one(name, ned=ned, client=client, out=out, prefer=prefer, settings=settings)
        for link in inventory:
            append_jsonl(out / "inventory.jsonl", asdict(link))
        # The journal line is written last: an object counts as done only once its file (if any)
        # is in place.
        append_jsonl(journal, record)
        records[name] = record
        failed = record["status"] == "failed"
        if failed:
            summary.failures.append((name, record["reason"]))
        summary.processed += 1
        progress.update(1, failed=int(failed), name=name, outcome=record["status"])


def _fetch_one(
    name: str, *, ned: RoutedNed, client: PoliteClient, out: Path, prefer: list[str], settings: Settings
) -> tuple[dict[str, Any], list[ImageLink]]:
    record: dict[str, Any] = dict.fromkeys(MANIFEST_COLUMNS, "")
    record["name"] = name
    try:
        dest = image_path(out, name)
        ned.last_listing = ""
        links = list_images(name, ned=ned, settings=settings)
    except GalaxyMorphError as exc:
        record.update(status="failed", reason=f"listing: {exc}")
        return record, []
    position = parse_listing_position(ned.last_listing)
    if position is not None:
        record.update(ra=position[0], dec=position[1], position_from="listing")
    chosen = select_image(links, prefer)
    if chosen is None:
        reason = (
            "NED lists no FITS image"
            if not links
            else f"none of {len(links)} images matches prefer {prefer} (surveys: "
            f"{', '.join(sorted({link.survey for link in links}))})"
        )
        record.update(status="no_image", reason=reason)
        return record, links
    record.update(survey=chosen.survey, band=chosen.band, refcode=chosen.refcode, url=chosen.url)
    if dest.exists():
        # Written by a run killed before its journal line: keep it if it is whole.
        try:
            validate_fits_gz(dest, max_pixels=settings.max_image_pixels)
        except FetchError as exc:
            logger.warning("object %s: replacing %s (%s)", name, dest.name, exc)
            dest.unlink()
    try:
        if not dest.exists():
            client.download(
                chosen.url, dest, validate=functools.partial(validate_fits_gz, max_pixels=settings.max_image_pixels),
                max_bytes=inflate_limit(settings.max_image_pixels),
            )
    except GalaxyMorphError as exc:
        record.update(status="failed", reason=str(exc))
        logger.warning("object %s failed: %s", name, record["reason"])
        return record, links
    record.update(status="ok", file=dest.name)
    if record["position_from"] == "":
        found = fits_position(dest)
        if found is not None:
            record.update(ra=found[0], dec=found[1], position_from=found[2])
    return record, links


def _catalog_names(catalog: str | Path | pd.DataFrame) -> list[str]:
    if isinstance(catalog, pd.DataFrame):
        table, where = catalog, "the catalogue"
    else:
        path = Path(catalog)
        if not path.is_file():
            raise ConfigError(f"catalog {path} does not exist. Run `python -m core scrape` first or fix the path.")
        table, where = pd.read_csv(path, dtype=str, keep_default_na=False), str(path)
    columns = {str(c).strip().lower(): c for c in table.columns}
    if "name" not in columns:
        raise ConfigError(f"{where} has no 'name' column; got columns {list(table.columns)}. Add one.")
    names = [str(n).strip() for n in table[columns["name"]]]
    return list(dict.fromkeys(n for n in names if n))


def _plan(names: list[str], records: dict[str, dict[str, Any]], out: Path, *, retry_failed: bool) -> list[str]:
    todo = []
    for name in names:
        record = records.get(name)
        if retry_failed:
            if record is not None and record["status"] == "failed":
                todo.append(name)
            continue
        if record is None:
            todo.append(name)
        elif record["status"] == "ok" and not (out / record["file"]).is_file():
            logger.warning("object %s: %s has gone; fetching it again", name, record["file"])
            todo.append(name)
    return todo


def _latest_records(journal: Path) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    for record in read_jsonl(journal):
        if record.get("status") in STATUSES and record.get("name"):
            records[record["name"]] = record
    return records


def _add_positions(records: dict[str, dict[str, Any]], out: Path) -> None:
    """Give images fetched before positions were recorded the one their FITS file holds (no request).

    The updated record is journalled, so the next run does not read the file again.
    """
    journal = out / "manifest.jsonl"
    for name, record in records.items():
        if record["status"] != "ok" or "position_from" in record or not (out / record["file"]).is_file():
            continue
        found = fits_position(out / record["file"])
        ra, dec, where = found if found is not None else ("", "", "")
        record.update(ra=ra, dec=dec, position_from=where)
        append_jsonl(journal, record)
        logger.info("object %s: position %s", name, where or "not in its FITS file")


def _remove_partial_files(out: Path) -> None:
    # atomic_path's temporary files are ".<target>.<random>.tmp<suffixes>"; a SIGKILL leaves them.
    for tmp in out.glob(".*.tmp*"):
        if tmp.is_file():
            logger.info("removing %s left by an interrupted run", tmp.name)
            tmp.unlink()


def _write_tables(out: Path, names: list[str], records: dict[str, dict[str, Any]]) -> None:
    rows = [{c: records[n].get(c, "") for c in MANIFEST_COLUMNS} for n in names if n in records]
    with atomic_path(out / "manifest.csv") as tmp:
        pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(tmp, index=False)
    inventory: dict[tuple[str, str], dict[str, Any]] = {}
    for link in read_jsonl(out / "inventory.jsonl"):
        inventory[(link["name"], link["url"])] = link
    with atomic_path(out / "inventory.csv") as tmp:
        pd.DataFrame(list(inventory.values()), columns=INVENTORY_COLUMNS).to_csv(tmp, index=False)
    with atomic_path(out / "names.csv") as tmp:
        pd.DataFrame({"name": names, "file": [safe_stem(n) + IMAGE_SUFFIX for n in names]}).to_csv(tmp, index=False)


class _FolderLock:
    """One fetch per image folder; the OS releases the lock if the process is killed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise ConfigError(
                f"another fetch is writing to {self.path.parent}. Wait for it to finish or use another --out."
            ) from None

    def __exit__(self, *exc: Any) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
