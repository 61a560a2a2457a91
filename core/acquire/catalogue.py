"""Catalogue tables and sources: read any galaxy list, find its images, spot duplicates.

A *source* is a folder with a ``catalog.csv`` (see docs/ARCHITECTURE.md, "Source") and its
images: the built-in synthetic sample, the shipped Galaxy Zoo 1 cutouts, a NED download or a
user's import. :func:`read_catalogue` accepts the column names people actually use (the
original study's ``NED_list.csv``: ``Name, Redshift, Classification, Requested``; ``objname``,
``morph``, ``z`` ...) and normalises them to the contract; :func:`load_source` adds an absolute
image ``path`` per row; :func:`find_duplicates` cross-matches positions so that one galaxy
listed under two names never lands in two splits.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.acquire.sources import candidate_folders, detect_kind
from core.errors import ConfigError, ParseError
from core.io import name_limit, open_regular
from core.paths import data_layout

logger = logging.getLogger(__name__)

CATALOGUE_FILES = ("catalog.csv", "labels.csv")

# Canonical column -> accepted spellings, after lower-casing and turning spaces/dashes into "_".
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("name", "objname", "object_name", "object", "galaxy", "obj_name", "id"),
    "redshift": ("redshift", "z", "redshift_z", "zspec"),
    "classification": (
        "classification",
        "type",
        "morph",
        "morphology",
        "morph_type",
        "morphological_type",
        "hubble_type",
        "class",
        "label",
    ),
    "requested": ("requested", "search", "search_term", "searched", "query", "query_class"),
    "file": ("file", "filename", "file_name", "path", "image", "image_file", "image_path"),
    "ra": ("ra", "ra_deg", "raj2000", "ra_j2000", "ra_(deg)", "radeg"),
    "dec": ("dec", "dec_deg", "dej2000", "decj2000", "dec_j2000", "dec_(deg)", "decdeg"),
    "survey": ("survey", "image_survey"),
    "band": ("band", "filter", "passband", "waveband"),
}
REQUIRED_COLUMNS = ("name", "classification")
MANIFEST_COLUMNS = ("status", "survey", "band", "reason", "ra", "dec", "position_from")


def _normalise_header(column: object) -> str:
    return re.sub(r"[\s\-]+", "_", str(column).strip().lower())


def read_catalogue(path: str | Path) -> pd.DataFrame:
    """Read a catalogue CSV and normalise it to the source contract.

    Columns are matched case-insensitively and by alias (:data:`COLUMN_ALIASES`); other columns
    are kept with lower-case names. ``name`` and ``classification`` are stripped strings (an
    empty classification stays ``""``), ``redshift``/``ra``/``dec`` floats (NaN when missing;
    sexagesimal RA/Dec such as ``12h30m49.4s`` are converted to degrees). Rows without a name
    are dropped with a warning naming their line numbers.

    Raises
    ------
    ConfigError
        If the file does not exist.
    ParseError
        If the file is empty or lacks a required column (the message lists the columns found
        and the spellings accepted).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"catalogue {path} does not exist. Give the path of a CSV file.")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError as exc:
        raise ParseError(f"catalogue {path} is empty; expected a header row with at least name, classification.") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ParseError(f"catalogue {path} is not a readable CSV ({exc}).") from exc
    found = list(raw.columns)
    normalised = [_normalise_header(c) for c in found]
    rename: dict[str, str] = {}
    for canonical, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in normalised and found[normalised.index(alias)] not in rename:
                rename[found[normalised.index(alias)]] = canonical
                break
    missing = [c for c in REQUIRED_COLUMNS if c not in rename.values()]
    if missing:
        expected = "; ".join(f"{c}: {', '.join(COLUMN_ALIASES[c])}" for c in missing)
        raise ParseError(
            f"catalogue {path} has no {' or '.join(missing)} column; found columns {found}. "
            f"Accepted spellings (any case) - {expected}."
        )
    for column, lower in zip(found, normalised):
        if column not in rename:
            rename[column] = lower if lower not in COLUMN_ALIASES else f"{lower}_original"
    df = raw.rename(columns=rename)
    df["name"] = df["name"].str.strip()
    df["classification"] = df["classification"].str.strip()
    unnamed = df.index[df["name"] == ""]
    if len(unnamed):
        logger.warning("%s: %d rows without a name dropped (lines %s)", path, len(unnamed), _lines(unnamed))
        df = df.drop(index=unnamed)
    for column in ("redshift", "requested", "file", "ra", "dec"):
        if column not in df.columns:
            df[column] = np.nan if column in ("redshift", "ra", "dec") else ""
    df["requested"] = df["requested"].fillna("").astype(str).str.strip()
    df["file"] = df["file"].fillna("").astype(str).str.strip()
    df["redshift"] = pd.to_numeric(df["redshift"].replace("", np.nan), errors="coerce")
    df["ra"], df["dec"] = _coordinates(df["ra"], df["dec"], path)
    for column in ("survey", "band"):  # which survey an image is from, where the catalogue says so
        if column in df.columns:
            df[column] = df[column].fillna("").astype(str).str.strip()
    first = ["name", "redshift", "classification", "requested", "file", "ra", "dec"]
    return df[first + [c for c in df.columns if c not in first]].reset_index(drop=True)


