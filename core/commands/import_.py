"""``python -m core import``: a user's catalogue CSV plus image folder as a source (see :mod:`core.acquire.importer`)."""

from __future__ import annotations

import argparse
import sys

from core.fields import add_spec_options
from core.spec import ImportSpec


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import`` command."""
    parser = subparsers.add_parser(
        "import",
        help="import a catalogue CSV and a folder of FITS / JPEG / PNG images as a source",
        description=(
            "Match catalogue rows (name and classification columns, any case; e.g. NED_list.csv with Name, "
            "Redshift, Classification, Requested) to image files by a file column or by file name, and write "
            "a source folder (catalog.csv + import_report.json) that build and the dashboard use. A fetch output "
            "folder is matched by name through its manifest.csv. Each row gets a position (ra, dec) from the "
            "catalogue, the fetch manifest, or the FITS header (OBJCTRA/OBJCTDEC, the WCS, RA/DEC), with its "
            "origin in position_from."
        ),
    )
    add_spec_options(parser, ImportSpec)  # what to import: the ImportSpec fields (core.spec)
    parser.add_argument("--out", default=None, help="source folder (default: <data_dir>/imported/NAME)")
    parser.add_argument(
        "--force", action="store_true",
        help="replace a source in OUT imported from another catalogue or image folder",
    )
    parser.add_argument("--progress-file", default=None, help="also append progress events (JSON lines) here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Import and print what matched and what did not."""
    from core.config import get_settings
    from core.errors import shorten
    from core.acquire.importer import EXAMPLES, import_source
    from core.progress import Progress

    # import_source reports nothing while it works: the events say when it started, when it
    # ended (done or failed, with the error) and how many rows matched an image.
    spec = ImportSpec.from_args(args)
    with Progress(None, desc="import", stream=sys.stderr, events_path=args.progress_file) as progress:
        result = import_source(spec.catalog, spec.images, name=spec.name, out=args.out, settings=get_settings(),
                               force=args.force)
        progress.total = len(result.catalog) + len(result.unmatched_rows)
        progress.update(progress.total, failed=len(result.unmatched_rows), step="match")
    print(f"imported {len(result.catalog)} rows with images into {result.out}/catalog.csv")
    placed = {k: v for k, v in sorted(result.positions.items()) if k}
    unplaced = result.positions.get("", 0)
    if placed or unplaced:
        where = ", ".join(f"{n} from {k}" for k, n in placed.items()) or "none"
        print(f"positions: {where}" + (f"; {unplaced} rows without one" if unplaced else ""))
    if result.unmatched_rows:
        examples = "; ".join(f"{shorten(n)} ({shorten(r)})" for n, r in result.unmatched_rows[:EXAMPLES])
        print(f"{len(result.unmatched_rows)} rows without an image, e.g. {examples}", file=sys.stderr)
    if result.unmatched_files:
        examples = ", ".join(shorten(f) for f in result.unmatched_files[:EXAMPLES])
        print(f"{len(result.unmatched_files)} image files match no row, e.g. {examples}", file=sys.stderr)
    if result.ambiguous:
        print(f"{len(result.ambiguous)} names matched several files; the first was used", file=sys.stderr)
    if result.unmatched_rows or result.unmatched_files:
        print(f"details: {result.out}/import_report.json", file=sys.stderr)
    return 0
