"""The run registry: one folder per training run under ``runs/RUN_ID/``.

A run folder holds

- ``config.json``: every training parameter, the dataset path and content hash, the dataset's
  resolved preprocessing and source (what Classify repeats; :mod:`core.prepare.provenance`), package
  versions, device, process id and host, and ``status`` (``running``, ``finished``, ``failed``,
  ``stopped``); rewritten atomically whenever the status changes;
- ``events.jsonl``: progress events (per epoch and every few batches) for the dashboard;
- ``history.csv``: one row per epoch; ``metrics.json``: test-set evaluation and timings;
- ``predictions.csv``: ``name, true, pred, prob_<class>...`` for every test galaxy;
- ``model.keras``: the inference model (best weights); ``checkpoint/``: resumable state.

A run whose ``status`` is ``running`` but whose process is gone (same host, pid not alive) is
reported as ``stale``: it was killed and can be continued with ``train --resume``.

Files read back are checked before use (:class:`RunDamagedError`): ``config.json`` and
``metrics.json`` must be JSON objects of the expected fields and types, ``predictions.csv`` and
``history.csv`` tables of the expected columns, and ``model.keras`` a zip whose members' sizes (read
from its directory, before anything is unpacked) stay under caps, so a truncated, hand-edited or
crafted file gives one message naming it instead of a traceback somewhere downstream. Every one is
refused unless it is a regular file (:func:`core.io.check_regular`: a named pipe would block).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import math
import os
import platform
import secrets
import socket
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import GalaxyMorphError, shorten
from core.paths import runs_root
from core.io import RefusedFileError, atomic_write_json, open_regular, read_json_object, read_jsonl, read_regular_bytes

logger = logging.getLogger(__name__)

STATUSES = ("running", "finished", "failed", "stopped", "stale")
#: What :func:`list_runs` shows for a run folder whose config or metrics cannot be used.
DAMAGED = "damaged"
LIST_COLUMNS = (
    "id", "model", "seed", "dataset", "status", "accuracy", "balanced_accuracy", "macro_f1",
    "epochs_done", "created", "finished", "config_hash", "path", "problem",
)
#: Run JSON files are a few kilobytes; a larger one is not ours and is not read whole.
MAX_JSON_BYTES = 8 * 2**20
#: Largest ``predictions.csv`` / ``history.csv`` read (a test set of a million galaxies is ~100 MB).
MAX_TABLE_BYTES = 256 * 2**20
#: Largest ``model.keras`` opened, and what its members may unpack to (from the zip directory):
#: Keras reads ``config.json`` whole into memory, so a 1.8 MB file padded with whitespace cost 4 GB.
MAX_MODEL_BYTES = 4 * 2**30
MODEL_MEMBER_BYTES = {"config.json": 16 * 2**20, "metadata.json": 2**20}
MAX_MODEL_MEMBER_BYTES = 4 * 2**30
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
#: Metrics that ``evaluate`` and ``compare`` read from every finished run: numbers (or null).
METRIC_NUMBERS = (
    "accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "ece", "params", "train_seconds",
    "epochs_done", "best_epoch", "inference_img_per_s", "n_test",
)


class RunNotFoundError(GalaxyMorphError):
    """A run id or folder does not name a run."""


class RunDamagedError(GalaxyMorphError):
    """A file of a run folder is truncated, not JSON, or lacks the fields the tool wrote."""


def default_runs_dir() -> Path:
    """``runs_dir`` from the settings, read now."""
    return runs_root()


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
    dataset_manifest: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Create ``runs_dir/RUN_ID/`` with a ``config.json`` in status ``running``; return the folder.

    The id is ``YYYYmmdd-HHMMSS-<model>-s<seed>-<4 hex>``: sortable by time and readable. A new
    folder is made, never an existing one reused; ``runs_dir`` must be absent or hold only run
    folders, so runs never land inside a dataset, a source or the user's own folder. With the
    dataset's ``dataset_manifest``, its resolved preprocessing and source are stored too, so the
    run can be repeated on new images after the dataset folder is rebuilt.

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
        "dataset": {"path": str(Path(dataset_path).resolve()), "content_hash": dataset_hash,
                    **_trained_on(dataset_manifest or {})},
        "config_hash": config_hash(params, dataset_hash),
        "created": now.isoformat(timespec="seconds"),
        "versions": package_versions(),
        **(extra or {}),
    }
    _write_config(path, config, status="running")
    return path


def _trained_on(manifest: dict[str, Any]) -> dict[str, Any]:
    """What of a dataset's manifest a run needs to classify new images as it was trained."""
    params = manifest.get("params") if isinstance(manifest.get("params"), dict) else {}
    # split_file_sha256: the test rows are the source's frozen test set, which folds keep (core.prepare.splits)
    stored = {"preprocess": params.get("preprocess"), "source": manifest.get("source"),
              "source_kind": manifest.get("source_kind"), "split_file_sha256": params.get("split_file_sha256")}
    return {key: value for key, value in stored.items() if value is not None}


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
    config = _read_json_object(path)
    _check_config(path, config)
    return config


