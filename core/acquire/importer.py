"""Import a user's catalogue CSV and image folder as a source (``python -m core import``).

The catalogue is normalised by :func:`core.acquire.catalogue.read_catalogue` (column names matched
case-insensitively and by alias, e.g. the original study's ``NED_list.csv`` with Name, Redshift,
Classification, Requested). Each row is matched to an image by its ``file`` column (relative to
the image folder or the CSV's folder, or absolute; in every case inside the image folder) or,
without one, by file name: the object
name and the file stem compared with everything but letters and digits removed, case ignored
(``NGC 4486`` ~ ``ngc_4486.fits.gz``). The matched images are placed under the source, in
``images/`` (hard links where the file system allows, else copies), and the catalogue names them
relative to it: a source is confined to its own folder, so a shared source whose
``import_report.json`` names another folder (even ``/``) cannot make ``build`` read it.
Every image must resolve (symlinks followed) inside the image folder: a ``file`` that climbs out
(``../../etc/passwd``), an absolute path elsewhere or a symlink pointing outside is refused for
its row with the reason, so a catalogue cannot make ``build`` read other files of the machine.
Unmatched rows and unmatched files are counted, logged with examples and written to
``import_report.json``.

The image folder may be a ``python -m core fetch`` output folder (it holds ``manifest.csv``):
rows are then matched by name through that manifest, whatever the files are called, and a row
whose fetch failed is reported with the fetch's reason, not as "not found".

Every matched row gets a position (``ra``, ``dec``) and says where it came from in
``position_from``: the catalogue's own columns first (``catalogue``), then the fetch manifest
(NED's listing or the FITS header, as fetch recorded it), then the FITS header (``fits_header``
for OBJCTRA/OBJCTDEC, ``fits_wcs`` for the WCS at the image centre, ``fits_ra_dec`` for the
RA/DEC keywords; see :func:`core.images.header_position`). With positions, ``build --catalog
all`` finds one galaxy imported under two names.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.acquire.catalogue import read_catalogue
from core.config import Settings, get_settings
from core.errors import ConfigError, ImageReadError
from core.io import (IMPORTED, atomic_path, atomic_write_json, check_folder_name, check_replaceable,
                     out_of_space_as_error)
from core.paths import data_layout

logger = logging.getLogger(__name__)

#: Image file endings the importer looks for, in order of preference when a name has several.
IMAGE_ENDINGS = (
    ".fits.gz", ".fit.gz", ".fts.gz", ".fits.bz2", ".fit.bz2", ".fts.bz2", ".fits.fz",
    ".fits", ".fit", ".fts", ".png", ".jpeg", ".jpg",
)
EXAMPLES = 5


@dataclass
class ImportResult:
    """What :func:`import_source` wrote.

    Attributes
    ----------
    out : Path
        The source folder (holds ``catalog.csv`` and ``import_report.json``).
    catalog : pandas.DataFrame
        The written catalogue: matched rows, ``file`` absolute.
    unmatched_rows : list of (name, reason)
    unmatched_files : list of str
        Image files (relative to the image folder) that no row uses.
    ambiguous : list of (name, [files])
        Rows whose name matched several files; the first by :data:`IMAGE_ENDINGS` order was used.
    positions : dict
        How many matched rows got their position from where (``catalogue``, ``fits_wcs``...,
        ``""`` for none).
    """

    out: Path
    catalog: pd.DataFrame
    unmatched_rows: list[tuple[str, str]] = field(default_factory=list)
    unmatched_files: list[str] = field(default_factory=list)
    ambiguous: list[tuple[str, list[str]]] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)


def name_key(text: str) -> str:
    """Letters and digits of ``text``, lower case: the key names and file stems are compared on."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def image_stem(path: Path) -> str | None:
    """``path``'s name without its image ending, or ``None`` when it is not an image file."""
    lower = path.name.lower()
    for ending in IMAGE_ENDINGS:
        if lower.endswith(ending):
            return path.name[: -len(ending)]
    return None


