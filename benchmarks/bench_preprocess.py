"""Preprocessing must cost no more than reading: images/s of both, and their ratio.

Usage::

    python benchmarks/bench_preprocess.py [--n 2000] [--sample data/bench-sample] [--repeat 2]

On the built-in sample (generated once into ``--sample`` when absent), in one process and one run:

(a) reading: :func:`core.images.read_image` on every file;
(b) the full per-image work a dataset build does: read, :func:`measure_quality`, then
    :func:`preprocess` reusing those metrics.

It prints both rates and the ratio (b)/(a); the goal is a ratio of at least 0.5. Both passes run
``--repeat`` times, interleaved, and the best time of each counts, so a busy machine hurts both
alike.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.errors import ImageReadError  # noqa: E402
from core.images import read_image  # noqa: E402
from core.preprocessing import PreprocessConfig, measure_quality, preprocess  # noqa: E402
from core.sample import ensure_sample  # noqa: E402


def _files(sample: Path) -> list[tuple[Path, float, float]]:
    truth = pd.read_csv(sample / "truth.csv")
    return [(sample / row.file, float(row.ra), float(row.dec)) for row in truth.itertuples()]


def _read_all(files: list[tuple[Path, float, float]]) -> float:
    started = time.perf_counter()
    for path, _, _ in files:
        try:
            read_image(path)
        except ImageReadError:
            pass
    return time.perf_counter() - started


def _full(files: list[tuple[Path, float, float]], config: PreprocessConfig) -> float:
    started = time.perf_counter()
    for path, ra, dec in files:
        try:
            image = read_image(path)
        except ImageReadError:
            continue
        metrics = measure_quality(image, ra=ra, dec=dec)
        preprocess(image, config, ra=ra, dec=dec, metrics=metrics)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="galaxies in the sample (default 2000)")
    parser.add_argument("--sample", type=Path, default=Path("data/bench-sample"), help="sample folder (cached)")
    parser.add_argument("--repeat", type=int, default=2, help="timed passes of each kind (default 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    ensure_sample(args.sample, n=args.n, seed=0)
    files = _files(args.sample)
    config = PreprocessConfig()
    _read_all(files[:50])  # warm the page cache and imports
    _full(files[:50], config)
    read_times, full_times = [], []
    for _ in range(args.repeat):
        read_times.append(_read_all(files))
        full_times.append(_full(files, config))
    read_rate = len(files) / min(read_times)
    full_rate = len(files) / min(full_times)
    print(f"images: {len(files)} files from {args.sample}")
    print(f"(a) read only:                      {read_rate:8.1f} images/s")
    print(f"(b) read + quality + preprocess:    {full_rate:8.1f} images/s")
    print(f"ratio (b)/(a): {full_rate / read_rate:.2f}  (goal >= 0.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