def _lines(index: pd.Index) -> str:
    shown = ", ".join(str(i + 2) for i in index[:10])  # +1 for the header, +1 for 1-based lines
    return shown + (", ..." if len(index) > 10 else "")


def _coordinates(ra: pd.Series, dec: pd.Series, path: Path) -> tuple[pd.Series, pd.Series]:
    """RA/Dec in degrees; sexagesimal strings go through astropy, failures become NaN."""
    ra_text = ra.astype(str).str.strip().replace({"nan": "", "None": ""})
    dec_text = dec.astype(str).str.strip().replace({"nan": "", "None": ""})
    ra_deg = pd.to_numeric(ra_text.replace("", np.nan), errors="coerce")
    dec_deg = pd.to_numeric(dec_text.replace("", np.nan), errors="coerce")
    todo = (ra_deg.isna() | dec_deg.isna()) & (ra_text != "") & (dec_text != "")
    if todo.any():
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        bad = []
        for i in ra_text.index[todo]:
            try:
                coord = SkyCoord(ra_text[i], dec_text[i], unit=(u.hourangle, u.deg))
            except ValueError:
                bad.append(i)
                continue
            ra_deg[i], dec_deg[i] = float(coord.ra.deg), float(coord.dec.deg)
        if bad:
            logger.warning("%s: unreadable RA/Dec on %d rows (lines %s); positions left empty", path, len(bad), _lines(pd.Index(bad)))
    out_of_range = (ra_deg < 0) | (ra_deg >= 360) | (dec_deg.abs() > 90)
    if out_of_range.any():
        logger.warning("%s: RA/Dec out of range on lines %s; positions left empty", path, _lines(ra_deg.index[out_of_range]))
        ra_deg[out_of_range] = np.nan
        dec_deg[out_of_range] = np.nan
    return ra_deg.astype(float), dec_deg.astype(float)


_BRACKET = re.compile(r"\[[^\]]*\]")
_PREFIX = re.compile(r"[0-9]*[A-Za-z][A-Za-z0-9]*?(?=[0-9+\-_:.]|$)")
_COORD_DESIGNATION = re.compile(r"^(?P<prefix>.*?[A-Za-z])[JB]\d")


def catalogue_prefix(name: str) -> str:
    """The catalogue a name belongs to: ``"NGC 4486"`` -> ``"NGC"``, ``"[ABC2001] 12"`` -> ``"[ABC2001]"``.

    Alphanumeric prefixes are upper-cased (``Mrk`` and ``MRK`` are one catalogue); coordinate
    designations lose their ``J``/``B`` (``SDSSJ1230+12`` -> ``SDSS``); a name with no letters
    gives ``"OTHER"``.

    Examples
    --------
    >>> catalogue_prefix("2MASX J12304942+1223279"), catalogue_prefix("MCG-01-02-003")
    ('2MASX', 'MCG')
    """
    text = str(name).strip()
    bracket = _BRACKET.match(text)
    if bracket:
        return bracket.group(0)
    token = text.split()[0] if text.split() else ""
    designation = _COORD_DESIGNATION.match(token)
    if designation and not _PREFIX.fullmatch(token):
        token = designation.group("prefix")
    match = _PREFIX.match(token)
    return match.group(0).upper() if match else "OTHER"


@dataclass(frozen=True)
class Source:
    """A folder of galaxies: its catalogue, normalised, with an absolute image ``path`` per row.

    Attributes
    ----------
    root : Path
        The source folder.
    kind : str
        The name of its :class:`~core.acquire.sources.SourceKind` (``sample``, ``gz1``, ``ned``,
        ``imported``, ``folder`` or a kind registered since).
    catalogue_path : Path
        The catalogue file read.
    table : DataFrame
        :func:`read_catalogue`'s columns plus ``path`` (absolute str, or None when the row
        has no image) and, for NED sources, ``image_status``/``image_reason``/``survey``/``band``.
    """

    root: Path
    kind: str
    catalogue_path: Path
    table: pd.DataFrame


@dataclass(frozen=True)
class SourceSummary:
    """What the dashboard's source selector shows without reading a whole catalogue."""

    root: Path
    kind: str
    n_rows: int


