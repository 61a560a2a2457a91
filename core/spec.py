"""What a build or a training is: frozen specs that travel as files, and the CLI generated from them.

:class:`BuildSpec` holds every choice of ``python -m core build`` (source, scheme, catalogue,
survey and band, conflict policy, exclusions, :class:`~core.prepare.preprocessing.PreprocessConfig`,
:class:`~core.prepare.quality.QualityThresholds`, split); :class:`TrainSpec` every choice of
``python -m core train``; :class:`ScrapeSpec`, :class:`FetchSpec` and :class:`ImportSpec` those of
the Data page's commands.

Each field is written once, here (or in the nested config's module): its type, its default and,
in its metadata, its help and flag name. From them come

- the command's flags (:func:`add_spec_options`, :func:`spec_from_args`): ``--crop`` exists
  because ``PreprocessConfig.crop`` does, with its type, choices and default;
- the command line that rebuilds a spec (:func:`spec_argv`, ``spec.to_argv()``);
- the JSON file a dashboard job runs from (:func:`write_spec_file`; ``python -m core build
  --spec FILE`` reads it back with :func:`read_spec_file`, as hostile input: size-checked, typed,
  range-checked, unknown keys refused).

Importing this module is cheap (no numpy, no pandas): the nested configs of a build are imported
when a build spec is made or its flags are generated, in one place (:func:`_build_parts`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from core.errors import ConfigError, shorten
from core.fields import option
from core.io import RefusedFileError, atomic_write_json, read_regular_bytes
from core.learn.registry import FEATURES, default_models, entries

if TYPE_CHECKING:
    from core.prepare.preprocessing import PreprocessConfig
    from core.prepare.quality import QualityThresholds

SPEC_VERSION = 1
"""Bump when a field's meaning changes, so :meth:`BuildSpec.digest` of an old spec no longer matches."""
SPEC_FILE_MAX_BYTES = 64_000
"""A spec file is a few hundred bytes; a larger one is not one (and is not read whole)."""


def _number(value: object) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer past float's range, e.g. 1e400 written out in a JSON file
        return False


def _label_sources() -> tuple[str, ...]:
    from core.acquire.labels import LABEL_SOURCES  # noqa: PLC0415 - labels imports pandas

    return tuple(LABEL_SOURCES)


def _conflict_policies() -> tuple[str, ...]:
    from core.acquire.labels import CONFLICT_POLICIES  # noqa: PLC0415 - labels imports pandas

    return tuple(CONFLICT_POLICIES)


def _build_parts() -> dict[str, type]:
    """The nested configs of a build, imported here only: they need numpy and astropy."""
    from core.prepare.preprocessing import PreprocessConfig  # noqa: PLC0415 - keeps this module cheap to import
    from core.prepare.quality import QualityThresholds  # noqa: PLC0415

    return {"PreprocessConfig": PreprocessConfig, "QualityThresholds": QualityThresholds}


def _default_preprocess() -> PreprocessConfig:
    return _build_parts()["PreprocessConfig"]()


def _default_thresholds() -> QualityThresholds:
    return _build_parts()["QualityThresholds"]()


