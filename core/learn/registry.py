"""The one table of models: every architecture (and the gradient-boosting baseline) is one entry here.

An entry holds what the rest of the tool needs to know about a model without building it: its
name (stored in every run's ``config.json``, so never renamed), display label, colour, a
reference to its builder (``"module:function"``, imported only when a model is built, so
importing this module never imports Keras), the paper, the input size the architecture was
designed for, its place in the equal protocol (what it cannot run without) and its tuned form
(architecture options; the recipe is searched).
:func:`core.learn.models.build_model`, :mod:`core.learn.training`, :mod:`core.learn.report`, the
``train`` command's choices and help, and the Training page all read it.

Adding an architecture is one builder function (in :mod:`core.learn.models` or any module) and
one :func:`register_model` call: below for the tool's own, or from any code that runs first::

    @register_model("tinynet", label="TinyNet", color="#225E8A", paper="Doe 2030", input_size=32)
    def tinynet(*, input_size, channels, num_classes):
        ...

Importing this module is cheap (no Keras, no NumPy): the CLI reads it for its help.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from core.errors import ConfigError

NETWORK = "network"
"""A Keras architecture trained by :func:`core.learn.training.train_many` under a protocol."""
FEATURES = "features"
"""A classifier on hand-made features with its own trainer and no training protocol (the baseline)."""
KINDS = (NETWORK, FEATURES)

BASELINE = "baseline"
"""The gradient-boosting baseline's name: the floor every network is tested against."""

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
#: What a model's tuned form may set: its architecture only. The recipe is searched, the same way for
#: every model (:mod:`core.learn.tuning`).
_TUNED_KEYS = frozenset({"model_options"})


