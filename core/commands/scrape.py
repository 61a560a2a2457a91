"""``python -m core scrape``: NED's classification search into a catalogue (see :mod:`core.acquire.ned`)."""

from __future__ import annotations

import argparse
import sys

from core.fields import add_spec_options
from core.spec import ScrapeSpec


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scrape`` command."""
    parser = subparsers.add_parser(
        "scrape",
        help="scrape NED's search-by-classification pages into catalog.csv / catalog.parquet",
        description=(
            "Query NED's classification search (cgi-bin/OBJatt) for each class term, page by page, at "
            "most one request per request_interval (NED asks for >= 1 s), caching every page on disk so "
            "a rerun asks nothing twice. The server is the ned_base_url setting "
            "(GALAXY_MORPH_NED_BASE_URL)."
        ),
    )
    add_spec_options(parser, ScrapeSpec)  # what to scrape: the ScrapeSpec fields (core.spec)
    parser.add_argument("--cache-dir", default=None, help="page cache (default: <data_dir>/cache/http)")
    parser.add_argument("--progress-file", default=None, help="also append progress events (JSON lines) here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Scrape, print a summary; exit 1 when a class term could not be scraped completely."""
    from core.config import get_settings
    from core.paths import data_layout
    from core.acquire.ned import scrape

    spec = ScrapeSpec.from_args(args)
    settings = get_settings()
    out = spec.out if spec.out is not None else data_layout(settings).ned
    result = scrape(
        list(spec.classes),
        out=out,
        settings=settings,
        cache_dir=args.cache_dir,
        max_pages=spec.max_pages or None,
        progress_stream=sys.stderr,
        events_path=args.progress_file,
    )
    counts = result.catalog.groupby("requested").size().to_dict() if len(result.catalog) else {}
    print(
        f"wrote {len(result.catalog)} rows ({result.catalog['name'].nunique()} objects) to {out}/catalog.csv; "
        f"per class: {counts}; {result.requests} requests"
    )
    if len(result.catalog):
        placed = int(result.catalog["ra"].notna().sum())
        print(f"positions (RA, Dec) from NED's pages: {placed} of {len(result.catalog)} rows"
              + ("" if placed else "; fetch records them from NED's image listings"))
    for term, message in result.failures.items():
        print(f"failed: class {term}: {message}", file=sys.stderr)
    return 1 if result.failures else 0
