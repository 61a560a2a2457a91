"""The grid of training runs (models x folds x repeats x seeds) on a dask cluster.

A comparison worth reporting is a grid of independent runs, and that is where the time goes: the
5-fold acceptance of three models is 15 runs. With the ``dask_scheduler`` setting (``local:N`` or
a scheduler address, the setting image work uses; :mod:`core.parallel`) ``train`` hands each run to
the cluster as one task:

- the client plans the grid as :func:`core.learn.training.train_many` does (same configs, same
  ``--resume`` rule: a finished experiment is skipped, an unfinished one continues from its
  checkpoint) and creates every run folder through the run registry before submitting, so a task
  knows its folder and a retried task finds it;
- a worker trains one run at a time (a process-wide lock: Keras seeds and TensorFlow's op
  determinism are process-wide) with TensorFlow's thread pools sized by :func:`worker_threads`
  (below), and always asks :func:`core.learn.training.train` to resume: a fresh folder
  has no checkpoint, and a task the scheduler moved after its worker died (SIGKILL, lost machine)
  continues that run from its last epoch instead of starting a second one;
- before anything is submitted every worker proves it can read the dataset (same content hash)
  and write the runs folder (:func:`check_workers_see_data`): a worker on another machine without
  the shared file system is refused with a message instead of failing inside every run;
- while the grid runs, the client polls which worker executes which run and forwards the runs'
  own progress events, so the CLI prints what it prints for serial training, plus one ``grid``
  event (queued / running / finished / failed per run, and the worker) whenever that changes.

A deterministic run is a pure function of its config, its dataset and the number of threads
TensorFlow splits an op over: AlexNet's predictions on a CPU differ between 1 and 2 intra-op threads
(LeNet-5's happen not to), with oneDNN on or off.
So the thread count is part of the recipe (``threads``, recorded in each run's ``config.json``). By
default every run of a grid uses the count a serial ``train`` on this machine uses (all its
cores), and the grid gives the same bytes as serial training; ``threads="share"`` gives each worker
its share of its machine (cores / worker processes there): faster on a machine with more workers
than cores per run, not byte-identical to a serial run. And a worker keeps dask's own draws off
the Python ``random`` sequence Keras seeds initializers from (:func:`_keep_python_random_for_training`).
See docs/SCALING.md.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError

logger = logging.getLogger(__name__)

GRID_STATES = ("queued", "running", "finished", "failed", "skipped")
_TRAIN_LOCK = threading.Lock()
"""One run at a time per worker process, whatever the worker's ``--nthreads``."""


@dataclass(frozen=True)
class GridTask:
    """One run of the grid, as sent to a worker: small and picklable (paths and parameters)."""

    label: str
    params: dict[str, Any]
    dataset: str
    dataset_hash: str
    run_dir: str
    threads: dict[str, int]


def grid_configs(*, models: list[str], seeds: list[int], folds: int, repeats: int,
                 overrides: dict[str, Any] | None) -> list[Any]:
    """The :class:`~core.learn.training.TrainConfig` of every run, in :func:`core.learn.training.train_many`'s order."""
    from core.learn.training import default_config  # noqa: PLC0415 - keep `core.learn.grid` importable without Keras

    if not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats must be a positive integer; got {repeats!r}. Use 1 for a single split.")
    split_seeds: list[int | None] = list(range(repeats)) if folds or repeats > 1 else [None]
    overrides = dict(overrides or {})
    protocol = overrides.pop("protocol", None)
    return [default_config(m, protocol=protocol, seed=s, folds=folds, fold=f, split_seed=r, **overrides)
            for r in split_seeds for f in range(max(folds, 1)) for m in models for s in seeds]


