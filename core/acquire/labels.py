"""Galaxy morphology labels: parse NED's type strings, map them to classes, settle conflicts.

NED writes morphologies in the revised Hubble notation of de Vaucouleurs (RC3): a family (E,
S0, S, I), a bar family (SA, SAB, SB), an inner-ring variety ((r), (s), (rs)), a stage (a ... m)
and qualifiers (``pec``, ``sp`` for edge-on, ``:`` or ``?`` for uncertain). :func:`parse_morphology`
turns one string into a :class:`Morphology`; a :class:`Scheme` turns a morphology into a class
of a classification task (``hubble3``, ``hubble4``, ``seed6``, ``gz1``, ``gz1disc`` or the user's own mapping);
:func:`resolve_conflicts` reduces a table with several rows per object to one label per object.

NED appends notes to a type after a ``;`` (``SA(s)ab;LINER Sy1.8``, ``E+0-1 pec;NLRG Sy``): only
the part before the first ``;`` is read, so an AGN host keeps its class. Ranges inside one family
are that family (``E0-1``, ``Sb/c`` = Sbc, ``SBa/b`` = SBab), and luminosity classes (``Sc I-II``)
and activity tags (``Sbc LINER/HII``) after the type are ignored. RC3's outer rings (``(R)``,
``(R')``, ``R_1``, ``(R_1R_2')``) before the type say nothing of its family, bar or stage, and a
stage written on both sides of the inner variety (NGC 1365's ``(R')SBb(s)b``) is read once.

Transitional types written with two families (``E/S0``, ``E-S0``, ``S/Irr``, ``Sd/Im``) are parsed
as ``family="unknown"`` unless both sides are the same family (``D/cD``): they sit on a class
boundary of every scheme, so guessing a side would put label noise into the dataset. They are
counted as ``unclassified``, never dropped silently.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import ConfigError, ParseError
from core.io import read_regular_bytes

logger = logging.getLogger(__name__)

UNCLASSIFIED = "unclassified"
FAMILIES = ("E", "S0", "S0/a", "S", "Irr", "unknown")
BARS = ("A", "AB", "B")
STAGES = ("a", "ab", "b", "bc", "c", "cd", "d", "dm", "m")
RINGS = ("r", "s", "rs")
CONFLICT_POLICIES = ("drop", "majority", "first")
LABEL_SOURCES = ("classification", "requested")

# Words after the type that say something about the galaxy but not about its Hubble type: nuclear
# activity (NED's Sy1.8, LINER2, NLRG, BLLAC ...), luminosity classes (Sc I-II), nucleus notes.
_ACTIVITY = re.compile(
    r"sy(?:\d(?:\.\d+)?[a-z]?)?|seyfert\d?|liner\d?|hii|sbrst|starburst|agn|nls1|qso|bllac|blazar|bal"
    r"|rg|[nb]lrg|[lh]erg|fri{1,2}|u?lirg|wr|sf|n|nuc|nucleus",
    re.IGNORECASE,
)
_LUMINOSITY = re.compile(r"(?:i{1,3}|iv|v)(?:-(?:i{1,3}|iv|v))?", re.IGNORECASE)
_BAR = rf"(?P<bar>{'|'.join(sorted(BARS, key=len, reverse=True))}|X)?"  # X: RC3's name for AB
_STAGE = f"(?P<stage>{'|'.join(sorted(STAGES, key=len, reverse=True))})?"
_STAGE_TO = f"(?:[-/](?P<stage_to>{'|'.join(sorted(STAGES, key=len, reverse=True))}))?"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("cd", re.compile(r"c?D")),
    ("E", re.compile(r"(?P<dwarf>d)?c?E(?:\^?[+-])?(?P<num>[0-7])?(?:[-/][0-7])?(?:\^?[+-])?")),
    ("E", re.compile(r"(?P<dwarf>d)Sph")),  # dwarf spheroidal: RC3's dE family
    ("S0/a", re.compile(rf"(?P<dwarf>d)?S{_BAR}0(?:\^?[+\-0])?(?:/a|-a|a)")),
    ("S0", re.compile(rf"(?P<dwarf>d)?S{_BAR}0(?:\^?[+\-0])?")),
    ("S", re.compile(rf"(?P<dwarf>d)?S{_BAR}{_STAGE}{_STAGE_TO}")),
    ("Irr", re.compile(rf"(?P<dwarf>d)?(?:Irr|I){_BAR}(?P<stage>m|0)?")),
)


@dataclass(frozen=True)
class Morphology:
    """One morphology string, parsed.

    Attributes
    ----------
    raw : str
        The string as given.
    family : str
        ``E``, ``S0``, ``S0/a``, ``S``, ``Irr`` or ``unknown``.
    e_number : int or None
        Ellipticity class n of ``En`` (0-7).
    bar : str or None
        Bar family ``A`` (unbarred), ``AB`` (weak bar; RC3's ``SX``), ``B`` (barred).
    stage : str or None
        Spiral (or Magellanic irregular) stage, ``a`` ... ``m``.
    ring : str or None
        Inner variety: ``r`` (ring), ``s`` (S-shaped), ``rs`` (mixed).
    peculiar, uncertain, cd, edge_on, dwarf : bool
        ``pec``; ``:`` or ``?``; a cD (or D) giant elliptical; ``sp`` or ``edge-on``; ``d`` prefix.
    """

    raw: str
    family: str = "unknown"
    e_number: int | None = None
    bar: str | None = None
    stage: str | None = None
    ring: str | None = None
    peculiar: bool = False
    uncertain: bool = False
    cd: bool = False
    edge_on: bool = False
    dwarf: bool = False

    def to_dict(self) -> dict[str, object]:
        """The fields as a plain dict (for tables and JSON)."""
        return asdict(self)


@lru_cache(maxsize=65536)
def parse_morphology(text: str | None) -> Morphology:
    """Parse a NED morphology string such as ``SAB(rs)bc: sp`` or ``E+ pec``.

    Never raises: a string that is not a Hubble type (empty, ``HII``, garbage) gives
    ``family="unknown"`` so that batch code can count it.

    Examples
    --------
    >>> m = parse_morphology("(R')SB(r)b")
    >>> (m.family, m.bar, m.ring, m.stage)
    ('S', 'B', 'r', 'b')
    """
    raw = "" if text is None or (isinstance(text, float) and text != text) else str(text)
    s = raw.split(";", 1)[0].strip()  # NED's notes (activity, remarks) follow the first ';'
    flags = {
        "uncertain": ":" in s or "?" in s,
        "peculiar": re.search(r"pec", s, re.IGNORECASE) is not None,
        "edge_on": re.search(r"(?<![A-Za-z])sp(?![A-Za-z])|edge-?on", s, re.IGNORECASE) is not None,
    }
    s = re.sub(r"edge-?on|pec(uliar)?", " ", s, flags=re.IGNORECASE)
    s = re.sub(r"\bSy\s+(?=\d)|\bBL\s+(?=Lac)|\bH\s+(?=II\b)", lambda m: m.group(0).replace(" ", ""), s)
    s = s.replace(":", " ").replace("?", " ").replace("^", "")
    s = re.sub(r"^\s*\(?R'?_?\d?'?\)?\s*(?=[SIE])", "", s)  # outer ring (R), (R'), R_1': not inner variety
    # The stage written on both sides of the inner variety, as NED has NGC 1365: SBb(s)b = SB(s)b.
    s = re.sub(rf"({'|'.join(sorted(STAGES, key=len, reverse=True))})(\([^()]*\))\1(?![a-z])", r"\2\1", s)
    ring = None
    for inner in re.findall(r"\(([^()]*)\)", s):
        variety = inner.replace("'", "").strip()
        if variety in RINGS and ring is None:
            ring = variety
    s = re.sub(r"\([^()]*\)", "", s)
    tokens = [t for t in re.split(r"[\s,]+", s) if t]
    rest = [t for t in tokens[1:] if not _is_note(t)]
    if not tokens or rest:
        return Morphology(raw=raw, ring=ring, **flags)
    parsed = _parse_body(tokens[0])
    if parsed is None:
        return Morphology(raw=raw, ring=ring, **flags)
    return Morphology(raw=raw, ring=ring, **flags, **parsed)


def _is_note(token: str) -> bool:
    """A word after the type that leaves the type alone: ``sp``, an activity tag, a luminosity class."""
    return token.lower() == "sp" or all(
        _ACTIVITY.fullmatch(part) or _LUMINOSITY.fullmatch(part) for part in token.split("/")
    )


def _stage_range(low: str, high: str | None) -> str:
    """The stage of a range inside the spirals: ``b``-``c`` is ``bc``; a wider one keeps its first stage."""
    if high is None or high == low:
        return low
    joined = low + high
    return joined if joined in STAGES else low


def _parse_body(body: str) -> dict[str, object] | None:
    """The family fields of one type token, ``None`` when it is not a Hubble type."""
    for family, pattern in _PATTERNS:
        match = pattern.fullmatch(body)
        if match is None:
            continue
        groups = match.groupdict()
        if family == "cd":
            return {"family": "E", "cd": True}
        bar = groups.get("bar")
        stage = groups.get("stage")
        if stage is not None and stage != "0":
            stage = _stage_range(stage, groups.get("stage_to"))
        return {
            "family": family,
            "e_number": int(groups["num"]) if groups.get("num") else None,
            "bar": "AB" if bar == "X" else bar,
            "stage": None if stage == "0" else stage,
            "dwarf": bool(groups.get("dwarf")),
        }
    halves = [h for h in re.split(r"/|-(?=[A-Za-z])", body) if h]
    if len(halves) < 2:
        return None
    parts = [_parse_body(h) for h in halves]
    families = {p["family"] if p else None for p in parts}
    if len(families) == 1 and None not in families:
        return parts[0]
    return {"family": "unknown"}


# --------------------------------------------------------------------------- schemes


@dataclass(frozen=True)
class Scheme:
    """A classification task: an ordered list of classes and a rule from raw strings to them.

    Attributes
    ----------
    name : str
        ``hubble3``, ``hubble4``, ``seed6``, ``gz1``, ``gz1disc``, or the mapping file's stem.
    classes : tuple of str
        The classes in their fixed order (the index is the integer label ``y``).
    description : str
        One line for the dashboard.
    """

    name: str
    classes: tuple[str, ...]
    rule: Callable[[str], str | None] = field(repr=False, compare=False)
    description: str = ""

    def classify(self, raw: str | None) -> str:
        """The class of one raw string, or ``"unclassified"``."""
        label = self.rule("" if raw is None else str(raw))
        return label if label in self.classes else UNCLASSIFIED

    def classify_many(self, raws: Iterable[str | None]) -> list[str]:
        """:meth:`classify` for many strings, each distinct string parsed once."""
        values = ["" if r is None or (isinstance(r, float) and r != r) else str(r) for r in raws]
        cache = {v: self.classify(v) for v in set(values)}
        return [cache[v] for v in values]


def _hubble3(raw: str) -> str | None:
    m = parse_morphology(raw)
    if m.family == "E":
        return "E"
    if m.family in ("S0", "S0/a"):
        return "S0"
    if m.family == "S" and m.stage is not None:
        return "Spiral"
    return None


def _hubble4(raw: str) -> str | None:
    return "Irr" if parse_morphology(raw).family == "Irr" else _hubble3(raw)


def _seed6(raw: str) -> str | None:
    m = parse_morphology(raw)
    if m.family in ("E", "S0", "S0/a"):
        return m.family
    if m.family == "S" and m.bar is not None:
        return "S" + m.bar
    return None


def _gz1(raw: str) -> str | None:
    return raw.strip()


def _gz1_disc(raw: str) -> str | None:
    # GZ1's "EdgeOn" is its third choice, "edge-on or winding not visible": a disc either way.
    label = raw.strip()
    return {"E": "E", "EdgeOn": "Disc", "Spiral": "Disc"}.get(label)


BUILTIN_SCHEMES: dict[str, tuple[tuple[str, ...], Callable[[str], str | None], str]] = {
    "hubble3": (("E", "S0", "Spiral"), _hubble3, "E (incl. cD) / S0 (incl. S0/a) / Spiral (S with a stage, Sa-Sm)"),
    "hubble4": (("E", "S0", "Spiral", "Irr"), _hubble4, "hubble3 plus irregulars (I, Im, IBm)"),
    "seed6": (
        ("E", "S0", "S0/a", "SA", "SAB", "SB"),
        _seed6,
        "the original study's search classes: spirals by bar family, lenticulars whatever their bar",
    ),
    "gz1": (
        ("E", "EdgeOn", "Spiral"),
        _gz1,
        "Galaxy Zoo 1 votes as shipped in data/gz1: E (elliptical), EdgeOn (GZ1's third choice: a spiral seen "
        "edge-on OR whose winding could not be seen, so some face-on discs), Spiral (visible winding)",
    ),
    "gz1disc": (
        ("E", "Disc"),
        _gz1_disc,
        "Galaxy Zoo 1 as elliptical vs disc: EdgeOn + Spiral are Disc, as GZ1's combined spiral fraction counts them",
    ),
}


CLASS_DEFINITIONS: dict[str, dict[str, str]] = {
    "gz1": {
        "E": "Elliptical: the Galaxy Zoo 1 volunteers' leading vote was 'elliptical' (smooth, no disc or arms).",
        "EdgeOn": "Galaxy Zoo 1's third choice: a spiral seen edge-on *or* a spiral whose winding could not be "
                  "seen. So this class also holds some face-on discs; Galaxy Zoo's combined spiral fraction "
                  "counts it as spiral.",
        "Spiral": "Spiral arms whose winding was seen (clockwise and anticlockwise votes together).",
    },
}
"""What each class of a scheme whose labels are not Hubble types means, for the dashboard (a source without
NED type strings has no type-to-class diagram to explain it)."""


def get_scheme(name_or_path: str | Path) -> Scheme:
    """A built-in scheme by name, or a user mapping file (``.json`` or ``.csv``).

    A mapping maps a raw string, or a regular expression matched against the whole stripped
    string, to a class; exact strings win over expressions, expressions are tried in file order.
    JSON: ``{"SA(s)b": "Spiral", "E[0-7]": "E"}`` or ``{"classes": [...], "map": {...}}``.
    CSV: two columns ``pattern,class``. A class written ``unclassified`` (or empty) excludes.

    Raises
    ------
    ConfigError
        If the name is unknown and is not an existing mapping file, or the file is malformed.
    """
    key = str(name_or_path)
    if key in BUILTIN_SCHEMES:
        classes, rule, description = BUILTIN_SCHEMES[key]
        return Scheme(name=key, classes=classes, rule=rule, description=description)
    path = Path(key)
    if not path.is_file():
        raise ConfigError(
            f"scheme must be one of {', '.join(BUILTIN_SCHEMES)} or a .json/.csv mapping file; got {key!r}. "
            "Pick a built-in scheme or give the path of your mapping file."
        )
    mapping, classes = _read_mapping(path)
    exact = {pattern.strip(): label for pattern, label in mapping}
    regexes = []
    for pattern, label in mapping:
        try:
            regexes.append((re.compile(pattern.strip()), label))
        except re.error:
            continue  # a literal like "SA(s" is only meant as an exact string

    def rule(raw: str) -> str | None:
        text = raw.strip()
        if text in exact:
            return exact[text]
        for regex, label in regexes:
            if regex.fullmatch(text):
                return label
        return None

    return Scheme(name=path.stem, classes=classes, rule=rule, description=f"user mapping {path}")


#: Largest scheme mapping file read (a mapping of every NED type string is a few hundred kB).
MAX_MAPPING_BYTES = 16 * 2**20

def _read_mapping(path: Path) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
    try:
        text = read_regular_bytes(path, max_bytes=MAX_MAPPING_BYTES).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"scheme file {path} cannot be read ({exc}).") from exc
    declared: list[str] | None = None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"scheme file {path} is not valid JSON ({exc}). Fix the file.") from exc
        if isinstance(data, dict) and "map" in data:
            declared = [str(c) for c in data.get("classes", [])] or None
            data = data["map"]
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ConfigError(
                f"scheme file {path} must map strings to class names, e.g. {{\"E[0-7]\": \"E\"}}; "
                f"got {type(data).__name__}."
            )
        pairs = [(str(k), v.strip()) for k, v in data.items()]
    elif path.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
        if rows and [c.strip().lower() for c in rows[0][:2]] in (["pattern", "class"], ["raw", "class"]):
            rows = rows[1:]
        bad = [i + 1 for i, r in enumerate(rows) if len(r) < 2]
        if bad:
            raise ConfigError(f"scheme file {path}: rows {bad[:5]} do not have two columns pattern,class.")
        pairs = [(r[0], r[1].strip()) for r in rows]
    else:
        raise ConfigError(f"scheme file must end in .json or .csv; got {path.name!r}.")
    pairs = [(p, "" if c == UNCLASSIFIED else c) for p, c in pairs]
    seen = list(dict.fromkeys(c for _, c in pairs if c))
    classes = tuple(declared) if declared else tuple(seen)
    unknown = sorted(set(seen) - set(classes))
    if unknown:
        raise ConfigError(f"scheme file {path}: classes {unknown} are mapped to but not listed in 'classes'.")
    if len(classes) < 2:
        raise ConfigError(f"scheme file {path} defines {len(classes)} class(es); a classifier needs at least 2.")
    return pairs, classes


# --------------------------------------------------------------------------- labels and conflicts


def label_table(
    df: pd.DataFrame,
    scheme: Scheme,
    *,
    label_from: str = "classification",
    exclude_dwarfs: bool = False,
    exclude_uncertain: bool = False,
) -> pd.Series:
    """The class of every row of a catalogue table, from ``classification`` or ``requested``.

    ``label_from="requested"`` labels each row by the term it was found under in NED (the
    original study's way); an object found under several terms then gets several labels,
    which :func:`resolve_conflicts` settles. ``exclude_dwarfs`` / ``exclude_uncertain`` make rows
    whose ``classification`` is a dwarf (``dE``, ``dS0``, ``dSph``, ``dIrr``) or uncertain (``E?``,
    ``Sb:``) ``unclassified``, whichever column the label comes from (see :func:`exclusion_reasons`).

    Raises
    ------
    ConfigError
        If ``label_from`` is not a column choice or the column is missing.
    """
    if label_from not in LABEL_SOURCES:
        raise ConfigError(f"label_from must be one of {LABEL_SOURCES}; got {label_from!r}.")
    if label_from not in df.columns or (label_from == "requested" and df[label_from].isna().all()):
        raise ConfigError(
            f"label_from={label_from!r} needs a {label_from!r} column, which this catalogue lacks. "
            "Use label_from='classification'."
        )
    labels = pd.Series(scheme.classify_many(df[label_from].tolist()), index=df.index, name="label")
    if exclude_dwarfs or exclude_uncertain:
        why = exclusion_reasons(df["classification"].tolist(), dwarfs=exclude_dwarfs, uncertain=exclude_uncertain)
        labels[[bool(w) for w in why]] = UNCLASSIFIED
    return labels


def exclusion_reasons(raws: Iterable[str | None], *, dwarfs: bool = False, uncertain: bool = False) -> list[str]:
    """Per type string: ``"dwarf"`` or ``"uncertain"`` when that option excludes it, else ``""``.

    A dwarf is a type with RC3's ``d`` prefix; an uncertain type has ``:`` or ``?`` before NED's
    notes (``SA(s)b;Sy2:`` is certain). A type that is both counts as a dwarf.

    Examples
    --------
    >>> exclusion_reasons(["dE2", "Sb:", "SA(s)b"], dwarfs=True, uncertain=True)
    ['dwarf', 'uncertain', '']
    """
    out = []
    for raw in raws:
        m = parse_morphology(raw)
        out.append("dwarf" if dwarfs and m.dwarf else "uncertain" if uncertain and m.uncertain else "")
    return out


def unclassified_types(df: pd.DataFrame, *, top: int | None = None) -> pd.Series:
    """How many objects carry each type string the scheme leaves ``unclassified``, most frequent first.

    Needs ``name``, ``classification`` and ``label`` columns; each object counts once per string
    (whitespace stripped), so a name listed under several search terms is not counted twice.
    """
    rows = df[df["label"] == UNCLASSIFIED]
    raw = rows["classification"].fillna("").astype(str).str.strip()
    pairs = pd.DataFrame({"name": rows["name"].to_numpy(), "type": raw.to_numpy()}).drop_duplicates()
    counts = pairs["type"].value_counts(sort=False)
    # Ties in first-seen order, so the listing is stable from run to run.
    counts = counts.iloc[np.argsort(-counts.to_numpy(), kind="stable")].rename("objects")
    counts.index.name = "type"
    return counts if top is None else counts.head(top)


@dataclass(frozen=True)
class ConflictReport:
    """What :func:`resolve_conflicts` did: object counts, and the names it dropped."""

    policy: str
    objects: int
    rows: int
    collapsed: int
    conflicts: int
    resolved: int
    dropped: int
    dropped_names: tuple[str, ...] = field(repr=False, default=())

    def to_dict(self) -> dict[str, object]:
        """Counts only (the names can be long)."""
        out = asdict(self)
        out.pop("dropped_names")
        return out


def resolve_conflicts(df: pd.DataFrame, *, policy: str = "drop") -> tuple[pd.DataFrame, ConflictReport]:
    """One row per object from a table that may list an object several times.

    Rows of one ``name`` whose labels agree are collapsed to the first row. When labels
    disagree the object is in conflict, and ``policy`` decides. ``unclassified`` counts as a
    label: a row typed ``Im`` says the galaxy is outside a ``hubble3`` class, which contradicts a
    row typed ``Sm`` rather than abstaining.

    - ``"drop"``: the object is left out (its name is in ``report.dropped_names``);
    - ``"majority"``: the most frequent class wins; a tie drops the object;
    - ``"first"``: the label of the object's first row wins (the table's order).

    Returns
    -------
    table : DataFrame
        One row per kept object, first-row columns, the settled ``label``, and ``n_rows``,
        ``labels_seen`` (``"E|S0"``) and ``conflict`` (bool).
    report : ConflictReport
    """
    if policy not in CONFLICT_POLICIES:
        raise ConfigError(f"conflicts must be one of {CONFLICT_POLICIES}; got {policy!r}.")
    missing = [c for c in ("name", "label") if c not in df.columns]
    if missing:
        raise ParseError(f"resolve_conflicts needs columns name and label; missing {missing}.")
    df = df.reset_index(drop=True)
    by_name = df[["name", "label"]].drop_duplicates().groupby("name", sort=False)["label"]
    table = df.drop_duplicates("name").set_index("name", drop=False)
    table["n_rows"] = df.groupby("name", sort=False).size()
    table["labels_seen"] = by_name.agg("|".join)
    table["conflict"] = by_name.size() > 1

    in_conflict = table.index[table["conflict"]]
    winners = _settle(df.loc[df["name"].isin(in_conflict), ["name", "label"]], policy)
    dropped = [str(n) for n in in_conflict if n not in winners.index]
    table.loc[winners.index, "label"] = winners
    table = table.drop(index=dropped).reset_index(drop=True)

    report = ConflictReport(
        policy=policy,
        objects=int(df["name"].nunique()),
        rows=len(df),
        collapsed=int(((table["n_rows"] > 1) & ~table["conflict"]).sum()),
        conflicts=len(in_conflict),
        resolved=len(winners),
        dropped=len(dropped),
        dropped_names=tuple(dropped),
    )
    if len(in_conflict):
        logger.info(
            "label conflicts: %d objects, %d resolved (%s), %d dropped", len(in_conflict), len(winners), policy, len(dropped)
        )
    return table, report


def _settle(rows: pd.DataFrame, policy: str) -> pd.Series:
    """The winning label per conflicting name (names without a winner are absent)."""
    if policy == "first":
        return rows.drop_duplicates("name").set_index("name")["label"]
    if policy == "majority":
        counts = rows.groupby(["name", "label"], sort=False).size().rename("n").reset_index()
        counts = counts.sort_values(["name", "n"], ascending=[True, False], kind="stable")
        top_two = counts.groupby("name", sort=False).head(2)
        tied = top_two.groupby("name")["n"].agg(lambda n: len(n) > 1 and n.iloc[0] == n.iloc[1])
        best = counts.drop_duplicates("name").set_index("name")["label"]
        return best[~tied.reindex(best.index).astype(bool)]
    return pd.Series(dtype=object)
