"""Training under one protocol for every model: config, input pipeline, augmentation, checkpoints.

:func:`train` takes a dataset and a :class:`TrainConfig` and does everything a run needs: the
dataset's own split, augmentation as layers in front of the model (random 90° rotations and
flips, because a galaxy has no preferred orientation; small shifts and zoom), balanced class
weights, early stopping on validation loss with the best weights restored, a checkpoint every
epoch (so ``resume=True`` continues a killed run at the right epoch), progress events in
``events.jsonl``, then one evaluation on the test split written to the run folder.

Models and augmentation use only ``keras.layers``/``keras.ops``; TensorFlow appears only in the
input pipeline, determinism and distribution code, behind ``keras.backend.backend()`` checks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from core.learn import runs
from core.prepare.dataset import Dataset
from core.errors import ConfigError, GalaxyMorphError, shorten
from core.io import (append_jsonl, atomic_path, atomic_write_json, atomic_write_text, free_bytes, is_out_of_space,
                     read_json_object)
from core.learn.metrics import evaluate_predictions
from core.learn.device import device_name
from core.learn.models import MODEL_NAMES, build_model, count_params
from core.prepare.splits import resplit

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
PROTOCOLS = ("tuned", "equal")
DISTRIBUTE = ("auto", "none", "mirrored", "multiworker")
EVENT_FIELDS = ("time", "run_id", "model", "seed", "epoch", "epochs", "batch", "batches", "loss", "accuracy",
                "val_loss", "val_accuracy", "status")


class TrainingError(GalaxyMorphError):
    """Training could not go on (diverged to NaN, unusable dataset, bad checkpoint)."""


#: Fields added after the first runs were recorded, with the value that means "as before".
_LATER_FIELDS: dict[str, Any] = {"label_smoothing": 0.0}


@dataclass(frozen=True)
class TrainConfig:
    """Every parameter of one training run; validated on construction.

    Use :func:`default_config` for the per-model defaults chosen for this project.

    Attributes
    ----------
    model : str
        One of :data:`core.learn.models.MODEL_NAMES`.
    epochs, batch_size : int
    optimizer : {"adam", "adamw", "sgd"}
        SGD uses Nesterov momentum 0.9.
    learning_rate, weight_decay : float
        Weight decay is decoupled (AdamW, SGD's ``weight_decay``); ignored by plain Adam.
    schedule : {"constant", "cosine"}
        "cosine" decays the learning rate from ``learning_rate`` to 0 over ``epochs`` epochs
        (Loshchilov & Hutter 2017, without restarts), step by step.
    protocol : {"tuned", "equal"}
        Which defaults :func:`default_config` started from (recorded with the run). The field's
        own default stays "tuned": runs recorded before the protocol existed were tuned ones.
    augment : bool
        Random 90° rotations, flips, shifts and zoom during training only.
    shift, zoom : float
        Largest shift (fraction of the side) and zoom (fraction) when augmenting; 0 disables.
    class_weight : {"balanced", "none", None}
        "balanced" weights each class by ``n / (k * n_class)`` against imbalance.
    label_smoothing : float
        In [0, 0.5): the target puts ``1 - label_smoothing`` on the label and spreads the rest over
        all classes (Szegedy et al. 2016), so a confidently wrong volunteer label costs less.
    patience : int
        Epochs without a better validation loss before stopping (best weights are restored);
        0 disables early stopping.
    seed : int
        Seeds Python, NumPy and the backend; same seed, same metrics on CPU.
    mixed_precision, xla : bool
        GPU options: ``mixed_float16`` policy, and ``jit_compile``. XLA needs ``shift=0`` and
        ``zoom=0`` (Keras cannot compile those layers) and runs without op determinism.
    distribute : {"auto", "none", "mirrored", "multiworker"}
        "auto" uses ``MirroredStrategy`` when more than one GPU is visible.
    model_options : dict
        Passed to the model builder (e.g. ``{"normalization": "batchnorm"}``).
    events_every : int
        Batches between two progress events.
    deterministic : bool
        Enable TensorFlow's op determinism (reproducible on CPU, a little slower); off with ``xla``.
    folds, fold, split_seed : int, int, int or None
        Which train/val/test split (:func:`core.prepare.splits.resplit`): ``folds=0`` and no
        ``split_seed`` is the dataset's own split; ``folds=K`` (>= 3) trains on fold ``fold`` of
        a stratified K-fold split by object drawn with ``split_seed`` (0 if None); ``folds=0``
        with a ``split_seed`` is a stratified re-split with the dataset's own proportions.
    """

    model: str = "resnet18"
    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    protocol: str = "tuned"
    augment: bool = True
    shift: float = 0.05
    zoom: float = 0.1
    class_weight: str | None = "balanced"
    label_smoothing: float = 0.0
    patience: int = 10
    seed: int = 0
    mixed_precision: bool = False
    xla: bool = False
    distribute: str = "auto"
    model_options: dict[str, Any] = field(default_factory=dict)
    events_every: int = 5
    deterministic: bool = True
    folds: int = 0
    fold: int = 0
    split_seed: int | None = None

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ConfigError(f"model must be one of {', '.join(MODEL_NAMES)}; got {self.model!r}.")
        for name in ("epochs", "batch_size", "events_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}.")
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 10):
            raise ConfigError(f"learning_rate must be in (0, 10); got {self.learning_rate!r}. Try 1e-3 with Adam.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}.")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {self.protocol!r}.")
        if not 0 <= self.weight_decay < 1:
            raise ConfigError(f"weight_decay must be in [0, 1); got {self.weight_decay!r}. Try 1e-4.")
        if not 0 <= self.shift < 0.5:
            raise ConfigError(f"shift must be in [0, 0.5); got {self.shift!r}. Use a small fraction of the side.")
        if not 0 <= self.zoom < 1:
            raise ConfigError(f"zoom must be in [0, 1); got {self.zoom!r}. Use a small fraction such as 0.1.")
        if self.class_weight == "none":
            object.__setattr__(self, "class_weight", None)
        if self.class_weight not in ("balanced", None):
            raise ConfigError(f"class_weight must be 'balanced', 'none' or None; got {self.class_weight!r}.")
        if (isinstance(self.label_smoothing, bool) or not isinstance(self.label_smoothing, (int, float))
                or not 0 <= self.label_smoothing < 0.5):
            raise ConfigError(f"label_smoothing must be in [0, 0.5); got {self.label_smoothing!r}. Try 0.1.")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ConfigError(f"patience must be an integer >= 0; got {self.patience!r}. Use 0 to disable.")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0; got {self.seed!r}.")
        if self.distribute not in DISTRIBUTE:
            raise ConfigError(f"distribute must be one of {', '.join(DISTRIBUTE)}; got {self.distribute!r}.")
        if self.xla and self.augment and (self.shift > 0 or self.zoom > 0):
            raise ConfigError(
                f"xla cannot compile the shift and zoom augmentation (Keras turns jit_compile off for "
                f"RandomTranslation and RandomZoom); got xla=True with shift={self.shift}, zoom={self.zoom}. "
                "Add --shift 0 --zoom 0 (the rotations and flips stay) or leave out --xla."
            )
        if self.xla and self.deterministic:
            # Keras turns jit_compile off under TensorFlow's op determinism: XLA runs trade it for speed.
            object.__setattr__(self, "deterministic", False)
        if not isinstance(self.folds, int) or self.folds < 0 or self.folds in (1, 2):
            raise ConfigError(f"folds must be 0 (the dataset's own split) or an integer >= 3; got {self.folds!r}. "
                              "Try 5.")
        if not isinstance(self.fold, int) or not 0 <= self.fold < max(self.folds, 1):
            raise ConfigError(f"fold must be an integer in [0, {max(self.folds, 1)}); got {self.fold!r}.")
        if self.split_seed is not None and (not isinstance(self.split_seed, int) or self.split_seed < 0):
            raise ConfigError(f"split_seed must be None or an integer >= 0; got {self.split_seed!r}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (what ``config.json`` stores under ``params``).

        A field added after runs were first recorded is written only when it differs from its
        default, so a run made before it keeps its config hash and ``--resume`` still finds it.
        """
        params = dataclasses.asdict(self)
        for name, default in _LATER_FIELDS.items():
            if params[name] == default:
                del params[name]
        return params

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"unknown training parameters {unknown}; known: {sorted(known)}.")
        return cls(**params)


