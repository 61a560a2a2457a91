"""``python -m core build``: a dataset folder from a source folder (see :mod:`core.prepare.builder`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from types import SimpleNamespace

from core.acquire.labels import CONFLICT_POLICIES, LABEL_SOURCES
from core.spec import BuildSpec

# The spec owns every default; argparse only reads them, so the CLI and the dashboard cannot disagree.
# (Read from the fields, not an instance: making one imports the preprocessing, too slow for --help.)
DEFAULT = SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(BuildSpec)})

UNCLASSIFIED_PRINTED = 12


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``build`` command."""
    parser = subparsers.add_parser(
        "build",
        help="label, filter, preprocess and split a source into a dataset folder",
        description=(
            "Label every object with a class scheme, settle label conflicts, keep one catalogue, drop "
            "positional duplicates, measure image quality (cached per source), filter, preprocess and split "
            "train/val/test by object. The same parameters over an unchanged source reuse the existing "
            "dataset without reading an image."
        ),
    )
    parser.add_argument("--source", default=None, help="source folder (default: <data_dir>/sample)")
    parser.add_argument(
        "--scheme",
        default=None,
        help="hubble3, hubble4, seed6, gz1, or a .json/.csv mapping file (default: gz1 for a Galaxy Zoo source, else hubble3)",
    )
    # Preprocessing defaults depend on the source (core.prepare.builder.preprocess_defaults): colour cutouts
    # (JPEG/PNG) get colour, crop 0.3, linear stretch and the image centre; FITS sources the values below.
    cutouts = "; JPEG/PNG colour cutouts: "
    parser.add_argument("--crop", type=float, default=None,
                        help="crop side as a fraction of the image side (default: 0.5" + cutouts + "0.3)")
    parser.add_argument("--crop-arcsec", type=float, default=None, help="crop side in arcsec where the WCS allows")
    parser.add_argument("--size", type=int, default=None, help="output side in pixels (default: settings image_size, 64)")
    parser.add_argument("--stretch", default=None,
                        help="asinh, log, sqrt or linear (default: asinh" + cutouts + "linear, already stretched)")
    parser.add_argument("--channels", type=int, default=None, choices=(1, 3),
                        help="1 grey, 3 colour (default: 1" + cutouts + "3)")
    parser.add_argument(
        "--centre",
        default=None,
        help="crop centre: wcs (catalogue position), peak (brightest source), none (image centre); "
        "auto = none for Galaxy Zoo cutouts, else wcs where the WCS allows, else peak (default: auto"
        + cutouts + "none)",
    )
    # None: core.prepare.quality.QualityThresholds fills in its own defaults, so the CLI cannot drift from them.
    library = " (default: the quality filter's, printed after the build)"
    parser.add_argument("--min-quality", type=float, default=None, help="quality score threshold in [0, 1]" + library)
    parser.add_argument("--min-size", type=int, default=None, help="smallest image side in pixels" + library)
    parser.add_argument("--min-snr", type=float, default=None, help="smallest galaxy S/N" + library)
    parser.add_argument("--min-finite", type=float, default=None, help="smallest fraction of valid pixels" + library)
    parser.add_argument(
        "--max-saturated", type=float, default=None, help="largest fraction of saturated pixels" + library
    )
    parser.add_argument(
        "--extent",
        type=float,
        default=None,
        help="drop a galaxy whose EXTENT half-light radii do not fit in the crop; larger is stricter, 0 turns "
        "the rule off" + library,
    )
    parser.add_argument(
        "--catalog", default=DEFAULT.catalog, help="name prefix to keep (NGC, UGC, ...), 'auto' (the most common) or 'all'"
    )
    parser.add_argument(
        "--label-from",
        default=DEFAULT.label_from,
        choices=LABEL_SOURCES,
        help=f"label from NED's type string or from the searched term (default: {DEFAULT.label_from})",
    )
    parser.add_argument(
        "--conflicts", default=DEFAULT.conflicts, choices=CONFLICT_POLICIES,
        help=f"objects with several labels (default: {DEFAULT.conflicts})"
    )
    parser.add_argument(
        "--exclude-dwarfs", action="store_true", help="leave out dwarfs (dE, dS0, dSph, dIrr) the scheme would classify"
    )
    parser.add_argument(
        "--exclude-uncertain", action="store_true", help="leave out uncertain types (E?, Sb:) the scheme would classify"
    )
    parser.add_argument("--duplicate-arcsec", type=float, default=DEFAULT.duplicate_arcsec,
                        help=f"positional duplicate radius (default: {DEFAULT.duplicate_arcsec:g})")
    parser.add_argument(
        "--allow-duplicates",
        action="store_true",
        help="with --catalog all, build even if objects have no ra/dec (a galaxy under two names may land in two splits)",
    )
    parser.add_argument(
        "--survey",
        default=DEFAULT.survey,
        help="keep images of one survey ('DSS2', 'SDSS r', ...), 'auto' (the most common) or 'all' (default: auto)",
    )
    parser.add_argument(
        "--band", default=DEFAULT.band, help="keep one band of that survey, 'auto' (its most common) or 'all' (default: auto)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT.seed, help=f"seed of the split (default: {DEFAULT.seed})")
    parser.add_argument("--val", type=float, default=DEFAULT.val_fraction,
                        help=f"validation fraction per class (default: {DEFAULT.val_fraction:g})")
    parser.add_argument("--test", type=float, default=DEFAULT.test_fraction,
                        help=f"test fraction per class (default: {DEFAULT.test_fraction:g})")
    parser.add_argument("--out", default=None, help="dataset folder (default: <data_dir>/datasets/<name from parameters>)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: settings workers)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the same dataset exists")
    parser.add_argument(
        "--replace-trained", action="store_true",
        help="also replace a dataset that finished runs were trained on (they are then flagged as stale)",
    )
    parser.add_argument(
        "--force-while-training", action="store_true",
        help="also replace a dataset that a running training reads (refused without it)",
    )
    parser.add_argument("--progress-file", default=None, help="also append progress events (JSON lines) here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build, then print the folder, the counts per split and the reasons images were left out."""
    from core.prepare.builder import build, preprocess_defaults
    from core.prepare.quality import QUALITY_FIELDS
    from core.acquire.catalogue import load_source
    from core.config import get_settings
    from core.paths import data_layout
    from core.prepare.dataset import read_manifest
    from core.acquire.labels import get_scheme
    from core.progress import Progress
    from core.spec import BuildSpec

    settings = get_settings()
    # Bad input fails here, before a progress bar starts, so the user sees one error line.
    if args.scheme is not None:
        get_scheme(args.scheme)
    source = load_source(args.source if args.source is not None else data_layout(settings).sample)
    spec = BuildSpec.from_args(args, default_source=str(data_layout(settings).sample), default_size=settings.image_size,
                               defaults=preprocess_defaults(source))
    with Progress(None, desc="build", stream=sys.stderr, events_path=args.progress_file) as progress:
        out = build(spec, out=args.out, n_jobs=args.jobs, progress=progress, force=args.force, source=source,
                    replace_trained=args.replace_trained, force_while_training=args.force_while_training)
    manifest = read_manifest(out)
    print(f"dataset: {out}")
    print(f"classes: {', '.join(manifest['classes'])}; catalogue: {manifest['params']['catalog']}")
    mix = manifest.get("survey_mix", [])
    print(
        f"survey: {manifest.get('survey', 'all')}, band: {manifest.get('band', 'all')} (images by survey / band: "
        + ", ".join(f"{row['survey'] or '?'} / {row['band'] or '?'} {row['objects']}" for row in mix[:8])
        + (", ..." if len(mix) > 8 else "")
        + ")"
    )
    for split, counts in manifest["counts"].items():
        print(f"  {split:5s} {sum(counts.values()):6d}  " + "  ".join(f"{c}={n}" for c, n in counts.items()))
    params = manifest["params"]
    print("quality filter: " + ", ".join(f"{name}={params[name]:g}" for name in QUALITY_FIELDS if name in params))
    reasons = manifest.get("reasons", {})
    if reasons:
        print("left out: " + ", ".join(f"{r}={n}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])))
    unclassified = manifest.get("unclassified_types", [])
    if unclassified:
        shown = unclassified[:UNCLASSIFIED_PRINTED]
        more = f", ... ({len(unclassified)} kinds in manifest.json)" if len(unclassified) > len(shown) else ""
        print(
            f"unclassified by {manifest['params']['scheme']} (objects per type string): "
            + ", ".join(f"{row['type']!r} {row['objects']}" for row in shown)
            + more
        )
    return 0
