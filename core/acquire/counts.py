"""The counts every page shows about a source, defined once.

- **rows**: catalogue rows. A galaxy can have several (aliases, one row per image or survey).
- **objects**: distinct galaxies: names, with the names whose positions agree within
  ``duplicate_arcsec`` (one galaxy under two names) counted once; the build's duplicate rule.
- **labelled objects**: the objects the scheme puts in one class once label conflicts are
  settled by ``policy`` (as the build does): the per-class counts add up to it.

Counts after the quality filters are another quantity ("kept"), computed by the builder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from core.acquire.catalogue import find_duplicates
from core.errors import ParseError
from core.acquire.labels import UNCLASSIFIED, resolve_conflicts


@dataclass(frozen=True)
class SourceCounts:
    """Rows, objects and labelled objects of one source under one scheme (see the module)."""

    rows: int
    names: int
    objects: int
    labelled: int
    conflicts: int
    policy: str
    per_class: dict[str, int] = field(default_factory=dict)


def count_source(
    table: pd.DataFrame, *, classes: Sequence[str], policy: str = "drop", duplicate_arcsec: float = 3.0
) -> SourceCounts:
    """Count a labelled catalogue table (columns ``name``, ``label``; ``ra``, ``dec`` if known).

    Parameters
    ----------
    table : DataFrame
        One row per catalogue row, ``label`` from :func:`core.acquire.labels.label_table`.
    classes : sequence of str
        The scheme's classes, in order: ``per_class`` has each of them, zeros included.
    policy : {"drop", "majority", "first"}
        How an object listed under different labels is settled (:func:`core.acquire.labels.resolve_conflicts`).
    duplicate_arcsec : float
        Names closer than this on the sky are one object.

    Raises
    ------
    ParseError
        If ``name`` or ``label`` is missing.

    Examples
    --------
    >>> t = pd.DataFrame({"name": ["NGC 1", "NGC 1", "UGC 2"], "label": ["E", "E", "S0"]})
    >>> c = count_source(t, classes=["E", "S0", "Spiral"])
    >>> (c.rows, c.objects, c.labelled, c.per_class)
    (3, 2, 2, {'E': 1, 'S0': 1, 'Spiral': 0})
    """
    missing = [c for c in ("name", "label") if c not in table.columns]
    if missing:
        raise ParseError(f"count_source needs columns name and label; missing {missing}. Label the table first.")
    canonical = galaxy_names(table, duplicate_arcsec=duplicate_arcsec)
    galaxy = table["name"].astype(str).map(lambda n: canonical.get(n, n))
    labelled, report = _labelled_objects(table, canonical, policy=policy)
    per_class = labelled.groupby("label").size().reindex(list(classes), fill_value=0)
    return SourceCounts(
        rows=len(table),
        names=int(table["name"].nunique()),
        objects=int(galaxy.nunique()),
        labelled=int(per_class.sum()),
        conflicts=report.conflicts,
        policy=policy,
        per_class={str(k): int(v) for k, v in per_class.items()},
    )


def galaxy_names(table: pd.DataFrame, *, duplicate_arcsec: float = 3.0) -> dict[str, str]:
    """``{name: first name of its galaxy}`` for the names that share a galaxy with another name.

    Names absent from the result are galaxies of their own. Two names whose positions (``ra``,
    ``dec``) agree within ``duplicate_arcsec`` are one galaxy, the rule of :func:`count_source`
    and of the build; without positions every name is its own galaxy.

    Examples
    --------
    >>> t = pd.DataFrame({"name": ["NGC 1", "UGC 9"], "ra": [1.0, 1.0], "dec": [2.0, 2.0]})
    >>> galaxy_names(t)
    {'NGC 1': 'NGC 1', 'UGC 9': 'NGC 1'}
    """
    canonical: dict[str, str] = {}
    if {"ra", "dec"} <= set(table.columns):
        for group in find_duplicates(table, tolerance_arcsec=duplicate_arcsec):
            canonical.update({name: group[0] for name in group})
    return canonical


def left_out_objects(selection_table: pd.DataFrame, canonical: dict[str, str]) -> pd.DataFrame:
    """The galaxies a build leaves out, one row each, from a selection's one-row-per-name table.

    A galaxy is left out when none of its names is kept; it is counted once, under the reason of
    its first name that is not merely ``duplicate_of`` another. Names of a kept galaxy are neither
    kept nor left out: they are duplicate names. So kept + left out = :attr:`SourceCounts.objects`
    (for the names the selection saw), the meaning of "objects" on every page.
    """
    galaxy = selection_table["name"].astype(str).map(lambda n: canonical.get(n, n))
    table = selection_table.assign(galaxy=galaxy)
    kept_galaxies = set(table.loc[table["kept"], "galaxy"])
    left = table[~table["galaxy"].isin(kept_galaxies)]
    mere_duplicate = left["reason"].astype(str).str.startswith("duplicate_of:")
    left = left.assign(_dup=mere_duplicate.to_numpy()).sort_values("_dup", kind="stable")
    return left.drop_duplicates("galaxy").drop(columns="_dup")


def labelled_objects(table: pd.DataFrame, *, policy: str = "drop", duplicate_arcsec: float = 3.0) -> pd.DataFrame:
    """One row per labelled object (the galaxies :attr:`SourceCounts.per_class` counts), with the
    columns of its first catalogue row (``redshift``, ``ra``, ...) and ``galaxy`` (its first name).

    A chart per class drawn from it counts what the class bars count (the redshift violins did
    not: they counted catalogue rows, aliases and conflicting rows included).
    """
    return _labelled_objects(table, galaxy_names(table, duplicate_arcsec=duplicate_arcsec), policy=policy)[0]


def _labelled_objects(table: pd.DataFrame, canonical: dict[str, str], *, policy: str) -> tuple[pd.DataFrame, object]:
    resolved, report = resolve_conflicts(table[["name", "label"]], policy=policy)
    labelled = resolved.loc[resolved["label"] != UNCLASSIFIED, ["name", "label"]]
    # Two names of one galaxy count once, under the class of the first one listed.
    labelled = labelled.assign(galaxy=labelled["name"].astype(str).map(lambda n: canonical.get(n, n)))
    labelled = labelled.drop_duplicates("galaxy")
    first_rows = table.drop(columns=["label"]).drop_duplicates("name")
    return labelled.merge(first_rows, on="name", how="left"), report

