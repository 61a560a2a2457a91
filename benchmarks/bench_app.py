"""Dashboard speed: warm render of every page (AppTest) and the slider filter on 10,000 images.

Each number is printed with a baseline measured in the same run: a page's warm render against
its cold render (first visit: imports, catalogue, metrics), and the vectorised quality filter
against a per-row Python loop over the same metrics. Goals: every page < 1 s warm, the filter
< 50 ms on 10,000 rows.

    python benchmarks/bench_app.py [--n 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGES = ("home", "data", "statistics", "balance", "preprocessing", "training", "comparison", "classify")


def bench_pages(n: int) -> None:
    from streamlit.testing.v1 import AppTest

    from core.builder import build_dataset
    from core.preprocessing import PreprocessConfig
    from core.sample import ensure_sample
    from core.training import train_many

    with tempfile.TemporaryDirectory() as tmp:
        data_dir, runs_dir = Path(tmp) / "data", Path(tmp) / "runs"
        sample = ensure_sample(data_dir / "sample", n=n, seed=0)
        dataset = build_dataset(sample, scheme="hubble3", preprocess=PreprocessConfig(size=32), min_quality=0.0,
                                min_size=0, catalog="all", out=data_dir / "datasets" / "bench")
        train_many(dataset, models=["lenet5", "resnet18"], seeds=[0], runs_dir=runs_dir,
                   overrides={"epochs": 1, "batch_size": 16, "patience": 0})
        os.environ["GALAXY_MORPH_DATA_DIR"] = str(data_dir)
        os.environ["GALAXY_MORPH_RUNS_DIR"] = str(runs_dir)
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.run()
        print(f"page renders on a {n}-galaxy sample (AppTest, seconds; goal: warm < 1 s)")
        print(f"{'page':<15}{'cold':>8}{'warm':>8}{'cold/warm':>11}")
        for page in PAGES:
            at.switch_page(f"pages/{page}.py")
            started = time.perf_counter()
            at.run()
            cold = time.perf_counter() - started
            warm_times = []
            for _ in range(3):
                started = time.perf_counter()
                at.run()
                warm_times.append(time.perf_counter() - started)
            if at.exception:
                raise SystemExit(f"{page}: {at.exception[0].value}")
            warm = min(warm_times)
            flag = "" if warm < 1.0 else "  (over goal)"
            print(f"{page:<15}{cold:8.3f}{warm:8.3f}{cold / warm:10.1f}x{flag}")


def bench_filter(rows: int) -> None:
    from core.preprocessing import apply_quality_filter

    rng = np.random.default_rng(0)
    metrics = pd.DataFrame({
        "min_side": rng.integers(16, 600, rows).astype(float),
        "finite_fraction": np.clip(rng.normal(0.99, 0.03, rows), 0, 1),
        "saturated_fraction": np.abs(rng.normal(0, 0.001, rows)),
        "snr": rng.lognormal(3.5, 1.0, rows),
        "background_flatness": rng.uniform(0.3, 1.0, rows),
        "source_radius_frac": rng.uniform(0.01, 0.3, rows),
        "blank": rng.random(rows) < 0.01,
    })
    thresholds = np.linspace(0.0, 0.9, 10)

    started = time.perf_counter()
    for q in thresholds:
        kept = apply_quality_filter(metrics, min_quality=float(q), min_size=32, crop=0.5)["kept"].to_numpy()
    vectorised = (time.perf_counter() - started) / len(thresholds)

    # Baseline: a similar score and rules evaluated row by row, as a naive page would do it.
    started = time.perf_counter()
    for q in thresholds[:2]:
        naive = []
        for row in metrics.itertuples(index=False):
            s = (row.snr**2 / (row.snr**2 + 400.0)) * row.finite_fraction**4 * np.exp(-row.saturated_fraction / 0.002)
            score = (s * row.background_flatness) ** 0.25
            naive.append(not row.blank and row.min_side >= 32 and row.finite_fraction >= 0.95
                         and row.saturated_fraction <= 0.002 and row.snr >= 10 and score >= q
                         and 2.5 * row.source_radius_frac <= 0.25)
    per_row = (time.perf_counter() - started) / 2
    print(f"\nslider filter on {rows:,} images (goal < 50 ms): vectorised {vectorised * 1e3:.1f} ms, "
          f"per-row loop {per_row * 1e3:.0f} ms, ratio {per_row / vectorised:.0f}x; kept {int(kept.sum()):,} at q=0.9")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="galaxies in the benchmark sample (default: 300)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the filter benchmark (default: 10,000)")
    args = parser.parse_args()
    bench_filter(args.rows)
    bench_pages(args.n)


if __name__ == "__main__":
    main()