def find_catalogue(root: str | Path) -> Path:
    """The catalogue file of a source folder (or the file itself when given one).

    Raises
    ------
    ConfigError
        If the folder has no catalogue.
    """
    root = Path(root)
    if root.is_file():
        return root
    for name in CATALOGUE_FILES:
        if (root / name).is_file():
            return root / name
    raise ConfigError(
        f"source {root} has no {' or '.join(CATALOGUE_FILES)}. Give a source folder "
        "(e.g. data/sample after `python -m core sample`) or a catalogue CSV."
    )


def source_kind(root: Path, *, classifications: pd.Series | None = None) -> str:
    """What made a source folder: the name of its kind in :mod:`core.acquire.sources`, from its
    marker files, its place and its labels (``classifications``, where read)."""
    labels = frozenset() if classifications is None else frozenset(classifications.unique())
    return detect_kind(root, labels=labels).name


def load_source(path: str | Path) -> Source:
    """Read a source folder (or a catalogue CSV) with the absolute image path of every row.

    ``file`` is resolved against the folder; NED sources take their images from
    ``images/manifest.csv`` joined on ``name`` (first ``ok`` image per name), and a name
    whose download failed keeps ``path=None`` with the manifest's ``image_reason``.

    A ``file`` must resolve (symlinks followed) inside the source folder (``python -m core
    import`` places its images there; its ``import_report.json`` widens nothing); any other row
    keeps ``path=None`` and says why in ``image_reason``, so a crafted catalogue or report cannot
    make the builder read files elsewhere on the machine.

    Raises
    ------
    ConfigError, ParseError
        If there is no catalogue, or it or the manifest cannot be read.
    """
    catalogue_path = find_catalogue(path)
    root = catalogue_path.parent.resolve()
    table = read_catalogue(catalogue_path)
    kind = source_kind(root, classifications=table["classification"])
    if kind == "ned":
        table = _join_manifest(table, root)
    _check_file_names(table, catalogue_path)
    paths = [_resolve(root, f) for f in table["file"]]
    outside = [p is not None and not _inside(p, [root]) for p in paths]
    if any(outside):
        reason = f"file outside the source folder {root} (refused)"
        if (root / "import_report.json").exists():
            reason += "; import the folder again (`python -m core import`) to place its images inside"
        if "image_reason" not in table:
            table["image_reason"] = ""
        table.loc[outside, "image_reason"] = reason
        logger.warning("%s: %d rows name a file outside the source folder; left without an image (e.g. %s)",
                       catalogue_path, sum(outside), list(table.loc[outside, "name"].head(3)))
        paths = [None if out else p for p, out in zip(paths, outside)]
    table["path"] = pd.Series(paths, index=table.index, dtype=object)
    return Source(root=root, kind=kind, catalogue_path=catalogue_path, table=table)


def _inside(path: str, roots: list[Path]) -> bool:
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(r) for r in roots)


def _check_file_names(table: pd.DataFrame, catalogue_path: Path) -> None:
    """Refuse a ``file`` cell with a name longer than the file system allows, naming its row.

    Checked before any image is read: the file cannot exist, and ``stat`` on it raises.
    """
    name_max = name_limit(catalogue_path.parent)
    for row, (name, file) in enumerate(zip(table["name"], table["file"]), start=1):
        longest = max((len(os.fsencode(part)) for part in Path(str(file)).parts), default=0)
        if longest > name_max:
            shown = str(file)[:60] + f"... ({len(str(file))} characters)"
            raise ConfigError(
                f"{catalogue_path}: the file of row {row} ({str(name)[:200]!r}), {shown!r}, has a name of {longest} "
                f"bytes, too long for this file system (at most {name_max}). Fix that cell of the catalogue."
            )


def _resolve(root: Path, file: str) -> str | None:
    if not file:
        return None
    candidate = Path(file)
    if not candidate.is_absolute():
        candidate = root / candidate
        if not candidate.exists() and (root / "images" / file).exists():
            candidate = root / "images" / file  # manifests written relative to images/
    return str(candidate)


