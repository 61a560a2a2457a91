"""``python -m core scrape``: NED's classification search into a catalogue (see :mod:`core.acquire.ned`)."""

from __future__ import annotations

import argparse
import sys


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
    parser.add_argument(
        "--classes",
        nargs="+",
        default=["E", "S0", "S0/a", "SA", "SAB", "SB"],
        help="class terms: E S0 S0/a S Irr, bar families A AB B, spirals S[A|AB|B][a..d] (default: E S0 S0/a SA SAB SB)",
    )
    parser.add_argument("--out", default=None, help="output folder (default: <data_dir>/ned)")
    parser.add_argument("--max-pages", type=int, default=None, help="stop each class after this many pages")
    parser.add_argument("--cache-dir", default=None, help="page cache (default: <data_dir>/cache/http)")
    parser.add_argument("--progress-file", default=None, help="also append progress events (JSON lines) here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Scrape, print a summary; exit 1 when a class term could not be scraped completely."""
    from core.config import get_settings
    from core.paths import data_layout
    from core.acquire.ned import scrape

    settings = get_settings()
    out = args.out if args.out is not None else data_layout(settings).ned
    result = scrape(
        args.classes,
        out=out,
        settings=settings,
        cache_dir=args.cache_dir,
        max_pages=args.max_pages,
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
