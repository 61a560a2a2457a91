"""The dataset container: arrays, per-image table and manifest in one folder, and reading it back.

A dataset folder (written by :func:`core.prepare.save.save_dataset`, read by :func:`load_dataset`) holds

- ``x.npy``: float32 images ``(N, S, S, C)`` in [0, 1];
- ``meta.parquet``: one row per image of ``x``: ``name, label, y, split`` (and ``path``);
- ``images.parquet``: every candidate image with its quality metrics, ``kept`` and ``reason``;
- ``manifest.json``: parameters, classes, counts per split and class, hashes.

Training, evaluation and the dashboard all read datasets through :func:`load_dataset`, so the
split and the preprocessing are the same for every model. Reading checks every file first
(:func:`check_dataset`): a truncated, mistyped or misaligned file raises
:class:`DatasetDamagedError` naming it, and ``x.npy`` is never unpickled.

A reader opens the folder once and reads every file relative to that open folder, under a shared
``flock`` (:func:`_open_version`), so a build that swaps in a new version during a load
(:mod:`core.prepare.save`) leaves the reader on the version it started with. The layout of the
folder itself is unchanged, so datasets written before these rules load as they are.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow

from core.errors import GalaxyMorphError
from core.io import RefusedFileError, open_regular

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
        """Every candidate image with metrics, ``kept`` and ``reason`` (empty if not saved).

        Read when asked, from the folder's current version: if a build replaced the dataset
        since it was loaded, that table would describe other images, so this raises instead.
        """
        with _open_version(self.path) as folder:
            if _read_manifest(folder)["content_hash"] != self.content_hash:
                raise GalaxyMorphError(f"{self.path} was rebuilt after it was loaded; load it again.")
            if not folder.has("images.parquet"):
                return pd.DataFrame()
            with folder.open("images.parquet") as handle:
                return pd.read_parquet(handle)


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


def load_dataset(path: str | Path, *, mmap: bool = False) -> Dataset:
    """Read a dataset folder written by :func:`core.prepare.save.save_dataset`.

    Every file comes from one version of the folder, even while a build replaces it
    (:func:`_open_version`).

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
    with _open_version(path) as folder:
        manifest, meta, shape, offset = _checked_parts(folder)
        try:
            with folder.open("x.npy") as handle:
                if mmap:
                    x = np.memmap(handle, dtype=np.float32, mode="r", offset=offset, shape=shape)
                else:
                    x = np.load(handle, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise _damaged(path / "x.npy", f"it cannot be read as an array ({exc})") from exc
    return Dataset(path=path, x=x, meta=meta, classes=list(manifest["classes"]), manifest=manifest)


def check_dataset(path: str | Path) -> None:
    """Check a dataset folder without reading its images; raise if it cannot be loaded.

    ``manifest.json`` must be an object with the classes, counts and hash :func:`core.prepare.save.save_dataset`
    writes; ``x.npy`` a float32 ``(N, S, S, C)`` array whose header matches the file's size (read
    from the header, no pickles); ``meta.parquet`` one row per image with ``name, label, y,
    split`` of the right types, ``y`` indexing the manifest's classes. Every file must be a
    regular file (a named pipe would block the reader).

    Raises
    ------
    GalaxyMorphError
        If a file is missing; :class:`DatasetDamagedError` naming the file if one is damaged.
    """
    with _open_version(Path(path)) as folder:
        _checked_parts(folder)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The checked ``manifest.json`` of the dataset folder ``path``.

    Raises
    ------
    DatasetDamagedError
        If it is not a JSON object with ``classes`` (distinct names), ``content_hash`` and, when
        present, well-formed ``counts``, ``n_images``, ``image_shape`` and ``params``.
    """
    with _open_version(Path(path)) as folder:
        return _read_manifest(folder)


def _read_manifest(folder: _Folder) -> dict[str, Any]:
    file = folder.path / "manifest.json"
    try:
        with folder.open("manifest.json") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise _damaged(file, f"it is not readable JSON ({exc})") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise _damaged(file, f"it is larger than {MAX_MANIFEST_BYTES // 2**20} MB")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _damaged(file, f"it is not readable JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise _damaged(file, f"it holds a JSON {type(manifest).__name__}, not an object")
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


@dataclass(frozen=True)
class _Folder:
    """One version of a dataset folder, held open: files are opened relative to it (``dir_fd``)."""

    path: Path
    fd: int | None

    def has(self, name: str) -> bool:
        try:
            if self.fd is None:
                os.stat(self.path / name)
            else:
                os.stat(name, dir_fd=self.fd)
        except OSError:
            return False
        return True

    def open(self, name: str) -> Any:
        """``name`` opened for reading in binary; a file that is not a regular file is refused unopened
        (a named pipe would block the reader)."""
        try:
            if self.fd is None:
                return open_regular(self.path / name)
            return open_regular(name, dir_fd=self.fd)
        except RefusedFileError as exc:
            raise _damaged(self.path / name, exc.reason) from exc


_OPEN_ATTEMPTS = 200
_OPEN_PAUSE_S = 0.01


@contextlib.contextmanager
def _open_version(path: Path) -> Iterator[_Folder]:
    """Hold one version of the dataset folder ``path`` open for the block.

    The folder is opened once and locked shared; it is kept only if ``path`` still names it
    after the lock is taken (else a build swapped it meanwhile, and the next try gets the new
    one). Files opened through the yielded folder then all come from that version, even if a
    build swaps in another, and a build deletes a replaced version only once no reader holds it.
    """
    if fcntl is None or os.open not in os.supports_dir_fd:
        yield _Folder(path, None)
        return
    for _ in range(_OPEN_ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except FileNotFoundError:
            # A swap by two renames (no RENAME_EXCHANGE) has a moment without the folder, under
            # its writer's lock; without a writer, a missing folder is just missing.
            if not (path.parent / f".{path.name}.lock").exists():
                break
            time.sleep(_OPEN_PAUSE_S)
            continue
        except NotADirectoryError:
            raise GalaxyMorphError(f"{path} is a file, not a dataset folder. Build one with `python -m core build`.") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                now = os.stat(path)
            except (BlockingIOError, FileNotFoundError):
                time.sleep(_OPEN_PAUSE_S)
                continue
            held = os.fstat(fd)
            if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                yield _Folder(path, fd)
                return
        finally:
            os.close(fd)
    if not path.exists():
        raise GalaxyMorphError(f"{path} is not a dataset folder (it does not exist). Build one with `python -m core build`.")
    raise GalaxyMorphError(f"{path} kept changing while it was read (a build is replacing it); try again.")


def _checked_parts(folder: _Folder) -> tuple[dict[str, Any], pd.DataFrame, tuple[int, ...], int]:
    """The manifest, the table, the shape of ``x`` and its data offset (from its header), all checked."""
    path = folder.path
    missing = [n for n in ("x.npy", "meta.parquet", "manifest.json") if not folder.has(n)]
    if missing:
        raise GalaxyMorphError(
            f"{path} is not a dataset folder (missing {', '.join(missing)}). Build one with `python -m core build`."
        )
    manifest = _read_manifest(folder)
    classes = list(manifest["classes"])
    shape, offset = _x_shape(folder)
    if "image_shape" in manifest and list(shape[1:]) != manifest["image_shape"]:
        raise _damaged(path / "x.npy", f"its images are {list(shape[1:])}, the manifest says {manifest['image_shape']}")
    meta = _read_meta(folder, classes)
    if len(meta) != shape[0]:
        raise _damaged(path / "meta.parquet", f"it has {len(meta)} rows but x.npy has {shape[0]} images")
    return manifest, meta, shape, offset


def _x_shape(folder: _Folder) -> tuple[tuple[int, ...], int]:
    """``x.npy``'s shape and data offset from its header, after checking dtype, rank and that the file holds all of it."""
    file = folder.path / "x.npy"
    try:
        with folder.open("x.npy") as handle:
            version = np.lib.format.read_magic(handle)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(handle)
            offset = handle.tell()
            size = os.fstat(handle.fileno()).st_size
    except (OSError, ValueError, EOFError) as exc:
        raise _damaged(file, f"it is not a NumPy array file ({exc})") from exc
    if dtype != np.dtype(np.float32) or fortran:
        raise _damaged(file, f"its images must be float32 in C order; got {dtype}{' (Fortran order)' if fortran else ''}")
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] not in (1, 3):
        raise _damaged(file, f"its shape must be (N, S, S, 1 or 3); got {shape}")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != expected:
        raise _damaged(file, f"it has {size:,} bytes where its header needs {expected:,} (truncated or padded)")
    return tuple(int(n) for n in shape), offset


def _read_meta(folder: _Folder, classes: list[str]) -> pd.DataFrame:
    file = folder.path / "meta.parquet"
    try:
        with folder.open("meta.parquet") as handle:
            meta = pd.read_parquet(handle)
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
        validate(np.empty((len(meta), 1, 1, 1), dtype=np.float32), meta, classes)
    except GalaxyMorphError as exc:
        raise _damaged(file, str(exc).rstrip(".")) from exc
    return meta


def is_dataset(path: str | Path) -> bool:
    """Whether ``path`` holds a complete dataset (all three core files)."""
    path = Path(path)
    return all((path / n).exists() for n in ("x.npy", "meta.parquet", "manifest.json"))


def validate(x: np.ndarray, meta: pd.DataFrame, classes: list[str]) -> None:
    """Refuse images ``x``, table ``meta`` and ``classes`` that do not make a dataset (shapes, labels, splits)."""
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