@dataclass(frozen=True)
class ModelEntry:
    """One model the tool can train and compare.

    Attributes
    ----------
    name : str
        The id in run folders, the CLI and the pages (``lenet5``); never rename it: runs store it.
    label : str
        Display name (``LeNet-5``) in every table, figure and export.
    color : str
        ``#RRGGBB`` of the model in every chart (darker hues, apart from the class palette).
    kind : {"network", "features"}
        A Keras network trained under a protocol, or a feature classifier with its own trainer.
    builder : str or callable or None
        ``"module:function"`` (imported when first built) or the builder itself, called with
        ``input_size``, ``channels``, ``num_classes`` and the run's model options; None for a
        ``features`` entry.
    builder_options : mapping
        Fixed options for the builder (``{"depth": 18}`` for ResNet-18).
    trainer : str or callable or None
        A ``features`` entry's trainer (``"module:function"``), called like
        :func:`core.learn.baseline.train_baseline_runs`.
    paper : str
        The paper the architecture follows.
    input_size : int
        The image side the architecture was designed for (what a faithful build expects).
    default : bool
        Trained when ``train --models`` is left out, and preselected on the Training page.
    equal_options, equal_reasons : mapping, tuple of str
        Under the equal protocol, the builder options this model cannot run without, and why (one
        sentence each, written to every run's ``config.json``). Empty: the protocol as it is.
    tuned : mapping or None
        The model's own form under the tuned protocol: ``{"model_options": {...}}``, its architecture
        options (``{}``: the builder's defaults). The recipe is not here: every model gets the same
        search (:mod:`core.learn.tuning`). None: it has no tuned form, and asking for it is an error.
    cpu_images_per_second : float, mapping or None
        Training images per second on a 2-core CPU (:mod:`core.learn.estimate`), by the side in pixels
        of the images the network computes on: ``{64: 1400.0, 32: 2400.0}``; a single number is the
        speed at 64 px. Stored as a read-only mapping; None: not measured.
    fixed_input : bool
        The network resizes every input to its own ``input_size`` (LeNet-5 to 32 px) unless it is built
        with ``native_size=True`` (the equal protocol's option), so a larger dataset costs it no more per
        image under a protocol without that option.
    """

    name: str
    label: str
    color: str
    kind: str = NETWORK
    builder: str | Callable[..., Any] | None = None
    builder_options: Mapping[str, Any] = field(default_factory=dict)
    trainer: str | Callable[..., Any] | None = None
    paper: str = ""
    input_size: int = 64
    default: bool = False
    equal_options: Mapping[str, Any] = field(default_factory=dict)
    equal_reasons: tuple[str, ...] = ()
    tuned: Mapping[str, Any] | None = None
    cpu_images_per_second: Mapping[int, float] | float | None = None
    fixed_input: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(f"name must be lower-case letters, digits and '_' (starting with a letter, at most 40); "
                              f"got {self.name!r}. Use e.g. 'resnet18'.")
        if not isinstance(self.label, str) or not self.label.strip():
            raise ConfigError(f"label of model {self.name} must be a display name; got {self.label!r}. Use e.g. 'ResNet-18'.")
        if not isinstance(self.color, str) or not _COLOR.fullmatch(self.color):
            raise ConfigError(f"color of model {self.name} must be '#RRGGBB'; got {self.color!r}. Use e.g. '#1F4E79'.")
        if self.kind not in KINDS:
            raise ConfigError(f"kind of model {self.name} must be one of {', '.join(KINDS)}; got {self.kind!r}.")
        needed = "builder" if self.kind == NETWORK else "trainer"
        ref = getattr(self, needed)
        if not (callable(ref) or (isinstance(ref, str) and re.fullmatch(r"[\w.]+:\w+", ref))):
            raise ConfigError(f"{needed} of {self.kind} model {self.name} must be a function or 'module:function'; "
                              f"got {ref!r}.")
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, int) or self.input_size < 8:
            raise ConfigError(f"input_size of model {self.name} must be an integer >= 8; got {self.input_size!r}.")
        if self.tuned is not None and not set(self.tuned) <= _TUNED_KEYS:
            extra = ", ".join(sorted(set(self.tuned) - _TUNED_KEYS))
            raise ConfigError(f"tuned form of model {self.name} may set only {', '.join(sorted(_TUNED_KEYS))} (the "
                              f"recipe is searched, core.learn.tuning); got {extra}.")
        speeds = self.cpu_images_per_second
        if speeds is not None:
            by_side = dict(speeds) if isinstance(speeds, Mapping) else {64: speeds}
            if not by_side or not all(_valid_side(k) and _valid_speed(v) for k, v in by_side.items()):
                raise ConfigError(f"cpu_images_per_second of model {self.name} must be a positive number (at 64 px), "
                                  f"a mapping of image sides (integers >= 8) to positive numbers, or None; got "
                                  f"{speeds!r}. Use e.g. {{64: 140.0}}.")
            object.__setattr__(self, "cpu_images_per_second", MappingProxyType({int(k): float(v)
                                                                                for k, v in by_side.items()}))
        # Read-only views: an entry is shared by every caller, and a recipe handed out must not be edited in place.
        for name in ("builder_options", "equal_options"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        if self.tuned is not None:  # one level deeper too: the recipe's model_options
            object.__setattr__(self, "tuned", MappingProxyType({
                key: MappingProxyType(dict(value)) if isinstance(value, Mapping) else value
                for key, value in self.tuned.items()}))
        object.__setattr__(self, "equal_reasons", tuple(self.equal_reasons))

    def build(self, *, input_size: int, channels: int, num_classes: int, **options: Any) -> Any:
        """The uncompiled ``keras.Model`` of this entry (imports its builder's module, and so Keras).

        Raises
        ------
        ConfigError
            If the entry is not a network, or its builder does not take one of ``options``.
        """
        if self.kind != NETWORK:
            raise ConfigError(f"model {self.name} is a {self.kind} model, not a network; it has no Keras builder. "
                              f"Train it with `python -m core train --models {self.name}`.")
        builder = _resolve(self.builder, what=f"builder of model {self.name}")
        try:
            return builder(input_size=input_size, channels=channels, num_classes=num_classes,
                           **self.builder_options, **options)
        except TypeError as exc:
            raise ConfigError(f"model {self.name}: unknown option in {sorted(options)} ({exc}).") from exc

    def train_runs(self, dataset_path: Any, **options: Any) -> list[dict[str, Any]]:
        """Run a ``features`` entry's trainer (``seeds``, ``runs_dir``, ``resume``, ``overrides``, ``folds``,
        ``repeats``); its outcomes have the shape of :func:`core.learn.training.train_many`'s."""
        if self.kind == NETWORK:
            raise ConfigError(f"model {self.name} is a network; train it with core.learn.training.train_many.")
        return _resolve(self.trainer, what=f"trainer of model {self.name}")(dataset_path, **options)


def _valid_side(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 8


def _valid_speed(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value > 0)


_ENTRIES: dict[str, ModelEntry] = {}


def register_model(name: str, *, builder: str | Callable[..., Any] | None = None, replace: bool = False,
                   **fields: Any) -> Any:
    """Add a model to the registry; returns its :class:`ModelEntry`, or works as a decorator of the builder.

    Parameters
    ----------
    name : str
        The model's id (see :class:`ModelEntry` for every other field, passed as keywords).
    builder : str, callable or None
        ``"module:function"`` or the function. Left out for a network, the call is a decorator:
        ``@register_model("tinynet", label=..., color=...)`` above the builder.
    replace : bool
        Allow a name that is already registered (a test swapping an entry); otherwise an error.

    Raises
    ------
    ConfigError
        If the name is taken (without ``replace``) or a field is invalid.
    """
    if name in _ENTRIES and not replace:
        raise ConfigError(f"model {name!r} is already registered ({_ENTRIES[name].label}); got a second entry. "
                          "Choose another name, or pass replace=True.")
    if builder is None and fields.get("kind", NETWORK) == NETWORK:
        def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
            register_model(name, builder=function, replace=replace, **fields)
            return function

        return decorate
    entry = ModelEntry(name=name, builder=builder, **fields)
    _ENTRIES[name] = entry
    return entry


def unregister_model(name: str) -> None:
    """Remove ``name`` from the registry (a test's toy model); unknown names are an error."""
    model_entry(name)
    del _ENTRIES[name]


def model_entry(name: str) -> ModelEntry:
    """The entry of ``name``.

    Raises
    ------
    ConfigError
        If no model of that name is registered; the message names the registered ones.
    """
    entry = _ENTRIES.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ConfigError(f"model must be one of {', '.join(_ENTRIES)}; got {name!r}. Check the spelling, or "
                          "register the architecture in core/learn/registry.py.")
    return entry


def entries(kind: str | None = None) -> list[ModelEntry]:
    """Every registered entry (of ``kind``), in display order: networks as registered, then the feature models."""
    ordered = [e for e in _ENTRIES.values() if e.kind == NETWORK] + [e for e in _ENTRIES.values() if e.kind != NETWORK]
    return [e for e in ordered if kind is None or e.kind == kind]


def model_names(kind: str | None = None) -> tuple[str, ...]:
    """The registered names (of ``kind``) in display order."""
    return tuple(e.name for e in entries(kind))


def network_names() -> tuple[str, ...]:
    """The registered Keras architectures."""
    return model_names(NETWORK)


def default_models() -> tuple[str, ...]:
    """What ``train`` trains when ``--models`` is left out."""
    return tuple(e.name for e in entries() if e.default)


def is_network(name: str) -> bool:
    """Whether ``name`` is a registered network (not a feature model, not unknown)."""
    entry = _ENTRIES.get(name)
    return entry is not None and entry.kind == NETWORK


def check_models(names: Any, *, what: str = "models") -> tuple[str, ...]:
    """``names`` as a tuple, checked to be registered.

    Raises
    ------
    ConfigError
        Naming the unknown ones and every registered model.
    """
    names = tuple(names)
    unknown = [str(n) for n in names if n not in _ENTRIES]
    if unknown:
        raise ConfigError(f"{what} must name {', '.join(model_names())}; got {', '.join(unknown)}. Check the spelling.")
    return names


def model_label(name: str) -> str:
    """``lenet5`` -> ``LeNet-5``; an unregistered name (a run of a model removed since) as it is."""
    entry = _ENTRIES.get(name)
    return entry.label if entry is not None else str(name)


FALLBACK_COLORS = ("#5E5E5E", "#8C6D31", "#3B6E8F", "#843C54")
"""Colours of unregistered models, by their position in a chart."""


def model_color(name: str, index: int = 0) -> str:
    """The colour of ``name``; an unregistered one gets a fallback by position."""
    entry = _ENTRIES.get(name)
    return entry.color if entry is not None else FALLBACK_COLORS[index % len(FALLBACK_COLORS)]


def model_rank(name: str) -> int:
    """Position in display order; unregistered names after every registered one."""
    order = model_names()
    return order.index(name) if name in order else len(order)


def import_builders() -> None:
    """Import every network's builder module, so the custom layers it registers with Keras can be loaded."""
    for entry in entries(NETWORK):
        if isinstance(entry.builder, str):
            _resolve(entry.builder, what=f"builder of model {entry.name}")


def _resolve(ref: str | Callable[..., Any] | None, *, what: str) -> Callable[..., Any]:
    if callable(ref):
        return ref
    module, _, function = str(ref).partition(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{what} must name an importable function; got {ref!r} ({exc}).") from exc


# --------------------------------------------------------------------------------------------- the tool's models
# In display order (smallest first): the order of every table, figure, help text and the Training page.

_MODELS = "core.learn.models"
_RESNET_TUNED: dict[str, Any] = {}  # BN momentum 0.9 is built into core.learn.models.resnet
_HE_2016 = 'He, Zhang, Ren & Sun (2016), "Deep residual learning for image recognition"'

register_model(
    "lenet5", label="LeNet-5", color="#6A3D9A", builder=f"{_MODELS}:lenet5", input_size=32, default=True,
    paper='LeCun, Bottou, Bengio & Haffner (1998), "Gradient-based learning applied to document recognition"',
    equal_options={"activation": "relu", "pooling": "max", "native_size": True},
    equal_reasons=(
        "LeNet-5: ReLU and max pooling in place of the paper's tanh and average subsampling (with tanh, a "
        "61 k-parameter net is still far from converged after the common epoch budget)",
        "LeNet-5: images smaller than 32 px are enlarged to 32 px inside the model (its three 5x5 "
        "convolutions need at least 32 px); larger ones are seen at their own size like every model",
    ),
    tuned={"model_options": {"activation": "relu", "pooling": "max"}},
    # End to end, epoch overheads included, on the walkthrough's 64-px galaxies: at 32 px (tuned: resized inside
    # the model) 652 x 40 images in ~11 s; at 64 px (equal: native_size) 667 x 30 in 14.2 s (the walkthrough's
    # run of 2026-12-07). benchmarks/bench_estimate.py agrees on the ratio: the bare training step takes
    # 1,239 images per CPU-second at 64 px against 2,433 at 32 px (nice -n 19, 3 x 5 steps, batch 32).
    cpu_images_per_second={64: 1400.0, 32: 2400.0},
    fixed_input=True,
)
register_model(
    "alexnet", label="AlexNet", color="#A6611A", builder=f"{_MODELS}:alexnet", input_size=227, default=True,
    paper='Krizhevsky, Sutskever & Hinton (2012), "ImageNet classification with deep convolutional neural networks"',
    equal_options={"normalization": "batchnorm"},
    equal_reasons=(
        "AlexNet: batch normalisation in place of local response normalisation after conv1 and conv2 "
        "(with LRN the 9 M-parameter net stays at chance for many epochs on ~1,000 images)",
    ),
    tuned={"model_options": {"normalization": "batchnorm"}},
    cpu_images_per_second=137.0,  # 652 x 40 in 190 s
)
for _depth, _color in ((20, "#3B7EA1"), (32, "#5A6FA8"), (56, "#2C5E6E")):
    register_model(
        f"resnet{_depth}", label=f"ResNet-{_depth}", color=_color, builder=f"{_MODELS}:resnet",
        builder_options={"depth": _depth}, input_size=32, paper=f"{_HE_2016}, section 4.2 (small-image form)",
        tuned=_RESNET_TUNED,
    )
for _depth, _color, _speed, _default in ((18, "#1F4E79", 141.0, True), (34, "#2E7D6B", 75.0, False),
                                         (50, "#7F1D3F", 45.0, False)):
    # Speeds: ResNet-18 652 x 40 in 185 s; ResNet-34 about twice its work per image; ResNet-50 as
    # keras.applications.ResNet50, ~17 images/s at 128 px, i.e. ~68 at 64 px, less overhead.
    register_model(
        f"resnet{_depth}", label=f"ResNet-{_depth}", color=_color, builder=f"{_MODELS}:resnet",
        builder_options={"depth": _depth}, input_size=224, paper=_HE_2016, default=_default,
        tuned=_RESNET_TUNED, cpu_images_per_second=_speed,
    )
register_model(
    BASELINE, kind=FEATURES, label="Boosting baseline", color="#707070",
    trainer="core.learn.baseline:train_baseline_runs",
    paper="Friedman (2001), \"Greedy function approximation: a gradient boosting machine\"; histogram trees as in "
          "Ke et al. (2017), LightGBM (scikit-learn's HistGradientBoostingClassifier)",
)
del _depth, _color, _speed, _default
