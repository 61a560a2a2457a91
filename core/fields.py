"""Field metadata that every stage's config uses to describe its command-line flag.

It sits below the stages so that a stage's config (preprocessing, quality) can say how its fields
are offered on the command line without importing :mod:`core.spec`, which assembles the specs of
every stage and therefore sits above them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def option(help: str | Callable[[], str], *, flag: str | None = None, default_help: str | None = None,
           choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] | None = None, negate: str | None = None,
           cli: bool = True) -> dict[str, Any]:
    """A spec field's metadata: what its command-line flag says and does.

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
    """
    return {"help": help, "flag": flag, "default_help": default_help, "choices": choices, "negate": negate,
            "cli": cli}
