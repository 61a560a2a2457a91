"""One way to spread image work over processes: joblib, on this machine or on a dask cluster.

Rendering the sample, measuring image quality and preprocessing all call :func:`run_parallel`
with a picklable function and a list of small tasks (paths and parameters, never pixels). The
workers read images by path and write their results to files where they can, so what travels
back is a few numbers per image. With the ``dask_scheduler`` setting the same tasks run on a
``dask.distributed`` cluster through joblib's dask backend:

- ``dask_scheduler = "local:N"`` starts a ``LocalCluster`` of N single-threaded worker
  processes on this machine (once per process, closed at exit);
- ``dask_scheduler = "tcp://host:8786"`` connects to a running scheduler. Its workers must see
  the source and output folders under the same paths as the client (a shared file system).

Results are the same, byte for byte, on every backend: each task is a pure function of its
arguments, and results are consumed in task order.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import re
from pathlib import Path
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from core.config import get_settings
from core.errors import ConfigError

logger = logging.getLogger(__name__)

_LOCAL = re.compile(r"^local:(\d+)$")
_clients: dict[str, Any] = {}
"""One dask client per scheduler setting and process: a LocalCluster takes seconds to start, and a
build runs two passes (metrics, preprocessing) that should share it."""


def resolve_jobs(n_jobs: int | None) -> int:
    """``n_jobs``, or the ``workers`` setting when ``None``; checked to be a positive integer.

    Raises
    ------
    ConfigError
        If ``n_jobs`` is not a positive integer.
    """
    n_jobs = get_settings().n_workers if n_jobs is None else n_jobs
    if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs < 1:
        raise ConfigError(f"n_jobs must be a positive integer; got {n_jobs!r}. Use e.g. 2, 1 for no parallelism, or None for the "
            "workers setting.")
    return n_jobs


def run_parallel(
    function: Callable[[Any], Any],
    tasks: Sequence[Any],
    *,
    n_jobs: int | None = None,
    backend: str | None = None,
    scheduler: str | None = None,
) -> Iterator[Any]:
    """``function(task)`` for every task, yielded in task order as they finish.

    Parameters
    ----------
    function : callable
        A module-level (picklable) function of one task.
    tasks : sequence
        Small, picklable task descriptions (paths, parameters).
    n_jobs : int, optional
        Worker processes on this machine; default the ``workers`` setting. 1 runs in this
        process (no pickling, no pool). Ignored on a dask cluster, which uses all its workers.
    backend : str, optional
        joblib backend; default the ``joblib_backend`` setting.
    scheduler : str, optional
        Dask scheduler (``"local:N"`` or an address); default the ``dask_scheduler`` setting.
        When set, the work goes to that cluster whatever ``backend`` and ``n_jobs`` say.

    Raises
    ------
    ConfigError
        If ``n_jobs`` or ``scheduler`` is malformed, or the dask backend has no cluster.
    """
    settings = get_settings()
    scheduler = settings.dask_scheduler if scheduler is None else scheduler
    backend = backend or settings.joblib_backend
    if scheduler or backend == "dask":
        if tasks:
            yield from _run_dask(function, tasks, scheduler)
        return
    n_jobs = resolve_jobs(n_jobs)
    if n_jobs == 1 or len(tasks) <= 1:
        yield from (function(task) for task in tasks)
        return
    from joblib import Parallel, delayed, parallel_config

    with parallel_config(backend=backend, n_jobs=n_jobs):
        yield from Parallel(return_as="generator")(delayed(function)(task) for task in tasks)


def _run_dask(function: Callable[[Any], Any], tasks: Sequence[Any], scheduler: str) -> Iterator[Any]:
    from joblib import Parallel, delayed, parallel_config

    client = dask_client(scheduler)
    # n_jobs=-1: every worker of the cluster (joblib runs n_jobs=None serially, here). batch_size=1: dask
    # schedules each task itself; joblib's auto-batching would only add latency.
    with parallel_config(backend="dask", client=client, n_jobs=-1):
        yield from Parallel(return_as="generator", batch_size=1)(delayed(function)(task) for task in tasks)


def dask_client(scheduler: str) -> Any:
    """The ``distributed.Client`` for a scheduler setting, started once per process.

    ``""`` means the client already running in this process (``distributed.get_client``).

    Raises
    ------
    ConfigError
        If dask is not installed, the setting is malformed, or no cluster answers.
    """
    try:
        from distributed import Client, LocalCluster, get_client
    except ImportError as exc:
        raise ConfigError(
            "the dask backend needs dask.distributed, which is not installed. "
            "Run `pip install 'dask[distributed]'` (pinned in requirements.txt)."
        ) from exc
    if not scheduler:
        try:
            return get_client()
        except ValueError as exc:
            raise ConfigError(
                "joblib_backend 'dask' needs a cluster; got no dask_scheduler and no running client. "
                "Set dask_scheduler to 'local:N' or to a scheduler address such as 'tcp://host:8786'."
            ) from exc
    if scheduler in _clients and _clients[scheduler].status == "running":
        return _clients[scheduler]
    local = _LOCAL.match(scheduler)
    if local is not None:
        n = int(local.group(1))
        if n < 1:
            raise ConfigError(f"dask_scheduler 'local:N' needs N >= 1; got {scheduler!r}. Use e.g. 'local:2'.")
        # One thread per worker: measuring and rendering hold the GIL, so processes are the parallelism.
        # Dashboard on a free port: several clusters (other users, tests) may share the machine.
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
        client = Client(cluster, set_as_default=False)
    elif "://" in scheduler or ":" in scheduler:
        try:
            client = Client(scheduler, set_as_default=False, timeout=30)
        except OSError as exc:
            raise ConfigError(
                f"dask_scheduler {scheduler!r} did not answer ({exc}). Start `dask scheduler` and "
                "`dask worker` there, or use 'local:N'."
            ) from exc
    else:
        raise ConfigError(
            f"dask_scheduler must be 'local:N' or a scheduler address; got {scheduler!r}. "
            "Use e.g. 'local:2' or 'tcp://10.0.0.5:8786'."
        )
    try:
        _check_cluster(client, scheduler)
    except ConfigError:
        client.close()
        raise
    logger.info("dask: %s with %d workers", scheduler, len(client.scheduler_info()["workers"]))
    if not _clients:
        atexit.register(close_dask_clients)
    _clients[scheduler] = client
    return client


def _check_cluster(client: Any, scheduler: str) -> None:
    """Refuse a cluster the work would wait on forever: no worker, or a scheduler or worker that
    cannot import this project (it could not read the task graph)."""
    if not client.scheduler_info()["workers"]:
        raise ConfigError(f"dask_scheduler {scheduler!r} has no workers; got a scheduler only. "
                          f"Start one with `dask worker {scheduler}`.")
    root = Path(__file__).resolve().parent.parent
    try:
        client.run_on_scheduler(importlib.import_module, __name__)
        client.run(importlib.import_module, __name__)
    except ImportError as exc:
        raise ConfigError(
            f"the dask scheduler or a worker at {scheduler!r} cannot import this project ({exc}). "
            f"Start them with PYTHONPATH={root} and the data under the same paths."
        ) from exc


def close_dask_clients() -> None:
    """Close the clients (and local clusters) this process started."""
    while _clients:
        _, client = _clients.popitem()
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()

