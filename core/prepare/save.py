"""Writing a dataset folder so that writers and readers never see each other half-way.

- A writer holds ``.<name>.lock`` beside the folder (:func:`dataset_writer`, an exclusive
  ``flock``) for the whole build, so a second build into the same folder is refused with one line.
- A save (:func:`save_dataset`) writes the new version into a fresh staging folder
  ``.<name>.XXXXXXXX.tmp/`` beside it, marked as the tool's own by :data:`STAGING_MARKER` inside,
  and swaps it with the live folder in one atomic step (``renameat2(RENAME_EXCHANGE)`` on Linux;
  two renames elsewhere).
- A reader (:func:`core.prepare.dataset.load_dataset`) holds the version it opened under a shared
  ``flock``; the replaced version is deleted only once no reader holds it, otherwise it stays in
  its staging folder and the next build of the same target removes it.

A build killed with ``kill -9`` leaves its staging folder behind; the next build of the same target
removes it (:func:`remove_stale_staging`), and never a folder without the marker.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import ConfigError
from core.io import DATASET, check_replaceable, process_umask
from core.prepare.dataset import FORMAT_VERSION, content_hash, count_by_split, is_dataset, validate

try:
    import fcntl
except ImportError:  # Windows: no flock, so only the age tells a dead save from a live one
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: Tries to take the writer lock when its file is replaced under us (the previous holder removing it).
_LOCK_ATTEMPTS = 200

#: Names of staging folders (``tempfile.mkdtemp``'s 8 characters); only those holding
#: :data:`STAGING_MARKER` for the same target are ever removed.
STAGING_PATTERN = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")
#: The file that marks a staging folder as the tool's own (JSON: ``written_by`` and ``target``).
STAGING_MARKER = ".galaxy-morph-staging.json"
_STAGING_WRITER = "galaxy-morph dataset save"
#: What a staging folder may hold: the marker, the builder's array, the new and the replaced version.
STAGING_ENTRIES = frozenset({STAGING_MARKER, "x.npy", "x.npy.kept", "new", "old"})
#: Without ``flock`` (Windows) only the age tells a dead staging folder from a live one.
STALE_AFTER_S = 86400.0
#: Characters a staging or lock name adds to the dataset folder's name (``.NAME.XXXXXXXX.tmp``).
NAME_OVERHEAD = len("..XXXXXXXX.tmp")


class DatasetBusyError(ConfigError):
    """Another process is writing the same dataset folder."""


@contextlib.contextmanager
def dataset_writer(out: str | Path) -> Iterator[Path]:
    """Hold the writer lock of the dataset folder ``out`` for the block; yield ``out``.

    The lock is an exclusive ``flock`` on ``.<name>.lock`` beside the folder, created for the
    block and removed after it (a file of that name with other content, not ours, is used but
    never removed). It is re-entrant within a thread, so :func:`save_dataset` inside a build's
    lock does not lock itself out, and it dies with its process, so a killed build never blocks
    the next one. Taking it removes what killed writers of ``out`` left
    (:func:`remove_stale_staging`).

    Raises
    ------
    DatasetBusyError
        If another process (or thread) holds it: a second build into the same folder.
    """
    out = Path(out)
    lock = out.parent / f".{out.name}.lock"
    key = (os.path.abspath(lock), threading.get_ident())
    if key in _HELD_LOCKS:
        yield out
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = _take_lock(lock, out)
    try:
        _HELD_LOCKS.add(key)
        try:
            remove_stale_staging(out)  # no other writer of ``out`` is alive: what is left is dead
            yield out
        finally:
            _HELD_LOCKS.discard(key)
            # Removed while still held; the next writer checks that the name is still its file.
            if os.pread(fd, len(_LOCK_TEXT) + 1, 0) == _LOCK_TEXT:
                with contextlib.suppress(OSError):
                    os.unlink(lock)
    finally:
        os.close(fd)


_LOCK_TEXT = b"galaxy-morph dataset writer lock\n"


def _take_lock(lock: Path, out: Path) -> int:
    """Open, lock and return ``lock``'s descriptor, or raise :class:`DatasetBusyError`."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    for _ in range(_LOCK_ATTEMPTS):
        try:
            fd = os.open(lock, flags, 0o666 & ~process_umask())
        except OSError as exc:
            raise ConfigError(f"cannot create the lock file {lock} of the dataset {out} ({exc.strerror}). "
                              "Choose an --out in a folder you can write to.") from exc
        try:
            held = os.fstat(fd)
            if not stat.S_ISREG(held.st_mode):
                raise ConfigError(f"{lock} is not a regular file, so the dataset {out} cannot be locked; move it away.")
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise DatasetBusyError(
                        f"another build is writing the dataset {out} right now (it holds {lock.name}). Wait for it "
                        "to finish, or build into another --out."
                    ) from None
            try:
                now = os.stat(lock, follow_symlinks=False)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                if held.st_size == 0:
                    os.pwrite(fd, _LOCK_TEXT, 0)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the previous holder removed the file between our open and our lock: again
    raise DatasetBusyError(f"the lock file {lock} of the dataset {out} keeps changing; try again.")


