"""``python -m core fetch``: one NED image per catalogue object (see :mod:`core.acquire.fetch`)."""

from __future__ import annotations

import argparse
import sys

from core.fields import add_spec_options
from core.spec import FetchSpec


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fetch`` command."""
    parser = subparsers.add_parser(
        "fetch",
        help="list every NED image of each object and download one per object by a preference rule",
        description=(
            "For each object of the catalogue, list NED's images (astroquery's Ned.get_image_list, sent to "
            "the configured server), store the inventory, pick one image by --prefer and download it "
            "(streamed, validated, atomic). A killed run resumes where it stopped; --retry-failed retries "
            "only the failures."
        ),
    )
    add_spec_options(parser, FetchSpec)  # what to fetch: the FetchSpec fields (core.spec)
    parser.add_argument(
        "--prefer",
        nargs="+",
        default=None,
        metavar="RULE",
        help="ordered 'SURVEY [BAND]' rules, e.g. \"DSS2 red\" \"SDSS r\" (default: DSS2 red, DSS2, DSS1, SDSS r, SDSS, 2MASS K)",
    )
    parser.add_argument("--limit", type=int, default=None, help="process at most N objects in this run")
    parser.add_argument("--cache-dir", default=None, help="page cache (default: <data_dir>/cache/http)")
    parser.add_argument("--progress-file", default=None, help="also append progress events (JSON lines) here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fetch, print a summary; exit 1 when some object failed (rerun with --retry-failed)."""
    from core.config import get_settings
    from core.paths import data_layout
    from core.errors import shorten, shorten_message
    from core.acquire.fetch import DEFAULT_PREFER, fetch_images

    spec = FetchSpec.from_args(args)
    settings = get_settings()
    catalog = spec.catalog if spec.catalog is not None else data_layout(settings).ned_catalogue
    out = spec.out if spec.out is not None else data_layout(settings).ned_images
    summary = fetch_images(
        catalog,
        out=out,
        prefer=args.prefer or DEFAULT_PREFER,
        limit=args.limit,
        retry_failed=spec.retry_failed,
        settings=settings,
        cache_dir=args.cache_dir,
        progress_stream=sys.stderr,
        events_path=args.progress_file,
    )
    counts = ", ".join(f"{n} {status}" for status, n in summary.counts.items())
    print(
        f"{summary.processed} objects processed this run ({summary.skipped} already done), {summary.requests} "
        f"requests; in {summary.manifest}: {counts}"
    )
    for name, reason in summary.failures[:10]:
        print(shorten_message(f"failed: {shorten(name)}: {reason}"), file=sys.stderr)
    if len(summary.failures) > 10:
        print(f"... and {len(summary.failures) - 10} more failures (see {summary.manifest})", file=sys.stderr)
    if summary.failures:
        print("rerun with --retry-failed to try the failures again", file=sys.stderr)
    return 1 if summary.failures else 0
