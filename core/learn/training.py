"""Training under one protocol for every model: the input pipeline, the device, one run, many runs.

:func:`train` takes a dataset and a :class:`~core.learn.protocol.TrainConfig` and does everything a
run needs: the dataset's own split, augmentation as layers in front of the model
(:mod:`core.learn.augment`), balanced class weights, early stopping on validation loss with the best
weights restored and a checkpoint every epoch (:mod:`core.learn.checkpoint`, so ``resume=True``
continues a killed run at the right epoch), progress events in ``events.jsonl``, then one evaluation
on the test split written to the run folder. Under the tuned protocol a run first trains every
candidate recipe (:mod:`core.learn.tuning`) on its training split and keeps the best on its
validation split (nested: test is evaluated once, on the one kept). :func:`train_many` trains every
model for every seed, fold and repeat. The model comes from its registry entry (:mod:`core.learn.registry`).

Models and augmentation use only ``keras.layers``/``keras.ops``; TensorFlow appears only in the
input pipeline, determinism and distribution code, behind ``keras.backend.backend()`` checks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from core.errors import ConfigError
from core.io import append_jsonl, atomic_path, atomic_write_json, atomic_write_text, is_out_of_space
from core import runs
from core.learn.augment import RandomDihedral, SparseSmoothedCrossentropy, augmentation, training_loss, training_model
from core.learn.checkpoint import (EVENT_FIELDS, RunCallback, TrainingError, check_room, damaged_state,
                                   early_stopping_replay, fresh_state, load_state)
from core.learn.device import device_name
from core.learn.metrics import evaluate_predictions
from core.learn.models import build_model, count_params, load_keras_model
from core.learn.protocol import (EQUAL_RECIPE, PROTOCOLS, TrainConfig, default_config, model_defaults,
                                 protocol_differences)
from core.learn.tuning import TUNING_CANDIDATES, best_candidate, check_candidates, describe
from core.prepare.dataset import Dataset
from core.prepare.splits import kept_frozen_test, resplit

logger = logging.getLogger(__name__)

# The training API as callers know it: one import for a config, its defaults, the fitted graph and a run.
__all__ = ["EQUAL_RECIPE", "EVENT_FIELDS", "PROTOCOLS", "RandomDihedral", "SparseSmoothedCrossentropy", "TrainConfig",
           "TrainResult", "TrainingError", "augmentation", "balanced_class_weight", "default_config",
           "early_stopping_replay", "input_pipeline", "model_defaults", "protocol_differences", "train", "train_many",
           "training_loss", "training_model"]


# --------------------------------------------------------------------------------------------- pipeline


def input_pipeline(x: np.ndarray, y: np.ndarray, *, batch_size: int, shuffle: bool, seed: int) -> Any:
    """Batches of ``(x, y)`` for ``fit``: a prefetching ``tf.data.Dataset`` on TensorFlow.

    The arrays are already in memory and augmentation runs in the model, so the pipeline only
    shuffles (seeded, reshuffled every epoch), batches and prefetches. On other backends the
    arrays are returned as ``(x, y)`` and Keras batches them.
    """
    if keras.backend.backend() != "tensorflow":
        return x, y
    import tensorflow as tf  # noqa: PLC0415 - only the TF backend needs it

    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def balanced_class_weight(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """``n / (k * n_class)`` per class present (scikit-learn's "balanced")."""
    counts = np.bincount(y, minlength=n_classes)
    present = counts > 0
    return {k: float(len(y) / (present.sum() * counts[k])) for k in range(n_classes) if counts[k] > 0}


# --------------------------------------------------------------------------------------------- device


def _strategy(config: TrainConfig) -> Any:
    """The ``tf.distribute`` strategy for ``config.distribute``, or ``None`` for the default device."""
    if config.distribute == "none":
        return None
    if keras.backend.backend() != "tensorflow":
        if config.distribute == "auto":
            return None
        raise ConfigError(f"distribute={config.distribute!r} needs the TensorFlow backend; use 'auto' or 'none'.")
    import tensorflow as tf  # noqa: PLC0415

    if config.distribute == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("distribute='multiworker' needs TF_CONFIG describing the cluster. See docs/SCALING.md, section 'GPUs and clusters'.")
        # Tried on two localhost workers: Keras 3.15's fit first fails reducing the input tuple, then
        # reducing scalar metrics along axis 0. Refuse here rather than fail inside fit.
        raise ConfigError(
            f"distribute='multiworker' does not work with Keras {keras.__version__}: Model.fit fails under "
            "MultiWorkerMirroredStrategy (keras-team/keras#20585). Use 'mirrored' for several GPUs of one "
            "machine, or 'none'."
        )
    gpus = tf.config.list_physical_devices("GPU")
    if config.distribute == "mirrored" or len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return None


def _val_batch_size(n_val: int, strategy: Any) -> int:
    """256, or under a strategy a multiple of its replicas that gives every replica images in every batch.

    Keras 3.15 averages the first validation batch across replicas to build its metrics, which
    fails when that batch splits unevenly (7 images on 2 replicas: 4 and 3), and a last batch
    smaller than the number of replicas leaves one empty, which the convolutions reject.
    """
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    if replicas == 1:
        return 256
    top = min(256, n_val)
    for size in range(top - top % replicas, replicas - 1, -replicas):
        if n_val % size == 0 or n_val % size >= replicas:
            return size
    return replicas


def _seed_everything(config: TrainConfig) -> None:
    keras.utils.set_random_seed(config.seed)
    if keras.backend.backend() == "tensorflow":
        # Determinism is process-wide: an XLA run after a deterministic one in the same `train` must
        # turn it off again (TensorFlow has no public switch for that).
        from tensorflow.python.framework import config as tf_config  # noqa: PLC0415

        (tf_config.enable_op_determinism if config.deterministic else tf_config.disable_op_determinism)()


def _optimizer(config: TrainConfig, *, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    rate: Any = config.learning_rate
    if config.schedule == "cosine":
        # A schedule of the optimiser's step count: saved with the optimiser, so --resume continues it.
        rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=config.epochs * steps_per_epoch)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=config.weight_decay or None)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(rate)


