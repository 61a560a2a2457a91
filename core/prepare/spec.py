"""What a build is: :class:`BuildSpec`, every choice of ``python -m core build`` and of the dashboard's build.

Source, scheme, catalogue, survey and band, conflict policy, exclusions,
:class:`~core.prepare.preprocessing.PreprocessConfig`, :class:`~core.prepare.quality.QualityThresholds`
and split, each field written once with its help in :func:`core.fields.option` metadata; the
flags, command line and spec file come from the fields (:mod:`core.fields`).

Importing this module is cheap (no numpy, no pandas): the nested configs of a build are imported
when a build spec is made or its flags are generated, in one place (:func:`_build_parts`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from core.errors import ConfigError
from core.fields import SPEC_VERSION, check_choices, finite_number, option, spec_argv, spec_from_args, spec_from_dict

if TYPE_CHECKING:
    from core.prepare.preprocessing import PreprocessConfig
    from core.prepare.quality import QualityThresholds


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
    (:func:`core.prepare.selection.select`), for the preview and the build alike. Where the dataset goes
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

    source: str = field(metadata=option("source folder", default_help="<data_dir>/sample", label="Data source"))
    scheme: str | None = field(default=None, metadata=option(
        "how raw morphological types are grouped into the classes the models learn: hubble3, hubble4, seed6, "
        "gz1, or a .json/.csv mapping file",
        default_help="gz1 for a Galaxy Zoo source, else hubble3", label="Class scheme"))
    preprocess: PreprocessConfig = field(default_factory=_default_preprocess)
    thresholds: QualityThresholds = field(default_factory=_default_thresholds)
    catalog: str = field(default="auto", metadata=option(
        "name prefix to keep (NGC, UGC, ...), 'auto' (the most common) or 'all'",
            label="Catalogue (name prefix)"))
    survey: str = field(default="auto", metadata=option(
        "keep images of one survey ('DSS2', 'SDSS r', ...), 'auto' (the most common) or 'all'",
            label="Survey"))
    band: str = field(default="auto", metadata=option(
        "keep one band of that survey, 'auto' (its most common) or 'all'"))
    label_from: str = field(default="classification", metadata=option(
        "label from NED's type string or from the searched term", choices=_label_sources))
    conflicts: str = field(default="drop", metadata=option(
        "objects with several labels: drop leaves them out, majority takes the most frequent class, first the "
        "first listed", choices=_conflict_policies,
            label="Label conflicts (an object listed under different classes)"))
    exclude_dwarfs: bool = field(default=False, metadata=option(
        "leave out dwarfs (dE, dS0, dSph, dIrr) the scheme would classify",
            label="Exclude dwarfs (dE, dS0, dSph, dIrr)"))
    exclude_uncertain: bool = field(default=False, metadata=option(
        "leave out uncertain types (E?, Sb:) the scheme would classify",
            label="Exclude uncertain types (E?, Sb:)"))
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
        check_choices(self)
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not finite_number(value) or not 0 <= value < 1:
                raise ConfigError(f"{name} must be in [0, 1); got {value!r}. Use e.g. 0.15.")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(
                f"val_fraction + test_fraction must be < 1; got {self.val_fraction} + {self.test_fraction}. "
                "Leave images to train on."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer; got {self.seed!r}.")
        if not finite_number(self.duplicate_arcsec) or self.duplicate_arcsec < 0:
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
        (:func:`core.fields.spec_from_dict`)."""
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
            background subtraction): write a spec file instead (:func:`core.fields.write_spec_file`).
        """
        return spec_argv(self) + (["--out", str(out)] if out is not None else []) + (["--force"] if force else [])

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, default_source: str = "", default_size: int = 64,
                  defaults: PreprocessConfig | None = None) -> BuildSpec:
        """The spec of parsed ``build`` arguments (or of their ``--spec FILE``); options left out take
        ``defaults``, the source's own preprocessing defaults (:func:`core.prepare.selection.preprocess_defaults`),
        else :class:`~core.prepare.preprocessing.PreprocessConfig`'s, and ``default_size``."""
        preprocess = defaults if defaults is not None else _default_preprocess()
        return spec_from_args(cls, args, source=default_source,
                              preprocess=dataclasses.replace(preprocess, size=default_size))

    @classmethod
    def annotation_types(cls) -> dict[str, type]:
        """The nested configs its annotations name, imported only now (:func:`core.fields.spec_options`)."""
        return _build_parts()
