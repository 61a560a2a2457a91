"""Cost curves: how sample -> build -> one training epoch grow with the number of galaxies.

For each size N (default 1,000, 4,000 and 16,000 galaxies) it renders the synthetic sample,
builds the default dataset (hubble3, 64 px) and trains LeNet-5 for one epoch, each stage in a
fresh process, and prints per stage:

- seconds (wall clock);
- peak RSS of the stage's main process (workers not included) and peak Python heap
  (``tracemalloc``: numpy arrays included, memory-mapped files not);
- the growth exponent between consecutive sizes, ``log(t2/t1) / log(N2/N1)`` (goal <= 1.1:
  no stage grows faster than linearly).

Then the quality-metrics pass on the first size's sample, cold cache, with 1 worker, with all
cores (loky), and on a 2-worker dask ``LocalCluster`` (goal: LocalCluster <= 1.3x loky; its
start-up is printed apart, each pool is warmed up first).

Run: ``python benchmarks/bench_scale.py [--sizes 1000 4000 16000] [--out DIR]``. Everything is
written under ``--out`` (default ``data/bench-scale``), one folder per size, reused when present
(delete it to measure the sample stage again).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("sample", "build", "train")


def run_stage(stage: str, folder: Path, n: int) -> dict[str, float]:
    """One stage in this process: seconds, peak RSS and peak traced heap, in MB."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.path.insert(0, str(ROOT))
    from core.prepare.builder import build_dataset
    from core.acquire.sample import generate_sample

    if stage == "train":
        from core.prepare.dataset import load_dataset
        from core.runs import create_run
        from core.learn.training import default_config, train

    tracemalloc.start()
    started = time.perf_counter()
    if stage == "sample":
        generate_sample(folder / "sample", n=n, seed=0)
    elif stage == "build":
        build_dataset(folder / "sample", out=folder / "dataset", force=True)
    else:
        dataset = load_dataset(folder / "dataset")
        config = default_config("lenet5", epochs=1, patience=0)
        run_dir = create_run(folder / "runs", model="lenet5", seed=0, params=config.to_dict(),
                             dataset_path=dataset.path, dataset_hash=dataset.content_hash)
        train(dataset, config, run_dir=run_dir)
    seconds = time.perf_counter() - started
    _, heap_peak = tracemalloc.get_traced_memory()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "rss_mb": rss_kb / 1024, "heap_mb": heap_peak / 2**20}


def metrics_pass(sample: Path) -> dict[str, float]:
    """Cold-cache quality metrics of ``sample`` with 1 worker, all cores, and a 2-worker LocalCluster."""
    sys.path.insert(0, str(ROOT))
    from core.acquire.measure import CACHE_FILE, compute_metrics, measure_images
    from core.acquire.catalogue import load_source
    from core.config import get_settings
    from core.parallel import close_dask_clients, dask_client, run_parallel

    source = load_source(sample)
    warm = [[(p, math.nan, math.nan)] for p in source.table["path"].dropna().head(4)]
    cores = get_settings().n_workers
    results: dict[str, float] = {}
    started = time.perf_counter()
    dask_client("local:2")
    results["cluster_start"] = time.perf_counter() - started
    for label, options in (("1 worker", {"n_jobs": 1}), (f"loky, {cores} workers", {"n_jobs": cores}),
                           ("LocalCluster, 2 workers", {"scheduler": "local:2"})):
        list(run_parallel(measure_images, warm, **options))  # pool started and modules imported
        (sample / CACHE_FILE).unlink(missing_ok=True)
        started = time.perf_counter()
        if "scheduler" in options:
            os.environ["GALAXY_MORPH_DASK_SCHEDULER"] = options["scheduler"]
            compute_metrics(source)
            del os.environ["GALAXY_MORPH_DASK_SCHEDULER"]
        else:
            compute_metrics(source, n_jobs=options["n_jobs"])
        results[label] = time.perf_counter() - started
    close_dask_clients()
    return results


def _child(*args: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000], help="galaxies per sample")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench-scale")
    parser.add_argument("--stage", choices=[*STAGES, "metrics"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage == "metrics":
        print(json.dumps(metrics_pass(args.out / "sample")))
        return 0
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.out, args.n)))
        return 0

    sizes = sorted(args.sizes)
    print(f"sizes {sizes} galaxies, {os.cpu_count()} CPU cores; each stage in a fresh process")
    print(f"{'galaxies':>9} {'stage':<7}{'seconds':>9}{'peak RSS MB':>13}{'peak heap MB':>14}{'x.npy MB':>10}")
    table: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for n in sizes:
        folder = args.out / f"n{n}"
        for stage in STAGES:
            if stage == "sample" and (folder / "sample" / "SAMPLE.json").exists():
                result = json.loads((folder / "sample-stage.json").read_text())
            else:
                result = _child("--stage", stage, "--out", str(folder), "--n", str(n))
                if stage == "sample":
                    (folder / "sample-stage.json").write_text(json.dumps(result))
            table[stage].append(result["seconds"])
            x_file = folder / "dataset" / "x.npy"
            x_mb = f"{x_file.stat().st_size / 2**20:.0f}" if stage == "build" and x_file.exists() else ""
            print(f"{n:>9} {stage:<7}{result['seconds']:>9.1f}{result['rss_mb']:>13.0f}{result['heap_mb']:>14.1f}"
                  f"{x_mb:>10}", flush=True)
    if len(sizes) > 1:
        print("growth exponent log(t2/t1)/log(N2/N1), goal <= 1.1:")
        for stage, seconds in table.items():
            steps = [math.log(b / a) / math.log(n2 / n1) for a, b, n1, n2 in zip(seconds, seconds[1:], sizes, sizes[1:])]
            verdict = "ok" if max(steps) <= 1.1 else "MISSED"
            print(f"  {stage:<7}" + "  ".join(f"{n1}->{n2}: {e:.2f}" for e, n1, n2 in zip(steps, sizes, sizes[1:]))
                  + f"  {verdict}")

    first = args.out / f"n{sizes[0]}"
    metrics = _child("--stage", "metrics", "--out", str(first))
    loky = next(v for k, v in metrics.items() if k.startswith("loky"))
    print(f"metrics pass, {sizes[0]} galaxies, cold cache (LocalCluster start-up {metrics.pop('cluster_start'):.1f} s "
          "not included):")
    for label, seconds in metrics.items():
        print(f"  {label:<26}{seconds:>7.1f} s  {seconds / loky:>5.2f}x loky")
    ratio = metrics["LocalCluster, 2 workers"] / loky
    print(f"LocalCluster / loky {ratio:.2f}  goal <= 1.3  {'ok' if ratio <= 1.3 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
