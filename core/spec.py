"""What a dataset build is: one frozen spec the CLI parses into and the dashboard fills from widgets.

:class:`BuildSpec` holds every choice of ``python -m core build`` (source, scheme, catalogue,
survey and band, conflict policy, exclusions, :class:`~core.preprocessing.PreprocessConfig`,
:class:`QualityThresholds`, split); :meth:`BuildSpec.to_argv` writes the command line that
rebuilds it and :meth:`BuildSpec.from_args` reads it back, so a page never writes argv by hand.
:class:`QualityThresholds` owns the quality filter's defaults; the filter, the builder, the CLI
and the sliders read them from here.

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
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.preprocessing import PreprocessConfig

SPEC_VERSION = 1
"""Bump when a field's meaning changes, so :meth:`BuildSpec.digest` of an old spec no longer matches."""


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class QualityThresholds:
    """The quality filter's thresholds (:func:`core.preprocessing.apply_quality_filter` explains each rule).

    Attributes
    ----------
    min_quality : float, default 0.5
        Quality score threshold in [0, 1].
    min_size : int, default 32
        Smallest image side in pixels.
    min_snr : float, default 25
        Smallest galaxy signal-to-noise.
    min_finite : float, default 0.99
        Smallest fraction of valid pixels.
    max_saturated : float, default 1e-4
        Largest fraction of saturated pixels.
    extent : float, default 1
        Half-light radii of the galaxy that must fit in the crop (0 turns the rule off).
    """

    min_quality: float = 0.5
    min_size: int = 32
    min_snr: float = 25.0
    min_finite: float = 0.99
    max_saturated: float = 1e-4
    extent: float = 1.0

    def __post_init__(self) -> None:
        if not _number(self.min_quality) or not 0 <= self.min_quality <= 1:
            raise ConfigError(f"min_quality must be in [0, 1]; got {self.min_quality!r}. Use e.g. 0.3.")
        if isinstance(self.min_size, bool) or not isinstance(self.min_size, int) or self.min_size < 0:
            raise ConfigError(
                f"min_size must be a non-negative integer; got {self.min_size!r}. Use a side in pixels, e.g. 32."
            )
        for name in ("min_snr", "min_finite", "max_saturated", "extent"):
            value = getattr(self, name)
            if not _number(value) or value < 0:
                raise ConfigError(f"{name} must be a non-negative number; got {value!r}.")

    def to_dict(self) -> dict[str, float | int]:
        """``{name: value}`` in field order (``min_size`` an int, the rest floats)."""
        return {f.name: (int if f.name == "min_size" else float)(getattr(self, f.name)) for f in dataclasses.fields(self)}


QUALITY_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(QualityThresholds))


def _default_preprocess() -> PreprocessConfig:
    from core.preprocessing import PreprocessConfig  # noqa: PLC0415 - keeps this module cheap to import

    return PreprocessConfig()


@dataclass(frozen=True)
class BuildSpec:
    """Every choice of one dataset build; ``python -m core build`` and the dashboard make the same one.

    ``auto`` values (catalogue, survey, band, the preprocessing's centre) and ``scheme=None``
    stay unresolved here: the builder resolves them against the source, in one place
    (:func:`core.builder.select`), for the preview and the build alike. Where the dataset goes
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
        See :func:`core.labels.label_table` and :func:`core.labels.resolve_conflicts`.
    exclude_dwarfs, exclude_uncertain : bool
    duplicate_arcsec : float
    allow_duplicates : bool
    seed : int
    val_fraction, test_fraction : float
    """

    source: str
    scheme: str | None = None
    preprocess: PreprocessConfig = field(default_factory=_default_preprocess)
    thresholds: QualityThresholds = field(default_factory=QualityThresholds)
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
        from core.preprocessing import PreprocessConfig  # noqa: PLC0415

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
                "`build` option; got a spec that changes them. Call core.builder.build(spec) from Python instead."
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
        own preprocessing defaults (:func:`core.builder.preprocess_defaults`), else this module's."""
        import dataclasses  # noqa: PLC0415

        from core.preprocessing import PreprocessConfig  # noqa: PLC0415

        # An option left at None takes the default of the source kind: the defaults live there, not in argparse.
        options = {name: getattr(args, name, None) for name in ("crop", "crop_arcsec", "stretch", "channels", "centre")}
        config = dataclasses.replace(
            defaults if defaults is not None else PreprocessConfig(),
            size=args.size if args.size is not None else default_size,
            **{name: value for name, value in options.items() if value is not None},
        )
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
