"""The run registry: one folder per training run under ``runs/RUN_ID/``.

A run folder holds

- ``config.json``: every training parameter, the dataset path and content hash, package
  versions, device, process id and host, and ``status`` (``running``, ``finished``, ``failed``,
  ``stopped``); rewritten atomically whenever the status changes;
- ``events.jsonl``: progress events (per epoch and every few batches) for the dashboard;
- ``history.csv``: one row per epoch; ``metrics.json``: test-set evaluation and timings;
- ``predictions.csv``: ``name, true, pred, prob_<class>...`` for every test galaxy;
- ``model.keras``: the inference model (best weights); ``checkpoint/``: resumable state.

A run whose ``status`` is ``running`` but whose process is gone (same host, pid not alive) is
reported as ``stale``: it was killed and can be continued with ``train --resume``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import get_settings
from core.errors import GalaxyMorphError
from core.io import atomic_write_json, read_jsonl

STATUSES = ("running", "finished", "failed", "stopped", "stale")
LIST_COLUMNS = (
    "id", "model", "seed", "dataset", "status", "accuracy", "balanced_accuracy", "macro_f1",
    "epochs_done", "created", "finished", "config_hash", "path",
)


class RunNotFoundError(GalaxyMorphError):
    """A run id or folder does not name a run."""


def default_runs_dir() -> Path:
    """``runs_dir`` from the settings, read now."""
    return Path(get_settings().runs_dir)


def config_hash(params: dict[str, Any], dataset_hash: str) -> str:
    """Short hash of the training parameters and the dataset: equal hashes mean "same experiment"."""
    payload = json.dumps({"params": params, "dataset": dataset_hash}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def package_versions() -> dict[str, str]:
    """Versions of the packages that change results, for the run's config."""
    import keras  # noqa: PLC0415 - keep `core.runs` importable without loading Keras

    versions = {"python": platform.python_version(), "numpy": np.__version__, "keras": keras.__version__,
                "keras_backend": keras.backend.backend()}
    try:
        import tensorflow as tf  # noqa: PLC0415

        versions["tensorflow"] = tf.__version__
    except ImportError:
        pass
    from core import __version__  # noqa: PLC0415

    versions["galaxy_morph"] = __version__
    return versions


def create_run(
    runs_dir: str | Path,
    *,
    model: str,
    seed: int,
    params: dict[str, Any],
    dataset_path: str | Path,
    dataset_hash: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Create ``runs_dir/RUN_ID/`` with a ``config.json`` in status ``running``; return the folder.

    The id is ``YYYYmmdd-HHMMSS-<model>-s<seed>-<4 hex>``: sortable by time and readable. A new
    folder is made, never an existing one reused; ``runs_dir`` must be absent or hold only run
    folders, so runs never land inside a dataset, a source or the user's own folder.

    Raises
    ------
    GalaxyMorphError
        If ``runs_dir`` is a file or holds anything but runs.
    """
    _check_runs_dir(Path(runs_dir))
    now = dt.datetime.now(dt.timezone.utc)
    run_id = f"{now:%Y%m%d-%H%M%S}-{model}-s{seed}-{secrets.token_hex(2)}"
    path = Path(runs_dir) / run_id
    path.mkdir(parents=True, exist_ok=False)
    config = {
        "id": run_id,
        "model": model,
        "seed": seed,
        "params": params,
        "dataset": {"path": str(Path(dataset_path).resolve()), "content_hash": dataset_hash},
        "config_hash": config_hash(params, dataset_hash),
        "created": now.isoformat(timespec="seconds"),
        "versions": package_versions(),
        **(extra or {}),
    }
    _write_config(path, config, status="running")
    return path


def _check_runs_dir(root: Path) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise GalaxyMorphError(f"runs_dir must be a folder; got the file {root}. Choose a folder, e.g. runs.")
    # A run folder that has no config.json yet is one whose creation was cut off.
    foreign = sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and not (
        p.is_dir() and not p.is_symlink() and ((p / "config.json").is_file() or not any(p.iterdir()))))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise GalaxyMorphError(
            f"runs_dir {root} holds things that are not runs ({shown}); runs go in a folder of their own. "
            "Choose another --runs-dir, e.g. runs."
        )


def set_status(run_dir: str | Path, status: str, **fields: Any) -> dict[str, Any]:
    """Rewrite the run's ``config.json`` with a new ``status`` (and extra fields); return it."""
    if status not in STATUSES[:-1]:
        raise GalaxyMorphError(f"status must be one of {STATUSES[:-1]}; got {status!r}.")
    config = read_config(run_dir)
    config.update(fields)
    if status != "running":
        config["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    _write_config(Path(run_dir), config, status=status)
    return config


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``config.json``."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise RunNotFoundError(f"{run_dir} is not a run folder (no config.json). List runs with `python -m core evaluate`.")
    return json.loads(path.read_text(encoding="utf-8"))


def _write_config(path: Path, config: dict[str, Any], *, status: str) -> None:
    config["status"] = status
    config["pid"] = os.getpid()
    config["host"] = socket.gethostname()
    atomic_write_json(path / "config.json", config)


def effective_status(config: dict[str, Any]) -> str:
    """``status`` from the config, with a dead ``running`` process on this host turned into ``stale``."""
    status = str(config.get("status", "failed"))
    if status == "running" and config.get("host") == socket.gethostname() and not _pid_alive(config.get("pid")):
        return "stale"
    return status


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) still answers kill(0); it is not running.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class Run:
    """One run folder, read lazily: the config now, the larger files when asked for."""

    path: Path
    config: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.config.get("id", self.path.name))

    @property
    def model_name(self) -> str:
        return str(self.config.get("model", "?"))

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def status(self) -> str:
        """Status with killed runs shown as ``stale``."""
        return effective_status(self.config)

    @property
    def classes(self) -> list[str]:
        return list(self.config.get("classes", []))

    @property
    def label(self) -> str:
        """Short label for tables and legends: ``resnet18 s0``."""
        return f"{self.model_name} s{self.seed}"

    @property
    def history(self) -> pd.DataFrame:
        """One row per finished epoch (empty before the first)."""
        path = self.path / "history.csv"
        return pd.read_csv(path) if path.exists() else pd.DataFrame()

    @property
    def metrics(self) -> dict[str, Any]:
        """Test-set metrics and timings (empty until the run finished)."""
        path = self.path / "metrics.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    @property
    def predictions(self) -> pd.DataFrame:
        """``name, true, pred, prob_<class>...`` per test galaxy (empty until finished)."""
        path = self.path / "predictions.csv"
        return pd.read_csv(path) if path.exists() else pd.DataFrame()

    def events(self) -> list[dict[str, Any]]:
        """Progress events written so far."""
        return read_jsonl(self.path / "events.jsonl")

    def model(self) -> Any:
        """The trained inference model, loaded with ``safe_mode=True``."""
        import keras  # noqa: PLC0415 - keep listing runs fast

        import core.models  # noqa: F401, PLC0415 - registers the custom layers for deserialisation

        path = self.path / "model.keras"
        if not path.exists():
            raise RunNotFoundError(f"run {self.id} has no model.keras (status {self.status}). Finish or resume it first.")
        return keras.saving.load_model(path, safe_mode=True)


