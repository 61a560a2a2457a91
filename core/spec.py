"""What a build or a training is: frozen specs the CLI parses into and the dashboard fills from widgets.

:class:`BuildSpec` holds every choice of ``python -m core build`` (source, scheme, catalogue,
survey and band, conflict policy, exclusions, :class:`~core.prepare.preprocessing.PreprocessConfig`,
:class:`~core.prepare.quality.QualityThresholds`, split); :meth:`BuildSpec.to_argv` writes the command line that
rebuilds it and :meth:`BuildSpec.from_args` reads it back, so a page never writes argv by hand.
:class:`TrainSpec` does the same for ``python -m core train``.
A background job (:func:`core.jobs.submit`) is started from a spec and keeps it in its record.

Importing this module is cheap (no numpy, no pandas): the CLI reads the defaults for its help.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from core.errors import ConfigError
from core.learn.registry import default_models

if TYPE_CHECKING:
    from core.prepare.preprocessing import PreprocessConfig
    from core.prepare.quality import QualityThresholds

SPEC_VERSION = 1
"""Bump when a field's meaning changes, so :meth:`BuildSpec.digest` of an old spec no longer matches."""


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _default_thresholds() -> QualityThresholds:
    from core.prepare.quality import QualityThresholds  # noqa: PLC0415 - keeps this module cheap to import

    return QualityThresholds()


def _default_preprocess() -> PreprocessConfig:
    from core.prepare.preprocessing import PreprocessConfig  # noqa: PLC0415 - keeps this module cheap to import

    return PreprocessConfig()


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

    source: str
    scheme: str | None = None
    preprocess: PreprocessConfig = field(default_factory=_default_preprocess)
    thresholds: QualityThresholds = field(default_factory=_default_thresholds)
    catalog: str = "auto"
    survey: str = "auto"
    band: str = "auto"
    label_from: str = "classification"
    conflicts: str = "drop"
    exclude_dwarfs: bool = False
    exclude_uncertain: bool = False
    duplicate_arcsec: float = 3.0
    allow_duplicates: bool = False
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        from core.prepare.preprocessing import PreprocessConfig  # noqa: PLC0415
        from core.prepare.quality import QualityThresholds  # noqa: PLC0415

        object.__setattr__(self, "source", str(self.source))
        if self.scheme is not None:
            object.__setattr__(self, "scheme", str(self.scheme))
        if not isinstance(self.preprocess, PreprocessConfig):
            raise ConfigError(f"preprocess must be a PreprocessConfig; got {type(self.preprocess).__name__}.")
        if not isinstance(self.thresholds, QualityThresholds):
            raise ConfigError(f"thresholds must be a QualityThresholds; got {type(self.thresholds).__name__}.")
        for name in ("catalog", "survey", "band"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{name} must be 'auto', 'all' or a name; got {value!r}. Use e.g. 'auto'.")
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
            background subtraction): such a spec can only be built from Python.
        """
        config = self.preprocess
        fixed = _default_preprocess()
        if config.percentiles != fixed.percentiles or config.subtract_background != fixed.subtract_background:
            raise ConfigError(
                f"percentiles {config.percentiles} and subtract_background={config.subtract_background} have no "
                "`build` option; got a spec that changes them. Call core.prepare.builder.build(spec) from Python instead."
            )
        argv = ["build", "--source", self.source]
        if self.scheme is not None:
            argv += ["--scheme", self.scheme]
        argv += ["--crop", repr(float(config.crop))]
        if config.crop_arcsec is not None:
            argv += ["--crop-arcsec", repr(float(config.crop_arcsec))]
        argv += ["--size", str(config.size), "--stretch", config.stretch, "--channels", str(config.channels),
                 "--centre", config.centre]
        for name, value in self.thresholds.to_dict().items():
            argv += [f"--{name.replace('_', '-')}", str(value) if name == "min_size" else repr(value)]
        argv += ["--catalog", self.catalog, "--survey", self.survey, "--band", self.band,
                 "--label-from", self.label_from, "--conflicts", self.conflicts,
                 "--duplicate-arcsec", repr(float(self.duplicate_arcsec)), "--seed", str(self.seed),
                 "--val", repr(float(self.val_fraction)), "--test", repr(float(self.test_fraction))]
        argv += [flag for flag, on in (("--exclude-dwarfs", self.exclude_dwarfs),
                                       ("--exclude-uncertain", self.exclude_uncertain),
                                       ("--allow-duplicates", self.allow_duplicates)) if on]
        if out is not None:
            argv += ["--out", str(out)]
        if force:
            argv.append("--force")
        return argv

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, default_source: str, default_size: int,
                  defaults: PreprocessConfig | None = None) -> BuildSpec:
        """The spec of parsed ``build`` arguments; options left out take ``defaults``, the source's
        own preprocessing defaults (:func:`core.prepare.builder.preprocess_defaults`), else this module's."""
        import dataclasses  # noqa: PLC0415

        from core.prepare.preprocessing import PreprocessConfig  # noqa: PLC0415

        # An option left at None takes the default of the source kind: the defaults live there, not in argparse.
        options = {name: getattr(args, name, None) for name in ("crop", "crop_arcsec", "stretch", "channels", "centre")}
        config = dataclasses.replace(
            defaults if defaults is not None else PreprocessConfig(),
            size=args.size if args.size is not None else default_size,
            **{name: value for name, value in options.items() if value is not None},
        )
        from core.prepare.quality import QUALITY_FIELDS, QualityThresholds  # noqa: PLC0415

        given = {name: getattr(args, name) for name in QUALITY_FIELDS if getattr(args, name, None) is not None}
        return cls(
            source=args.source if args.source is not None else default_source,
            scheme=args.scheme, preprocess=config, thresholds=QualityThresholds(**given),
            catalog=args.catalog, survey=args.survey, band=args.band, label_from=args.label_from,
            conflicts=args.conflicts, exclude_dwarfs=args.exclude_dwarfs, exclude_uncertain=args.exclude_uncertain,
            duplicate_arcsec=args.duplicate_arcsec, allow_duplicates=args.allow_duplicates, seed=args.seed,
            val_fraction=args.val, test_fraction=args.test,
        )

    @classmethod
    def from_argv(cls, argv: Sequence[str], *, default_source: str = "", default_size: int = 64) -> BuildSpec:
        """The spec of a ``build`` command line (as :meth:`to_argv` writes it)."""
        from core.cli import build_parser  # noqa: PLC0415

        args = build_parser().parse_args(list(argv))
        if args.command != "build":
            raise ConfigError(f"argv must be a `build` command; got {list(argv)[:1]}. Start it with 'build'.")
        return cls.from_args(args, default_source=default_source, default_size=default_size)