def serial_threads() -> int:
    """The intra-op threads TensorFlow uses by default here, and so a serial ``train``: every usable core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_threads(threads: int | str | None) -> int | str | None:
    """``threads`` checked: None (TensorFlow's default), a positive integer, or ``"share"``.

    Raises
    ------
    ConfigError
        If it is anything else.
    """
    if threads is None or threads == "share":
        return threads
    if isinstance(threads, str) and threads.isdigit():
        threads = int(threads)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer or 'share'; got {threads!r}. Use e.g. 2, or 'share' "
                          "for each dask worker's share of its machine.")
    return threads


def set_threads(threads: int) -> None:
    """Size TensorFlow's thread pools for this process; a no-op when they already have that size.

    Raises
    ------
    ConfigError
        If TensorFlow already runs here with another size (it fixes them at its first op).
    """
    import tensorflow as tf  # noqa: PLC0415

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as exc:
        current = tf.config.threading.get_intra_op_parallelism_threads()
        raise ConfigError(
            f"threads must be set before TensorFlow runs its first op; this process ({socket.gethostname()} pid "
            f"{os.getpid()}) already runs with {current or 'the default'} intra-op threads, asked {threads}. Restart "
            "the dask workers (`client.restart()`), or leave --threads at its default."
        ) from exc


def worker_threads(client: Any, threads: int | str | None) -> dict[str, int]:
    """Intra-op threads per worker host: ``threads`` everywhere, or with ``"share"`` the host's cores
    divided among its worker processes (at least 1); None gives a serial run's count, this machine's cores."""
    threads = check_threads(threads)
    workers = client.scheduler_info(n_workers=-1)["workers"]
    hosts = [info["host"] for info in workers.values()]
    if threads != "share":
        count = serial_threads() if threads is None else int(threads)
        return {host: count for host in hosts}
    cores = client.run(serial_threads, on_error="ignore")
    per_host: dict[str, int] = {}
    for address, info in workers.items():
        per_host[info["host"]] = max(per_host.get(info["host"], 1), int(cores.get(address, 1)))
    return {host: max(1, per_host[host] // hosts.count(host)) for host in set(hosts)}


# --------------------------------------------------------------------------------------------- data check


def _probe_data(dataset: str, dataset_hash: str, runs_dir: str) -> str | None:
    """On a worker: None if it reads the dataset (same content hash) and writes the runs folder, else why not."""
    from core.prepare.dataset import check_dataset  # noqa: PLC0415
    from core.errors import GalaxyMorphError  # noqa: PLC0415
    from core.io import read_json_object  # noqa: PLC0415

    try:
        check_dataset(dataset)
        seen = read_json_object(Path(dataset) / "manifest.json", max_bytes=8 * 2**20).get("content_hash")
    except (GalaxyMorphError, OSError, ValueError) as exc:
        return f"cannot read the dataset folder {dataset} ({exc})"
    if seen != dataset_hash:
        return f"sees another dataset at {dataset} (content hash {str(seen)[:12]}, the client's {dataset_hash[:12]})"
    probe = Path(runs_dir) / f".probe-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"cannot write the runs folder {runs_dir} ({exc})"
    return None


def check_workers_see_data(client: Any, *, dataset: str | Path, dataset_hash: str, runs_dir: str | Path) -> None:
    """Refuse a cluster whose workers cannot read the dataset or write the runs folder.

    Workers read the dataset and write their run folders by path, so every worker must see both
    under the same paths as this process (a shared file system).

    Raises
    ------
    ConfigError
        Naming each worker that cannot, and why.
    """
    answers = client.run(_probe_data, str(dataset), dataset_hash, str(runs_dir), on_error="return")
    problems = [f"worker {worker} " + (f"failed the check ({answer!r})" if isinstance(answer, BaseException)
                                       else answer)
                for worker, answer in sorted(answers.items()) if answer is not None]
    if problems:
        raise ConfigError(
            "dask workers must read the dataset and write the runs folder under the same paths as this machine; got "
            + "; ".join(problems)
            + ". Put both on a file system every worker mounts at the same path (see docs/SCALING.md), or train "
            "without dask_scheduler."
        )


# --------------------------------------------------------------------------------------------- worker side


def _worker_host() -> str:
    try:
        from distributed import get_worker  # noqa: PLC0415

        return str(get_worker().address).rsplit("://", 1)[-1].rsplit(":", 1)[0]
    except (ImportError, ValueError):
        return socket.gethostname()


_dataset_cache: dict[str, Any] = {}


def _load_dataset_once(path: str, content_hash: str) -> Any:
    """The dataset, read once per worker process for all the runs it trains on it."""
    from core.prepare.dataset import load_dataset  # noqa: PLC0415

    key = f"{path}\0{content_hash}"
    if key not in _dataset_cache:
        _dataset_cache.clear()
        _dataset_cache[key] = load_dataset(path)
    return _dataset_cache[key]


def _keep_python_random_for_training() -> None:
    """Give dask's size sampler a generator of its own, on this worker.

    ``dask.sizeof`` samples the containers it measures with Python's global ``random``, from the
    worker's own threads, a few times a second. Keras draws the seed of every unseeded initializer
    from that same generator (seeded by ``keras.utils.set_random_seed``), so on a worker a run got
    other initial weights than the same run in a serial ``train`` (seen: LeNet-5's first-epoch loss
    1.101 against 1.096). With its own generator dask no longer draws from the run's sequence.
    """
    import random  # noqa: PLC0415

    import dask.sizeof  # noqa: PLC0415

    if dask.sizeof.random is random:
        dask.sizeof.random = random.Random()


def train_task(task: GridTask) -> dict[str, Any]:
    """Train one run of the grid on this worker into its run folder; the outcome as ``train_many`` gives it.

    Always resumes: a new folder has no checkpoint, and a task the scheduler moved after its
    worker died continues that run from its last finished epoch.
    """
    import keras  # noqa: PLC0415

    from core.learn.training import TrainConfig, train  # noqa: PLC0415

    config = TrainConfig.from_dict(task.params)
    where = {"fold": config.fold if config.folds else None, "split_seed": config.split_seed}
    outcome = {"model": config.model, "seed": config.seed, **where, "run_dir": task.run_dir, "worker": None}
    with _TRAIN_LOCK:
        _keep_python_random_for_training()
        try:
            from distributed import get_worker  # noqa: PLC0415

            outcome["worker"] = get_worker().address
        except (ImportError, ValueError):
            outcome["worker"] = f"{socket.gethostname()}:{os.getpid()}"
        try:
            threads = task.threads.get(_worker_host()) or task.threads.get("*") or serial_threads()
            set_threads(threads)
            dataset = _load_dataset_once(task.dataset, task.dataset_hash)
            if dataset.content_hash != task.dataset_hash:
                raise ConfigError(f"the dataset at {task.dataset} changed since the grid started "
                                  f"(content hash {dataset.content_hash[:12]}, planned {task.dataset_hash[:12]}). "
                                  "Train again on the new dataset.")
            from core import runs  # noqa: PLC0415

            runs.set_status(task.run_dir, "running", threads=threads, worker=outcome["worker"])
            result = train(dataset, config, run_dir=task.run_dir, resume=True)
            return {**outcome, "status": result.status, "accuracy": result.metrics["accuracy"], "error": None}
        except Exception as exc:  # noqa: BLE001 - one failing run must not stop the grid; the run records why
            logger.error("run %s failed: %s", Path(task.run_dir).name, exc)
            _mark_failed(task.run_dir, exc)
            return {**outcome, "status": "failed", "accuracy": None, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            keras.backend.clear_session()


def _mark_failed(run_dir: str, exc: BaseException) -> None:
    from core import runs  # noqa: PLC0415
    from core.errors import GalaxyMorphError  # noqa: PLC0415

    try:
        if runs.read_config(run_dir).get("status") != "failed":
            runs.set_status(run_dir, "failed", error=f"{type(exc).__name__}: {exc}")
    except (GalaxyMorphError, OSError):
        pass


def _executing_keys(dask_worker: Any) -> list[str]:
    """On a worker: the keys of the tasks it is executing now."""
    return [str(ts.key) for ts in dask_worker.state.executing]


# --------------------------------------------------------------------------------------------- client side


def train_runs(dataset_path: str | Path, *, models: list[str], seeds: list[int], threads: int | str | None = None,
               scheduler: str | None = None, **options: Any) -> list[dict[str, Any]]:
    """The runs of ``train``: on the dask cluster of ``scheduler`` (default the ``dask_scheduler`` setting)
    through :func:`run_grid`, or one after another here through :func:`core.learn.training.train_many`.

    ``options`` are those both take (``runs_dir``, ``resume``, ``overrides``, ``progress_callback``,
    ``folds``, ``repeats``). ``threads`` sizes TensorFlow's thread pools (see :func:`run_grid`);
    ``"share"`` means nothing without a cluster.
    """
    from core.config import get_settings  # noqa: PLC0415

    scheduler = get_settings().dask_scheduler if scheduler is None else scheduler
    if scheduler:
        return run_grid(dataset_path, models=models, seeds=seeds, scheduler=scheduler, threads=threads, **options)
    threads = check_threads(threads)
    if threads == "share":
        raise ConfigError("threads='share' divides a dask worker's machine among its workers; got it without a "
                          "dask_scheduler. Set dask_scheduler (e.g. 'local:2') or give a number of threads.")
    if threads is not None:
        set_threads(threads)
    from core.learn.training import train_many  # noqa: PLC0415

    return train_many(dataset_path, models=models, seeds=seeds, **options)


def run_grid(
    dataset_path: str | Path,
    *,
    models: list[str],
    seeds: list[int],
    scheduler: str,
    runs_dir: str | Path | None = None,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    progress_callback: Callable[[dict[str, Any]], None] | None = None,
    folds: int = 0,
    repeats: int = 1,
    threads: int | str | None = None,
    poll_seconds: float = 1.0,
) -> list[dict[str, Any]]:
    """Train the grid :func:`core.learn.training.train_many` would train, one task per run on the dask cluster
    ``scheduler``; return the same outcomes (plus the ``worker`` that trained each run).

    Parameters
    ----------
    scheduler : str
        ``"local:N"`` or a scheduler address (:func:`core.parallel.dask_client`).
    threads : int, "share" or None
        TensorFlow threads per run: None, a serial run's count (this machine's cores), so the grid
        gives its bytes; an integer; or ``"share"``, each worker's share of its machine.
    progress_callback : callable, optional
        Gets the runs' own progress events (as serial training sends them) and a ``grid`` event
        (:func:`grid_event`) whenever a run changes state or worker.
    poll_seconds : float
        How often the client looks at the workers and the run folders.

    Raises
    ------
    ConfigError
        If the cluster cannot be reached, or a worker cannot read the dataset or write the runs folder.
    """
    from core import runs  # noqa: PLC0415
    from core.prepare.dataset import load_dataset  # noqa: PLC0415
    from core.parallel import dask_client  # noqa: PLC0415

    from core.learn.training import protocol_differences  # noqa: PLC0415
    from core.prepare.splits import kept_frozen_test  # noqa: PLC0415

    check_threads(threads)
    dataset = load_dataset(dataset_path, mmap=True)
    manifest_params = dataset.manifest.get("params")
    if (folds or repeats > 1) and isinstance(manifest_params, dict) and manifest_params.get("split_file_sha256"):
        logger.info("dataset %s has a frozen test set (its source's split.csv): the splits rotate train "
                    "and validation over its other galaxies, and every one is scored on that test set.",
                    dataset.path)
    root = (Path(runs_dir) if runs_dir is not None else runs.default_runs_dir()).resolve()
    configs = grid_configs(models=models, seeds=seeds, folds=folds, repeats=repeats, overrides=overrides)
    client = dask_client(scheduler)
    root.mkdir(parents=True, exist_ok=True)
    check_workers_see_data(client, dataset=dataset.path.resolve(), dataset_hash=dataset.content_hash, runs_dir=root)
    per_host = worker_threads(client, threads)

    outcomes: list[dict[str, Any] | None] = [None] * len(configs)
    rows: list[dict[str, Any]] = []
    tasks: dict[int, GridTask] = {}
    for i, config in enumerate(configs):
        where = {"fold": config.fold if config.folds else None, "split_seed": config.split_seed}
        params = config.to_dict()
        run = None
        if resume:
            finished, run = (r if r is not None and kept_frozen_test(r.config, dataset) else None
                             for r in runs.find_resumable(root, config_hash_=runs.config_hash(params,
                                                                                                dataset.content_hash)))
            if finished is not None:
                outcomes[i] = {"model": config.model, "seed": config.seed, **where, "run_dir": str(finished.path),
                               "status": "skipped (finished)", "accuracy": finished.metrics.get("accuracy"),
                               "error": None, "worker": None}
                rows.append(_row(config, finished.path, "skipped"))
                continue
        run_dir = run.path if run is not None else runs.create_run(
            root, model=config.model, seed=config.seed, params=params, dataset_path=dataset.path,
            dataset_hash=dataset.content_hash, dataset_manifest=dataset.manifest,
            extra={"protocol_differences": protocol_differences(config)})
        tasks[i] = GridTask(label=_label(config), params=params, dataset=str(dataset.path.resolve()),
                            dataset_hash=dataset.content_hash, run_dir=str(run_dir), threads=per_host)
        rows.append(_row(config, run_dir, "queued"))
    # Distinct keys per grid and run: a key dask still remembers from another grid would not run again.
    grid_id = secrets.token_hex(4)
    futures = {client.submit(train_task, task, key=f"train-{grid_id}-{i}", pure=False): i
               for i, task in tasks.items()}
    logger.info("grid %s: %d runs on %s (%d skipped)", grid_id, len(futures), scheduler, len(configs) - len(futures))
    watcher = _Watcher(client, rows, {future.key: i for future, i in futures.items()}, progress_callback)
    pending = set(futures)
    woken = threading.Event()
    for future in futures:
        future.add_done_callback(lambda _: woken.set())
    try:
        watcher.poll()
        while pending:
            woken.wait(poll_seconds)
            woken.clear()
            done = {future for future in pending if future.done()}
            pending -= done
            for future in done:
                i = futures[future]
                outcomes[i] = _outcome(future, tasks[i], configs[i])
                watcher.finished(i, outcomes[i])
            watcher.poll()
    except KeyboardInterrupt:
        client.cancel(list(pending))
        raise
    return [o for o in outcomes if o is not None]


def _label(config: Any) -> str:
    """``alexnet s0 f1 r2``: model, seed, fold and split seed, as :attr:`core.runs.Run.label` writes them."""
    label = f"{config.model} s{config.seed}"
    if config.folds:
        label += f" f{config.fold}"
    if config.split_seed:
        label += f" r{config.split_seed}"
    return label


def _row(config: Any, run_dir: str | Path, state: str) -> dict[str, Any]:
    return {"run": _label(config), "model": config.model, "seed": config.seed,
            "fold": config.fold if config.folds else None, "split_seed": config.split_seed,
            "run_id": Path(run_dir).name, "run_dir": str(run_dir), "state": state, "worker": None,
            "epoch": None, "epochs": config.epochs}


def _outcome(future: Any, task: GridTask, config: Any) -> dict[str, Any]:
    """The task's outcome; a task the cluster gave up on (its workers kept dying) is a failed run."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - KilledWorker, or a worker that could not unpickle the task
        _mark_failed(task.run_dir, exc)
        where = {"fold": config.fold if config.folds else None, "split_seed": config.split_seed}
        return {"model": config.model, "seed": config.seed, **where, "run_dir": task.run_dir, "status": "failed",
                "accuracy": None, "error": f"{type(exc).__name__}: {exc}", "worker": None}


