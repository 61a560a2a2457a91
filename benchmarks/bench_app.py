"""Dashboard speed: warm render of every page (AppTest) and the slider filter on 10,000 and 1,000,000 images.

Each number is printed with a baseline measured in the same run: a page's warm render against
its cold render (first visit: imports, catalogue, metrics), and the polars slider filter
(:mod:`core.prepare.quality`) against the pandas path it replaced, on the same metrics table (the
counts are checked equal). Goals: every page < 1 s warm, a slider move < 50 ms on 1,000,000
rows and < 10 ms on 10,000.

    nice -n 10 python benchmarks/bench_app.py [--n 300] [--rows 10000 1000000] [--filter-only]
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

    from core.prepare.builder import build_dataset
    from core.prepare.preprocessing import PreprocessConfig
    from core.acquire.sample import ensure_sample
    from core.learn.training import train_many

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


def _metrics_table(rows: int) -> pd.DataFrame:
    """A metrics table shaped like a NED scrape's: 1 % blank, unreadable and missing values each."""
    rng = np.random.default_rng(0)
    metrics = pd.DataFrame({
        "label": rng.choice(["E", "S0", "Spiral"], rows),
        "min_side": rng.integers(16, 600, rows).astype(float),
        "finite_fraction": np.clip(rng.normal(0.995, 0.01, rows), 0, 1),
        "saturated_fraction": np.abs(rng.normal(0, 5e-5, rows)),
        "snr": rng.lognormal(3.5, 1.0, rows),
        "background_flatness": rng.uniform(0.3, 1.0, rows),
        "source_radius_frac": rng.uniform(0.01, 0.3, rows),
        "blank": rng.random(rows) < 0.01,
        "read_error": np.where(rng.random(rows) < 0.01, "truncated gzip file", ""),
    })
    for column in ("snr", "min_side", "source_radius_frac"):
        metrics.loc[rng.random(rows) < 0.01, column] = np.nan
    return metrics


def _pandas_counts(metrics: pd.DataFrame, *, min_quality: float, min_size: int, crop: float) -> pd.Series:
    """The slider filter as the dashboard ran it before polars (numpy rules on the pandas table,
    the score recomputed per move), then counts per class and reason."""
    from core.prepare.quality import REASONS as REJECTION_REASONS
    from core.prepare.quality import QualityThresholds

    t = QualityThresholds(min_quality=min_quality, min_size=min_size)
    column = {name: pd.to_numeric(metrics[name], errors="coerce").to_numpy(dtype=float)
              for name in ("min_side", "finite_fraction", "saturated_fraction", "snr", "background_flatness",
                           "source_radius_frac")}
    blank = metrics["blank"].to_numpy(dtype=bool)
    with np.errstate(invalid="ignore", over="ignore"):
        snr = np.clip(column["snr"], 0, 1e6)
        score = (snr**2 / (snr**2 + 400.0) * np.clip(column["finite_fraction"], 0, 1) ** 4
                 * np.exp(-np.clip(column["saturated_fraction"], 0, 1) / 0.002)
                 * np.clip(column["background_flatness"], 0, 1)) ** 0.25
        quality = np.clip(np.where(np.isfinite(score) & ~blank, score, 0.0), 0, 1)
        conditions = [
            (metrics["read_error"].str.len() > 0).to_numpy(), blank,
            ~(column["min_side"] >= t.min_size), ~(column["finite_fraction"] >= t.min_finite),
            column["saturated_fraction"] > t.max_saturated, ~(column["snr"] >= t.min_snr),
            quality < t.min_quality, t.extent * column["source_radius_frac"] > crop / 2,
        ]
    reason = np.select(conditions, list(REJECTION_REASONS), default="")
    return pd.DataFrame({"label": metrics["label"], "reason": reason}).groupby(["label", "reason"]).size()


def bench_filter(sizes: list[int], moves: int = 10) -> None:
    """One slider move = new thresholds -> kept / left-out counts per class and reason."""
    import polars as pl

    from core.prepare import quality
    from core.prepare.quality import QualityThresholds

    print("slider filter, per move (counts per class and reason; goal: < 50 ms at 1,000,000 rows, < 10 ms at 10,000)")
    print(f"{'rows':>10}{'pandas ms':>12}{'polars ms':>12}{'ratio':>8}")
    for rows in sizes:
        metrics = _metrics_table(rows)
        # The quality score does not depend on a slider: the dashboard computes it once per source.
        scored = quality.with_quality(pl.from_pandas(metrics).lazy()).collect().lazy()
        settings = [(float(q), int(s), float(c)) for q, s, c in
                    zip(np.linspace(0.0, 0.9, moves), np.arange(moves) * 4, np.linspace(0.3, 1.0, moves))]
        timings: dict[str, list[float]] = {"pandas": [], "polars": []}
        for min_quality, min_size, crop in settings:
            started = time.perf_counter()
            before = _pandas_counts(metrics, min_quality=min_quality, min_size=min_size, crop=crop)
            timings["pandas"].append(time.perf_counter() - started)
            started = time.perf_counter()
            after = quality.count_lazy(
                scored, thresholds=QualityThresholds(min_quality=min_quality, min_size=min_size), crop=crop
            ).collect()
            timings["polars"].append(time.perf_counter() - started)
            after = after.to_pandas().set_index(["label", "reason"])["n"].sort_index()
            if not before.sort_index().astype(int).equals(after.astype(int).rename(None)):
                raise SystemExit(f"polars and pandas counts differ at {rows} rows, q={min_quality}")
        pandas_ms, polars_ms = (1e3 * float(np.median(timings[k])) for k in ("pandas", "polars"))
        print(f"{rows:>10,}{pandas_ms:12.1f}{polars_ms:12.1f}{pandas_ms / polars_ms:7.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="galaxies in the benchmark sample (default: 300)")
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000],
                        help="metrics table sizes of the filter benchmark (default: 10,000 and 1,000,000)")
    parser.add_argument("--filter-only", action="store_true", help="skip the page renders")
    args = parser.parse_args()
    bench_filter(args.rows)
    if args.filter_only:
        return
    bench_pages(args.n)


if __name__ == "__main__":
    main()