def _plain_fields(spec: Any) -> dict[str, Any]:
    """A flat spec's fields as JSON-ready values, in field order (tuples as lists)."""
    return {f.name: (list(v) if isinstance(v := getattr(spec, f.name), tuple) else v) for f in dataclasses.fields(spec)}


#: What `train` runs when ``--models`` is left out (the registry's default entries).
DEFAULT_MODELS: tuple[str, ...] = default_models()

# The overrides a TrainSpec passes to core.learn.training (None: each model's own default).
_TRAIN_OPTIONS: tuple[tuple[str, str], ...] = (
    ("epochs", "--epochs"), ("batch_size", "--batch-size"), ("optimizer", "--optimizer"),
    ("learning_rate", "--learning-rate"), ("weight_decay", "--weight-decay"), ("shift", "--shift"),
    ("zoom", "--zoom"), ("patience", "--patience"), ("schedule", "--schedule"),
    ("label_smoothing", "--label-smoothing"),
)


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
        equal (the default): one recipe for every model; tuned: per-model recipes.
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

    dataset: str
    models: tuple[str, ...] = DEFAULT_MODELS
    seeds: tuple[int, ...] = (0,)
    protocol: str = "equal"
    folds: int = 0
    repeats: int = 1
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    learning_rate: float | None = None
    weight_decay: float | None = None
    shift: float | None = None
    zoom: float | None = None
    patience: int | None = None
    schedule: str | None = None
    label_smoothing: float | None = None
    augment: bool = True
    class_weight: str = "balanced"
    mixed_precision: bool = False
    xla: bool = False
    distribute: str = "auto"

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
        if self.protocol not in ("tuned", "equal"):
            raise ConfigError(f"protocol must be 'tuned' or 'equal'; got {self.protocol!r}.")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 0 or self.folds in (1, 2):
            raise ConfigError(f"folds must be 0 (the dataset's own split) or an integer >= 3; got {self.folds!r}.")
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise ConfigError(f"repeats must be a positive integer; got {self.repeats!r}. Use 1 for a single split.")
        if self.class_weight not in ("balanced", "none"):
            raise ConfigError(f"class_weight must be 'balanced' or 'none'; got {self.class_weight!r}.")
        if self.distribute not in ("auto", "none", "mirrored", "multiworker"):
            raise ConfigError(f"distribute must be auto, none, mirrored or multiworker; got {self.distribute!r}.")

    @property
    def n_runs(self) -> int:
        """How many runs the command trains: models x seeds x folds x repeats."""
        return len(self.models) * len(self.seeds) * max(self.folds, 1) * self.repeats

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples as lists)."""
        return _plain_fields(self)

    @classmethod
    def from_dict(cls, values: Any) -> TrainSpec:
        """The spec of :meth:`to_dict`'s output, read back from a file that may be damaged.

        Raises
        ------
        ConfigError
            If ``values`` is not such a dictionary.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(values, dict) or not set(values) <= names or "dataset" not in values:
            raise ConfigError(f"a train spec must be a dictionary of {', '.join(sorted(names))}; got {str(values)[:80]!r}.")
        try:
            return cls(**values)
        except TypeError as exc:  # e.g. models given as a number
            raise ConfigError(f"a train spec has a value of the wrong type ({exc}).") from exc

    def digest(self) -> str:
        """A stable SHA-256 of the spec."""
        payload = json.dumps({"spec_version": SPEC_VERSION, "kind": self.kind, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def overrides(self) -> dict[str, Any]:
        """The options :func:`core.learn.training.train_many` takes (None: the model's default)."""
        out: dict[str, Any] = {name: getattr(self, name) for name, _ in _TRAIN_OPTIONS}
        out.update(distribute=self.distribute, protocol=self.protocol, class_weight=self.class_weight,
                   mixed_precision=self.mixed_precision or None, xla=self.xla or None,
                   augment=None if self.augment else False)
        return out

    def to_argv(self, *, resume: bool = False) -> list[str]:
        """``python -m core train`` arguments that train exactly this spec."""
        argv = ["train", "--dataset", self.dataset, "--models", *self.models, "--seeds", *map(str, self.seeds),
                "--protocol", self.protocol, "--folds", str(self.folds), "--repeats", str(self.repeats)]
        for name, flag in _TRAIN_OPTIONS:
            value = getattr(self, name)
            if value is not None:
                argv += [flag, repr(value) if isinstance(value, float) else str(value)]
        argv += ["--class-weight", self.class_weight, "--distribute", self.distribute]
        argv += [flag for flag, on in (("--no-augment", not self.augment), ("--mixed-precision", self.mixed_precision),
                                       ("--xla", self.xla), ("--resume", resume)) if on]
        return argv

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainSpec:
        """The spec of parsed ``train`` arguments."""
        return cls(
            dataset=args.dataset, models=tuple(args.models), seeds=tuple(args.seeds), protocol=args.protocol,
            folds=args.folds, repeats=args.repeats, augment=not args.no_augment, class_weight=args.class_weight,
            mixed_precision=args.mixed_precision, xla=args.xla, distribute=args.distribute,
            **{name: getattr(args, name) for name, _ in _TRAIN_OPTIONS},
        )

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> TrainSpec:
        """The spec of a ``train`` command line (as :meth:`to_argv` writes it)."""
        from core.cli import build_parser  # noqa: PLC0415

        args = build_parser().parse_args(list(argv))
        if args.command != "train":
            raise ConfigError(f"argv must be a `train` command; got {list(argv)[:1]}. Start it with 'train'.")
        return cls.from_args(args)


@dataclass(frozen=True)
class ScrapeSpec:
    """``python -m core scrape``: NED's classification search for ``classes`` into ``out``."""

    kind: ClassVar[str] = "scrape"

    classes: tuple[str, ...]
    out: str
    max_pages: int = 0
    """Result pages per class; 0: all."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not self.classes:
            raise ConfigError("classes must name at least one NED class; got none. Use e.g. ('E', 'S0').")
        if isinstance(self.max_pages, bool) or not isinstance(self.max_pages, int) or self.max_pages < 0:
            raise ConfigError(f"max_pages must be an integer >= 0 (0: all); got {self.max_pages!r}.")

    def to_dict(self) -> dict[str, Any]:
        return _plain_fields(self)

    def to_argv(self) -> list[str]:
        return ["scrape", "--classes", *self.classes, "--out", str(self.out)] + (
            ["--max-pages", str(self.max_pages)] if self.max_pages else [])


@dataclass(frozen=True)
class FetchSpec:
    """``python -m core fetch``: the images of a scraped catalogue into ``out``."""

    kind: ClassVar[str] = "fetch"

    catalog: str
    out: str
    retry_failed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return _plain_fields(self)

    def to_argv(self) -> list[str]:
        return ["fetch", "--catalog", str(self.catalog), "--out", str(self.out)] + (
            ["--retry-failed"] if self.retry_failed else [])


@dataclass(frozen=True)
class ImportSpec:
    """``python -m core import``: a user's catalogue CSV and image folder as a source."""

    kind: ClassVar[str] = "import"

    catalog: str
    images: str
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _plain_fields(self)

    def to_argv(self) -> list[str]:
        return ["import", "--catalog", str(self.catalog), "--images", str(self.images)] + (
            ["--name", self.name] if self.name else [])
