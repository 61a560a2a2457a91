"""Image work on joblib (loky) and on a dask LocalCluster gives the same bytes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.prepare.builder import build_dataset
from core.acquire.measure import CACHE_FILE, compute_metrics
from core.prepare.dataset import content_hash, load_dataset
from core.prepare.save import save_dataset
from core.errors import ConfigError
from core.parallel import close_dask_clients, dask_client, resolve_jobs, run_parallel
from core.prepare.preprocessing import PreprocessConfig
from core.acquire.sample import generate_sample

distributed = pytest.importorskip("distributed")
get_task_stream = distributed.get_task_stream

BUILD = {"preprocess": PreprocessConfig(size=16), "catalog": "all", "survey": "all", "min_quality": 0.0, "min_size": 0}


@pytest.fixture(autouse=True)
def _close_clusters():
    yield
    close_dask_clients()


def _files(folder: Path) -> dict[str, bytes]:
    """Every file the sample wrote (the builder's metrics cache, which names absolute paths, apart)."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file() and p.parent.name != ".cache")
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


@pytest.mark.cluster
def test_sample_and_build_are_byte_identical_on_loky_and_a_local_cluster(tmp_path, monkeypatch):
    loky_sample = generate_sample(tmp_path / "loky" / "sample", n=24, seed=5, n_jobs=2)
    loky_set = build_dataset(loky_sample, out=tmp_path / "loky" / "set", n_jobs=2, **BUILD)

    monkeypatch.setenv("GALAXY_MORPH_DASK_SCHEDULER", "local:2")
    with get_task_stream(dask_client("local:2")) as stream:
        dask_sample = generate_sample(tmp_path / "dask" / "sample", n=24, seed=5)
        dask_set = build_dataset(dask_sample, out=tmp_path / "dask" / "set", **BUILD)

    ran = " ".join(str(task["key"]) for task in stream.data)
    # The renderer measures each image's quality as it writes it, so the build has no metrics left to do.
    for function in ("_render_task", "_preprocess_chunk"):
        assert function in ran, (function, ran)
    sample_files = _files(loky_sample)
    assert len(sample_files) > 24 and sample_files == _files(dask_sample)
    a, b = load_dataset(loky_set), load_dataset(dask_set)
    assert a.x.shape[0] > 10 and a.x.tobytes() == b.x.tobytes()
    assert a.meta.equals(b.meta.assign(path=b.meta["path"].str.replace("/dask/", "/loky/")))
    assert a.content_hash == b.content_hash
    metrics_a = pd.read_parquet(loky_sample / CACHE_FILE).drop(columns=["path", "mtime_ns"])
    metrics_b = pd.read_parquet(dask_sample / CACHE_FILE).drop(columns=["path", "mtime_ns"])
    pd.testing.assert_frame_equal(metrics_a, metrics_b)


def _pid_and_root(x: float) -> tuple[int, float]:
    return os.getpid(), math.sqrt(x)


@pytest.mark.cluster
def test_a_scheduler_address_runs_the_tasks_on_that_cluster():
    from distributed import LocalCluster

    # Two threads: joblib runs the work in this process when a cluster has a single core in all.
    with LocalCluster(n_workers=1, threads_per_worker=2, host="127.0.0.1", dashboard_address=":0") as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        results = list(run_parallel(_pid_and_root, [9.0, 16.0, 25.0], scheduler=address))
        (worker_pid,) = dask_client(address).run(os.getpid).values()
        assert worker_pid != os.getpid()
        assert results == [(worker_pid, 3.0), (worker_pid, 4.0), (worker_pid, 5.0)]
        close_dask_clients()


def test_the_dataset_array_is_moved_into_place_not_copied(tmp_path):
    x_path = tmp_path / "scratch.x.npy"
    x = np.lib.format.open_memmap(x_path, mode="w+", dtype=np.float32, shape=(3, 4, 4, 1))
    x[:] = np.arange(48, dtype=np.float32).reshape(3, 4, 4, 1) / 48
    x.flush()
    inode = os.stat(x_path).st_ino
    meta = pd.DataFrame({"name": ["a", "b", "c"], "label": ["E", "S0", "E"], "y": [0, 1, 0],
                         "split": ["train", "val", "test"]})
    out = save_dataset(tmp_path / "set", x=x_path, meta=meta, classes=["E", "S0"], manifest={})
    assert not x_path.exists() and os.stat(out / "x.npy").st_ino == inode
    loaded = load_dataset(out)
    assert loaded.x.tobytes() == np.asarray(x).tobytes()
    assert loaded.content_hash == content_hash(np.asarray(x), meta)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"GALAXY_MORPH_DASK_SCHEDULER": "two workers"}, "dask_scheduler must be 'local:N' or a scheduler address; got 'two workers'"),
        ({"GALAXY_MORPH_DASK_SCHEDULER": "local:0"}, "needs N >= 1; got 'local:0'"),
        ({"GALAXY_MORPH_JOBLIB_BACKEND": "dask"}, "joblib_backend 'dask' needs a cluster"),
    ],
)
def test_a_bad_scheduler_setting_says_what_to_use(monkeypatch, setting, message):
    for key, value in setting.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=message):
        list(run_parallel(math.sqrt, [1.0, 4.0]))