#: The one recipe of the equal protocol: every model gets exactly this (see :func:`model_defaults`).
EQUAL_RECIPE: dict[str, Any] = {"epochs": 30, "optimizer": "adamw", "learning_rate": 1e-3, "weight_decay": 1e-4,
                                "schedule": "cosine", "protocol": "equal"}

#: Under the equal protocol, what a model gets that the others do not, and why it cannot go without.
#: The builder options here are written to each run (``protocol_differences`` in its ``config.json``).
_EQUAL_DIFFERENCES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "lenet5": ({"activation": "relu", "pooling": "max", "native_size": True}, (
        "LeNet-5: ReLU and max pooling in place of the paper's tanh and average subsampling (with tanh, a "
        "61 k-parameter net is still far from converged after the common epoch budget)",
        "LeNet-5: images smaller than 32 px are enlarged to 32 px inside the model (its three 5x5 "
        "convolutions need at least 32 px); larger ones are seen at their own size like every model",
    )),
    "alexnet": ({"normalization": "batchnorm"}, (
        "AlexNet: batch normalisation in place of local response normalisation after conv1 and conv2 "
        "(with LRN the 9 M-parameter net stays at chance for many epochs on ~1,000 images)",
    )),
}


def model_defaults(model: str, *, protocol: str = "equal") -> dict[str, Any]:
    """The defaults of ``model`` under ``protocol``, and why.

    ``"equal"`` (the default): one recipe for every model (:data:`EQUAL_RECIPE`), so that a
    difference between models is the architecture's: AdamW (lr 1e-3, weight decay 1e-4) with a
    cosine schedule over 30 epochs, batch 32, the same augmentation, class weights and input
    size (LeNet-5 is not resized to 32 px), and the same epoch-selection rule (the weights of
    the epoch with the lowest validation loss, early stopping after 10 epochs without a better
    one). Only what an architecture cannot run without differs, and
    :func:`protocol_differences` says what and why: ReLU/max pooling in LeNet-5 and batch norm
    in AlexNet (in place of LRN).

    ``"tuned"``: per-model recipes, chosen for this project on validation folds of the shipped
    Galaxy Zoo cutouts, one model at a time (not nested: the folds that chose a recipe also
    scored it, so a tuned comparison favours the models whose recipe was searched longest).
    All: batch 32.

    - LeNet-5: lr 1e-3, 40 epochs, ReLU/max-pool, a constant rate and early stopping with patience 10.
    - AlexNet (scaled form): lr 3e-4 and batch norm in place of LRN.
    - ResNet: AdamW lr 1e-3, weight decay 1e-4, BN momentum 0.9 (built into :func:`core.learn.models.resnet`).
    - AlexNet and ResNet: a cosine schedule over 40 epochs without early stopping (the best epoch's
      weights are still restored).
    """
    if model not in MODEL_NAMES:
        raise ConfigError(f"model must be one of {', '.join(MODEL_NAMES)}; got {model!r}.")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}.")
    if protocol == "equal":
        options = _EQUAL_DIFFERENCES.get(model, ({}, ()))[0]
        return {**EQUAL_RECIPE, "model_options": dict(options)}
    if model == "lenet5":
        return {"epochs": 40, "learning_rate": 1e-3, "model_options": {"activation": "relu", "pooling": "max"}}
    cosine = {"epochs": 40, "schedule": "cosine", "patience": 0}
    if model == "alexnet":
        return {**cosine, "learning_rate": 3e-4, "model_options": {"normalization": "batchnorm"}}
    return {**cosine, "learning_rate": 1e-3, "weight_decay": 1e-4, "optimizer": "adamw"}


