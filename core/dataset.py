"""The dataset container: arrays, per-image table and manifest in one folder.

A dataset folder (written by :func:`save_dataset`, read by :func:`load_dataset`) holds

- ``x.npy``: float32 images ``(N, S, S, C)`` in [0, 1];
- ``meta.parquet``: one row per image of ``x``: ``name, label, y, split`` (and ``path``);
- ``images.parquet``: every candidate image with its quality metrics, ``kept`` and ``reason``;
- ``manifest.json``: parameters, classes, counts per split and class, hashes.

Training, evaluation and the dashboard all read datasets through :func:`load_dataset`, so the
split and the preprocessing are the same for every model. Reading checks every file first
(:func:`check_dataset`): a truncated, mistyped or misaligned file raises
:class:`DatasetDamagedError` naming it, and ``x.npy`` is never unpickled.

A save is staged in ``.<name>.XXXXXXXX.tmp/`` beside the folder, locked (``flock``) while it is
written, and renamed into place; a save killed with ``kill -9`` leaves that folder behind, and the
next save into the same parent removes it (:func:`remove_stale_staging`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow

from core.errors import ConfigError, GalaxyMorphError
from core.io import DATASET, check_regular, check_replaceable, process_umask, read_json_object

try:
    import fcntl
except ImportError:  # Windows: no flock, so only the age tells a dead save from a live one
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
REQUIRED_META = ("name", "label", "y", "split")
#: A manifest is a few kilobytes; a larger file is not one and is not read whole.
MAX_MANIFEST_BYTES = 8 * 2**20
#: Staging and moved-aside folders of :func:`save_dataset` (``tempfile.mkdtemp``'s 8 characters).
STAGING_PATTERN = re.compile(r"\.(?P<name>.+)\.(?P<old>old-)?[a-z0-9_]{8}\.tmp")
#: A staging folder younger than this is left alone even when unlocked: it may be one whose
#: save has created it and not yet taken the lock.
STALE_AFTER_S = 60.0 if fcntl is not None else 86400.0


class DatasetDamagedError(GalaxyMorphError):
    """A file of a dataset folder is truncated, of the wrong type or shape, or disagrees with the others."""


@dataclass(frozen=True)
class Dataset:
    """A built dataset: images, their labels and split, and how they were made."""

    path: Path
    x: np.ndarray
    meta: pd.DataFrame
    classes: list[str]
    manifest: dict[str, Any] = field(repr=False)

    @property
    def y(self) -> np.ndarray:
        """Integer labels, indices into :attr:`classes`."""
        return self.meta["y"].to_numpy(dtype=np.int64)

    @property
    def names(self) -> np.ndarray:
        """Object names, aligned with :attr:`x`."""
        return self.meta["name"].to_numpy(dtype=object)

    @property
    def split(self) -> np.ndarray:
        """``"train"``, ``"val"`` or ``"test"`` per image."""
        return self.meta["split"].to_numpy(dtype=object)

    @property
    def content_hash(self) -> str:
        """Hash of the arrays and labels; recorded by every run trained on this dataset."""
        return str(self.manifest["content_hash"])

    def subset(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, names)`` of one split."""
        if split not in SPLITS:
            raise GalaxyMorphError(f"split must be one of {SPLITS}; got {split!r}.")
        mask = self.split == split
        return self.x[mask], self.y[mask], self.names[mask]

    def images_table(self) -> pd.DataFrame:
        """Every candidate image with metrics, ``kept`` and ``reason`` (empty if not saved)."""
        path = self.path / "images.parquet"
        return pd.read_parquet(path) if path.exists() and check_regular(path) else pd.DataFrame()


def content_hash(x: np.ndarray, meta: pd.DataFrame) -> str:
    """SHA-256 over the image bytes and the (name, label, split) of every row."""
    digest = hashlib.sha256()
    # A slab at a time: x may be a memory map larger than memory.
    for start in range(0, len(x), 1024):
        digest.update(np.ascontiguousarray(x[start : start + 1024], dtype=np.float32))
    for column in ("name", "label", "split"):
        digest.update("\x1f".join(map(str, meta[column].tolist())).encode("utf-8"))
    return digest.hexdigest()


