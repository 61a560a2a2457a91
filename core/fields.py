"""A spec's fields, and everything made from them: command-line flags, command lines and spec files.

Every stage's spec (:mod:`core.acquire.spec`, :mod:`core.prepare.spec`, :mod:`core.learn.spec`) and
every config nested in one (preprocessing, quality thresholds) writes each field once: its type,
its default and, in its :func:`option` metadata, its help and flag name. From them come

- the command's flags (:func:`add_spec_options`, :func:`spec_from_args`): ``--crop`` exists
  because ``PreprocessConfig.crop`` does, with its type, choices and default;
- the command line that rebuilds a spec (:func:`spec_argv`, ``spec.to_argv()``);
- the JSON file a dashboard job runs from (:func:`write_spec_file`; ``python -m core build
  --spec FILE`` reads it back with :func:`read_spec_file`, as hostile input: size-checked, typed,
  range-checked, unknown keys refused).

It sits below the stages, so a stage describes and reads its own spec without importing a later
one. Importing it is cheap (no numpy, no pandas).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from core.errors import ConfigError, shorten
from core.io import RefusedFileError, atomic_write_json, read_regular_bytes


def option(help: str | Callable[[], str], *, flag: str | None = None, default_help: str | None = None,
           choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] | None = None, negate: str | None = None,
           cli: bool = True, label: str | None = None) -> dict[str, Any]:
    """A spec field's metadata: what its command-line flag and its dashboard widget say and do.

    Parameters
    ----------
    help : str or callable
        The flag's help; ``(default: ...)`` is added from the field's default. A callable is asked
        when the flags are made (a list that a registry holds).
    flag : str, optional
        The flag, when not ``--`` + the field name with dashes (``--val`` for ``val_fraction``).
    default_help : str, optional
        What the help says the default is, when the field's own default is decided elsewhere
        (the source's preprocessing, the settings, each model's recipe).
    choices : tuple or callable, optional
        Allowed values, when the type does not say them (a ``Literal`` does); a callable is asked
        when the flags are made, so a module that owns the list is imported only then.
    negate : str, optional
        For a bool that is on by default: the flag that turns it off (``--no-augment``).
    cli : bool
        False: no flag (the value can be set only in a spec file or from Python).
    label : str, optional
        The label of the dashboard widget that sets the field (:func:`describe`); its help is ``help``.
    """
    return {"help": help, "flag": flag, "default_help": default_help, "choices": choices, "negate": negate,
            "cli": cli, "label": label}


@dataclass(frozen=True)
class FieldInfo:
    """What a field says about itself, for a widget that sets it (:func:`describe`).

    Attributes
    ----------
    label : str or None
        The widget's label (``option(label=...)``).
    help : str
        The field's help (``option(help)``), without the command line's ``(default: ...)``.
    default : object
        The field's default (``dataclasses.MISSING`` for a required field).
    choices : tuple or None
        Its allowed values: a ``Literal`` type's, else ``option(choices=...)``'s.
    """

    label: str | None
    help: str
    default: Any
    choices: tuple[Any, ...] | None


def describe(cls: type, path: str) -> FieldInfo:
    """The label, help, default and choices of the field ``path`` of the spec class ``cls``
    (``"preprocess.crop"`` for a nested config's field), read from its declaration, so a widget
    shows what the flag and the spec say instead of typing it again."""
    owner, parts = cls, path.split(".")
    for part in parts[:-1]:
        owner = _hints(owner)[part]
    found = {f.name: f for f in dataclasses.fields(owner)}.get(parts[-1])
    if found is None:
        raise KeyError(f"{cls.__name__} has no field {path!r}")
    meta = found.metadata
    text = meta.get("help", "")
    return FieldInfo(label=meta.get("label"), help=text() if callable(text) else text,
                     default=_field_default(found), choices=_choices(found, _hints(owner)[parts[-1]]))


SPEC_VERSION = 1
"""Bump when a field's meaning changes, so :meth:`BuildSpec.digest` of an old spec no longer matches."""
SPEC_FILE_MAX_BYTES = 64_000
"""A spec file is a few hundred bytes; a larger one is not one (and is not read whole)."""


def finite_number(value: object) -> bool:
    """A finite int or float (not a bool): what a numeric field of a spec file may hold."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer past float's range, e.g. 1e400 written out in a JSON file
        return False


def plain_fields(spec: Any) -> dict[str, Any]:
    """A flat spec's fields as JSON-ready values, in field order (tuples as lists)."""
    return {f.name: (list(v) if isinstance(v := getattr(spec, f.name), tuple) else v) for f in dataclasses.fields(spec)}


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
    """The resolved annotations of a spec or config class (``int | None``, ``Literal[...]``, nested classes).

    A class whose annotations name classes it imports only when needed (a build spec's nested
    configs, to stay cheap to import) gives them through an ``annotation_types()`` class method.
    """
    lazy = getattr(cls, "annotation_types", None)
    return typing.get_type_hints(cls, localns=lazy() if lazy is not None else None)


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


def check_choices(spec: Any) -> None:
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
                          f"changes them. Write it to a file with core.fields.write_spec_file and run "
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
                          f"got a JSON {type(values).__name__}. Write it with core.fields.write_spec_file.")
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
        float: finite_number(value),
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
        raise ConfigError(f"{where} is refused: {exc}. Write a spec with core.fields.write_spec_file.") from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read ({exc.strerror or exc}). Check the path.") from None
    try:
        values = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: "[[[[…" nested too deep
        raise ConfigError(f"{where} is not JSON ({shorten(str(exc))}). Write it with core.fields.write_spec_file.") from None
    if isinstance(values, dict) and "kind" in values:
        values = dict(values)
        kind = values.pop("kind")
        if kind != cls.kind:
            raise ConfigError(f"{where} is a {shorten(repr(kind))} spec; got it for `{cls.kind}`. "
                              f"Pass a {cls.kind} spec.")
    return spec_from_dict(cls, values, where=where)
