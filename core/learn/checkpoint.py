"""A run while it trains: progress events, history, early stopping with the best weights, checkpoints.

:class:`RunCallback` keeps them together because resuming needs their state together; the
checkpoint (``checkpoint/epoch-NNNN.keras`` and ``state.json``) is written every epoch, the state
last, so a killed run continues at the right epoch (:func:`load_state`).
"""

from __future__ import annotations

import errno
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from core.errors import GalaxyMorphError, shorten
from core.io import append_jsonl, atomic_path, atomic_write_json, atomic_write_text, free_bytes, read_json_object
from core.learn.protocol import TrainConfig

EVENT_FIELDS = ("time", "run_id", "model", "seed", "epoch", "epochs", "batch", "batches", "loss", "accuracy",
                "val_loss", "val_accuracy", "status")


class TrainingError(GalaxyMorphError):
    """Training could not go on (diverged to NaN, unusable dataset, bad checkpoint)."""


def early_stopping_replay(val_losses: Sequence[float], patience: int) -> tuple[int, int]:
    """``(epochs run, best epoch)`` had training stopped with ``patience`` on this validation-loss curve.

    The rule training applies (:func:`_stopping_step`: an epoch improves when its loss is strictly
    below the best so far; stop after ``patience`` epochs without one; 0 never stops), replayed on a
    recorded ``history.csv``, so other patiences can be judged on validation data without training
    again. Exact for any patience up to the one the run was trained with.
    """
    best, best_epoch, wait = np.inf, 0, 0
    for epoch, loss in enumerate(val_losses, start=1):
        improved, wait, stop = _stopping_step(loss, best, wait, patience)
        if improved:
            best, best_epoch = loss, epoch
        if stop:
            return epoch, best_epoch
    return len(val_losses), best_epoch


def _stopping_step(loss: float, best: float, wait: int, patience: int) -> tuple[bool, int, bool]:
    """``(improved, wait, stop)`` after an epoch whose validation loss is ``loss``: the one early-stopping
    rule, shared by training and :func:`early_stopping_replay`."""
    improved = bool(loss < best)
    wait = 0 if improved else wait + 1
    return improved, wait, bool(patience) and wait >= patience


class RunCallback(keras.callbacks.Callback):
    """Progress events, history, early stopping with best weights, and the per-epoch checkpoint.

    One callback holds all of it because resuming needs their state together (best loss, wait
    counter, history, epoch) and Keras' own EarlyStopping resets its state on every ``fit``.

    Events go to ``run_dir/events.jsonl`` (with ``event_fields`` added to each); the checkpoint and
    ``history.csv`` to ``work_dir`` (default ``run_dir``; a tuning candidate's own folder).
    """

    def __init__(self, *, run_dir: Path, run_id: str, config: TrainConfig, batches: int, state: dict[str, Any],
                 progress_callback: Callable[[dict[str, Any]], None] | None, work_dir: Path | None = None,
                 event_fields: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.work_dir = run_dir if work_dir is None else work_dir
        self.event_fields = dict(event_fields or {})
        self.run_id = run_id
        self.config = config
        self.batches = batches
        self.state = state
        self.progress_callback = progress_callback
        self.epoch_started = time.monotonic()

    def emit(self, **fields: Any) -> dict[str, Any]:
        event = {"time": time.time(), "run_id": self.run_id, "model": self.config.model, "seed": self.config.seed,
                 "epochs": self.config.epochs, "batches": self.batches, **self.event_fields}
        event.update({k: (None if isinstance(v, float) and v != v else v) for k, v in fields.items()})
        event = {k: event.get(k) for k in EVENT_FIELDS} | {k: v for k, v in event.items() if k not in EVENT_FIELDS}
        append_jsonl(self.run_dir / "events.jsonl", event)
        if self.progress_callback is not None:
            self.progress_callback(event)
        return event

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_started = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        loss = float(logs.get("loss", np.nan))
        if not np.isfinite(loss):
            self.model.stop_training = True
            self.state["diverged"] = True
            return
        if (batch + 1) % self.config.events_every == 0 or batch + 1 == self.batches:
            self.emit(epoch=self.state["epoch"] + 1, batch=batch + 1, loss=loss,
                      accuracy=float(logs.get("accuracy", np.nan)), status="running")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.state.get("diverged"):
            return
        logs = {k: float(v) for k, v in (logs or {}).items()}
        seconds = time.monotonic() - self.epoch_started
        row = {"epoch": epoch + 1, "loss": logs.get("loss"), "accuracy": logs.get("accuracy"),
               "val_loss": logs.get("val_loss"), "val_accuracy": logs.get("val_accuracy"),
               "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
               "seconds": round(seconds, 3)}
        state = self.state
        state["history"].append(row)
        state["epoch"] = epoch + 1
        state["train_seconds"] += seconds
        val_loss = logs.get("val_loss", np.inf)
        ckpt = self.work_dir / "checkpoint"
        improved, state["wait"], stop = _stopping_step(val_loss, state["best_val_loss"], state["wait"],
                                                       self.config.patience)
        if improved:
            state.update(best_val_loss=val_loss, best_epoch=epoch + 1)
            check_room(self.model, ckpt, optimizer=False)
            with atomic_path(ckpt / "best.weights.h5") as tmp:
                self.model.save_weights(tmp)
        if stop:
            self.model.stop_training = True
            state["stopped_early"] = True
        atomic_write_text(self.work_dir / "history.csv", pd.DataFrame(state["history"]).to_csv(index=False))
        save_checkpoint(self.model, ckpt, state)
        self.emit(epoch=epoch + 1, batch=self.batches, loss=row["loss"], accuracy=row["accuracy"],
                  val_loss=row["val_loss"], val_accuracy=row["val_accuracy"], status="running", seconds=row["seconds"])


def check_room(model: keras.Model, folder: Path, *, optimizer: bool) -> None:
    """Raise ENOSPC before saving ``model`` into ``folder`` if the disk cannot hold it.

    h5py writing into a full disk does not fail cleanly (it prints errors from destructors and
    has crashed the process), so the space is checked first: the weights' bytes, the optimiser's
    (with ``optimizer``, up to twice the weights for Adam's moments), and a margin for the format.
    """
    weights = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)
    needed = int(weights * (3 if optimizer else 1) * 1.25) + 256 * 2**10
    folder.mkdir(parents=True, exist_ok=True)
    if free_bytes(folder) < needed:
        raise OSError(errno.ENOSPC, f"No space left on device (saving the model needs about {needed:,} bytes)", str(folder))