def count_by_split(meta: pd.DataFrame, classes: list[str]) -> dict[str, dict[str, int]]:
    """``{split: {class: n}}`` with every split and class present, zeros included."""
    counts = {split: {cls: 0 for cls in classes} for split in SPLITS}
    for (split, label), n in meta.groupby(["split", "label"]).size().items():
        counts[str(split)][str(label)] = int(n)
    return counts


def save_dataset(
    out: str | Path,
    *,
    x: np.ndarray | str | Path,
    meta: pd.DataFrame,
    classes: list[str],
    manifest: dict[str, Any],
    images: pd.DataFrame | None = None,
) -> Path:
    """Validate and write a dataset folder atomically; return its path.

    The folder is written beside ``out`` under a temporary name and renamed into place, so a
    crash never leaves half a dataset, and an existing dataset at ``out`` is replaced whole.
    ``out`` must be absent, empty or a dataset holding only dataset files
    (:func:`core.io.check_replaceable`). The folder gets the mode the umask allows.
    ``manifest`` is completed with ``version``, ``classes``, ``counts``, ``n_images`` and
    ``content_hash``. ``x`` may be the path of a float32 ``.npy`` file on the same file system
    as ``out`` (the builder writes one through a memory map): it is moved into the folder, never
    loaded whole.

    Raises
    ------
    GalaxyMorphError
        If the arrays and the table disagree (shapes, labels out of range, unknown splits), or
        ``out`` holds anything but a dataset.
    """
    out = Path(out)
    check_replaceable(out, kind=DATASET, option="out")
    x_file = None if isinstance(x, np.ndarray) else Path(x)
    if x_file is not None:
        x = np.load(x_file, mmap_mode="r")
    _validate(x, meta, classes)
    meta = meta.reset_index(drop=True)
    manifest = dict(manifest)
    manifest.update(
        version=FORMAT_VERSION,
        classes=list(classes),
        counts=count_by_split(meta, classes),
        n_images=int(len(meta)),
        image_shape=list(x.shape[1:]),
        content_hash=content_hash(x, meta),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        # Locked so that a cleanup by another save never takes this one for a killed one.
        with _locked(staging):
            # mkdtemp makes 0700; a dataset folder gets what a plain mkdir would.
            os.chmod(staging, 0o777 & ~process_umask())
            _write(staging, x=x, x_file=x_file, meta=meta, images=images, manifest=manifest)
            # Checked again: a build takes minutes, in which someone may have put files there.
            check_replaceable(out, kind=DATASET, option="out")
            _replace_dir(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out


def _write(staging: Path, *, x: np.ndarray, x_file: Path | None, meta: pd.DataFrame, images: pd.DataFrame | None,
           manifest: dict[str, Any]) -> None:
    if x_file is not None:
        os.replace(x_file, staging / "x.npy")
    else:
        np.save(staging / "x.npy", np.ascontiguousarray(x, dtype=np.float32))
    meta.to_parquet(staging / "meta.parquet", index=False)
    if images is not None:
        images.reset_index(drop=True).to_parquet(staging / "images.parquet", index=False)
    (staging / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )


def remove_stale_staging(parent: str | Path) -> list[Path]:
    """Remove the staging folders that killed saves left in ``parent``; return them.

    Only folders named like :data:`STAGING_PATTERN`, holding nothing but dataset files, older
    than :data:`STALE_AFTER_S` and not locked by a live save are touched. A moved-aside old
    dataset (``.<name>.old-XXXXXXXX.tmp``) whose save died before the new one was renamed into
    place is renamed back to ``<name>`` instead of deleted.
    """
    parent = Path(parent)
    handled: list[Path] = []
    if not parent.is_dir():
        return handled
    for entry in parent.iterdir():
        match = STAGING_PATTERN.fullmatch(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            if time.time() - entry.stat().st_mtime < STALE_AFTER_S:
                continue
            names = {p.name for p in entry.iterdir()}
        except OSError:
            continue
        if not names <= DATASET.whole:
            logger.warning("left %s alone: it holds files a dataset save does not write", entry)
            continue
        with _locked(entry) as locked:
            if not locked:
                continue
            target = parent / match["name"]
            if match["old"] and not target.exists() and is_dataset(entry):
                entry.rename(target)
                logger.warning("restored %s from %s (a save was killed while replacing it)", target, entry.name)
            else:
                shutil.rmtree(entry)
                logger.info("removed %s, left by a killed dataset save", entry)
        handled.append(entry)
    return handled


def load_dataset(path: str | Path, *, mmap: bool = False) -> Dataset:
    """Read a dataset folder written by :func:`save_dataset`.

    Parameters
    ----------
    path : str or Path
        The dataset folder.
    mmap : bool
        Memory-map ``x.npy`` instead of reading it (for previews of large datasets).

    Raises
    ------
    GalaxyMorphError
        If the folder is not a complete dataset; :class:`DatasetDamagedError` if one of its
        files is damaged (see :func:`check_dataset`).
    """
    path = Path(path)
    manifest, meta, _ = _checked_parts(path)
    try:
        x = np.load(path / "x.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise _damaged(path / "x.npy", f"it cannot be read as an array ({exc})") from exc
    return Dataset(path=path, x=x, meta=meta, classes=list(manifest["classes"]), manifest=manifest)


def check_dataset(path: str | Path) -> None:
    """Check a dataset folder without reading its images; raise if it cannot be loaded.

    ``manifest.json`` must be an object with the classes, counts and hash :func:`save_dataset`
    writes; ``x.npy`` a float32 ``(N, S, S, C)`` array whose header matches the file's size (read
    from the header, no pickles); ``meta.parquet`` one row per image with ``name, label, y,
    split`` of the right types, ``y`` indexing the manifest's classes.

    Raises
    ------
    GalaxyMorphError
        If a file is missing; :class:`DatasetDamagedError` naming the file if one is damaged.
    """
    _checked_parts(Path(path))


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The checked ``manifest.json`` of the dataset folder ``path``.

    Raises
    ------
    DatasetDamagedError
        If it is not a JSON object with ``classes`` (distinct names), ``content_hash`` and, when
        present, well-formed ``counts``, ``n_images``, ``image_shape`` and ``params``.
    """
    file = Path(path) / "manifest.json"
    try:
        manifest = read_json_object(file, max_bytes=MAX_MANIFEST_BYTES)
    except ValueError as exc:
        raise _damaged(file, str(exc)) from exc
    classes = manifest.get("classes")
    if (not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes)
            or len(set(classes)) != len(classes)):
        raise _damaged(file, "'classes' must be a list of distinct class names")
    if not isinstance(manifest.get("content_hash"), str):
        raise _damaged(file, "'content_hash' must be the text hash save_dataset writes")
    counts = manifest.get("counts", {})
    if not isinstance(counts, dict) or not all(
        isinstance(per_class, dict) and all(_is_count(n) for n in per_class.values()) for per_class in counts.values()
    ):
        raise _damaged(file, "'counts' must map each split to {class: number of images}")
    if not _is_count(manifest.get("n_images", 0)):
        raise _damaged(file, "'n_images' must be a whole number >= 0")
    shape = manifest.get("image_shape", [1, 1, 1])
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_count(n) and n > 0 for n in shape)):
        raise _damaged(file, "'image_shape' must be [size, size, channels]")
    if not isinstance(manifest.get("params", {}), dict):
        raise _damaged(file, "'params' must be an object")
    return manifest


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _damaged(file: Path, reason: str) -> DatasetDamagedError:
    return DatasetDamagedError(
        f"{file} is damaged: {reason}. Delete the folder {file.parent} and build the dataset again "
        "(`python -m core build`)."
    )


def _checked_parts(path: Path) -> tuple[dict[str, Any], pd.DataFrame, tuple[int, ...]]:
    """The manifest, the table and the shape of ``x`` (from its header) of a dataset, all checked."""
    missing = [n for n in ("x.npy", "meta.parquet", "manifest.json") if not (path / n).exists()]
    if missing:
        raise GalaxyMorphError(
            f"{path} is not a dataset folder (missing {', '.join(missing)}). Build one with `python -m core build`."
        )
    for name in ("manifest.json", "x.npy", "meta.parquet"):  # a named pipe would block the reads below
        try:
            check_regular(path / name)
        except OSError as exc:
            raise _damaged(path / name, str(exc)) from exc
    manifest = read_manifest(path)
    classes = list(manifest["classes"])
    shape = _x_shape(path / "x.npy")
    if "image_shape" in manifest and list(shape[1:]) != manifest["image_shape"]:
        raise _damaged(path / "x.npy", f"its images are {list(shape[1:])}, the manifest says {manifest['image_shape']}")
    meta = _read_meta(path / "meta.parquet", classes)
    if len(meta) != shape[0]:
        raise _damaged(path / "meta.parquet", f"it has {len(meta)} rows but x.npy has {shape[0]} images")
    return manifest, meta, shape


def _x_shape(file: Path) -> tuple[int, ...]:
    """``x.npy``'s shape from its header, after checking dtype, rank and that the file holds all of it."""
    try:
        with open(file, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(handle)
            offset = handle.tell()
    except (OSError, ValueError, EOFError) as exc:
        raise _damaged(file, f"it is not a NumPy array file ({exc})") from exc
    if dtype != np.dtype(np.float32) or fortran:
        raise _damaged(file, f"its images must be float32 in C order; got {dtype}{' (Fortran order)' if fortran else ''}")
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] not in (1, 3):
        raise _damaged(file, f"its shape must be (N, S, S, 1 or 3); got {shape}")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = file.stat().st_size
    if size != expected:
        raise _damaged(file, f"it has {size:,} bytes where its header needs {expected:,} (truncated or padded)")
    return tuple(int(n) for n in shape)


def _read_meta(file: Path, classes: list[str]) -> pd.DataFrame:
    try:
        meta = pd.read_parquet(file)
    except (OSError, ValueError, TypeError, pyarrow.ArrowException) as exc:
        raise _damaged(file, f"it is not a readable Parquet table ({type(exc).__name__})") from exc
    missing = [c for c in REQUIRED_META if c not in meta.columns]
    if missing:
        raise _damaged(file, f"it lacks the columns {missing}; expected {list(REQUIRED_META)}")
    if not pd.api.types.is_integer_dtype(meta["y"]) or pd.api.types.is_bool_dtype(meta["y"]):
        raise _damaged(file, f"its 'y' column must hold whole numbers; got {meta['y'].dtype}")
    for column in ("name", "label", "split"):
        if not meta[column].map(lambda v: isinstance(v, str)).all():
            raise _damaged(file, f"its {column!r} column must hold text in every row")
    try:
        _validate(np.empty((len(meta), 1, 1, 1), dtype=np.float32), meta, classes)
    except GalaxyMorphError as exc:
        raise _damaged(file, str(exc).rstrip(".")) from exc
    return meta


def is_dataset(path: str | Path) -> bool:
    """Whether ``path`` holds a complete dataset (all three core files)."""
    path = Path(path)
    return all((path / n).exists() for n in ("x.npy", "meta.parquet", "manifest.json"))


def _validate(x: np.ndarray, meta: pd.DataFrame, classes: list[str]) -> None:
    if x.ndim != 4:
        raise GalaxyMorphError(f"x must be 4-D (N, S, S, C); got shape {x.shape}.")
    missing = [c for c in REQUIRED_META if c not in meta.columns]
    if missing:
        raise GalaxyMorphError(f"meta lacks columns {missing}; expected {list(REQUIRED_META)}.")
    if len(meta) != len(x):
        raise GalaxyMorphError(f"meta has {len(meta)} rows but x has {len(x)} images; they must align.")
    if len(meta):
        y = meta["y"].to_numpy()
        if y.min() < 0 or y.max() >= len(classes):
            raise GalaxyMorphError(f"labels y must be in [0, {len(classes)}); got range [{y.min()}, {y.max()}].")
        bad_split = set(meta["split"].unique()) - set(SPLITS)
        if bad_split:
            raise GalaxyMorphError(f"split values must be {SPLITS}; got {sorted(bad_split)}.")
        mismatched = meta["label"].to_numpy() != np.asarray(classes, dtype=object)[y]
        if mismatched.any():
            raise GalaxyMorphError(f"label and y disagree for {int(mismatched.sum())} rows (e.g. {meta['name'][mismatched].iloc[0]!r}).")


def _replace_dir(staging: Path, out: Path) -> None:
    """Rename ``staging`` onto ``out``, moving an older ``out`` aside first and deleting it after."""
    if not out.exists():
        staging.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{staging.name[-12:]}")
    # Locked before it is moved, so the lock travels with it and no cleanup of another save
    # takes the moved-aside dataset for a dead one.
    with _locked(out) as locked:
        if not locked:
            raise ConfigError(f"another process is replacing {out}. Wait for it to finish, then run again.")
        out.rename(old)
        try:
            staging.rename(out)
        except OSError:
            old.rename(out)
            raise
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``folder`` for the block; yield whether it was free."""
    if fcntl is None:
        yield True
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
