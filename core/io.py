"""Atomic file writes, and which folders the tool may replace.

Everything the user fetched or trained is written through these helpers: data goes to a
temporary file in the destination folder, is flushed to disk, then renamed over the target
(``os.replace`` is atomic on POSIX and Windows when both are on one file system).

Before a command writes into or replaces an output folder it asks :func:`check_replaceable`:
the folder must be absent, empty, or one this tool wrote, of the right kind (its marker file,
e.g. a dataset's ``manifest.json``, says so). Anything else is refused with a one-line error, so
``--out ~/thesis`` or ``--out data`` can never delete the user's files.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from core.errors import ConfigError, GalaxyMorphError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    Use it for writers that want a file name (``np.save``, ``DataFrame.to_parquet``,
    ``model.save``). The temporary file keeps ``path``'s suffixes so format detection works.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_file(tmp)
        # mkstemp creates 0600; give the file the mode a plain open() would, so reports and
        # models stay readable by the group or a web server.
        os.chmod(tmp, 0o666 & ~process_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def append_jsonl(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append one JSON line to ``path``, written in a single call so concurrent readers see whole lines."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, default=str) + "\n").encode("utf-8")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class RefusedFileError(OSError):
    """A file read back from disk that is not a regular file (a named pipe, device, socket or
    folder) or is larger than the reader's cap. ``str()`` is the reason alone, e.g. "it is a named
    pipe (FIFO), not a regular file", for the caller's "<file> is damaged: <reason>"."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(reason)
        self.filename = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _check_stat(path: str | os.PathLike[str], info: os.stat_result, max_bytes: int | None) -> os.stat_result:
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a plain file")
        raise RefusedFileError(path, f"it is {kind}, not a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise RefusedFileError(path, f"it is larger than {_size(max_bytes)} ({_size(info.st_size)})")
    return info


def _size(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n:,} bytes"


def check_regular(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> os.stat_result:
    """``os.stat`` of ``path`` (symlinks followed), refusing what a reader must not open.

    A named pipe blocks ``open()`` forever and a device never ends, so every file read back from
    disk (datasets, runs, sources, images) is checked before a library opens it by name.

    Raises
    ------
    RefusedFileError
        If ``path`` is not a regular file, or is larger than ``max_bytes``.
    FileNotFoundError
        If it does not exist.
    """
    return _check_stat(path, os.stat(path), max_bytes)


def open_regular(path: str | os.PathLike[str], *, max_bytes: int | None = None, dir_fd: int | None = None) -> BinaryIO:
    """Open ``path`` for binary reading only if it is a regular file (within ``max_bytes``).

    Opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open descriptor, so a named pipe
    swapped in after a check cannot block the open, and what is read is what was checked.
    With ``dir_fd``, ``path`` is relative to that open folder (a dataset version being read).

    Raises
    ------
    RefusedFileError
        As :func:`check_regular`; other ``OSError``s as ``open`` does.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        _check_stat(path, os.fstat(fd), max_bytes)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_bytes(path: str | os.PathLike[str], *, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, refused above ``max_bytes`` (also if it grows while read)."""
    with open_regular(path, max_bytes=max_bytes) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise RefusedFileError(path, f"it is larger than {_size(max_bytes)}")
    return data


#: Largest JSON-lines log read back (a run's events of a long training are a few MB).
MAX_JSONL_BYTES = 256 * 2**20


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read the complete JSON lines of ``path``; a partly written last line is ignored, and so is a
    file that is not a regular file or is larger than :data:`MAX_JSONL_BYTES` (no records)."""
    target = Path(path)
    if not target.exists():
        return []
    try:
        text = read_regular_bytes(target, max_bytes=MAX_JSONL_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


@dataclass(frozen=True)
class FolderKind:
    """A kind of folder the tool writes, recognised by a JSON marker file with known keys.

    Attributes
    ----------
    name : str
        What the folder is, for messages ("dataset").
    markers : tuple of str
        File names, any of which marks the folder as this kind (a finished and an unfinished one).
    keys : tuple of str
        Keys a marker's JSON object must have; a file of that name without them is not ours.
    whole : frozenset of str or None
        For a folder replaced whole, every name the tool writes in it: any other entry would be
        lost, so it is refused. ``None`` for a folder where only the tool's own files are rewritten.
    """

    name: str
    markers: tuple[str, ...]
    keys: tuple[str, ...]
    whole: frozenset[str] | None = None


DATASET = FolderKind(
    "dataset", ("manifest.json",), ("version", "classes", "content_hash"),
    whole=frozenset({"x.npy", "meta.parquet", "images.parquet", "manifest.json"}),
)
SAMPLE = FolderKind("sample", ("SAMPLE.json", ".sample-params.json"), ("version", "n", "seed", "rates"))
IMPORTED = FolderKind("imported source", ("import_report.json",), ("catalog", "images", "matched_rows"))
REPORT = FolderKind("comparison report", ("report.json",), ("written_by", "runs"))
FOLDER_KINDS = (DATASET, SAMPLE, IMPORTED, REPORT)

#: Folder names a user may choose (dataset names, import names): one path component that no
#: shell, URL or file system mangles.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_MARKER_MAX_BYTES = 16 * 2**20


def check_folder_name(name: str, *, what: str = "name", example: str = "my_galaxies") -> str:
    """Return ``name`` if it is usable as one folder name; raise :class:`ConfigError` if not.

    Allowed: 1 to 100 letters, digits, ``_``, ``-`` and ``.``, starting with a letter or digit,
    without ``..``. So ``.``, ``..``, ``a/b``, ``-x`` (read as an option), names with spaces
    and empty names are refused.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        hint = " Spaces are not allowed: use '_'." if isinstance(name, str) and " " in name else ""
        raise ConfigError(
            f"{what} must be letters, digits, '_', '-' or '.' (1 to 100, starting with a letter or digit, "
            f"no '..'); got {name!r}.{hint} Use e.g. {example}."
        )
    return name


def read_marker(path: str | os.PathLike[str], kind: FolderKind) -> dict[str, Any] | None:
    """The JSON object of ``kind``'s first marker file in ``path``, or ``None`` if there is no valid one."""
    folder = Path(path)
    for marker in kind.markers:
        file = folder / marker
        try:
            if file.is_symlink() or not file.is_file() or file.stat().st_size > _MARKER_MAX_BYTES:
                continue
            content = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(content, dict) and all(key in content for key in kind.keys):
            return content
    return None


def check_replaceable(
    path: str | os.PathLike[str],
    *,
    kind: FolderKind,
    force: bool = False,
    same: Callable[[dict[str, Any]], bool] | None = None,
    protect: Iterable[str | os.PathLike[str]] = (),
    option: str = "--out",
) -> dict[str, Any] | None:
    """Refuse to write ``kind`` into ``path`` unless that can destroy nothing the tool did not write.

    ``path`` may be absent or empty; or hold a ``kind`` folder (by its marker) and then either
    ``same(marker)`` is true (identical parameters), ``force`` is set, or ``same`` is ``None``
    (the folder is cheap to remake, like a report). A folder replaced whole must also hold
    nothing but ``kind``'s entries. A path the file system cannot hold is refused too
    (:func:`check_output_path`). A folder containing one of ``protect`` (the source being
    read) is always refused.

    Returns
    -------
    dict or None
        The marker's content when ``path`` already holds a ``kind`` folder, else ``None``.

    Raises
    ------
    ConfigError
        With what ``path`` holds and what to do (choose another folder, or pass ``--force``).
    """
    folder = check_output_path(path, option=option)  # a name the file system cannot hold, or a path under a file
    if folder.is_symlink():
        raise ConfigError(
            f"{option} {folder} is a symbolic link; only folders this tool wrote are replaced. "
            "Give the real folder or a new path."
        )
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise ConfigError(f"{option} must be a folder; got the file {folder}. Choose a folder path.")
    resolved = folder.resolve()
    for item in protect:
        inner = Path(item).resolve()
        if inner == resolved or resolved in inner.parents:
            where = "is" if inner == resolved else "contains"
            raise ConfigError(
                f"{option} {folder} {where} {item}, which this command reads; refusing to replace it. "
                f"Choose a new folder outside it."
            )
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return None
    marker = read_marker(folder, kind)
    if marker is None:
        raise ConfigError(_not_ours(folder, kind, entries, option))
    if kind.whole is not None:
        foreign = [e for e in entries if e not in kind.whole]
        if foreign:
            raise ConfigError(
                f"{option} {folder} is {_a(kind.name)} but also holds files this tool did not write "
                f"({_examples(foreign)}); replacing it would delete them. Move them out or choose another folder."
            )
    if same is not None and not force and not same(marker):
        raise ConfigError(
            f"{option} {folder} holds {_a(kind.name)} made with other parameters. Pass --force to replace it, "
            "or choose another folder."
        )
    return marker


def _not_ours(folder: Path, kind: FolderKind, entries: list[str], option: str) -> str:
    for other in FOLDER_KINDS:
        if other is not kind and read_marker(folder, other) is not None:
            return (f"{option} {folder} holds {_a(other.name)}, not {_a(kind.name)}; refusing to replace it. "
                    "Choose another folder.")
    # Only the first entries: a home folder with many thousands of children must not stall the check.
    inside = sorted({other.name for e in entries[:1000] for other in FOLDER_KINDS
                     if (folder / e).is_dir() and read_marker(folder / e, other) is not None})
    if inside:
        return (f"{option} {folder} holds other {' and '.join(inside)} folders; refusing to replace it. "
                f"Give a folder of its own, e.g. {folder / 'NAME'}.")
    return (f"{option} {folder} is not empty and is not {_a(kind.name)} this tool wrote "
            f"(it holds {_examples(entries)}); refusing to replace it. Choose a new or empty folder.")


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _examples(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_output_path(path: str | os.PathLike[str], *, option: str = "--out", extra_chars: int = 0) -> Path:
    """Return ``path`` if the file system can hold it as an output folder; raise :class:`ConfigError` if not.

    Checked before any work, so a long build does not fail at its last step: every name in the
    path must fit the file system's limit (``extra_chars`` more for the last one, where the tool
    names staging files after it), the whole path its path limit, and the nearest existing
    parent must be a folder, not a file.
    """
    target = Path(os.path.abspath(path))
    existing = target
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if existing != target and not existing.is_dir():
        raise ConfigError(f"{option} {_shorten(str(path))} is under {existing}, which is a file, not a folder. "
                          "Choose a path inside a folder.")
    folder = existing if existing.is_dir() else existing.parent
    name_max = _path_limit(folder, "PC_NAME_MAX", 255)
    for index, part in enumerate(target.parts[1:], start=2):
        room = name_max - (extra_chars if index == len(target.parts) else 0)
        if len(os.fsencode(part)) > room:
            extra = f" (the tool adds {extra_chars} for its staging folder)" if index == len(target.parts) and extra_chars else ""
            raise ConfigError(
                f"{option}: the name {_shorten(part)} is {len(os.fsencode(part))} bytes; this file system allows "
                f"{name_max} per name{extra}. Use a name of at most {room} characters."
            )
    path_max = _path_limit(folder, "PC_PATH_MAX", 4096)
    if len(os.fsencode(str(target))) + extra_chars >= path_max:
        raise ConfigError(f"{option} {_shorten(str(path))} is {len(os.fsencode(str(target)))} bytes long; this file "
                          f"system allows {path_max - extra_chars - 1}. Use a shorter path.")
    return Path(path)


def name_limit(folder: str | os.PathLike[str]) -> int:
    """The longest file name (in bytes) the file system of ``folder`` allows."""
    return _path_limit(Path(folder), "PC_NAME_MAX", 255)


def _path_limit(folder: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(folder, name))
    except (OSError, ValueError, AttributeError):  # no pathconf on Windows; an unknown limit
        return default


def _shorten(text: str, limit: int = 60) -> str:
    """``text`` quoted, cut to ``limit`` characters with how much was left out."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def is_out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk or a file-size limit is full.

    Libraries do not all keep ``errno``: pyarrow and h5py put it in the message.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_SPACE_ERRNOS:
            return True
        text = str(current)
        if any(phrase in text for phrase in _NO_SPACE_PHRASES):
            return True
        current = current.__cause__ or current.__context__
    return False


_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NO_SPACE_PHRASES = ("No space left on device", "Disk quota exceeded", "File too large", "errno 28", "errno = 28")


class OutOfSpaceError(GalaxyMorphError):
    """A write failed because the disk (or the process's file-size limit) is full."""


@contextlib.contextmanager
def out_of_space_as_error(path: str | os.PathLike[str], *, cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """Turn a full disk inside the block into :class:`OutOfSpaceError` naming ``path``; run ``cleanup`` first.

    ``cleanup`` removes the command's partial output; it runs only on that error.
    """
    try:
        yield
    except Exception as exc:
        if not is_out_of_space(exc):
            raise
        if cleanup is not None:
            cleanup()
        raise OutOfSpaceError(f"no space left on {path}. Free some space (or choose a folder on another disk) "
                              "and run the command again.") from exc


def free_bytes(folder: str | os.PathLike[str]) -> int:
    """Bytes a write into ``folder`` may still take: the free space, or the process's file-size limit if lower."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return 2**62
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            free = min(free, limit)
    except (ImportError, ValueError, OSError):
        pass
    return free


def preallocate(handle_or_fd: Any, size: int, *, path: str | os.PathLike[str]) -> None:
    """Reserve ``size`` bytes for a file before writing it through a memory map.

    A memory-mapped write to a full disk is a SIGBUS that kills the process; reserving the
    blocks first turns it into an ``OSError`` (ENOSPC) here. Where the file system cannot
    reserve (``EOPNOTSUPP``) or the system has no ``posix_fallocate``, nothing is done.
    """
    fd = handle_or_fd if isinstance(handle_or_fd, int) else handle_or_fd.fileno()
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def process_umask() -> int:
    """The process umask, read without changing it where the OS allows (os.umask is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def read_json_object(path: str | os.PathLike[str], *, max_bytes: int) -> dict[str, Any]:
    """A JSON object read back from disk, treated as possibly damaged or crafted.

    Raises
    ------
    ValueError
        With the reason (too large, not readable JSON, not an object), for the caller to wrap
        in its own error that names the file and what to do.
    """
    try:
        value = json.loads(read_regular_bytes(path, max_bytes=max_bytes).decode("utf-8"))
    except RefusedFileError as exc:
        raise ValueError(exc.reason) from exc
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"it is not readable JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ValueError(f"it holds a JSON {type(value).__name__}, not an object")
    return value