def import_source(
    catalog: str | Path,
    images: str | Path,
    *,
    name: str | None = None,
    out: str | Path | None = None,
    settings: Settings | None = None,
    force: bool = False,
) -> ImportResult:
    """Match a catalogue's rows to image files and write a source folder.

    Parameters
    ----------
    catalog : path
        CSV with at least a name and a classification column (any case, common aliases).
    images : path
        Folder searched recursively for FITS (``.fits``, ``.fits.gz``...), PNG and JPEG files.
    name : str or None
        Source name; default the CSV's file stem.
    out : path or None
        Source folder; default ``<data_dir>/imported/<name>``. It must be absent, empty, or a
        source imported earlier from the same catalogue and image folder (or ``force``).
    settings : Settings or None
        For ``data_dir``; ``None`` reads them now.
    force : bool
        Replace a source imported from another catalogue or image folder.

    Returns
    -------
    ImportResult

    Raises
    ------
    ConfigError
        If the image folder does not exist, the name is not usable, ``out`` may not be replaced,
        or no row matches an image.
    ParseError
        If the catalogue lacks a name or classification column (from ``read_catalogue``).
    """
    settings = settings if settings is not None else get_settings()
    catalog = Path(catalog)
    images = Path(images)
    if not images.is_dir():
        raise ConfigError(f"images must be a folder; got {str(images)!r}, which is not one. Give the image folder.")
    table = read_catalogue(catalog)
    source_name = check_folder_name(name if name is not None else catalog.stem, example="--name my_galaxies")
    out_dir = Path(out) if out is not None else data_layout(settings).imported_source(source_name)
    images_root = images.resolve()
    check_replaceable(
        out_dir, kind=IMPORTED, force=force,
        same=lambda old: (old["catalog"], old["images"]) == (str(catalog.resolve()), str(images_root)),
    )

    found_files = sorted(p for p in images_root.rglob("*") if p.is_file() and image_stem(p) is not None)
    files = [p for p in found_files if p.resolve().is_relative_to(images_root)]
    # Symlinks in the folder that lead out of it: a name matching one is refused, not followed.
    outside_by_key: dict[str, Path] = {}
    for path in found_files:
        if path not in files:
            outside_by_key.setdefault(name_key(image_stem(path) or ""), path)
    by_key: dict[str, list[Path]] = {}
    for path in files:
        by_key.setdefault(name_key(image_stem(path) or ""), []).append(path)
    rank = {ending: i for i, ending in enumerate(IMAGE_ENDINGS)}
    for candidates in by_key.values():
        candidates.sort(key=lambda p: (rank[_ending(p)], str(p)))

    csv_dir = catalog.resolve().parent
    fetched = _fetch_manifest(images_root)
    result = ImportResult(out=out_dir, catalog=table.iloc[0:0])
    paths: list[str | None] = []
    for row in table.itertuples(index=False):
        object_name = str(row.name)
        if not str(row.classification):
            paths.append(None)
            result.unmatched_rows.append((object_name, "empty classification"))
            continue
        record = fetched.get(object_name)
        if record is not None:
            found, problem = _fetched_file(record, images_root)
            if found is None:
                result.unmatched_rows.append((object_name, problem))
            paths.append(str(found) if found else None)
            continue
        if row.file:
            found, problem = _resolve_file(str(row.file), csv_dir, images_root)
            if found is None:
                result.unmatched_rows.append((object_name, problem.format(file=repr(row.file), images=images)))
            paths.append(str(found) if found else None)
            continue
        candidates = by_key.get(name_key(object_name), [])
        if not candidates:
            outside = outside_by_key.get(name_key(object_name))
            reason = (f"image file {str(outside.relative_to(images_root))!r} links outside the image folder (refused)"
                      if outside is not None else "no image file named like it")
            result.unmatched_rows.append((object_name, reason))
            paths.append(None)
            continue
        if len(candidates) > 1:
            result.ambiguous.append((object_name, [str(p.relative_to(images_root)) for p in candidates]))
        paths.append(str(candidates[0]))

    table = table.assign(file=paths)
    matched = table[table["file"].notna()].reset_index(drop=True)
    matched = _add_positions(matched, fetched)
    result.positions = {str(k): int(v) for k, v in matched["position_from"].value_counts().items()}
    used = set(matched["file"])
    result.unmatched_files = [str(p.relative_to(images_root)) for p in files if str(p) not in used]
    if matched.empty:
        raise ConfigError(
            f"no row of {catalog} matched an image in {images} ({len(table)} rows, {len(files)} image files; "
            f"e.g. {result.unmatched_rows[:3]}). Add a 'file' column or name the files after the objects."
        )
    # On a full disk a folder this call created goes with the error: no half-written source is left.
    created = not out_dir.exists()
    with out_of_space_as_error(out_dir, cleanup=lambda: shutil.rmtree(out_dir, ignore_errors=True) if created else None):
        matched = matched.assign(file=_place_images(list(matched["file"]), images_root, out_dir))
        result.catalog = matched
        with atomic_path(out_dir / "catalog.csv") as tmp:
            matched.to_csv(tmp, index=False)
        atomic_write_json(
            out_dir / "import_report.json",
            {
                "catalog": str(catalog.resolve()),
                "images": str(images_root),
                "rows": len(table),
                "matched_rows": len(matched),
                "image_files": len(files),
                "unmatched_rows": [{"name": n, "reason": r} for n, r in result.unmatched_rows],
                "unmatched_files": result.unmatched_files,
                "ambiguous": [{"name": n, "files": f} for n, f in result.ambiguous],
                "positions": result.positions,
                "fetch_folder": bool(fetched),
            },
        )
    if result.unmatched_rows:
        logger.warning(
            "%d of %d rows have no image, e.g. %s (all in %s)",
            len(result.unmatched_rows),
            len(table),
            result.unmatched_rows[:EXAMPLES],
            out_dir / "import_report.json",
        )
    if result.unmatched_files:
        logger.warning(
            "%d image files match no row, e.g. %s", len(result.unmatched_files), result.unmatched_files[:EXAMPLES]
        )
    return result


