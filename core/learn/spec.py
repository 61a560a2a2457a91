"""What a training is: :class:`TrainSpec`, every choice of ``python -m core train`` and of the Training page.

Each field is written once with its help in :func:`core.fields.option` metadata; the flags, command
line and spec file come from the fields (:mod:`core.fields`). Keras-free and cheap to import.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from core.errors import ConfigError
from core.fields import (
    SPEC_VERSION,
    check_choices,
    finite_number,
    option,
    plain_fields,
    spec_argv,
    spec_from_args,
    spec_from_dict,
)
from core.learn.registry import FEATURES, default_models, entries


#: What `train` runs when ``--models`` is left out (the registry's default entries).
DEFAULT_MODELS: tuple[str, ...] = default_models()


def _models_help() -> str:
    """Every registered model with its display name, the registry's order (read when the flags are made)."""
    networks = ", ".join(f"{e.name} ({e.label})" for e in entries() if e.kind != FEATURES)
    others = ", ".join(f"{e.name} ({e.label}, on hand-made features: a floor for the networks)"
                       for e in entries(FEATURES))
    return f"{networks}; or {others}"

# The overrides a TrainSpec passes to core.learn.training (None: each model's own default).
_TRAIN_OPTIONS: tuple[str, ...] = ("epochs", "batch_size", "optimizer", "learning_rate", "weight_decay", "shift",
                                   "zoom", "patience", "schedule", "label_smoothing")


