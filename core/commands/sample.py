"""``python -m core sample``: write the built-in synthetic sample sky (see :mod:`core.acquire.sample`)."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from core.progress import Progress

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sample`` command."""
    parser = subparsers.add_parser(
        "sample",
        help="write the built-in synthetic galaxy sample (offline, deterministic by seed)",
        description=(
            "Render N synthetic galaxies (E, S0, S0/a, spirals, irregulars, with survey-like noise and "
            "known warts) as FITS images plus catalog.csv, truth.csv and SAMPLE.json, in the same layout "
            "as the NED path. Same seed, same files."
        ),
    )
    parser.add_argument("--out", default=None, help="output folder (default: <data_dir>/sample)")
    parser.add_argument("--n", type=int, default=2000, help="number of distinct galaxies (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing when OUT already holds a finished sample with the same n, seed and version",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace a sample in OUT made with another n or seed (a folder that is not a sample is never replaced)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: the 'workers' setting, 0 = all cores)"
    )
    parser.add_argument("--progress-file", default=None, help="also append progress events (JSON lines) to this file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate (or, with ``--if-missing``, ensure) the sample and print where it is."""
    from core.config import get_settings
    from core.paths import data_layout
    from core.acquire.sample import ensure_sample, generate_sample, sample_is_current

    settings = get_settings()
    out = args.out if args.out is not None else data_layout(settings).sample
    n_jobs = args.workers if args.workers else None
    if args.if_missing and sample_is_current(out, n=args.n, seed=args.seed):
        print(f"sample already present in {out} (n={args.n}, seed={args.seed}); nothing to do")
        return 0
    started = time.monotonic()
    with Progress(None, desc="sample", stream=sys.stderr, events_path=args.progress_file) as progress:
        if args.if_missing:
            ensure_sample(out, n=args.n, seed=args.seed, n_jobs=n_jobs, progress=progress)
        else:
            generate_sample(out, n=args.n, seed=args.seed, n_jobs=n_jobs, progress=progress, force=args.force)
    print(f"wrote {args.n} galaxies to {out} in {time.monotonic() - started:.1f} s")
    return 0
