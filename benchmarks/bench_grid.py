"""The grid of training runs on a dask LocalCluster against the same grid trained one run after another.

Builds (once) a 32-px dataset of the synthetic sample, then trains LeNet-5 and AlexNet on 3 folds
for 2 epochs three ways, in this one process, and prints each wall time and its ratio to serial:

- serial: :func:`core.learn.training.train_many` here (TensorFlow on all cores);
- grid: :func:`core.learn.grid.run_grid` on a ``LocalCluster`` of ``--workers`` processes, each run with a
  serial run's thread count (the default: byte-identical predictions, checked and printed);
- grid, share: the same with ``threads="share"`` (each worker its share of the cores; faster where
  workers outnumber a run's useful threads, not byte-identical).

The cluster is started (and its workers' TensorFlow imported) before the clock starts, as a
cluster a user keeps running would be; its start-up is printed apart. Goal: below 1x serial where
the cluster has more cores than one run can use (several machines, or many cores). On the 2-core CI
machine one serial run already keeps both cores busy, so there the grid can at best match serial
and the ratio shows what the grid costs (task hand-off, one dataset load and one TensorFlow start per
worker); the predictions must stay byte-identical (exit 1 otherwise).

Run: ``python benchmarks/bench_grid.py [--n 400] [--workers 2] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRID = {"models": ["lenet5", "alexnet"], "seeds": [0], "folds": 3, "overrides": {"epochs": 2, "patience": 0}}


def _import_tensorflow() -> None:
    import tensorflow  # noqa: F401, PLC0415


def predictions(runs_dir: Path) -> dict[tuple[str, int], str]:
    """SHA-256 of every run's predictions.csv, keyed by (model, fold)."""
    out = {}
    for config_file in runs_dir.glob("*/config.json"):
        config = json.loads(config_file.read_text())
        out[(config["model"], config["params"]["fold"])] = hashlib.sha256(
            (config_file.parent / "predictions.csv").read_bytes()).hexdigest()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="galaxies in the synthetic sample")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench-grid")
    args = parser.parse_args()

    from core.prepare.builder import build_dataset  # noqa: PLC0415
    from core.learn.grid import run_grid  # noqa: PLC0415
    from core.parallel import close_dask_clients, dask_client  # noqa: PLC0415
    from core.prepare.preprocessing import PreprocessConfig  # noqa: PLC0415
    from core.acquire.sample import ensure_sample  # noqa: PLC0415
    from core.learn.training import train_many  # noqa: PLC0415

    folder = args.out / f"n{args.n}"
    dataset = folder / "dataset"
    if not (dataset / "manifest.json").exists():
        sample = ensure_sample(folder / "sample", n=args.n, seed=0)
        build_dataset(sample, scheme="hubble3", preprocess=PreprocessConfig(size=32), min_quality=0.0, min_size=0,
                      catalog="all", out=dataset, n_jobs=1)
    scheduler = f"local:{args.workers}"
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp:
        runs = Path(tmp)
        started = time.perf_counter()
        train_many(dataset, runs_dir=runs / "serial", **GRID)
        seconds["serial"] = time.perf_counter() - started

        started = time.perf_counter()
        client = dask_client(scheduler)
        client.run(_import_tensorflow)
        startup = time.perf_counter() - started
        started = time.perf_counter()
        run_grid(dataset, runs_dir=runs / "grid", scheduler=scheduler, **GRID)
        seconds["grid"] = time.perf_counter() - started
        close_dask_clients()

        dask_client(scheduler).run(_import_tensorflow)  # fresh workers: their thread pools are sized once
        started = time.perf_counter()
        run_grid(dataset, runs_dir=runs / "share", scheduler=scheduler, threads="share", **GRID)
        seconds["grid, share"] = time.perf_counter() - started
        close_dask_clients()
        same = predictions(runs / "serial") == predictions(runs / "grid")

    n_runs = len(GRID["models"]) * GRID["folds"]
    print(f"grid of {n_runs} runs ({', '.join(GRID['models'])} x {GRID['folds']} folds, 2 epochs) on {args.n} "
          f"galaxies at 32 px; LocalCluster of {args.workers} workers, start-up {startup:.1f} s (not counted)")
    for name, value in seconds.items():
        print(f"  {name:<12} {value:7.1f} s   {value / seconds['serial']:.2f}x serial")
    print(f"  grid predictions byte-identical to serial: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
