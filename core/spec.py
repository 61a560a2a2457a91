"""Every stage's spec in one place, for the code above the stages: the command line, the jobs and the dashboard.

Each stage owns its own: :class:`~core.acquire.spec.ScrapeSpec`, :class:`~core.acquire.spec.FetchSpec`
and :class:`~core.acquire.spec.ImportSpec` (the Data page's commands),
:class:`~core.prepare.spec.BuildSpec` (``python -m core build``) and :class:`~core.learn.spec.TrainSpec`
(``python -m core train``); a stage imports its own spec module, never this one. Their flags,
command lines and spec files come from their fields (:mod:`core.fields`).

Importing this module is cheap (no numpy, no pandas).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

from core.acquire.spec import FetchSpec, ImportSpec, ScrapeSpec
from core.errors import ConfigError
from core.learn.spec import TrainSpec
from core.prepare.spec import BuildSpec

__all__ = ["SPEC_KINDS", "BuildSpec", "FetchSpec", "ImportSpec", "ScrapeSpec", "Spec", "TrainSpec", "spec_from_argv"]

Spec = typing.Union[BuildSpec, TrainSpec, ScrapeSpec, FetchSpec, ImportSpec]
#: Every kind of spec, by the command that runs it.
SPEC_KINDS: dict[str, type] = {cls.kind: cls for cls in (BuildSpec, TrainSpec, ScrapeSpec, FetchSpec, ImportSpec)}


def spec_from_argv(cls: type, argv: Sequence[str], **keywords: Any) -> Any:
    """The spec of a command line as ``spec.to_argv()`` writes it (``["train", "--dataset", ...]``).

    ``keywords`` go to ``cls.from_args`` (a build's ``default_source``, ``default_size``).

    Raises
    ------
    ConfigError
        When ``argv`` is not a command of ``cls``'s kind.
    """
    from core.cli import build_parser  # noqa: PLC0415 - the CLI imports the specs

    args = build_parser().parse_args(list(argv))
    if args.command != cls.kind:
        raise ConfigError(f"argv must be a `{cls.kind}` command; got {list(argv)[:1]}. Start it with '{cls.kind}'.")
    return cls.from_args(args, **keywords)