def grid_event(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``grid`` progress event: every run's state and worker, and the count per state."""
    counts = {state: sum(r["state"] == state for r in rows) for state in GRID_STATES}
    return {"time": time.time(), "status": "grid", "counts": counts,
            "runs": [{k: r[k] for k in ("run", "run_id", "state", "worker", "epoch", "epochs")} for r in rows]}


def format_grid(event: dict[str, Any]) -> str:
    """One line for the terminal: ``grid: 2 queued, 2 running (alexnet s0 f1 on tcp://...: epoch 1/2), ...``."""
    counts = event.get("counts") if isinstance(event.get("counts"), dict) else {}
    rows = event.get("runs") if isinstance(event.get("runs"), list) else []
    parts = []
    for state in GRID_STATES:
        n = counts.get(state, 0)
        if not n and state in ("skipped", "failed"):
            continue
        text = f"{n} {state}"
        if state == "running" and n:
            running = [r for r in rows if isinstance(r, dict) and r.get("state") == "running"]
            text += " (" + ", ".join(
                f"{r.get('run')} on {r.get('worker')}"
                + (f" epoch {r['epoch']}/{r.get('epochs')}" if r.get("epoch") else "") for r in running) + ")"
        parts.append(text)
    return f"grid of {len(rows)} runs: " + ", ".join(parts)


class _Watcher:
    """The client's view of a running grid: which worker executes which run, and the runs' own events."""

    def __init__(self, client: Any, rows: list[dict[str, Any]], key_index: dict[str, int],
                 progress_callback: Callable[[dict[str, Any]], None] | None) -> None:
        self.client = client
        self.rows = rows
        self.key_index = key_index
        self.progress_callback = progress_callback
        self.offsets: dict[int, int] = {}
        self.last_shown: list[tuple[Any, ...]] | None = None

    def poll(self) -> None:
        """Look at the workers and the run folders; send what changed."""
        try:
            executing = self.client.run(_executing_keys, on_error="ignore")
        except OSError:  # the scheduler is busy or a worker went away mid-call: look again next time
            executing = {}
        now = {self.key_index[key]: worker for worker, keys in executing.items() for key in keys
               if key in self.key_index}
        for i, row in enumerate(self.rows):
            if row["state"] not in ("queued", "running"):
                continue
            if i in now:
                row.update(state="running", worker=now[i])
            elif row["state"] == "running":
                row["state"] = "queued"  # its worker died: the scheduler gives the run to another
            self._forward(i)
        self._show()

    def finished(self, i: int, outcome: dict[str, Any]) -> None:
        self._forward(i)
        self.rows[i].update(state="finished" if outcome["status"] == "finished" else "failed",
                            worker=outcome.get("worker") or self.rows[i]["worker"])
        self._show()

    def _forward(self, i: int) -> None:
        """Send the run's new progress events (what its worker appended to ``events.jsonl``)."""
        import json  # noqa: PLC0415

        path = Path(self.rows[i]["run_dir"]) / "events.jsonl"
        start = self.offsets.get(i, 0)
        try:
            with open(path, "rb") as handle:
                handle.seek(start)
                chunk = handle.read()
        except OSError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offsets[i] = start + len(complete)
        for line in complete.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if isinstance(event.get("epoch"), int):
                self.rows[i]["epoch"] = event["epoch"]
            if self.progress_callback is not None:
                self.progress_callback(event)

    def _show(self) -> None:
        shown = [(r["state"], r["worker"], r["epoch"]) for r in self.rows]
        if shown != self.last_shown:
            self.last_shown = shown
            if self.progress_callback is not None:
                self.progress_callback(grid_event(self.rows))