@dataclass(frozen=True)
class BuildSpec:
    """Every choice of one dataset build; ``python -m core build`` and the dashboard make the same one.

    ``auto`` values (catalogue, survey, band, the preprocessing's centre) and ``scheme=None``
    stay unresolved here: the builder resolves them against the source, in one place
    (:func:`core.prepare.builder.select`), for the preview and the build alike. Where the dataset goes
    (``--out``), parallelism and ``--force`` are how to run the build, not what it builds, and
    are not part of the spec.

    Attributes
    ----------
    source : str
        The source folder.
    scheme : str or None
        Class scheme name or mapping file; None: ``gz1`` for a Galaxy Zoo source, else ``hubble3``.
    preprocess : PreprocessConfig
    thresholds : QualityThresholds
    catalog, survey, band : str
        ``"auto"`` (the most common), ``"all"``, or a name.
    label_from, conflicts : str
        See :func:`core.acquire.labels.label_table` and :func:`core.acquire.labels.resolve_conflicts`.
    exclude_dwarfs, exclude_uncertain : bool
    duplicate_arcsec : float
    allow_duplicates : bool
    seed : int
    val_fraction, test_fraction : float
    """

    kind: ClassVar[str] = "build"

    source: str = field(metadata=option("source folder", default_help="<data_dir>/sample"))
    scheme: str | None = field(default=None, metadata=option(
        "hubble3, hubble4, seed6, gz1, or a .json/.csv mapping file",
        default_help="gz1 for a Galaxy Zoo source, else hubble3"))
    preprocess: PreprocessConfig = field(default_factory=_default_preprocess)
    thresholds: QualityThresholds = field(default_factory=_default_thresholds)
    catalog: str = field(default="auto", metadata=option(
        "name prefix to keep (NGC, UGC, ...), 'auto' (the most common) or 'all'"))
    survey: str = field(default="auto", metadata=option(
        "keep images of one survey ('DSS2', 'SDSS r', ...), 'auto' (the most common) or 'all'"))
    band: str = field(default="auto", metadata=option(
        "keep one band of that survey, 'auto' (its most common) or 'all'"))
    label_from: str = field(default="classification", metadata=option(
        "label from NED's type string or from the searched term", choices=_label_sources))
    conflicts: str = field(default="drop", metadata=option(
        "objects with several labels", choices=_conflict_policies))
    exclude_dwarfs: bool = field(default=False, metadata=option(
        "leave out dwarfs (dE, dS0, dSph, dIrr) the scheme would classify"))
    exclude_uncertain: bool = field(default=False, metadata=option(
        "leave out uncertain types (E?, Sb:) the scheme would classify"))
    duplicate_arcsec: float = field(default=3.0, metadata=option("positional duplicate radius"))
    allow_duplicates: bool = field(default=False, metadata=option(
        "with --catalog all, build even if objects have no ra/dec (a galaxy under two names may land in two splits)"))
    seed: int = field(default=0, metadata=option("seed of the split"))
    val_fraction: float = field(default=0.15, metadata=option("validation fraction per class", flag="--val"))
    test_fraction: float = field(default=0.15, metadata=option("test fraction per class", flag="--test"))

    def __post_init__(self) -> None:
        parts = _build_parts()
        object.__setattr__(self, "source", str(self.source))
        if self.scheme is not None:
            object.__setattr__(self, "scheme", str(self.scheme))
        for name, wanted in (("preprocess", parts["PreprocessConfig"]), ("thresholds", parts["QualityThresholds"])):
            if not isinstance(getattr(self, name), wanted):
                raise ConfigError(f"{name} must be a {wanted.__name__}; got {type(getattr(self, name)).__name__}.")
        for name in ("catalog", "survey", "band"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{name} must be 'auto', 'all' or a name; got {value!r}. Use e.g. 'auto'.")
        _check_choices(self)
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not _number(value) or not 0 <= value < 1:
                raise ConfigError(f"{name} must be in [0, 1); got {value!r}. Use e.g. 0.15.")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(
                f"val_fraction + test_fraction must be < 1; got {self.val_fraction} + {self.test_fraction}. "
                "Leave images to train on."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer; got {self.seed!r}.")
        if not _number(self.duplicate_arcsec) or self.duplicate_arcsec < 0:
            raise ConfigError(f"duplicate_arcsec must be a non-negative number; got {self.duplicate_arcsec!r}. Use e.g. 3.")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, the preprocessing and thresholds as nested dictionaries."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["preprocess"] = self.preprocess.to_dict()
        out["thresholds"] = self.thresholds.to_dict()
        return out

    @classmethod
    def from_dict(cls, values: Any, *, where: str = "a build spec") -> BuildSpec:
        """The spec of :meth:`to_dict`'s output, read back from a file that may be damaged
        (:func:`spec_from_dict`)."""
        return spec_from_dict(cls, values, where=where)

    def digest(self) -> str:
        """A stable SHA-256 of the spec: the same choices give the same hex digest in any process."""
        payload = json.dumps({"spec_version": SPEC_VERSION, **self.to_dict()}, sort_keys=True, default=list)
        return hashlib.sha256(payload.encode()).hexdigest()

    def replace(self, **changes: Any) -> BuildSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_argv(self, *, out: str | None = None, force: bool = False) -> list[str]:
        """``python -m core build`` arguments that build exactly this spec.

        Raises
        ------
        ConfigError
            If the preprocessing sets something the command line cannot say (percentiles,
            background subtraction): write a spec file instead (:func:`write_spec_file`).
        """
        return spec_argv(self) + (["--out", str(out)] if out is not None else []) + (["--force"] if force else [])

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, default_source: str, default_size: int,
                  defaults: PreprocessConfig | None = None) -> BuildSpec:
        """The spec of parsed ``build`` arguments (or of their ``--spec FILE``); options left out take
        ``defaults``, the source's own preprocessing defaults (:func:`core.prepare.builder.preprocess_defaults`),
        else :class:`~core.prepare.preprocessing.PreprocessConfig`'s, and ``default_size``."""
        preprocess = defaults if defaults is not None else _default_preprocess()
        return spec_from_args(cls, args, source=default_source,
                              preprocess=dataclasses.replace(preprocess, size=default_size))

    @classmethod
    def from_argv(cls, argv: Sequence[str], *, default_source: str = "", default_size: int = 64) -> BuildSpec:
        """The spec of a ``build`` command line (as :meth:`to_argv` writes it)."""
        return cls.from_args(_parse_command(cls, argv), default_source=default_source, default_size=default_size)


def _plain_fields(spec: Any) -> dict[str, Any]:
    """A flat spec's fields as JSON-ready values, in field order (tuples as lists)."""
    return {f.name: (list(v) if isinstance(v := getattr(spec, f.name), tuple) else v) for f in dataclasses.fields(spec)}


def _parse_command(cls: type, argv: Sequence[str]) -> argparse.Namespace:
    from core.cli import build_parser  # noqa: PLC0415 - the CLI imports the specs

    args = build_parser().parse_args(list(argv))
    if args.command != cls.kind:
        raise ConfigError(f"argv must be a `{cls.kind}` command; got {list(argv)[:1]}. Start it with '{cls.kind}'.")
    return args


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

    dataset: str = field(metadata=option("dataset folder written by `python -m core build`"))
    # No choices: an unknown name gets the one-line error naming every registered model (train_spec).
    models: tuple[str, ...] = field(default=DEFAULT_MODELS, metadata=option(_models_help))
    seeds: tuple[int, ...] = field(default=(0,), metadata=option("random seeds, one run each"))
    protocol: Literal["equal", "tuned"] = field(default="equal", metadata=option(
        "equal: one recipe for every model (optimiser, schedule, epochs, batch, augmentation, input size, epoch "
        "selection; each run records what its architecture cannot go without); tuned: per-model recipes, each run "
        "picking learning rate and schedule from the same candidates for every model on its validation galaxies "
        "(nested: test scores only the one kept; costs one run per candidate)"))
    folds: int = field(default=0, metadata=option(
        "stratified K-fold by object: one run per fold, test fold rotating, validation the next fold; a dataset "
        "with a frozen test set keeps it, and the folds rotate validation over the rest (0: the dataset's own "
        "split)"))
    repeats: int = field(default=1, metadata=option(
        "split seeds 0..R-1: repeated K-fold with --folds, else stratified re-splits"))
    epochs: int | None = field(default=None, metadata=option("maximum epochs", default_help="per model"))
    batch_size: int | None = field(default=None, metadata=option("batch size per device", default_help="32"))
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
    mixed_precision: bool = field(default=False, metadata=option("mixed_float16 (GPU)"))
    xla: bool = field(default=False, metadata=option("compile the train step with XLA (jit_compile)"))
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
        _check_choices(self)
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
            ok = (not isinstance(value, bool) and isinstance(value, int)) if whole else _number(value)
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
        return _plain_fields(self)

    @classmethod
    def from_dict(cls, values: Any, *, where: str = "a train spec") -> TrainSpec:
        """The spec of :meth:`to_dict`'s output, read back from a file that may be damaged
        (:func:`spec_from_dict`)."""
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

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> TrainSpec:
        """The spec of a ``train`` command line (as :meth:`to_argv` writes it)."""
        return cls.from_args(_parse_command(cls, argv))


#: What `scrape` searches when ``--classes`` is left out.
DEFAULT_NED_CLASSES: tuple[str, ...] = ("E", "S0", "S0/a", "SA", "SAB", "SB")


@dataclass(frozen=True)
class ScrapeSpec:
    """``python -m core scrape``: NED's classification search for ``classes`` into ``out``."""

    kind: ClassVar[str] = "scrape"

    classes: tuple[str, ...] = field(default=DEFAULT_NED_CLASSES, metadata=option(
        "class terms: E S0 S0/a S Irr, bar families A AB B, spirals S[A|AB|B][a..d]"))
    out: str | None = field(default=None, metadata=option("output folder", default_help="<data_dir>/ned"))
    max_pages: int = field(default=0, metadata=option("stop each class after this many pages (0: all)"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if self.out is not None:
            object.__setattr__(self, "out", str(self.out))
        if not self.classes:
            raise ConfigError("classes must name at least one NED class; got none. Use e.g. ('E', 'S0').")
        if isinstance(self.max_pages, bool) or not isinstance(self.max_pages, int) or self.max_pages < 0:
            raise ConfigError(f"max_pages must be an integer >= 0 (0: all); got {self.max_pages!r}.")

    def to_dict(self) -> dict[str, Any]:
        return _plain_fields(self)

    def to_argv(self) -> list[str]:
        return spec_argv(self)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Any:
        """The spec of parsed arguments (or of their ``--spec FILE``)."""
        return spec_from_args(cls, args)


@dataclass(frozen=True)
class FetchSpec:
    """``python -m core fetch``: the images of a scraped catalogue into ``out``."""

    kind: ClassVar[str] = "fetch"

    catalog: str | None = field(default=None, metadata=option(
        "catalogue CSV with a name column", default_help="<data_dir>/ned/catalog.csv"))
    out: str | None = field(default=None, metadata=option("image folder", default_help="<data_dir>/ned/images"))
    retry_failed: bool = field(default=False, metadata=option("process only objects that failed before"))

    def __post_init__(self) -> None:
        for name in ("catalog", "out"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, str(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return _plain_fields(self)

    def to_argv(self) -> list[str]:
        return spec_argv(self)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Any:
        """The spec of parsed arguments (or of their ``--spec FILE``)."""
        return spec_from_args(cls, args)


@dataclass(frozen=True)
class ImportSpec:
    """``python -m core import``: a user's catalogue CSV and image folder as a source."""

    kind: ClassVar[str] = "import"

    catalog: str = field(metadata=option("catalogue CSV"))
    images: str = field(metadata=option(
        "folder of images (searched recursively), or a fetch output folder (matched through its manifest)"))
    name: str | None = field(default=None, metadata=option("source name", default_help="the CSV's file name"))

    def __post_init__(self) -> None:
        for name in ("catalog", "images"):
            object.__setattr__(self, name, str(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return _plain_fields(self)

    def to_argv(self) -> list[str]:
        return spec_argv(self)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Any:
        """The spec of parsed arguments (or of their ``--spec FILE``)."""
        return spec_from_args(cls, args)


Spec = typing.Union[BuildSpec, TrainSpec, ScrapeSpec, FetchSpec, ImportSpec]
#: Every kind of spec, by the command that runs it.
SPEC_KINDS: dict[str, type] = {cls.kind: cls for cls in (BuildSpec, TrainSpec, ScrapeSpec, FetchSpec, ImportSpec)}


# --------------------------------------------------------------------------- fields, flags and files


@dataclass(frozen=True)
class SpecOption:
    """One command-line flag of a spec, made from one field (nested configs' fields included).

    Attributes
    ----------
    path : tuple of str
        Where the value sits: ``("preprocess", "crop")``; its last part is the argparse ``dest``.
    flag : str
    action : {"value", "list", "switch", "negated"}
        A value, one or more values, a flag that sets True, a flag that sets False.
    type : type
        Of the value (of each value of a list).
    choices : tuple or None
    help : str
    default : object
        The field's default (``dataclasses.MISSING`` for a required field).
    """

    path: tuple[str, ...]
    flag: str
    action: str
    type: type
    choices: tuple[Any, ...] | None
    help: str
    default: Any

    @property
    def name(self) -> str:
        return self.path[-1]


@cache
def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a spec or config class (``int | None``, ``Literal[...]``, nested classes)."""
    return typing.get_type_hints(cls, localns=_build_parts() if cls is BuildSpec else None)


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """``(type, optional)``: ``int | None`` -> ``(int, True)``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return tp, False


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _choices(f: dataclasses.Field, tp: Any) -> tuple[Any, ...] | None:
    """A field's allowed values: its ``Literal`` type's, else its metadata's."""
    base, _ = _unwrap(tp)
    if typing.get_origin(base) is Literal:
        return typing.get_args(base)
    choices = f.metadata.get("choices")
    return choices() if callable(choices) else choices


def _check_choices(spec: Any) -> None:
    """Refuse a value outside its field's choices (a ``Literal`` type or ``option(choices=...)``)."""
    hints = _hints(type(spec))
    for f in dataclasses.fields(spec):
        choices = _choices(f, hints[f.name])
        value = getattr(spec, f.name)
        if choices is not None and value is not None and (isinstance(value, bool) or value not in choices):
            raise ConfigError(f"{f.name} must be one of {', '.join(map(repr, choices))}; got {shorten(repr(value))}.")


def spec_options(cls: type) -> tuple[SpecOption, ...]:
    """The command-line flags of a spec class, one per field with a flag, nested configs walked into.

    The flag, type, choices and help come from the field (its annotation, default and
    :func:`option` metadata), so a new field is a new flag with nothing else to write. Made anew
    on each call: a help or choices read from a registry show what is registered now.
    """
    found: list[SpecOption] = []
    _walk_options(cls, (), found)
    names = [o.name for o in found]
    if len(names) != len(set(names)):  # a programming error: two fields would share one argparse dest
        raise TypeError(f"{cls.__name__}: field names must be unique across nested configs; got {names}")
    return tuple(found)


def _walk_options(cls: type, prefix: tuple[str, ...], found: list[SpecOption]) -> None:
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            _walk_options(tp, (*prefix, f.name), found)
            continue
        meta = f.metadata
        if not meta.get("cli", bool(meta)):
            continue
        base, _ = _unwrap(tp)
        default = _field_default(f)
        choices = _choices(f, tp)
        if base is bool:
            action = "negated" if meta.get("negate") else "switch"
            value_type: type = bool
        elif typing.get_origin(base) is tuple:
            action, value_type = "list", typing.get_args(base)[0]
        else:
            action = "value"
            value_type = type(choices[0]) if choices else base
        flag = meta.get("negate") or meta.get("flag") or "--" + f.name.replace("_", "-")
        shown = meta.get("default_help")
        if shown is None and action in ("value", "list") and default not in (None, dataclasses.MISSING):
            shown = " ".join(map(str, default)) if isinstance(default, tuple) else (
                f"{default:g}" if isinstance(default, float) else str(default))
        text = (meta["help"]() if callable(meta["help"]) else meta["help"]) + (
            f" (default: {shown})" if shown is not None else "")
        found.append(SpecOption((*prefix, f.name), flag, action, value_type, choices, text, default))


class _SpecFlag(argparse.Action):
    """Stores a spec flag's value and notes that it was given, so :func:`spec_from_args` tells a
    flag the user typed from its default (and refuses it beside ``--spec FILE``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
        setattr(namespace, "_spec_given", {*getattr(namespace, "_spec_given", ()), self.dest})


def add_spec_options(parser: argparse.ArgumentParser, cls: type, *,
                     default_help: Mapping[str, str] | None = None) -> None:
    """Add the flags of ``cls`` (:func:`spec_options`) and ``--spec FILE`` to a command's parser.

    A flag's parsed default is its field's default, except where the command may decide it (a
    nested config's field, or a field named in ``default_help``, such as a build's source kind):
    there it is None, and :func:`spec_from_args` fills it in.
    ``default_help`` replaces what the help says the default is, by field name.
    """
    for spec_option in spec_options(cls):
        text = spec_option.help
        decided_elsewhere = len(spec_option.path) > 1  # a nested config's default: the command may decide it
        if default_help and spec_option.name in default_help:
            text = text.split(" (default: ")[0] + f" (default: {default_help[spec_option.name]})"
            decided_elsewhere = True
        default = spec_option.default
        if decided_elsewhere or default is dataclasses.MISSING:
            default = None
        kwargs: dict[str, Any] = {"dest": spec_option.name, "help": text, "action": _SpecFlag,
                                  "default": list(default) if isinstance(default, tuple) else default}
        if spec_option.action in ("switch", "negated"):
            kwargs.update(nargs=0, const=spec_option.action == "switch")
        else:
            kwargs.update(type=spec_option.type, choices=spec_option.choices,
                          metavar=None if spec_option.choices else spec_option.flag.lstrip("-").upper().replace("-", "_"))
            if spec_option.action == "list":
                kwargs["nargs"] = "+"
        parser.add_argument(spec_option.flag, **kwargs)
    parser.set_defaults(_spec_given=frozenset())  # _SpecFlag adds each flag given
    parser.add_argument("--spec", default=None, metavar="FILE",
                        help=f"read every {cls.kind} choice from this JSON file (as the dashboard's jobs write it); "
                             f"no other {cls.kind} option may be given with it")


def spec_from_args(cls: type, args: argparse.Namespace, **fallbacks: Any) -> Any:
    """The spec of parsed arguments: read from ``--spec FILE``, or made from the flags given.

    ``fallbacks`` give a field's value when its flag was left out and the command, not the
    spec, decides it (``source=<data_dir>/sample``, ``preprocess=`` the source kind's defaults);
    every other field left out takes the spec's default.

    Raises
    ------
    ConfigError
        When ``--spec`` comes with other flags of the spec, a required flag is missing, or the
        file or a value is refused.
    """
    options = spec_options(cls)
    typed = getattr(args, "_spec_given", None)  # the flags given (a Namespace made by hand: its non-None values)
    given = {o.name: getattr(args, o.name) for o in options
             if (o.name in typed if typed is not None else getattr(args, o.name, None) is not None)}
    path = getattr(args, "spec", None)
    if path is not None:
        if given:
            flags = ", ".join(o.flag for o in options if o.name in given)
            raise ConfigError(f"--spec {shorten(path)} holds the whole {cls.kind} spec; got also {flags}. "
                              "Put those choices in the file, or leave --spec out.")
        return read_spec_file(path, cls)
    return _assemble(cls, given, fallbacks)


def _assemble(cls: type, given: Mapping[str, Any], fallbacks: Mapping[str, Any]) -> Any:
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            base = fallbacks.get(f.name)
            base = base if base is not None else _field_default(f)
            inner = {n.name: given[n.name] for n in dataclasses.fields(tp) if n.name in given}
            values[f.name] = dataclasses.replace(base, **inner) if inner else base
        elif f.name in given:
            value = given[f.name]
            values[f.name] = tuple(value) if isinstance(value, list) else value
        elif f.name in fallbacks:
            values[f.name] = fallbacks[f.name]
        elif _field_default(f) is dataclasses.MISSING:
            flag = next(o.flag for o in spec_options(cls) if o.name == f.name)
            raise ConfigError(f"{flag} is required; got none. Pass {flag}, or --spec FILE with every {cls.kind} choice.")
    return cls(**values)


def spec_argv(spec: Any) -> list[str]:
    """The command line that makes ``spec`` again: ``[kind, flag, value, ...]``, every value set.

    Raises
    ------
    ConfigError
        If a field without a flag (the preprocessing's percentiles, background subtraction) is
        not at its default: such a spec travels as a file (:func:`write_spec_file`).
    """
    argv = [spec.kind]
    for spec_option in spec_options(type(spec)):
        value = spec
        for part in spec_option.path:
            value = getattr(value, part)
        if value is None:
            continue
        if spec_option.action == "switch":
            argv += [spec_option.flag] if value else []
        elif spec_option.action == "negated":
            argv += [] if value else [spec_option.flag]
        elif spec_option.action == "list":
            argv += [spec_option.flag, *map(str, value)]
        else:
            argv += [spec_option.flag, repr(float(value)) if isinstance(value, float) else str(value)]
    hidden = [(name, value) for name, value in _flagless(spec) if value]
    if hidden:
        raise ConfigError(f"{', '.join(name for name, _ in hidden)} have no `{spec.kind}` option; got a spec that "
                          f"changes them. Write it to a file with core.spec.write_spec_file and run "
                          f"`python -m core {spec.kind} --spec FILE`.")
    return argv


def _flagless(spec: Any, prefix: str = "") -> list[tuple[str, bool]]:
    """``(name, changed)`` of the fields without a flag: whether each differs from its default."""
    out: list[tuple[str, bool]] = []
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if dataclasses.is_dataclass(value):
            out += _flagless(value, f"{prefix}{f.name}.")
        elif f.metadata and not f.metadata.get("cli", True):
            out.append((f"{f.name}={value!r}", value != _field_default(f)))
    return out


def spec_from_dict(cls: type, values: Any, *, where: str) -> Any:
    """A spec (or nested config) from plain values read back from disk, checked field by field.

    Unknown keys are refused, every value must have its field's type (a JSON list for a tuple,
    an integer where a float goes), and the class's own validation checks the ranges. A missing
    key takes the field's default.

    Raises
    ------
    ConfigError
        One line naming ``where`` and the field, for anything else.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a JSON object with keys among {', '.join(names)}; "
                          f"got a JSON {type(values).__name__}. Write it with core.spec.write_spec_file.")
    unknown = sorted(str(k) for k in set(values) - set(names))
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {shorten(', '.join(unknown))}; allowed are {', '.join(names)}. "
                          "Check the spelling.")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            kwargs[f.name] = _typed(values[f.name], hints[f.name], where=where, name=f.name)
        elif _field_default(f) is dataclasses.MISSING:
            raise ConfigError(f"{where} lacks {f.name}, which has no default. Add it.")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _typed(value: Any, tp: Any, *, where: str, name: str) -> Any:
    """``value`` as the type ``tp`` says, or a ConfigError naming the field."""
    base, optional = _unwrap(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: {name} must not be null. Leave the key out for its default.")
    if dataclasses.is_dataclass(base):
        return spec_from_dict(base, value, where=f"{where}: {name}")
    origin = typing.get_origin(base)
    if origin is Literal:
        choices = typing.get_args(base)
        if isinstance(value, bool) or value not in choices:
            raise ConfigError(f"{where}: {name} must be one of {', '.join(map(repr, choices))}; "
                              f"got {shorten(repr(value))}.")
        return value
    if origin is tuple:
        items = typing.get_args(base)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {name} must be a JSON list; got {shorten(repr(value))}.")
        types = [items[0]] * len(value) if len(items) == 2 and items[1] is Ellipsis else list(items)
        if len(types) != len(value):
            raise ConfigError(f"{where}: {name} must be a list of {len(types)}; got {len(value)} items.")
        return tuple(_typed(v, t, where=where, name=f"{name}[{i}]") for i, (v, t) in enumerate(zip(value, types)))
    good = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63,
        float: _number(value),
        str: isinstance(value, str),
    }.get(base)
    if good is None:
        raise TypeError(f"{name}: no reader for the type {base!r}")  # a programming error: a field of a new type
    if not good:
        what = {bool: "true or false", int: "a 64-bit integer", float: "a finite number", str: "a string"}[base]
        raise ConfigError(f"{where}: {name} must be {what}; got {shorten(repr(value))}.")
    return float(value) if base is float else value


def write_spec_file(spec: Any, path: str | os.PathLike[str]) -> str:
    """Write ``spec`` as JSON (``{"kind": ..., field: value, ...}``), atomically; return the path."""
    atomic_write_json(path, {"kind": spec.kind, **spec.to_dict()})
    return str(path)


def read_spec_file(path: str | os.PathLike[str], cls: type) -> Any:
    """The spec of a JSON file written by :func:`write_spec_file`, read as hostile input.

    The file must be a regular file of at most :data:`SPEC_FILE_MAX_BYTES`, a JSON object whose
    ``kind`` (if any) is ``cls.kind``, with known keys of the right types and values in range.

    Raises
    ------
    ConfigError
        One line naming the file and what is wrong.
    """
    where = f"spec file {shorten(str(path))}"
    try:
        raw = read_regular_bytes(path, max_bytes=SPEC_FILE_MAX_BYTES)
    except RefusedFileError as exc:
        raise ConfigError(f"{where} is refused: {exc}. Write a spec with core.spec.write_spec_file.") from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read ({exc.strerror or exc}). Check the path.") from None
    try:
        values = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: "[[[[…" nested too deep
        raise ConfigError(f"{where} is not JSON ({shorten(str(exc))}). Write it with core.spec.write_spec_file.") from None
    if isinstance(values, dict) and "kind" in values:
        values = dict(values)
        kind = values.pop("kind")
        if kind != cls.kind:
            raise ConfigError(f"{where} is a {shorten(repr(kind))} spec; got it for `{cls.kind}`. "
                              f"Pass a {cls.kind} spec.")
    return spec_from_dict(cls, values, where=where)
