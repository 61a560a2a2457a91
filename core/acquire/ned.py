"""NED's "search by classification" scraper (``python -m core scrape``).

The original study built its catalogue from NED's classification-search result pages
(``cgi-bin/OBJatt``): one query per class term, several pages each, one bar-delimited row per
object inside the ``<pre>`` block of the page's first table. NED writes more than one layout of
that block: three columns (name | redshift | classification) for the seed's options, eleven with
RA and Dec for the form's defaults. The parser finds the header line and maps columns by their
names, so both give the same rows, and RA/Dec are kept when the page has them.
Fetching goes through :class:`core.acquire.http.PoliteClient` (limiter, retries, page cache); parsing is
the pure function :func:`parse_result_page`, which refuses any page whose layout it does not
recognise rather than returning an empty table that looks like success.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urljoin

import lxml.html
import pandas as pd

from core.config import Settings, get_settings
from core.errors import ConfigError, FetchError, ParseError
from core.acquire.http import PoliteClient
from core.io import atomic_path, atomic_write_json
from core.paths import data_layout
from core.progress import Progress

logger = logging.getLogger(__name__)

#: NED's morphology codes for the ``M=`` parameter of ``OBJatt``.
SIMPLE_TERMS = {"E": 1010, "S0": 1234, "S0/a": 1250, "S": 1168, "Irr": 1157, "A": 1005, "AB": 1006, "B": 1008}
SPIRAL_CODE = 1168
BAR_FAMILIES = {"A": 1327, "AB": 1576, "B": 1924}
STAGES = {"a": 2302, "ab": 2312, "b": 2322, "bc": 2332, "c": 2341, "cd": 2351, "d": 2360}

CATALOG_COLUMNS = ["name", "redshift", "classification", "requested", "ra", "dec", "page", "query_url", "fetched_at"]
_SPIRAL_TERM = re.compile(r"^S(AB|A|B)?(ab|bc|cd|a|b|c|d)?$")
_PAGE_OF = re.compile(r"Page\s+(\d+)\s+of\s+(\d+)", re.IGNORECASE)


def class_codes(term: str) -> list[int]:
    """NED's ``M=`` codes for a class term.

    ``E``, ``S0``, ``S0/a``, ``S``, ``Irr`` and the bar families ``A``, ``AB``, ``B`` have one
    code each; a detailed spiral term combines S with a bar family and/or a stage
    (``SAB`` -> S + SAB, ``SBc`` -> S + SB + c, ``Sb`` -> S + b).

    Raises
    ------
    ConfigError
        If the term is not one NED's classification search knows.
    """
    if term in SIMPLE_TERMS:
        return [SIMPLE_TERMS[term]]
    match = _SPIRAL_TERM.match(term)
    if match is None:
        known = ", ".join([*SIMPLE_TERMS, "S[A|AB|B][a|ab|b|bc|c|cd|d]"])
        raise ConfigError(f"class term must be one of {known}; got {term!r}. Use NED's spelling, e.g. SAB or SBc.")
    family, stage = match.groups()
    codes = [SPIRAL_CODE]
    if family:
        codes.append(BAR_FAMILIES[family])
    if stage:
        codes.append(STAGES[stage])
    return codes


def search_url(settings: Settings) -> str:
    """The ``OBJatt`` endpoint on the configured server."""
    return urljoin(settings.ned_base_url.rstrip("/") + "/", "cgi-bin/OBJatt")


def search_params(term: str, page: int) -> list[tuple[str, str]]:
    """Query parameters for one result page of one class term, in a fixed order (the cache key)."""
    if page < 1:
        raise ConfigError(f"page must be >= 1; got {page}. Pages are numbered from 1.")
    params = [
        ("delimeter", "bar"),  # sic: NED's spelling
        ("NO_LINKS", "1"),
        ("crosid", "objname"),
        ("position", "z"),
        ("gadata", "morphol"),
        ("page", str(page)),
    ]
    params += [("M", str(code)) for code in class_codes(term)]
    return params


@dataclass(frozen=True)
class ResultPage:
    """One parsed result page: its rows and its place in the result set.

    ``rows`` are ``(name, redshift or NaN, classification, ra or NaN, dec or NaN)``, RA and Dec
    in degrees when the page has those columns (NED's default layout), NaN otherwise.
    """

    rows: list[tuple[str, float, str, float, float]]
    page: int
    n_pages: int
    has_positions: bool = False


# Header names (lower case, spaces squeezed) of the columns the catalogue needs, by role. NED's
# seed layout says "Object Name | Redshift | Classification"; its default layout "Object Name",
# "RA", "DEC", "Redshift", "Redshift Qualifier" (or "z Qual"), "Galaxy Morphology".
_ROLE_PATTERNS: dict[str, tuple[re.Pattern[str], ...]] = {
    "name": (re.compile(r"^(object )?name$"), re.compile(r"\bname\b")),
    "redshift": (re.compile(r"^(redshift|z)( \(?z\)?)?$"),),
    "classification": (
        re.compile(r"morpholog"), re.compile(r"^(galaxy )?classification$"), re.compile(r"^(morph(ological)? )?type$"),
    ),
    "ra": (re.compile(r"^r\.?a\.?( \(?(j2000|deg|degrees)\)?)?$"), re.compile(r"^right ascension")),
    "dec": (re.compile(r"^dec(l|lination)?\.?( \(?(j2000|deg|degrees)\)?)?$"),),
}
_NEEDED = ("name", "redshift", "classification")
_RULE = re.compile(r"^[\s|=+-]*$")  # a separator line: bars, dashes, equals signs only
_MISSING = {"", "...", "N/A", "n/a", "-"}


def parse_result_page(html: str | bytes, *, url: str) -> ResultPage:
    """Parse one ``OBJatt`` result page, in whichever layout NED wrote it.

    The header line is found in the first ``<pre>`` block, whatever comes before it (a title,
    the query, NED's preamble); columns are mapped by their header names, so extra columns are
    ignored and their order does not matter. Rows may be bounded by ``|`` or not. RA and Dec
    are kept when the page has them, in degrees (NED writes ``12h30m49.4s`` / ``+12d23m28s`` or
    decimal degrees).

    Parameters
    ----------
    html : str or bytes
        The page.
    url : str
        Where it came from; named in every error.

    Returns
    -------
    ResultPage

    Raises
    ------
    ParseError
        If the page has no ``<pre>`` block, no line in it names the object name, redshift and
        classification columns (the message says which are missing), a row has another number of
        fields than the header or a redshift that is not a number, or "Page N of M" is missing.
    """
    if isinstance(html, str):
        html = html.encode("utf-8")
    try:
        root = lxml.html.fromstring(html)
    except (ValueError, lxml.etree.ParserError) as exc:
        raise ParseError(f"{url}: not an HTML page ({exc}).") from exc
    tables = root.xpath("//table")
    pres = tables[0].xpath(".//pre") if tables else []
    pres = pres or root.xpath("//pre")
    if not pres:
        where = "in the first <table>" if tables else "in the page (and no <table>)"
        raise ParseError(f"{url}: no <pre> block {where}; NED's result layout may have changed.")
    lines = pres[0].text_content().splitlines()
    header_at, columns = _find_header(lines, url=url)
    rows: list[tuple[str, float, str, float, float]] = []
    for number, line in enumerate(lines[header_at + 1 :], start=header_at + 2):
        if _RULE.match(line):
            continue
        rows.append(_parse_row(line, columns, url=url, number=number))
    page, n_pages = _page_of(root, url=url)
    return ResultPage(rows=rows, page=page, n_pages=n_pages, has_positions="ra" in columns and "dec" in columns)


def _fields(line: str) -> list[str]:
    """``|``-separated fields of a line, without the empty ones a leading or trailing ``|`` makes."""
    text = line.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|"):
        text = text[:-1]
    return [" ".join(f.split()) for f in text.split("|")]


def _find_header(lines: list[str], *, url: str) -> tuple[int, dict[str, int]]:
    """The header line's index and the column of each role, from the first line naming the needed ones."""
    best: tuple[int, dict[str, int]] | None = None
    for index, line in enumerate(lines):
        if "|" not in line:
            continue
        columns = _map_columns(_fields(line))
        if all(role in columns for role in _NEEDED):
            return index, columns
        if best is None and "name" in columns:
            best = (index, columns)
    if best is not None:
        missing = [role for role in _NEEDED if role not in best[1]]
        raise ParseError(
            f"{url}: the header {lines[best[0]].strip()[:200]!r} has no {' or '.join(missing)} column; "
            "NED's result layout may have changed."
        )
    raise ParseError(
        f"{url}: no header line naming object name, redshift and classification columns in the <pre> block; "
        "NED's result layout may have changed."
    )


def _map_columns(names: list[str]) -> dict[str, int]:
    lowered = [name.lower() for name in names]
    columns: dict[str, int] = {}
    for role, patterns in _ROLE_PATTERNS.items():
        for pattern in patterns:  # earlier patterns are the better match: "Galaxy Morphology" over "Type"
            hits = [i for i, name in enumerate(lowered) if pattern.search(name) and i not in columns.values()]
            if hits:
                columns[role] = hits[0]
                break
    columns["_count"] = len(names)
    return columns


def _parse_row(line: str, columns: dict[str, int], *, url: str, number: int) -> tuple[str, float, str, float, float]:
    fields = _fields(line)
    if len(fields) != columns["_count"]:
        raise ParseError(
            f"{url}: line {number} {line.strip()[:200]!r} has {len(fields)} '|'-separated fields; the header "
            f"has {columns['_count']}."
        )
    name, redshift_text, classification = (fields[columns[role]] for role in _NEEDED)
    if not name:
        raise ParseError(f"{url}: line {number} {line.strip()[:200]!r} has an empty object name.")
    if redshift_text in _MISSING:
        redshift = math.nan
    else:
        try:
            redshift = float(redshift_text)
        except ValueError:
            raise ParseError(
                f"{url}: line {number}: redshift {redshift_text!r} of {name!r} is not a number."
            ) from None
    ra, dec = math.nan, math.nan
    if "ra" in columns and "dec" in columns:
        ra, dec = _position(fields[columns["ra"]], fields[columns["dec"]])
        if math.isnan(ra) and fields[columns["ra"]] not in _MISSING:
            logger.warning("%s: line %d: position %r %r of %r not understood; left empty",
                           url, number, fields[columns["ra"]], fields[columns["dec"]], name)
    return name, redshift, classification, ra, dec


def _position(ra_text: str, dec_text: str) -> tuple[float, float]:
    """Degrees from NED's RA/Dec cells (decimal degrees or ``12h30m49.4s`` / ``+12d23m28s``); NaN if unreadable."""
    if ra_text in _MISSING or dec_text in _MISSING:
        return math.nan, math.nan
    try:
        ra, dec = float(ra_text), float(dec_text)
    except ValueError:
        from astropy import units as u
        from astropy.coordinates import Angle

        try:
            ra = float(Angle(ra_text, unit=u.hourangle).degree)
            dec = float(Angle(dec_text, unit=u.deg).degree)
        except Exception:  # noqa: BLE001 - any text astropy cannot read is no position
            return math.nan, math.nan
    if not (0 <= ra < 360 and -90 <= dec <= 90):
        return math.nan, math.nan
    return ra, dec


def _page_of(root: lxml.html.HtmlElement, *, url: str) -> tuple[int, int]:
    """"Page N of M" wherever the page says it (a <form> in the seed layout, free text elsewhere)."""
    match = _PAGE_OF.search(" ".join(root.text_content().split()))
    if match is None:
        raise ParseError(f"{url}: no 'Page N of M' in the page; NED's result layout may have changed.")
    page, n_pages = int(match.group(1)), int(match.group(2))
    if not 1 <= page <= n_pages:
        raise ParseError(f"{url}: 'Page {page} of {n_pages}' is not a valid page number.")
    return page, n_pages


@dataclass
class ScrapeResult:
    """What :func:`scrape` wrote and what went wrong.

    Attributes
    ----------
    catalog : pandas.DataFrame
        One row per (object, class term) for the terms scraped completely.
    failures : dict
        Class term -> error message, for terms left out of the catalogue.
    requests : int
        Requests sent to the server (0 when every page came from the cache).
    """

    catalog: pd.DataFrame
    failures: dict[str, str] = field(default_factory=dict)
    requests: int = 0


def scrape(
    classes: Sequence[str],
    *,
    out: str | Path,
    settings: Settings | None = None,
    cache_dir: str | Path | None = None,
    max_pages: int | None = None,
    progress_stream: TextIO | None = None,
    events_path: str | Path | None = None,
) -> ScrapeResult:
    """Scrape NED's classification search for each class term and write the catalogue.

    Every page is cached on disk by its full query, so a rerun, or a run resumed after a crash,
    asks the server only for pages it never received. A term whose pages cannot all be fetched
    and parsed is left out of the catalogue (never half-included) and reported in ``failures``;
    the other terms go on.

    Parameters
    ----------
    classes : sequence of str
        Class terms (see :func:`class_codes`).
    out : path
        Folder for ``catalog.csv``, ``catalog.parquet`` and ``scrape_report.json``.
    settings : Settings or None
        Server, limiter and retry settings; ``None`` reads them now.
    cache_dir : path or None
        Page cache; default ``<data_dir>/cache/http``.
    max_pages : int or None
        Stop each term after this many pages (a quick look at a big class).
    progress_stream : file or None
        Where the progress bar goes (``None``: no bar).
    events_path : path or None
        Progress events (JSON lines); default ``<out>/progress.jsonl``.

    Returns
    -------
    ScrapeResult
    """
    settings = settings if settings is not None else get_settings()
    if not classes:
        raise ConfigError("classes must name at least one class term; got none. Use e.g. E S0 SAB.")
    if max_pages is not None and max_pages < 1:
        raise ConfigError(f"max_pages must be >= 1; got {max_pages}. Leave it out for every page.")
    terms = list(dict.fromkeys(classes))
    for term in terms:
        class_codes(term)  # every term is checked before the first request
    out = Path(out)
    cache = Path(cache_dir) if cache_dir is not None else data_layout(settings).http_cache
    frames: list[pd.DataFrame] = []
    failures: dict[str, str] = {}
    with PoliteClient(settings=settings, cache_dir=cache) as client, Progress(
        len(terms), desc="scrape", stream=progress_stream, events_path=events_path or out / "progress.jsonl"
    ) as progress:
        for term in terms:
            try:
                frames.append(_scrape_term(client, term, settings=settings, max_pages=max_pages))
                progress.update(1, term=term)
            except (FetchError, ParseError) as exc:
                logger.error("class %s left out: %s", term, exc)
                failures[term] = str(exc)
                progress.update(1, failed=1, term=term)
        requests_made = client.requests_made
    catalog = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CATALOG_COLUMNS)
    _write_catalog(catalog, out)
    atomic_write_json(
        out / "scrape_report.json",
        {"classes": terms, "rows": len(catalog), "rows_with_position": int(catalog["ra"].notna().sum()),
         "failures": failures, "server": settings.ned_base_url},
    )
    return ScrapeResult(catalog=catalog, failures=failures, requests=requests_made)


def _scrape_term(client: PoliteClient, term: str, *, settings: Settings, max_pages: int | None) -> pd.DataFrame:
    url = search_url(settings)
    records: list[dict[str, object]] = []
    page_number, n_pages = 1, 1
    while page_number <= n_pages and (max_pages is None or page_number <= max_pages):
        page = client.get_page(url, params=search_params(term, page_number), check=_check_page)
        parsed = parse_result_page(page.text, url=page.url)
        if parsed.page != page_number:
            raise ParseError(f"{page.url}: asked for page {page_number} but the page says {parsed.page}.")
        if page_number == 1:
            n_pages = parsed.n_pages
        elif parsed.n_pages != n_pages:
            raise ParseError(
                f"{page.url}: the result set changed while it was read ({n_pages} pages, now "
                f"{parsed.n_pages}). Clear the cache for class {term} and scrape again."
            )
        if not parsed.rows:
            logger.warning("%s: no objects on page %d of %d", page.url, page_number, n_pages)
        for name, redshift, classification, ra, dec in parsed.rows:
            records.append(
                {
                    "name": name,
                    "redshift": redshift,
                    "classification": classification,
                    "ra": ra,
                    "dec": dec,
                    "requested": term,
                    "page": page_number,
                    "query_url": page.url,
                    "fetched_at": page.fetched_at,
                }
            )
        page_number += 1
    logger.info("class %s: %d objects on %d pages", term, len(records), n_pages)
    return pd.DataFrame.from_records(records, columns=CATALOG_COLUMNS)


def _check_page(text: str, url: str) -> None:
    parse_result_page(text, url=url)


def _write_catalog(catalog: pd.DataFrame, out: Path) -> None:
    with atomic_path(out / "catalog.csv") as tmp:
        catalog.to_csv(tmp, index=False)
    with atomic_path(out / "catalog.parquet") as tmp:
        catalog.to_parquet(tmp, index=False)

