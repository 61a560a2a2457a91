"""Preprocessing must cost no more than reading: images/s of both, and their ratio.

Usage::

    python benchmarks/bench_preprocess.py [--n 2000] [--sample data/bench-sample] [--repeat 2]

On the built-in sample (generated once into ``--sample`` when absent), in one process and one run:

(a) reading: :func:`core.images.read_image` on every file;
(b) the full per-image work a dataset build does: read, :func:`measure_quality`, then
    :func:`preprocess` reusing those metrics.

It prints both rates and the ratio (b)/(a); the goal is a ratio of at least 0.5. Each file is
timed both ways back to back, ``--repeat`` times, and its best time of each kind counts, so a
busy machine hurts both alike.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.errors import ImageReadError  # noqa: E402
from core.images import read_image  # noqa: E402
from core.prepare.preprocessing import PreprocessConfig, preprocess  # noqa: E402
from core.prepare.quality import measure_quality  # noqa: E402
from core.acquire.sample import ensure_sample  # noqa: E402


def _files(sample: Path) -> list[tuple[Path, float, float]]:
    truth = pd.read_csv(sample / "truth.csv")
    return [(sample / row.file, float(row.ra), float(row.dec)) for row in truth.itertuples()]


def _time_read(path: Path) -> float:
    started = time.perf_counter()
    try:
        read_image(path)
    except ImageReadError:
        pass
    return time.perf_counter() - started


def _time_full(path: Path, ra: float, dec: float, config: PreprocessConfig) -> float:
    started = time.perf_counter()
    try:
        image = read_image(path)
    except ImageReadError:
        return time.perf_counter() - started
    metrics = measure_quality(image, ra=ra, dec=dec)
    preprocess(image, config, ra=ra, dec=dec, metrics=metrics)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="galaxies in the sample (default 2000)")
    parser.add_argument(
        "--sample", type=Path, default=Path("data/bench-sample"), help="sample folder (cached)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over the files (default 3)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    ensure_sample(args.sample, n=args.n, seed=0)
    files = _files(args.sample)
    config = PreprocessConfig()
    read_times = np.full((args.repeat, len(files)), np.inf)
    full_times = np.full((args.repeat, len(files)), np.inf)
    for _ in range(2):  # warm the page cache, the imports and the resampling matrices
        for path, ra, dec in files[:50]:
            _time_full(path, ra, dec, config)
    for r in range(args.repeat):
        for k, (path, ra, dec) in enumerate(files):
            read_times[r, k] = _time_read(path)
            full_times[r, k] = _time_full(path, ra, dec, config)
    # Per file, the best of the repeats: a burst of load from another process hits one
    # measurement, not the comparison.
    read_rate = len(files) / read_times.min(axis=0).sum()
    full_rate = len(files) / full_times.min(axis=0).sum()
    print(f"images: {len(files)} files from {args.sample}, best of {args.repeat} per file")
    print(f"(a) read only:                      {read_rate:8.1f} images/s")
    print(f"(b) read + quality + preprocess:    {full_rate:8.1f} images/s")
    print(f"ratio (b)/(a): {full_rate / read_rate:.2f}  (goal >= 0.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