def damaged_file(path: Path, reason: str) -> RunDamagedError:
    """The error for a run's file that cannot be used: it names the file, why, and what to do."""
    return RunDamagedError(
        f"{path} is damaged: {reason}. Delete the run folder {path.parent} and train that model again."
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        return read_json_object(path, max_bytes=MAX_JSON_BYTES)
    except ValueError as exc:
        raise damaged_file(path, str(exc)) from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_config(path: Path, config: dict[str, Any]) -> None:
    required = {"id": str, "model": str, "seed": int, "params": dict, "dataset": dict, "status": str}
    names = {str: "text", int: "whole number", dict: "JSON object"}
    for key, kind in required.items():
        value = config.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise damaged_file(path, f"{key!r} must be a {names[kind]}; got {_short(value)}")
    if config["status"] not in STATUSES[:-1]:
        raise damaged_file(path, f"'status' must be one of {STATUSES[:-1]}; got {_short(config['status'])}")
    if not isinstance(config["dataset"].get("path"), str):
        raise damaged_file(path, f"'dataset' must name its 'path'; got {_short(config['dataset'])}")
    classes = config.get("classes", [])
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise damaged_file(path, f"'classes' must be a list of names; got {_short(classes)}")
    if not _is_count(config.get("epochs_done", 0)):
        raise damaged_file(path, f"'epochs_done' must be a whole number >= 0; got {_short(config.get('epochs_done'))}")


def _check_metrics(path: Path, metrics: dict[str, Any], classes: list[str]) -> None:
    # Fields are checked when present: older runs and hand-made test runs may lack some, and
    # readers treat a missing metric as "not measured".
    for key in METRIC_NUMBERS:
        value = metrics.get(key)
        if value is not None and (not _is_number(value) or math.isinf(value)):
            raise damaged_file(path, f"{key!r} must be a finite number; got {_short(value)}")
    per_class = metrics.get("per_class", {})
    if not isinstance(per_class, dict) or not all(
        isinstance(scores, dict) and all(_is_number(scores.get(k)) for k in ("precision", "recall", "f1"))
        and _is_count(scores.get("support")) for scores in per_class.values()
    ):
        raise damaged_file(path, "'per_class' must map each class to its precision, recall, f1 and support")
    if "confusion" in metrics:
        confusion, n = metrics["confusion"], len(classes) or len(per_class)
        if not (isinstance(confusion, list) and len(confusion) == n and all(
            isinstance(row, list) and len(row) == n and all(_is_count(v) for v in row) for row in confusion
        )):
            raise damaged_file(path, f"'confusion' must be a {n} x {n} table of counts")


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
        """Short label for tables and legends: ``resnet18 s0``, with the fold and split seed of a
        repeated evaluation (``resnet18 s0 f2``, ``resnet18 s0 f2 r1``) so its runs are told apart."""
        params = self.config.get("params") if isinstance(self.config.get("params"), dict) else {}
        label = f"{self.model_name} s{self.seed}"
        if isinstance(params.get("folds"), int) and params["folds"] > 0 and isinstance(params.get("fold"), int):
            label += f" f{params['fold']}"
        if isinstance(params.get("split_seed"), int) and params["split_seed"] > 0:
            label += f" r{params['split_seed']}"
        return label

    @property
    def history(self) -> pd.DataFrame:
        """One row per finished epoch (empty before the first).

        Raises
        ------
        RunDamagedError
            If ``history.csv`` is there but not a table of numbers with :data:`HISTORY_COLUMNS`.
        """
        path = self.path / "history.csv"
        history = _read_table(path, HISTORY_COLUMNS)
        if not all(pd.api.types.is_numeric_dtype(history[c]) for c in HISTORY_COLUMNS if c in history):
            raise damaged_file(path, f"its columns must hold numbers ({', '.join(HISTORY_COLUMNS)})")
        return history

    @property
    def metrics(self) -> dict[str, Any]:
        """Test-set metrics and timings (empty until the run finished).

        Raises
        ------
        RunDamagedError
            If ``metrics.json`` is there but not the file training writes.
        """
        path = self.path / "metrics.json"
        if not path.exists():
            return {}
        metrics = _read_json_object(path)
        _check_metrics(path, metrics, self.classes)
        return metrics

    @property
    def predictions(self) -> pd.DataFrame:
        """``name, true, pred, prob_<class>...`` per test galaxy (empty until finished).

        Raises
        ------
        RunDamagedError
            If ``predictions.csv`` is there but lacks those columns or holds other classes.
        """
        path = self.path / "predictions.csv"
        probabilities = tuple(f"prob_{c}" for c in self.classes)
        predictions = _read_table(path, ("name", "true", "pred", *probabilities))
        if predictions.empty or not self.classes:
            return predictions
        classes = set(self.classes)
        if not (set(predictions["true"].astype(str)) | set(predictions["pred"].astype(str))) <= classes:
            raise damaged_file(path, f"its 'true' and 'pred' columns must hold the run's classes {self.classes}")
        if not all(pd.api.types.is_numeric_dtype(predictions[c]) for c in probabilities):
            raise damaged_file(path, "its prob_<class> columns must hold numbers")
        return predictions

    def events(self) -> list[dict[str, Any]]:
        """Progress events written so far."""
        return read_jsonl(self.path / "events.jsonl")

    def files_problem(self, files: Iterable[str] = ("predictions.csv", "history.csv")) -> str | None:
        """Why one of ``files`` (``predictions.csv``, ``history.csv``, ``model.keras``) cannot be used,
        or None: the message of its :class:`RunDamagedError`. Missing files are no problem here."""
        try:
            for name in files:
                if name == "predictions.csv":
                    self.predictions  # noqa: B018 - reads and checks the file
                elif name == "history.csv":
                    self.history  # noqa: B018
                elif name == "model.keras" and (self.path / name).exists():
                    check_model_archive(self.path / name, damaged=damaged_file)
                elif name not in ("predictions.csv", "history.csv", "model.keras"):
                    raise ValueError(f"files must name predictions.csv, history.csv or model.keras; got {name!r}.")
        except RunDamagedError as exc:
            return str(exc)
        return None


def split_damaged(runs: Iterable[Run], files: Iterable[str] = ("predictions.csv", "history.csv"),
                  ) -> tuple[list[Run], list[tuple[Path, str]]]:
    """The runs whose ``files`` can be used, and ``(folder, message)`` of the others
    (:meth:`Run.files_problem`): ``compare``, Model comparison and Classify list those and go on."""
    usable, damaged = [], []
    files = tuple(files)
    for run in runs:
        problem = run.files_problem(files)
        if problem is None:
            usable.append(run)
        else:
            damaged.append((run.path, problem))
    return usable, damaged


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A CSV table of a run folder with ``columns``, empty when the file is absent."""
    if not path.exists():
        return pd.DataFrame()
    try:
        table = pd.read_csv(io.BytesIO(read_regular_bytes(path, max_bytes=MAX_TABLE_BYTES)))
    except RefusedFileError as exc:
        raise damaged_file(path, exc.reason) from exc
    except (OSError, ValueError) as exc:  # EmptyDataError, ParserError and UnicodeDecodeError are ValueErrors
        raise damaged_file(path, f"it is not a readable CSV table ({type(exc).__name__})") from exc
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise damaged_file(path, f"it lacks the columns {shorten(missing)}")
    return table


def check_model_archive(path: Path, *, damaged: Any) -> None:
    """Refuse a ``.keras`` file before Keras opens it: it must be a regular file under
    :data:`MAX_MODEL_BYTES`, a zip with ``config.json``, and no member may unpack (by the sizes in
    the zip directory, which bound what the reader returns) to more than its cap in
    :data:`MODEL_MEMBER_BYTES` (:data:`MAX_MODEL_MEMBER_BYTES` for the weights).

    ``damaged(path, reason)`` makes the exception raised (the run's or the checkpoint's).
    """
    try:
        with open_regular(path, max_bytes=MAX_MODEL_BYTES) as handle, zipfile.ZipFile(handle) as archive:
            members = archive.infolist()
    except RefusedFileError as exc:
        raise damaged(path, exc.reason) from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise damaged(path, f"it is not a Keras model archive ({type(exc).__name__}: {shorten(exc)})") from exc
    if "config.json" not in {m.filename for m in members}:
        raise damaged(path, "it is not a Keras model archive (no config.json)")
    for member in members:
        limit = MODEL_MEMBER_BYTES.get(member.filename, MAX_MODEL_MEMBER_BYTES)
        if member.file_size > limit:
            raise damaged(path, f"its member {shorten(member.filename)!r} unpacks to {member.file_size:,} bytes, "
                                f"more than the {limit // 2**20:,} MB allowed")


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


def scan_runs(runs_dir: str | Path | None = None) -> tuple[list[Run], list[tuple[Path, str]]]:
    """Every run under ``runs_dir``, oldest first, and ``(folder, message)`` for each whose
    ``config.json`` or ``metrics.json`` is damaged (:class:`RunDamagedError`)."""
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    good, damaged = [], []
    for path in sorted(root.glob("*/config.json")) if root.exists() else []:
        try:
            run = load_run(path.parent)
            run.metrics  # noqa: B018 - read now, so a damaged file is reported here and not mid-report
        except GalaxyMorphError as exc:
            damaged.append((path.parent, str(exc)))
            continue
        good.append(run)
    return good, damaged


def iter_runs(runs_dir: str | Path | None = None) -> list[Run]:
    """Every usable run under ``runs_dir``, oldest first; damaged folders are logged and skipped."""
    good, damaged = scan_runs(runs_dir)
    for _, message in damaged:
        logger.warning("skipped: %s", message)
    return good


def list_runs(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per run: :data:`LIST_COLUMNS`, oldest first (what the dashboard's run list shows).

    A damaged run folder has status :data:`DAMAGED` and its message in ``problem``; the
    other columns are empty.
    """
    rows = []
    good, damaged = scan_runs(runs_dir)
    for path, message in damaged:
        rows.append({"id": path.name, "model": "?", "seed": -1, "dataset": "", "status": DAMAGED,
                     "accuracy": np.nan, "balanced_accuracy": np.nan, "macro_f1": np.nan, "epochs_done": 0,
                     "created": None, "finished": None, "config_hash": None, "path": str(path), "problem": message})
    for run in good:
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
            "problem": "",
        })
    table = pd.DataFrame(rows, columns=list(LIST_COLUMNS))
    return table.sort_values("path", kind="stable").reset_index(drop=True) if damaged else table


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