def protocol_differences(config: TrainConfig) -> list[str]:
    """What ``config`` gives its model that the protocol does not give every model, one sentence each.

    Under ``equal``: the architecture options a model cannot run without (empty for ResNet). Under
    ``tuned``: the model's own recipe. Written to each run's ``config.json`` so a comparison can
    list them.
    """
    if config.protocol == "equal":
        options, reasons = _EQUAL_DIFFERENCES.get(config.model, ({}, ()))
        # An option a user changed away from the protocol's is no longer the protocol's difference.
        return list(reasons) if all(config.model_options.get(k) == v for k, v in options.items()) else [
            f"{config.model}: model options {config.model_options}"]
    recipe = (f"{config.optimizer}, lr {config.learning_rate:g}, weight decay {config.weight_decay:g}, "
              f"{config.schedule} schedule, {config.epochs} epochs, patience {config.patience}")
    extra = f", model options {config.model_options}" if config.model_options else ""
    return [f"{config.model}: per-model recipe ({recipe}{extra})"]


def default_config(model: str, *, protocol: str | None = "equal", **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` with :func:`model_defaults` for ``model`` and ``protocol`` (None = equal), then
    ``overrides`` (``None`` = default)."""
    params = {"model": model, **model_defaults(model, protocol=protocol or "equal")}
    params.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**params)


# --------------------------------------------------------------------------------------------- augmentation


@keras.saving.register_keras_serializable(package="galaxy_morph")
class RandomDihedral(keras.layers.Layer):
    """A random element of the square's symmetry group (8 rotations/reflections) per image.

    A random transpose followed by random horizontal and vertical flips covers all four 90°
    rotations and their mirror images. Active only in training; identity at inference.
    Requires square images.
    """

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training:
            return inputs
        ops = keras.ops
        batch = ops.shape(inputs)[0]

        def coin() -> Any:
            draw = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
            return ops.cast(draw < 0.5, inputs.dtype)

        transposed = ops.transpose(inputs, (0, 2, 1, 3))
        x = inputs + coin() * (transposed - inputs)
        x = x + coin() * (ops.flip(x, axis=1) - x)
        return x + coin() * (ops.flip(x, axis=2) - x)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


def augmentation(config: TrainConfig) -> list[keras.layers.Layer]:
    """The augmentation layers of ``config`` (empty when ``augment`` is off), seeded from its seed."""
    if not config.augment:
        return []
    seed = config.seed
    layers: list[keras.layers.Layer] = [RandomDihedral(seed=seed, name="aug_dihedral")]
    if config.shift > 0:
        layers.append(keras.layers.RandomTranslation(config.shift, config.shift, fill_mode="reflect", seed=seed + 1,
                                                     name="aug_shift"))
    if config.zoom > 0:
        layers.append(keras.layers.RandomZoom(config.zoom, fill_mode="reflect", seed=seed + 2, name="aug_zoom"))
    return layers


@keras.saving.register_keras_serializable(package="galaxy_morph")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels against smoothed one-hot targets.

    Keras's ``SparseCategoricalCrossentropy`` has no label smoothing; this one-hot encodes the
    labels first, so the data pipeline and the accuracy metric keep integer labels.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "sparse_smoothed_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ops = keras.ops
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        target = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(target, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def training_loss(config: TrainConfig) -> str | keras.losses.Loss:
    """The loss ``fit`` minimises: plain sparse cross-entropy, or its smoothed form."""
    if config.label_smoothing:
        return SparseSmoothedCrossentropy(config.label_smoothing)
    return "sparse_categorical_crossentropy"


def training_model(base: keras.Model, config: TrainConfig) -> keras.Model:
    """``base`` with the augmentation layers in front: the graph that is fitted (augmentation on device)."""
    inputs = keras.Input(base.input_shape[1:], name="image")
    x = inputs
    for layer in augmentation(config):
        x = layer(x)
    return keras.Model(inputs, base(x), name=f"train_{base.name}")


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


# --------------------------------------------------------------------------------------------- callback


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


class _RunCallback(keras.callbacks.Callback):
    """Progress events, history, early stopping with best weights, and the per-epoch checkpoint.

    One callback holds all of it because resuming needs their state together (best loss, wait
    counter, history, epoch) and Keras' own EarlyStopping resets its state on every ``fit``.
    """

    def __init__(self, *, run_dir: Path, run_id: str, config: TrainConfig, batches: int, state: dict[str, Any],
                 progress_callback: Callable[[dict[str, Any]], None] | None) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.run_id = run_id
        self.config = config
        self.batches = batches
        self.state = state
        self.progress_callback = progress_callback
        self.epoch_started = time.monotonic()

    def emit(self, **fields: Any) -> dict[str, Any]:
        event = {"time": time.time(), "run_id": self.run_id, "model": self.config.model, "seed": self.config.seed,
                 "epochs": self.config.epochs, "batches": self.batches}
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
        ckpt = self.run_dir / "checkpoint"
        improved, state["wait"], stop = _stopping_step(val_loss, state["best_val_loss"], state["wait"],
                                                       self.config.patience)
        if improved:
            state.update(best_val_loss=val_loss, best_epoch=epoch + 1)
            _check_room(self.model, ckpt, optimizer=False)
            with atomic_path(ckpt / "best.weights.h5") as tmp:
                self.model.save_weights(tmp)
        if stop:
            self.model.stop_training = True
            state["stopped_early"] = True
        atomic_write_text(self.run_dir / "history.csv", pd.DataFrame(state["history"]).to_csv(index=False))
        _save_checkpoint(self.model, ckpt, state)
        self.emit(epoch=epoch + 1, batch=self.batches, loss=row["loss"], accuracy=row["accuracy"],
                  val_loss=row["val_loss"], val_accuracy=row["val_accuracy"], status="running", seconds=row["seconds"])


def _check_room(model: keras.Model, folder: Path, *, optimizer: bool) -> None:
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


def _save_checkpoint(model: keras.Model, ckpt: Path, state: dict[str, Any]) -> None:
    """Model + optimiser to ``epoch-N.keras``, then ``state.json`` naming it, then drop older files.

    The state is written last, so after a crash it always names a complete model file.
    """
    name = f"epoch-{state['epoch']:04d}.keras"
    _check_room(model, ckpt, optimizer=True)
    with atomic_path(ckpt / name) as tmp:
        model.save(tmp)
    atomic_write_json(ckpt / "state.json", {**state, "model_file": name})
    for old in ckpt.glob("epoch-*.keras"):
        if old.name != name:
            old.unlink(missing_ok=True)


#: A checkpoint's state.json holds counters and one history row per epoch: kilobytes.
MAX_STATE_BYTES = 16 * 2**20

def _load_state(ckpt: Path) -> dict[str, Any] | None:
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
        raise _damaged_state(path, str(exc)) from exc
    name = state.get("model_file")
    if not isinstance(name, str) or not re.fullmatch(r"epoch-\d{4,}\.keras", name):
        raise _damaged_state(path, f"'model_file' must be the name of a file in {ckpt} (epoch-NNNN.keras); "
                                   f"got {shorten(repr(name))}")
    for key in ("epoch", "best_epoch", "wait"):
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _damaged_state(path, f"'{key}' must be a whole number >= 0; got {shorten(repr(value))}")
    if not isinstance(state.get("history"), list) or not isinstance(state.get("best_val_loss"), (int, float)):
        raise _damaged_state(path, "'history' must be a list and 'best_val_loss' a number")
    if not (ckpt / name).exists():
        raise TrainingError(f"checkpoint {ckpt} names {name!r}, which is missing. Start a new run.")
    return state


def _damaged_state(path: Path | str, reason: str) -> TrainingError:
    return TrainingError(f"checkpoint state {path} is damaged: {reason}. Train the run again without --resume.")


def _fresh_state() -> dict[str, Any]:
    return {"epoch": 0, "best_val_loss": float("inf"), "best_epoch": 0, "wait": 0, "history": [],
            "train_seconds": 0.0, "stopped_early": False}


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
) -> TrainResult:
    """Train ``config.model`` on ``dataset`` into the run folder ``run_dir`` and evaluate it on test.

    Parameters
    ----------
    dataset : Dataset
        From :func:`core.prepare.dataset.load_dataset`; its split is used as is.
    config : TrainConfig
    run_dir : Path
        A folder made by :func:`core.learn.runs.create_run`; every file of the run is written there.
    progress_callback : callable or None
        Called with each progress event (the dict also appended to ``events.jsonl``).
    resume : bool
        Continue from ``run_dir/checkpoint`` if it exists (at the epoch after the last saved).

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
                      resume=resume)
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


def _train(dataset: Dataset, config: TrainConfig, *, run_dir: Path, run_id: str,
           progress_callback: Callable[[dict[str, Any]], None] | None, resume: bool) -> TrainResult:
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
    strategy = _strategy(config)
    batch_size = config.batch_size * (strategy.num_replicas_in_sync if strategy is not None else 1)
    batches = int(np.ceil(len(y_train) / batch_size))
    ckpt = run_dir / "checkpoint"
    state = _load_state(ckpt) if resume else None
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        if state is not None:
            fit_model = runs.load_keras_model(ckpt / state["model_file"], damaged=_damaged_state)
            logger.info("run %s: resuming after epoch %d", run_id, state["epoch"])
        else:
            if ckpt.exists():
                shutil.rmtree(ckpt)
            state = _fresh_state()
            base = build_model(config.model, input_size=size, channels=channels, num_classes=n_classes,
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
    callback = _RunCallback(run_dir=run_dir, run_id=run_id, config=config, batches=batches, state=state,
                            progress_callback=progress_callback)
    done = state["epoch"] >= config.epochs or state.get("stopped_early", False)
    if not done:
        on_tf = keras.backend.backend() == "tensorflow"
        train_data = input_pipeline(x_train, y_train, batch_size=batch_size, shuffle=True, seed=config.seed)
        val_data = input_pipeline(x_val, y_val, batch_size=_val_batch_size(len(y_val), strategy), shuffle=False,
                                  seed=config.seed)
        fit_model.fit(
            train_data if on_tf else train_data[0],
            None if on_tf else train_data[1],
            batch_size=None if on_tf else batch_size,
            shuffle=not on_tf,
            validation_data=val_data,
            epochs=config.epochs,
            initial_epoch=state["epoch"],
            class_weight=balanced_class_weight(y_train, n_classes) if config.class_weight == "balanced" else None,
            callbacks=[callback],
            verbose=0,
        )
    if state.get("diverged"):
        raise TrainingError(f"run {run_id}: the training loss became NaN/inf in epoch {state['epoch'] + 1}. "
                            f"Lower learning_rate (now {config.learning_rate}).")
    if (ckpt / "best.weights.h5").exists():
        fit_model.load_weights(ckpt / "best.weights.h5")
    return _finish(base, dataset, config, state, run_dir=run_dir, run_id=run_id, callback=callback,
                   test=(x_test, y_test, names_test))


def _finish(base: keras.Model, dataset: Dataset, config: TrainConfig, state: dict[str, Any], *, run_dir: Path,
            run_id: str, callback: _RunCallback, test: tuple[np.ndarray, np.ndarray, np.ndarray]) -> TrainResult:
    """Evaluate the best weights on test, write model, predictions and metrics, mark the run finished."""
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
    predictions = pd.DataFrame({"name": names_test, "true": np.asarray(dataset.classes, dtype=object)[y_test],
                                "pred": np.asarray(dataset.classes, dtype=object)[proba.argmax(axis=1)]})
    for k, cls in enumerate(dataset.classes):
        predictions[f"prob_{cls}"] = proba[:, k].round(6)
    _check_room(base, run_dir, optimizer=True)
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
        logger.warning("dataset %s has a frozen test set (its source's split.csv), but --folds/--repeats draw new "
                       "test sets from all its galaxies, so the frozen test galaxies are trained on in other "
                       "splits. Train on the dataset's own split to keep them for the end.", dataset.path)
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
            finished, unfinished = runs.find_resumable(root, config_hash_=chash)
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
                           resume=run is not None)
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
