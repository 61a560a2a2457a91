"""``python -m core build``: a dataset folder from a source folder (see :mod:`core.prepare.builder`)."""

from __future__ import annotations

import argparse
import sys

from core.acquire.sources import COLOUR_CUTOUT_DEFAULTS
from core.prepare.preprocessing import PreprocessConfig
from core.fields import add_spec_options
from core.spec import BuildSpec

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
    # Every choice of the build is a BuildSpec field: its flag, type, choices, default and help come from
    # there (core.fields.add_spec_options). Where the source kind decides a default, the help says so.
    fixed = PreprocessConfig()
    cutouts = {name: f"{getattr(fixed, name)}; JPEG/PNG colour cutouts: {value}"
               for name, value in COLOUR_CUTOUT_DEFAULTS.items()}
    add_spec_options(parser, BuildSpec, default_help={"size": "the image_size setting", **cutouts})
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
    from core.prepare.builder import build
    from core.prepare.selection import preprocess_defaults
    from core.prepare.quality import QUALITY_FIELDS
    from core.acquire.catalogue import load_source
    from core.config import get_settings
    from core.paths import data_layout
    from core.prepare.dataset import read_manifest
    from core.acquire.labels import get_scheme
    from core.progress import Progress

    settings = get_settings()
    # Bad input fails here, before a progress bar starts, so the user sees one error line.
    if args.spec is not None:  # the file holds every choice
        spec = BuildSpec.from_args(args, default_source="", default_size=settings.image_size)
        source = load_source(spec.source)
    else:  # an option left out takes the default of the source's kind: read the source first
        source = load_source(args.source if args.source is not None else data_layout(settings).sample)
        spec = BuildSpec.from_args(args, default_source=str(data_layout(settings).sample),
                                   default_size=settings.image_size, defaults=preprocess_defaults(source))
    if spec.scheme is not None:
        get_scheme(spec.scheme)
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