def _place_images(files: list[str], images_root: Path, out_dir: Path) -> list[str]:
    """Link (or copy) each of ``files`` into ``out_dir/images/`` at its path inside ``images_root``;
    return the catalogue cells, relative to ``out_dir``.

    The new folder is filled under a temporary name and swapped in whole, so a killed import
    leaves the previous images (or none), never a mix.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".images.", suffix=".tmp", dir=out_dir))
    cells = []
    try:
        for file in files:
            relative = Path(file).relative_to(images_root)
            target = staging / relative
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(Path(file).resolve(), target)
                except OSError:  # another file system, or links refused: copy
                    shutil.copy2(Path(file).resolve(), target)
            cells.append(f"images/{relative.as_posix()}")
        final = out_dir / "images"
        previous = None
        if final.exists() or final.is_symlink():
            previous = out_dir / f".images.old.{os.getpid()}.tmp"
            os.replace(final, previous)
        os.replace(staging, final)
        if previous is not None:
            if previous.is_dir() and not previous.is_symlink():
                shutil.rmtree(previous)
            else:
                previous.unlink()
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return cells


def _ending(path: Path) -> str:
    lower = path.name.lower()
    return next(e for e in IMAGE_ENDINGS if lower.endswith(e))


def _resolve_file(file: str, csv_dir: Path, images_root: Path) -> tuple[Path | None, str]:
    """The image a ``file`` cell names, resolved, or None and why (a template of ``file``, ``images``)."""
    candidate = Path(file)
    options = [candidate] if candidate.is_absolute() else [csv_dir / candidate, images_root / candidate]
    refused = False
    for option in options:
        if option.is_file():
            resolved = option.resolve()
            if resolved.is_relative_to(images_root):
                return resolved, ""
            refused = True
    if refused:
        return None, "file {file} lies outside the image folder {images} (refused)"
    return None, "file {file} not found next to the CSV or in {images}"


def _fetch_manifest(images_root: Path) -> dict[str, dict[str, str]]:
    """The records of a ``fetch`` output folder's ``manifest.csv`` by name; empty for any other folder.

    A damaged manifest is no fetch folder: it is logged and the folder is matched by file name.
    """
    path = images_root / "manifest.csv"
    if not path.is_file():
        return {}
    try:
        manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        logger.warning("%s is not a readable fetch manifest (%s); matching files by name", path, exc)
        return {}
    if not {"name", "status", "file"} <= set(manifest.columns):
        return {}
    records: dict[str, dict[str, str]] = {}
    for record in manifest.to_dict("records"):
        name = str(record["name"]).strip()
        # An image that is there wins over an attempt that failed, as in core.acquire.catalogue.
        if name not in records or (record["status"] == "ok" and records[name]["status"] != "ok"):
            records[name] = {str(k): str(v) for k, v in record.items()}
    return records


def _fetched_file(record: dict[str, str], images_root: Path) -> tuple[Path | None, str]:
    """The image a fetch manifest record names, inside the folder, or None and why."""
    status, reason = record.get("status", ""), record.get("reason", "")
    if status != "ok" or not record.get("file"):
        return None, f"fetch {status or 'failed'}" + (f": {reason}" if reason else "")
    candidate = (images_root / record["file"]).resolve()
    if not candidate.is_relative_to(images_root):
        return None, f"fetch manifest names {record['file']!r}, outside the image folder (refused)"
    if not candidate.is_file():
        return None, f"fetched file {record['file']!r} is missing from the image folder; run fetch again"
    return candidate, ""


def _add_positions(matched: pd.DataFrame, fetched: dict[str, dict[str, str]]) -> pd.DataFrame:
    """``ra``, ``dec`` and ``position_from`` for each matched row (see the module docstring)."""
    from core.images import header_position, read_image

    ra = matched["ra"].to_numpy(dtype=float).copy()
    dec = matched["dec"].to_numpy(dtype=float).copy()
    origin = np.where(np.isfinite(ra) & np.isfinite(dec), "catalogue", "").astype(object)
    for i, (name, path) in enumerate(zip(matched["name"], matched["file"])):
        if origin[i]:
            continue
        found = _manifest_position(fetched.get(str(name)))
        if found is None and _ending(Path(path)) not in (".png", ".jpeg", ".jpg"):
            try:
                found = header_position(read_image(path))
            except ImageReadError as exc:
                logger.info("no position for %s: %s", name, exc)  # build will report the file itself
        if found is not None:
            ra[i], dec[i], origin[i] = found
    return matched.assign(ra=ra, dec=dec, position_from=origin)


def _manifest_position(record: dict[str, Any] | None) -> tuple[float, float, str] | None:
    if record is None:
        return None
    try:
        ra, dec = float(record.get("ra") or "nan"), float(record.get("dec") or "nan")
    except ValueError:
        return None
    if not (np.isfinite(ra) and np.isfinite(dec) and 0 <= ra < 360 and -90 <= dec <= 90):
        return None
    return ra, dec, str(record.get("position_from") or "fetch")