def test_jobs_default_to_the_setting_and_reject_nonsense(monkeypatch):
    monkeypatch.setenv("GALAXY_MORPH_WORKERS", "3")
    assert resolve_jobs(None) == 3 and resolve_jobs(1) == 1
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ConfigError, match="n_jobs must be a positive integer"):
            resolve_jobs(bad)


def test_serial_and_loky_agree_in_task_order():
    tasks = [float(i) for i in range(40)]
    assert list(run_parallel(math.sqrt, tasks, n_jobs=1)) == list(run_parallel(math.sqrt, tasks, n_jobs=2))


def test_the_sample_renderer_leaves_the_metrics_a_build_would_measure(tmp_path, monkeypatch):
    import shutil

    import core.images

    sample = generate_sample(tmp_path / "sample", n=30, seed=2, n_jobs=2)
    copy = tmp_path / "copy"
    shutil.copytree(sample, copy, ignore=shutil.ignore_patterns(".cache"))
    measured_again = compute_metrics(copy, n_jobs=1)

    def no_reading(*args, **kwargs):
        raise AssertionError("the sample's images were all measured while rendering")

    monkeypatch.setattr(core.images, "read_image", no_reading)
    from_render = compute_metrics(sample, n_jobs=1)
    assert len(from_render) == len(list((sample / "images").iterdir())) > 30
    assert (from_render["read_error"] == "").sum() > 25
    pd.testing.assert_frame_equal(
        from_render.assign(path=from_render["path"].map(lambda p: Path(p).name)),
        measured_again.assign(path=measured_again["path"].map(lambda p: Path(p).name)),
    )


def _start(command: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def _wait_for_file(path: Path, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no {path} after {timeout} s: {log.read_text()}"
        time.sleep(0.1)


@pytest.mark.cluster
def test_a_scheduler_that_cannot_import_the_project_is_refused_not_waited_on(tmp_path):
    """Without PYTHONPATH a scheduler cannot read the task graph and the command used to wait forever."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = _start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                        "--dashboard-address", ":0", "--scheduler-file", str(scheduler_file)],
                       env=env, cwd=tmp_path, log=tmp_path / "scheduler.log")
    try:
        _wait_for_file(scheduler_file, scheduler, tmp_path / "scheduler.log")
        address = json.loads(scheduler_file.read_text())["address"]
        with pytest.raises(ConfigError, match="has no workers"):
            dask_client(address)
        worker = _start([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
                         "--nthreads", "1", "--dashboard-address", ":0"],
                        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}, cwd=tmp_path,
                        log=tmp_path / "worker.log")
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    dask_client(address)
                except ConfigError as exc:
                    if "has no workers" in str(exc):
                        assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
                        time.sleep(0.2)
                        continue
                    assert "cannot import this project" in str(exc) and "PYTHONPATH=" in str(exc)
                    break
                raise AssertionError("a scheduler that cannot import core was accepted")
        finally:
            worker.terminate()
            worker.wait(30)
    finally:
        scheduler.terminate()
        scheduler.wait(30)
