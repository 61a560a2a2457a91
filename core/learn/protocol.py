"""What one training run is: :class:`TrainConfig`, and the two protocols' defaults per model.

Under the ``equal`` protocol every network gets one recipe (:data:`EQUAL_RECIPE`) and only the
builder options it cannot run without; under ``tuned`` each its own recipe, picked by a nested
search that gives every model the same candidates (:mod:`core.learn.tuning`). The options come
from the model's entry in :mod:`core.learn.registry`. Importing this module is cheap (no Keras): a page can
show a model's defaults before anything trains.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError
from core.learn.registry import NETWORK, ModelEntry, model_entry, network_names
from core.learn.tuning import TUNED_FIELDS, TUNING_CANDIDATES

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
PROTOCOLS = ("tuned", "equal")
DISTRIBUTE = ("auto", "none", "mirrored", "multiworker")


#: Fields added after the first runs were recorded, with the value that means "as before".
_LATER_FIELDS: dict[str, Any] = {"label_smoothing": 0.0}


@dataclass(frozen=True)
class TrainConfig:
    """Every parameter of one training run; validated on construction.

    Use :func:`default_config` for the per-model defaults chosen for this project.

    Attributes
    ----------
    model : str
        A registered network (:mod:`core.learn.registry`).
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
        Under "tuned", :func:`core.learn.training.train` searches ``learning_rate`` and
        ``schedule`` (:data:`core.learn.tuning.TUNING_CANDIDATES`); the run's ``config.json``
        records the candidates and the one it kept under ``tuning``.
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
        network_entry(self.model)
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


def network_entry(model: str) -> ModelEntry:
    """The registry entry of the network ``model``.

    Raises
    ------
    ConfigError
        If ``model`` is not a registered network; the message names the registered ones.
    """
    entry = model_entry(model)
    if entry.kind != NETWORK:
        raise ConfigError(f"model must be one of the networks {', '.join(network_names())}; got {model!r}, a "
                          f"{entry.kind} model with its own trainer (core.learn.experiment.train_spec runs it).")
    return entry


#: The one recipe of the equal protocol: every model gets exactly this (see :func:`model_defaults`).
EQUAL_RECIPE: dict[str, Any] = {"epochs": 30, "optimizer": "adamw", "learning_rate": 1e-3, "weight_decay": 1e-4,
                                "schedule": "cosine", "protocol": "equal"}


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

    ``"tuned"``: per-model recipes, picked by a nested search with the same budget for every
    model. The base is the equal recipe, with the model's own architecture options (its registry
    entry's ``tuned`` ``model_options``: LeNet-5 ReLU/max-pool at 32 px, AlexNet batch norm,
    ResNet the builder's own); each run then trains every candidate of
    :data:`core.learn.tuning.TUNING_CANDIDATES` (learning rate and schedule) on its training
    galaxies and keeps the one with the best validation accuracy; its test galaxies score only
    the one kept (:func:`core.learn.training.train`). ``learning_rate`` and ``schedule`` here are
    the search's starting point, not the recipe used.

    Both come from the model's registry entry (``equal_options`` / ``equal_reasons``, ``tuned``).

    Raises
    ------
    ConfigError
        If ``model`` is not a registered network (the message names them), the protocol is unknown,
        or the model has no tuned recipe and ``protocol`` is ``"tuned"``.
    """
    entry = network_entry(model)
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}.")
    if protocol == "equal":
        return {**EQUAL_RECIPE, "model_options": dict(entry.equal_options)}
    if entry.tuned is None:
        raise ConfigError(f"protocol must be 'equal' for model {model}: its registry entry has no tuned recipe; got "
                          "'tuned'. Use the equal protocol, or give the entry a tuned recipe (core/learn/registry.py).")
    return {**EQUAL_RECIPE, "protocol": "tuned", "model_options": dict(entry.tuned.get("model_options", {}))}


def protocol_differences(config: TrainConfig, *, candidates: int | None = None, chosen: str | None = None) -> list[str]:
    """What ``config`` gives its model that the protocol does not give every model, one sentence each.

    Under ``equal``: the architecture options a model cannot run without (empty for ResNet). Under
    ``tuned``: that its recipe was picked on validation from ``candidates`` (default: every one of
    :data:`core.learn.tuning.TUNING_CANDIDATES`), and once the search is over the ``chosen`` one.
    Written to each run's ``config.json`` so a comparison can list them.
    """
    if config.protocol == "equal":
        entry = network_entry(config.model)
        options, reasons = entry.equal_options, entry.equal_reasons
        # An option a user changed away from the protocol's is no longer the protocol's difference.
        return list(reasons) if all(config.model_options.get(k) == v for k, v in options.items()) else [
            f"{config.model}: model options {config.model_options}"]
    n = len(TUNING_CANDIDATES) if candidates is None else candidates
    picked = f" (chosen: {chosen})" if chosen else ""
    extra = f"; model options {config.model_options}" if config.model_options else ""
    return [f"{config.model}: per-model recipe picked on validation from {n} candidates{picked}{extra}"]


def default_config(model: str, *, protocol: str | None = "equal", **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` with :func:`model_defaults` for ``model`` and ``protocol`` (None = equal), then
    ``overrides`` (``None`` = default).

    Raises
    ------
    ConfigError
        Also if ``protocol`` is ``"tuned"`` and ``overrides`` set what the search picks (learning
        rate, schedule): the search would overwrite them.
    """
    searched = sorted(k for k in TUNED_FIELDS if overrides.get(k) is not None)
    if protocol == "tuned" and searched:
        raise ConfigError(f"under the tuned protocol the search picks {', '.join(TUNED_FIELDS)} for every model; got "
                          f"{', '.join(searched)} as well. Leave them out, or use --protocol equal.")
    params = {"model": model, **model_defaults(model, protocol=protocol or "equal")}
    params.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**params)