def _join_manifest(table: pd.DataFrame, root: Path) -> pd.DataFrame:
    manifest_path = root / "images" / "manifest.csv"
    try:
        manifest = pd.read_csv(manifest_path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise ParseError(f"image manifest {manifest_path} is not a readable CSV ({exc}).") from exc
    manifest.columns = [_normalise_header(c) for c in manifest.columns]
    missing = [c for c in ("name", "status", "file") if c not in manifest.columns]
    if missing:
        raise ParseError(
            f"image manifest {manifest_path} lacks columns {missing}; found {list(manifest.columns)}. "
            "Expected name, status, file, survey, band, reason (re-run `python -m core fetch`)."
        )
    for column in MANIFEST_COLUMNS:
        if column not in manifest.columns:
            manifest[column] = ""
    manifest["name"] = manifest["name"].str.strip()
    ok = manifest["status"].str.lower().isin(("ok", "downloaded", "cached")) & (manifest["file"] != "")
    # Prefer an image that is there; a failed row still explains why a name has none.
    manifest = manifest.assign(_ok=ok).sort_values("_ok", ascending=False, kind="stable").drop_duplicates("name")
    manifest = manifest.set_index("name")
    joined = table.drop(columns=[c for c in ("survey", "band") if c in table.columns]).copy()
    found = manifest.reindex(joined["name"])
    has_image = found["_ok"].eq(True).to_numpy(dtype=bool)
    from_catalogue = joined["file"].to_numpy(dtype=object)
    joined["file"] = np.where(has_image, found["file"].fillna("").to_numpy(dtype=object), from_catalogue)
    joined["image_status"] = found["status"].fillna("not_fetched").to_numpy(dtype=object)
    joined["image_reason"] = found["reason"].fillna("").to_numpy(dtype=object)
    joined["survey"] = found["survey"].fillna("").to_numpy(dtype=object)
    joined["band"] = found["band"].fillna("").to_numpy(dtype=object)
    # The scraper's catalogue has no positions; the fetch found them in NED's listing or the FITS
    # header. A position the catalogue gives itself wins.
    fetched_ra = pd.to_numeric(found["ra"].replace("", np.nan), errors="coerce").to_numpy(dtype=float)
    fetched_dec = pd.to_numeric(found["dec"].replace("", np.nan), errors="coerce").to_numpy(dtype=float)
    missing = (joined["ra"].isna() | joined["dec"].isna()).to_numpy() & np.isfinite(fetched_ra) & np.isfinite(fetched_dec)
    joined.loc[missing, "ra"] = fetched_ra[missing]
    joined.loc[missing, "dec"] = fetched_dec[missing]
    joined["position_from"] = np.where(
        missing, found["position_from"].fillna("").to_numpy(dtype=object), np.where(joined["ra"].notna(), "catalogue", "")
    )
    return joined


def list_sources(data_dir: str | Path) -> list[SourceSummary]:
    """The sources under ``data_dir`` where the registered kinds keep them (:mod:`core.acquire.sources`):
    ``sample``, ``gz1``, ``ned``, then ``imported/*`` (sorted), then those of kinds registered later."""
    candidates = candidate_folders(data_layout(data_dir=data_dir))
    summaries = []
    for root in candidates:
        try:
            catalogue = find_catalogue(root)
        except ConfigError:
            continue
        with open_regular(catalogue) as handle:
            n_rows = max(0, sum(1 for line in handle if line.strip()) - 1)
        summaries.append(SourceSummary(root=root, kind=source_kind(root), n_rows=n_rows))
    return summaries


def find_duplicates(df: pd.DataFrame, *, tolerance_arcsec: float = 3.0) -> list[list[str]]:
    """Groups of names whose positions agree within ``tolerance_arcsec`` (one galaxy, several names).

    Pairs closer than the tolerance are linked transitively (union-find over a KD-tree on unit
    vectors), so a chain of close positions forms one group. Rows without RA/Dec are skipped.

    Returns
    -------
    list of list of str
        Each group has at least two names, in the table's order; groups in order of their
        first name.

    Raises
    ------
    ConfigError
        If ``tolerance_arcsec`` is not positive.
    """
    if not tolerance_arcsec > 0:
        raise ConfigError(f"tolerance_arcsec must be > 0; got {tolerance_arcsec}. Use e.g. 3 arcsec.")
    from scipy.spatial import cKDTree

    positions = df.dropna(subset=["ra", "dec"]).drop_duplicates("name")
    if len(positions) < 2:
        return []
    ra = np.radians(positions["ra"].to_numpy(dtype=float))
    dec = np.radians(positions["dec"].to_numpy(dtype=float))
    xyz = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    chord = 2.0 * np.sin(np.radians(tolerance_arcsec / 3600.0) / 2.0)
    pairs = cKDTree(xyz).query_pairs(chord, output_type="ndarray")
    parent = np.arange(len(positions))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        root_i, root_j = find(i), find(j)
        if root_i != root_j:
            parent[max(root_i, root_j)] = min(root_i, root_j)
    roots = np.array([find(i) for i in range(len(positions))])
    names = positions["name"].to_numpy(dtype=object)
    groups: dict[int, list[str]] = {}
    for index, root in enumerate(roots):
        groups.setdefault(int(root), []).append(str(names[index]))
    return [members for _, members in sorted(groups.items()) if len(members) > 1]