def save_checkpoint(model: keras.Model, ckpt: Path, state: dict[str, Any]) -> None:
    """Model + optimiser to ``epoch-N.keras``, then ``state.json`` naming it, then drop older files.

    The state is written last, so after a crash it always names a complete model file.
    """
    name = f"epoch-{state['epoch']:04d}.keras"
    check_room(model, ckpt, optimizer=True)
    with atomic_path(ckpt / name) as tmp:
        model.save(tmp)
    atomic_write_json(ckpt / "state.json", {**state, "model_file": name})
    for old in ckpt.glob("epoch-*.keras"):
        if old.name != name:
            old.unlink(missing_ok=True)


#: A checkpoint's state.json holds counters and one history row per epoch: kilobytes.
MAX_STATE_BYTES = 16 * 2**20


def load_state(ckpt: Path) -> dict[str, Any] | None:
    """The checkpoint's ``state.json``, checked: a record read back from disk names only a file of
    its own folder (never ``../`` or an absolute path) and holds the counters training keeps.

    Raises
    ------
    TrainingError
        If the state is damaged or crafted, or the model file it names is missing.
    """
    path = ckpt / "state.json"
    if not path.exists():
        return None
    try:
        state = read_json_object(path, max_bytes=MAX_STATE_BYTES)
    except ValueError as exc:
        raise damaged_state(path, str(exc)) from exc
    name = state.get("model_file")
    if not isinstance(name, str) or not re.fullmatch(r"epoch-\d{4,}\.keras", name):
        raise damaged_state(path, f"'model_file' must be the name of a file in {ckpt} (epoch-NNNN.keras); "
                                   f"got {shorten(repr(name))}")
    for key in ("epoch", "best_epoch", "wait"):
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise damaged_state(path, f"'{key}' must be a whole number >= 0; got {shorten(repr(value))}")
    if not isinstance(state.get("history"), list) or not isinstance(state.get("best_val_loss"), (int, float)):
        raise damaged_state(path, "'history' must be a list and 'best_val_loss' a number")
    if not (ckpt / name).exists():
        raise TrainingError(f"checkpoint {ckpt} names {name!r}, which is missing. Start a new run.")
    return state


def damaged_state(path: Path | str, reason: str) -> TrainingError:
    return TrainingError(f"checkpoint state {path} is damaged: {reason}. Train the run again without --resume.")


def fresh_state() -> dict[str, Any]:
    return {"epoch": 0, "best_val_loss": float("inf"), "best_epoch": 0, "wait": 0, "history": [],
            "train_seconds": 0.0, "stopped_early": False}