@dataclass(frozen=True)
class TrainSpec:
    """Every choice of one ``python -m core train`` command; the Training page makes the same one.

    Options left at None take each model's default (:func:`core.learn.training.default_config`), so the
    defaults live in one place. How to run the training (``--resume``, the runs folder, the
    progress file) is not part of the spec.

    Attributes
    ----------
    dataset : str
        The dataset folder.
    models : tuple of str
    seeds : tuple of int
        One run per model, seed, fold and repeat.
    protocol : {"equal", "tuned"}
        equal (the default): one recipe for every model; tuned: per-model recipes, each run picking
        its learning rate and schedule on validation from the same candidates for every model
        (nested: :mod:`core.learn.tuning`).
    folds : int
        0: the dataset's own split; K >= 3: stratified K-fold by object.
    repeats : int
        Split seeds (repeated K-fold, or stratified re-splits when ``folds`` is 0).
    epochs, batch_size, optimizer, learning_rate, weight_decay, shift, zoom, patience, schedule, label_smoothing
        None: the model's (or protocol's) default.
    augment : bool
    class_weight : {"balanced", "none"}
    mixed_precision, xla : bool
    distribute : {"auto", "none", "mirrored", "multiworker"}
    """

    kind: ClassVar[str] = "train"

    dataset: str = field(metadata=option("dataset folder written by `python -m core build`", label="Dataset"))
    # No choices: an unknown name gets the one-line error naming every registered model (train_spec).
    models: tuple[str, ...] = field(default=DEFAULT_MODELS, metadata=option(_models_help, label="Models"))
    seeds: tuple[int, ...] = field(default=(0,), metadata=option("random seeds, one run each",
        label="Seeds (comma-separated)"))
    protocol: Literal["equal", "tuned"] = field(default="equal", metadata=option(
        "equal: one recipe for every model (optimiser, schedule, epochs, batch, augmentation, input size, epoch "
        "selection; each run records what its architecture cannot go without); tuned: per-model recipes, each run "
        "picking learning rate and schedule from the same candidates for every model on its validation galaxies "
        "(nested: test scores only the one kept; costs one run per candidate)", label="Protocol"))
    folds: int = field(default=0, metadata=option(
        "stratified K-fold by object: one run per fold, test fold rotating, validation the next fold; a dataset "
        "with a frozen test set keeps it, and the folds rotate validation over the rest (0: the dataset's own "
        "split)", label="Folds (0 = the dataset's split)"))
    repeats: int = field(default=1, metadata=option(
        "split seeds 0..R-1: repeated K-fold with --folds, else stratified re-splits",
            label="Repeats (split seeds)"))
    epochs: int | None = field(default=None, metadata=option("maximum epochs", default_help="per model",
        label="Epochs (at most)"))
    batch_size: int | None = field(default=None, metadata=option("batch size per device", default_help="32",
        label="Batch size"))
    optimizer: Literal["adam", "adamw", "sgd"] | None = field(default=None, metadata=option(
        "optimiser", default_help="per model"))
    learning_rate: float | None = field(default=None, metadata=option(
        "learning rate", default_help="1e-3 under equal; under tuned the search picks it and refuses this flag"))
    weight_decay: float | None = field(default=None, metadata=option(
        "decoupled weight decay", default_help="per model"))
    shift: float | None = field(default=None, metadata=option(
        "largest random shift, fraction of the side", default_help="0.05"))
    zoom: float | None = field(default=None, metadata=option("largest random zoom, fraction", default_help="0.1"))
    patience: int | None = field(default=None, metadata=option(
        "early-stopping patience in epochs; 0 = off", default_help="10"))
    schedule: Literal["constant", "cosine"] | None = field(default=None, metadata=option(
        "learning-rate schedule", default_help="cosine under equal; under tuned the search picks it and refuses "
        "this flag"))
    label_smoothing: float | None = field(default=None, metadata=option(
        "share of each target spread over all classes, against label noise", default_help="0"))
    augment: bool = field(default=True, metadata=option(
        "no rotations/flips/shift/zoom during training", negate="--no-augment"))
    class_weight: Literal["balanced", "none"] = field(default="balanced", metadata=option(
        "weight classes against imbalance"))
    mixed_precision: bool = field(default=False, metadata=option("mixed_float16 (GPU)",
        label="Mixed precision (GPU)"))
    xla: bool = field(default=False, metadata=option("compile the train step with XLA (jit_compile)",
        label="XLA compile (GPU)"))
    distribute: Literal["auto", "none", "mirrored", "multiworker"] = field(default="auto", metadata=option(
        "auto: MirroredStrategy when >1 GPU; multiworker needs TF_CONFIG"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", str(self.dataset))
        object.__setattr__(self, "models", tuple(str(m) for m in self.models))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.dataset.strip():
            raise ConfigError("dataset must name a dataset folder; got ''. Build one with `python -m core build`.")
        if not self.models:
            raise ConfigError("models must name at least one model; got none. Use e.g. ('lenet5',).")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in self.seeds):
            raise ConfigError(f"seeds must be one or more integers; got {self.seeds!r}. Use e.g. (0, 1, 2).")
        check_choices(self)
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 0 or self.folds in (1, 2):
            raise ConfigError(f"folds must be 0 (the dataset's own split) or an integer >= 3; got {self.folds!r}.")
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise ConfigError(f"repeats must be a positive integer; got {self.repeats!r}. Use 1 for a single split.")
        # The overrides: None (the model's default) or a value in range; a spec file may say anything.
        for name, low, high, closed in (("epochs", 1, None, True), ("batch_size", 1, None, True),
                                        ("patience", 0, None, True), ("learning_rate", 0, None, False),
                                        ("weight_decay", 0, None, True), ("shift", 0, 1, True), ("zoom", 0, 1, True),
                                        ("label_smoothing", 0, 1, True)):
            value = getattr(self, name)
            if value is None:
                continue
            whole = name in ("epochs", "batch_size", "patience")
            ok = (not isinstance(value, bool) and isinstance(value, int)) if whole else finite_number(value)
            ok = ok and (value >= low if closed else value > low) and (high is None or value < high)
            if not ok:
                allowed = f"an integer >= {low}" if whole else (
                    f"a number in [{low}, {high})" if high is not None else f"a number {'>=' if closed else '>'} {low}")
                raise ConfigError(f"{name} must be None (the model's default) or {allowed}; got {value!r}.")
        searched = [name for name in ("learning_rate", "schedule") if getattr(self, name) is not None]
        if self.protocol == "tuned" and searched:  # refused before any run, the baseline's too
            raise ConfigError(f"under the tuned protocol the search picks learning_rate, schedule for every model; got "
                              f"{', '.join(searched)} as well. Leave them out, or use --protocol equal.")

    @property
    def n_runs(self) -> int:
        """How many runs the command trains: models x seeds x folds x repeats."""
        return len(self.models) * len(self.seeds) * max(self.folds, 1) * self.repeats

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples as lists)."""
        return plain_fields(self)

    @classmethod
    def from_dict(cls, values: Any, *, where: str = "a train spec") -> TrainSpec:
        """The spec of :meth:`to_dict`'s output, read back from a file that may be damaged
        (:func:`core.fields.spec_from_dict`)."""
        return spec_from_dict(cls, values, where=where)

    def digest(self) -> str:
        """A stable SHA-256 of the spec."""
        payload = json.dumps({"spec_version": SPEC_VERSION, "kind": self.kind, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def overrides(self) -> dict[str, Any]:
        """The options :func:`core.learn.training.train_many` takes (None: the model's default)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in _TRAIN_OPTIONS}
        out.update(distribute=self.distribute, protocol=self.protocol, class_weight=self.class_weight,
                   mixed_precision=self.mixed_precision or None, xla=self.xla or None,
                   augment=None if self.augment else False)
        return out

    def to_argv(self, *, resume: bool = False) -> list[str]:
        """``python -m core train`` arguments that train exactly this spec."""
        return spec_argv(self) + (["--resume"] if resume else [])

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainSpec:
        """The spec of parsed ``train`` arguments (or of their ``--spec FILE``)."""
        return spec_from_args(cls, args)