_HELD_LOCKS: set[tuple[str, int]] = set()


@contextlib.contextmanager
def staging_folder(out: str | Path) -> Iterator[Path]:
    """A fresh staging folder beside the dataset folder ``out``, marked as the tool's own; removed after.

    The folder is ``.<name>.XXXXXXXX.tmp`` and holds :data:`STAGING_MARKER` from its first moment
    on, so that a build killed while using it leaves something the next build of the same target
    can recognise and remove (:func:`remove_stale_staging`). A replaced version still read by
    someone is left in it for that next build. Call it inside :func:`dataset_writer`.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (stage / STAGING_MARKER).write_text(
            json.dumps({"written_by": _STAGING_WRITER, "target": out.name, "pid": os.getpid()}) + "\n",
            encoding="utf-8")
        yield stage
    finally:
        if not _in_use(stage):
            shutil.rmtree(stage, ignore_errors=True)


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

    The new version is written into a staging folder beside ``out`` and swapped with the live
    folder in one step, so a crash never leaves half a dataset and a reader sees the old version
    or the new one, never a mix (see the module's notes). ``out`` must be absent, empty or a
    dataset holding only dataset files (:func:`core.io.check_replaceable`), and no other process
    may be writing it (:func:`dataset_writer`). The folder gets the mode the umask allows.
    ``manifest`` is completed with ``version``, ``classes``, ``counts``, ``n_images`` and
    ``content_hash``. ``x`` may be the path of a float32 ``.npy`` file on the same file system
    as ``out`` (the builder writes one through a memory map): it is moved into the folder, never
    loaded whole.

    Raises
    ------
    GalaxyMorphError
        If the arrays and the table disagree (shapes, labels out of range, unknown splits), or
        ``out`` holds anything but a dataset; :class:`DatasetBusyError` if another process is
        writing it.
    """
    out = Path(out)
    with dataset_writer(out):
        check_replaceable(out, kind=DATASET, option="out")
        x_file = None if isinstance(x, np.ndarray) else Path(x)
        if x_file is not None:
            x = np.load(x_file, mmap_mode="r")
        validate(x, meta, classes)
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
        with staging_folder(out) as stage:
            new = stage / "new"
            new.mkdir()  # the mode a plain mkdir gives, as the dataset folder should have
            _write(new, x=x, x_file=x_file, meta=meta, images=images, manifest=manifest)
            # Checked again: a build takes minutes, in which someone may have put files there.
            check_replaceable(out, kind=DATASET, option="out")
            _swap_into_place(new, out, stage)
    return out