def load_run(path: str | Path) -> Run:
    """Read the run folder ``path``.

    Raises
    ------
    RunNotFoundError
        If ``path`` has no ``config.json``.
    """
    path = Path(path)
    return Run(path=path, config=read_config(path))


def resolve_run(ref: str | Path, *, runs_dir: str | Path | None = None) -> Run:
    """A run from a folder path, an id, or a unique id prefix inside ``runs_dir``.

    Raises
    ------
    RunNotFoundError
        If nothing, or more than one run, matches.
    """
    candidate = Path(ref)
    if (candidate / "config.json").exists():
        return load_run(candidate)
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    matches = sorted(p for p in root.glob(f"{ref}*") if (p / "config.json").exists()) if root.exists() else []
    if len(matches) == 1:
        return load_run(matches[0])
    if not matches:
        raise RunNotFoundError(f"run {ref!r} not found as a folder or an id in {root}. List runs with `evaluate --list`.")
    raise RunNotFoundError(f"run {ref!r} is ambiguous in {root}: {', '.join(p.name for p in matches[:5])}. Give more of the id.")


def iter_runs(runs_dir: str | Path | None = None) -> list[Run]:
    """Every readable run under ``runs_dir``, oldest first; unreadable folders are skipped."""
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    runs = []
    for path in sorted(root.glob("*/config.json")) if root.exists() else []:
        try:
            runs.append(load_run(path.parent))
        except (OSError, ValueError, GalaxyMorphError):
            continue
    return runs


def list_runs(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per run: :data:`LIST_COLUMNS`, oldest first (what the dashboard's run list shows)."""
    rows = []
    for run in iter_runs(runs_dir):
        metrics = run.metrics
        rows.append({
            "id": run.id,
            "model": run.model_name,
            "seed": run.seed,
            "dataset": run.config.get("dataset", {}).get("path"),
            "status": run.status,
            "accuracy": metrics.get("accuracy", np.nan),
            "balanced_accuracy": metrics.get("balanced_accuracy", np.nan),
            "macro_f1": metrics.get("macro_f1", np.nan),
            "epochs_done": int(run.config.get("epochs_done", 0)),
            "created": run.config.get("created"),
            "finished": run.config.get("finished"),
            "config_hash": run.config.get("config_hash"),
            "path": str(run.path),
        })
    return pd.DataFrame(rows, columns=list(LIST_COLUMNS))


def find_resumable(runs_dir: str | Path, *, config_hash_: str) -> tuple[Run | None, Run | None]:
    """``(finished, unfinished)``: the latest run of this experiment in each state, or ``None``.

    ``train --resume`` skips an experiment that has a finished run and continues the latest
    unfinished (stale, failed or stopped) one.
    """
    finished = unfinished = None
    for run in iter_runs(runs_dir):
        if run.config.get("config_hash") != config_hash_:
            continue
        if run.status == "finished":
            finished = run
        elif run.status != "running":
            unfinished = run
    return finished, unfinished