# --------------------------------------------------------------------------------------------- train


@dataclass
class TrainResult:
    """What :func:`train` produced: the inference model (best weights) and the run's records."""

    run_dir: Path
    model: keras.Model
    history: pd.DataFrame
    metrics: dict[str, Any]
    status: str


def _check_dataset(dataset: Dataset) -> None:
    for split in ("train", "val", "test"):
        n = int(np.sum(dataset.split == split))
        if n == 0:
            raise TrainingError(f"dataset {dataset.path}: the {split} split is empty. Rebuild it with more images.")
    x = dataset.x
    if x.shape[1] != x.shape[2]:
        raise TrainingError(f"dataset {dataset.path}: images must be square; got {x.shape[1]}×{x.shape[2]}.")


def train(
    dataset: Dataset,
    config: TrainConfig,
    *,
    run_dir: str | Path,
    progress_callback: Callable[[dict[str, Any]], None] | None = None,
    resume: bool = False,
    candidates: Sequence[Mapping[str, Any]] | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``dataset`` into the run folder ``run_dir`` and evaluate it on test.

    Parameters
    ----------
    dataset : Dataset
        From :func:`core.prepare.dataset.load_dataset`; its split is used as is.
    config : TrainConfig
    run_dir : Path
        A folder made by :func:`core.runs.create_run`; every file of the run is written there.
    progress_callback : callable or None
        Called with each progress event (the dict also appended to ``events.jsonl``).
    resume : bool
        Continue from ``run_dir/checkpoint`` if it exists (at the epoch after the last saved). A
        tuned run's search starts again from its first candidate instead.
    candidates : sequence of mapping or None
        Under ``config.protocol == "tuned"``: the recipes searched (None:
        :data:`core.learn.tuning.TUNING_CANDIDATES`). Each trains on the training split, the best
        on the validation split is kept and only it is evaluated on test; ``config.json`` records
        the search under ``tuning``. Ignored under ``equal``.

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainingError
        If the dataset cannot be trained on or the loss diverges; the run is marked ``failed``.
    """
    run_dir = Path(run_dir)
    run_id = runs.read_config(run_dir).get("id", run_dir.name)
    try:
        return _train(dataset, config, run_dir=run_dir, run_id=run_id, progress_callback=progress_callback,
                      resume=resume, candidates=candidates)
    except KeyboardInterrupt:
        runs.set_status(run_dir, "stopped")
        raise
    except Exception as exc:
        with contextlib.suppress(OSError):  # on a full disk the record may not fit either: the run reads as stale
            runs.set_status(run_dir, "failed", error=f"{type(exc).__name__}: {exc}")
            append_jsonl(run_dir / "events.jsonl", {"time": time.time(), "run_id": run_id, "model": config.model,
                                                    "seed": config.seed, "status": "failed", "error": str(exc)})
        raise
    finally:
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy("float32")


@dataclass
class _FitData:
    """What every fit of one run shares: its training and validation galaxies and where it trains."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    n_classes: int
    size: int
    channels: int
    strategy: Any


def _train(dataset: Dataset, config: TrainConfig, *, run_dir: Path, run_id: str,
           progress_callback: Callable[[dict[str, Any]], None] | None, resume: bool,
           candidates: Sequence[Mapping[str, Any]] | None = None) -> TrainResult:
    dataset = resplit(dataset, folds=config.folds, fold=config.fold, split_seed=config.split_seed)
    _check_dataset(dataset)
    _seed_everything(config)
    x_train, y_train, _ = dataset.subset("train")
    x_val, y_val, _ = dataset.subset("val")
    x_test, y_test, names_test = dataset.subset("test")
    n_classes = len(dataset.classes)
    size, channels = int(dataset.x.shape[1]), int(dataset.x.shape[3])
    device = device_name()
    runs.set_status(run_dir, "running", device=device, classes=list(dataset.classes),
                    n_train=int(len(y_train)), n_val=int(len(y_val)), n_test=int(len(y_test)))
    if config.mixed_precision:
        if "GPU" not in device and "NVIDIA" not in device:
            logger.warning("mixed precision on a CPU is slower than float32; use it on a GPU.")
        keras.mixed_precision.set_global_policy("mixed_float16")
    data = _FitData(x_train, y_train, x_val, y_val, n_classes, size, channels, _strategy(config))
    if config.protocol == "tuned":
        config, base, state, callback, tuned = _search(
            config, data, check_candidates(TUNING_CANDIDATES if candidates is None else candidates),
            run_dir=run_dir, run_id=run_id, progress_callback=progress_callback)
    else:
        base, state, callback = _fit(config, data, run_dir=run_dir, run_id=run_id, work_dir=run_dir, resume=resume,
                                     progress_callback=progress_callback)
        if state.get("diverged"):
            raise TrainingError(f"run {run_id}: the training loss became NaN/inf in epoch {state['epoch'] + 1}. "
                                f"Lower learning_rate (now {config.learning_rate}).")
        tuned = None
    return _finish(base, dataset, config, state, run_dir=run_dir, run_id=run_id, callback=callback,
                   test=(x_test, y_test, names_test), tuned=tuned)


def _fit(config: TrainConfig, data: _FitData, *, run_dir: Path, run_id: str, work_dir: Path, resume: bool,
         progress_callback: Callable[[dict[str, Any]], None] | None,
         event_fields: dict[str, Any] | None = None) -> tuple[keras.Model, dict[str, Any], RunCallback]:
    """Train one model of ``config`` with its checkpoint in ``work_dir``; return the inference model with the
    best epoch's weights, the training state and the callback (``state["diverged"]`` if the loss did)."""
    strategy = data.strategy
    batch_size = config.batch_size * (strategy.num_replicas_in_sync if strategy is not None else 1)
    batches = int(np.ceil(len(data.y_train) / batch_size))
    ckpt = work_dir / "checkpoint"
    state = load_state(ckpt) if resume else None
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        if state is not None:
            fit_model = load_keras_model(ckpt / state["model_file"], damaged=damaged_state)
            logger.info("run %s: resuming after epoch %d", run_id, state["epoch"])
        else:
            if ckpt.exists():
                shutil.rmtree(ckpt)
            state = fresh_state()
            base = build_model(config.model, input_size=data.size, channels=data.channels, num_classes=data.n_classes,
                               **config.model_options)
            fit_model = training_model(base, config)
            fit_model.compile(optimizer=_optimizer(config, steps_per_epoch=batches),
                              loss=training_loss(config),
                              metrics=["accuracy"], jit_compile=config.xla)
    if config.xla:
        runs.set_status(run_dir, "running", xla_compiled=bool(fit_model.jit_compile))
        if not fit_model.jit_compile:
            logger.warning("run %s: Keras did not compile the training step with XLA; training without it.", run_id)
    base = fit_model.layers[-1]
    callback = RunCallback(run_dir=run_dir, run_id=run_id, config=config, batches=batches, state=state,
                           progress_callback=progress_callback, work_dir=work_dir, event_fields=event_fields)
    done = state["epoch"] >= config.epochs or state.get("stopped_early", False)
    if not done:
        on_tf = keras.backend.backend() == "tensorflow"
        train_data = input_pipeline(data.x_train, data.y_train, batch_size=batch_size, shuffle=True, seed=config.seed)
        val_data = input_pipeline(data.x_val, data.y_val, batch_size=_val_batch_size(len(data.y_val), strategy),
                                  shuffle=False, seed=config.seed)
        fit_model.fit(
            train_data if on_tf else train_data[0],
            None if on_tf else train_data[1],
            batch_size=None if on_tf else batch_size,
            shuffle=not on_tf,
            validation_data=val_data,
            epochs=config.epochs,
            initial_epoch=state["epoch"],
            class_weight=balanced_class_weight(data.y_train, data.n_classes) if config.class_weight == "balanced"
            else None,
            callbacks=[callback],
            verbose=0,
        )
    if not state.get("diverged") and (ckpt / "best.weights.h5").exists():
        fit_model.load_weights(ckpt / "best.weights.h5")
    return base, state, callback


def _search(config: TrainConfig, data: _FitData, candidates: list[dict[str, Any]], *, run_dir: Path, run_id: str,
            progress_callback: Callable[[dict[str, Any]], None] | None,
            ) -> tuple[TrainConfig, keras.Model, dict[str, Any], RunCallback, dict[str, Any]]:
    """The tuned protocol's nested search: train every candidate on the run's training galaxies, keep the one
    :func:`core.learn.tuning.best_candidate` picks on its validation galaxies. Test galaxies are not passed
    here: the search cannot see them.

    Each candidate trains from the run's seed in ``run_dir/search/candidate-K`` (its ``history.csv``
    stays; its checkpoint is dropped once the search is over). A killed search starts again from
    the first candidate: ``resume`` does not continue it. Returns the kept candidate's config, model
    (best epoch's weights), state and callback, and the search's record.
    """
    search_dir = run_dir / "search"
    if search_dir.exists():
        shutil.rmtree(search_dir)
    results: list[dict[str, Any]] = []
    kept: tuple[TrainConfig, keras.Model, dict[str, Any], RunCallback] | None = None
    for k, candidate in enumerate(candidates):
        trial = dataclasses.replace(config, **candidate)
        _seed_everything(trial)
        base, state, callback = _fit(trial, data, run_dir=run_dir, run_id=run_id,
                                     work_dir=search_dir / f"candidate-{k}", resume=False,
                                     progress_callback=progress_callback,
                                     event_fields={"candidate": k, "candidates": len(candidates)})
        result: dict[str, Any] = {"recipe": candidate, "epochs_done": state["epoch"], "best_epoch": state["best_epoch"],
                                  "train_seconds": round(state["train_seconds"], 3)}
        if state.get("diverged"):
            result.update(val_correct=None, val_accuracy=None, val_loss=None, diverged=True)
        else:
            proba = base.predict(data.x_val, batch_size=256, verbose=0).astype(np.float64)
            correct = int(np.sum(proba.argmax(axis=1) == data.y_val))
            p_true = np.clip(proba[np.arange(len(data.y_val)), data.y_val], 1e-7, 1.0)
            result.update(val_correct=correct, val_accuracy=round(correct / len(data.y_val), 6),
                          val_loss=round(float(-np.mean(np.log(p_true))), 6))
        results.append(result)
        logger.info("run %s: candidate %d/%d (%s): validation accuracy %s, loss %s", run_id, k + 1,
                    len(candidates), describe(candidate), result["val_accuracy"], result["val_loss"])
        try:
            if best_candidate(results) == k:
                kept = (trial, base, state, callback)
        except ValueError:  # every candidate so far diverged
            pass
    if kept is None:
        raise TrainingError(f"run {run_id}: the training loss became NaN/inf under every tuning candidate "
                            f"({'; '.join(describe(c) for c in candidates)}).")
    chosen = best_candidate(results)
    for k in range(len(candidates)):
        shutil.rmtree(search_dir / f"candidate-{k}" / "checkpoint", ignore_errors=True)
    record = {"candidates": candidates, "results": results, "chosen": chosen, "chosen_recipe": candidates[chosen],
              "picked_by": "validation accuracy, then validation loss, then candidate order",
              "note": "nested: each candidate trained on this run's training galaxies and scored on its validation "
                      "galaxies; only the chosen one was evaluated on test"}
    runs.set_status(run_dir, "running", tuning=record, protocol_differences=protocol_differences(
        config, candidates=len(candidates), chosen=describe(candidates[chosen])))
    return (*kept, record)


def _finish(base: keras.Model, dataset: Dataset, config: TrainConfig, state: dict[str, Any], *, run_dir: Path,
            run_id: str, callback: RunCallback, test: tuple[np.ndarray, np.ndarray, np.ndarray],
            tuned: dict[str, Any] | None = None) -> TrainResult:
    """Evaluate the best weights on test, write model, predictions and metrics, mark the run finished.

    ``tuned``: the search's record (:func:`_search`); its chosen recipe goes into the metrics."""
    x_test, y_test, names_test = test
    base.predict(x_test, batch_size=256, verbose=0)  # warm-up (tracing), so the timing below is inference only
    started = time.perf_counter()
    proba = base.predict(x_test, batch_size=256, verbose=0).astype(np.float64)
    infer_seconds = time.perf_counter() - started
    metrics = evaluate_predictions(y_test, proba, classes=list(dataset.classes))
    metrics.update(
        params=count_params(base),
        trainable_params=count_params(base, trainable_only=True),
        train_seconds=round(state["train_seconds"], 3),
        epochs_done=state["epoch"],
        best_epoch=state["best_epoch"],
        best_val_loss=state["best_val_loss"],
        stopped_early=bool(state.get("stopped_early")),
        inference_img_per_s=round(len(x_test) / infer_seconds, 1) if infer_seconds > 0 else None,
    )
    if tuned is not None:
        metrics["tuned_recipe"] = tuned["chosen_recipe"]
    predictions = pd.DataFrame({"name": names_test, "true": np.asarray(dataset.classes, dtype=object)[y_test],
                                "pred": np.asarray(dataset.classes, dtype=object)[proba.argmax(axis=1)]})
    for k, cls in enumerate(dataset.classes):
        predictions[f"prob_{cls}"] = proba[:, k].round(6)
    check_room(base, run_dir, optimizer=True)
    with atomic_path(run_dir / "model.keras") as tmp:
        base.save(tmp)
    atomic_write_text(run_dir / "predictions.csv", predictions.to_csv(index=False))
    atomic_write_json(run_dir / "metrics.json", metrics)
    history = pd.DataFrame(state["history"])
    atomic_write_text(run_dir / "history.csv", history.to_csv(index=False))
    runs.set_status(run_dir, "finished", epochs_done=state["epoch"],
                    timings={"train_seconds": metrics["train_seconds"], "inference_seconds": round(infer_seconds, 4)})
    callback.emit(epoch=state["epoch"], batch=callback.batches, status="finished", test_accuracy=metrics["accuracy"])
    return TrainResult(run_dir=run_dir, model=base, history=history, metrics=metrics, status="finished")


def train_many(
    dataset_path: str | Path,
    *,
    models: list[str],
    seeds: list[int],
    runs_dir: str | Path | None = None,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    progress_callback: Callable[[dict[str, Any]], None] | None = None,
    folds: int = 0,
    repeats: int = 1,
    candidates: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Train every model for every seed (and every fold and repeat) on one dataset; a failing run does not
    stop the others.

    With ``resume``, an experiment (same parameters, same dataset) that already finished is
    skipped, and an unfinished one (stale, failed, stopped) continues from its checkpoint.

    Parameters
    ----------
    folds : int
        0: the dataset's own split; K >= 3: stratified K-fold by object, one run per fold with
        the test fold rotating (see :mod:`core.prepare.splits`).
    repeats : int
        Number of split seeds (0 .. repeats-1): repeated K-fold with ``folds``, otherwise
        stratified re-splits with the dataset's own proportions. 1 with ``folds=0`` keeps the
        dataset's split.
    candidates : sequence of mapping or None
        The tuned protocol's search (:func:`train`); the same for every model.

    Returns
    -------
    list of dict
        One ``{"model", "seed", "fold", "split_seed", "run_dir", "status", "accuracy", "error"}`` per run.
    """
    from core.prepare.dataset import load_dataset  # noqa: PLC0415 - keeps import order simple for the CLI

    if not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats must be a positive integer; got {repeats!r}. Use 1 for a single split.")
    dataset = load_dataset(dataset_path)
    params = dataset.manifest.get("params")
    if (folds or repeats > 1) and isinstance(params, dict) and params.get("split_file_sha256"):
        logger.info("dataset %s has a frozen test set (its source's split.csv): the splits rotate train "
                    "and validation over its other galaxies, and every one is scored on that test set.",
                    dataset.path)
    root = Path(runs_dir) if runs_dir is not None else runs.default_runs_dir()
    split_seeds: list[int | None] = list(range(repeats)) if folds or repeats > 1 else [None]
    overrides = dict(overrides or {})
    protocol = overrides.pop("protocol", None)
    configs = [default_config(m, protocol=protocol, seed=s, folds=folds, fold=f, split_seed=r, **overrides)
               for r in split_seeds for f in range(max(folds, 1)) for m in models for s in seeds]
    outcomes = []
    for config in configs:
        where = {"fold": config.fold if config.folds else None, "split_seed": config.split_seed}
        params = config.to_dict()
        chash = runs.config_hash(params, dataset.content_hash)
        run = None
        if resume:
            finished, unfinished = (r if r is not None and kept_frozen_test(r.config, dataset) else None
                                    for r in runs.find_resumable(root, config_hash_=chash))
            if finished is not None:
                outcomes.append({"model": config.model, "seed": config.seed, **where, "run_dir": str(finished.path),
                                 "status": "skipped (finished)", "accuracy": finished.metrics.get("accuracy"),
                                 "error": None})
                continue
            run = unfinished
        run_dir = run.path if run is not None else runs.create_run(
            root, model=config.model, seed=config.seed, params=params, dataset_path=dataset.path,
            dataset_hash=dataset.content_hash, dataset_manifest=dataset.manifest,
            extra={"protocol_differences": protocol_differences(config)})
        try:
            result = train(dataset, config, run_dir=run_dir, progress_callback=progress_callback,
                           resume=run is not None, candidates=candidates)
            outcomes.append({"model": config.model, "seed": config.seed, **where, "run_dir": str(run_dir),
                             "status": result.status, "accuracy": result.metrics["accuracy"], "error": None})
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one failing model must not stop the others; the run records why
            if is_out_of_space(exc):  # ... but a full disk stops every other model too
                raise
            logger.error("run %s failed: %s", run_dir.name, exc)
            outcomes.append({"model": config.model, "seed": config.seed, **where, "run_dir": str(run_dir),
                             "status": "failed", "accuracy": None, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            keras.backend.clear_session()
    return outcomes