def _write(folder: Path, *, x: np.ndarray, x_file: Path | None, meta: pd.DataFrame, images: pd.DataFrame | None,
           manifest: dict[str, Any]) -> None:
    if x_file is not None:
        os.replace(x_file, folder / "x.npy")
    else:
        np.save(folder / "x.npy", np.ascontiguousarray(x, dtype=np.float32))
    meta.to_parquet(folder / "meta.parquet", index=False)
    if images is not None:
        images.reset_index(drop=True).to_parquet(folder / "images.parquet", index=False)
    (folder / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )
    for name in os.listdir(folder):
        _fsync(folder / name)
    _fsync(folder)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # a folder cannot be synced on every file system; a file must be
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise
        logger.debug("fsync of %s: %s", path, exc)
    finally:
        os.close(fd)


def _swap_into_place(new: Path, out: Path, stage: Path) -> None:
    """Make ``new`` the folder ``out``; a replaced ``out`` ends up inside ``stage``.

    On Linux one ``renameat2(RENAME_EXCHANGE)`` swaps the two folders, so there is no moment
    without ``out``. Elsewhere the old folder is renamed to ``stage/old`` first (and back if the
    second rename fails); a reader that looks in between retries (:func:`core.prepare.dataset.load_dataset`).
    """
    if not out.exists():
        new.rename(out)
        return
    if _exchange(new, out):
        return
    old = stage / "old"
    out.rename(old)
    try:
        new.rename(out)
    except OSError:
        old.rename(out)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` atomically; False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # glibc before 2.28, musl
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):  # file system without the flag
        return False
    raise OSError(error, os.strerror(error), str(b))


def remove_stale_staging(out: str | Path) -> list[Path]:
    """Remove what killed saves and builds of the dataset ``out`` left beside it; return those folders.

    Only folders named like :data:`STAGING_PATTERN` for ``out``'s name that hold
    :data:`STAGING_MARKER` naming ``out`` are touched, and only when they hold nothing but
    :data:`STAGING_ENTRIES` and no reader still holds a version in them. :func:`dataset_writer`
    calls it when it takes the lock, so no live writer of ``out`` can own one (call it only
    there); a user's folder named like them (``.thesis.backup_1.tmp``) has no marker and is never
    touched. A replaced dataset whose save died before the new one was in place (``out``
    missing) is renamed back to ``out``.
    """
    out = Path(out)
    handled: list[Path] = []
    if not out.parent.is_dir():
        return handled
    for entry in out.parent.iterdir():
        match = STAGING_PATTERN.fullmatch(entry.name)
        if match is None or match["name"] != out.name or entry.is_symlink() or not entry.is_dir():
            continue
        if not _is_our_staging(entry, target=out.name):
            continue
        try:
            names = set(os.listdir(entry))
            young = time.time() - entry.stat().st_mtime < STALE_AFTER_S
        except OSError:
            continue
        if (fcntl is None and young) or _in_use(entry):
            continue
        if not names <= STAGING_ENTRIES:
            logger.warning("left %s alone: it holds files a dataset save does not write", entry)
            continue
        old = entry / "old"
        if not out.exists() and old.is_dir() and is_dataset(old):
            old.rename(out)
            logger.warning("restored %s from %s (a save was killed while replacing it)", out, entry.name)
        shutil.rmtree(entry)
        logger.info("removed %s, left by a killed build of %s", entry, out.name)
        handled.append(entry)
    return handled


def _is_our_staging(folder: Path, *, target: str) -> bool:
    marker = folder / STAGING_MARKER
    try:
        if marker.is_symlink() or not marker.is_file() or marker.stat().st_size > 4096:
            return False
        content = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and content.get("written_by") == _STAGING_WRITER and content.get("target") == target


def _in_use(stage: Path) -> bool:
    """Whether a reader holds one of the versions inside the staging folder ``stage``."""
    for sub in ("new", "old"):
        folder = stage / sub
        if folder.is_dir() and not folder.is_symlink():
            with _locked(folder) as free:
                if not free:
                    return True
    return False


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
