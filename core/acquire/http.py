"""A polite HTTP client for NED: one limiter per machine, retries with backoff, a disk cache.

NED asks automated clients for at most one request per second and no concurrent queries. Every
request this package makes (the scraper's, the image fetcher's and astroquery's, which is routed
here) goes through :func:`shared_limiter`, which lets one request run at a time and keeps at least
``request_interval`` seconds of quiet between the end of one request and the start of the next.
Measuring from the end is stricter than NED's rule and makes the guarantee hold as seen by the
server, whatever the network latency.

The limiter is exclusive across processes too: a ``scrape`` and a ``fetch`` started side by side
(two terminals, two dashboard jobs) take turns through an ``fcntl.flock``-ed lock file,
``<data_dir>/.cache/ned-requests.lock``, which is held for the whole request and records when
the last request ended.

Pages (scraper result pages, image listings) are cached on disk keyed by their full URL, so a
rerun or a resumed run never asks the server twice. Image files are not cached here: they are the
fetcher's output and are written atomically with :meth:`PoliteClient.download`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from core.config import Settings, get_settings
from core.errors import ConfigError, FetchError, GalaxyMorphError
from core.io import atomic_path, atomic_write_bytes, atomic_write_json, read_json_object, read_regular_bytes
from core.paths import data_layout

try:
    import fcntl
except ImportError:  # not POSIX: the limiter falls back to its in-process lock
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: Largest cached page read back (NED's listing pages are tens of kB).
MAX_CACHED_PAGE_BYTES = 64 * 2**20

Params = Mapping[str, Any] | Sequence[tuple[str, Any]] | None


def request_lock_path(settings: Settings) -> Path:
    """The lock file shared by every process that uses ``settings.data_dir``."""
    return data_layout(settings).request_lock


class RateLimiter:
    """One request at a time, with at least ``interval`` seconds between one's end and the next's start.

    Exclusive among the threads of a process (a thread lock) and among the processes that share a
    lock file (``fcntl.flock``, held for the whole request). The file holds the wall-clock end of
    the last request, so a process waits for another's request too. Without ``fcntl`` (not POSIX)
    only the thread lock remains, with a logged warning. The interval and the lock file are passed
    on each acquisition because settings are read at call time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_end: float | None = None
        self._warned = False

    @contextlib.contextmanager
    def slot(self, interval: float, *, lock_path: str | Path | None = None) -> Iterator[None]:
        """Hold the only request slot of the machine for the duration of the ``with`` block.

        ``lock_path`` defaults to :func:`request_lock_path` of :func:`core.config.get_settings`.

        Raises
        ------
        ConfigError
            If the lock file cannot be created or opened.
        """
        path = Path(lock_path) if lock_path is not None else request_lock_path(get_settings())
        with self._lock, self._file_lock(path) as fd:
            waits = [0.0]
            if self._last_end is not None:
                waits.append(self._last_end + interval - time.monotonic())
            if fd is not None:
                waits.append(_wait_after_recorded_end(fd, path, interval))
            # A wall clock set back must not stall the client: no wait is longer than the interval.
            wait = min(max(waits), interval)
            if wait > 0:
                time.sleep(wait)
            try:
                yield
            finally:
                self._last_end = time.monotonic()
                if fd is not None:
                    _record_end(fd, time.time())

    @contextlib.contextmanager
    def _file_lock(self, path: Path) -> Iterator[int | None]:
        if fcntl is None:
            if not self._warned:
                logger.warning(
                    "fcntl is not available here, so the request limiter is exclusive within this process "
                    "only: do not run two NED commands (scrape, fetch) at the same time."
                )
                self._warned = True
            yield None
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise ConfigError(
                f"cannot open the request lock file {path} ({exc.strerror or exc}). Set data_dir to a "
                f"writable folder."
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            # Closing the descriptor releases the lock, also when the request raised.
            os.close(fd)


# Fixed width, written in one pwrite: a killed process cannot leave half a record behind.
_RECORD_WIDTH = 32


def _wait_after_recorded_end(fd: int, path: Path, interval: float) -> float:
    raw = os.pread(fd, 2 * _RECORD_WIDTH, 0).strip()
    if not raw:  # a new file: no request yet
        return 0.0
    try:
        last_end = float(raw)
    except ValueError:
        logger.warning("request lock file %s holds %r, not a time; waiting the full interval", path, raw[:40])
        return interval
    return last_end + interval - time.time()


def _record_end(fd: int, end: float) -> None:
    record = f"{end:.6f}".ljust(_RECORD_WIDTH - 1).encode("ascii") + b"\n"
    os.pwrite(fd, record, 0)
    os.ftruncate(fd, len(record))


_LIMITER_GUARD = threading.Lock()
_LIMITER: list[RateLimiter] = []


def shared_limiter() -> RateLimiter:
    """The process-wide limiter every request goes through (created on first use).

    Its lock file makes it exclusive across the processes of the machine as well.
    """
    with _LIMITER_GUARD:
        if not _LIMITER:
            _LIMITER.append(RateLimiter())
        return _LIMITER[0]


@dataclass(frozen=True)
class Page:
    """A fetched (or cached) text page.

    Attributes
    ----------
    url : str
        The full URL, query included; the cache key.
    text : str
        The decoded body.
    fetched_at : str
        ISO 8601 UTC time the server answered (the original fetch, for a cached page).
    from_cache : bool
        True when no request was made.
    """

    url: str
    text: str
    fetched_at: str
    from_cache: bool


def full_url(url: str, params: Params = None) -> str:
    """``url`` with ``params`` encoded the way requests sends them (the cache key)."""
    return requests.Request("GET", url, params=params).prepare().url or url


class PoliteClient:
    """HTTP GETs through the shared limiter, with retries, a User-Agent and an optional disk cache.

    Parameters
    ----------
    settings : Settings or None
        ``request_interval``, ``request_timeout``, ``max_retries`` and ``user_agent`` come from
        here; ``None`` reads :func:`core.config.get_settings` now.
    cache_dir : path or None
        Folder for cached pages; ``None`` disables the page cache.
    backoff_cap : float
        Longest wait, in seconds, between two attempts. The first wait is ``request_interval``
        (at least 0.05 s) and doubles after each failure.
    limiter : RateLimiter or None
        Defaults to :func:`shared_limiter`; pass another only to isolate a test of the limiter.
        Either way requests take turns through :func:`request_lock_path` of ``settings``.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        cache_dir: str | Path | None = None,
        backoff_cap: float = 60.0,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings if settings is not None else get_settings()
        if self.settings.request_timeout <= 0:
            raise ConfigError(
                f"request_timeout must be > 0; got {self.settings.request_timeout}. Use seconds, e.g. 30."
            )
        if backoff_cap <= 0:
            raise ConfigError(f"backoff_cap must be > 0; got {backoff_cap}. Use seconds, e.g. 60.")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.backoff_cap = backoff_cap
        self.limiter = limiter if limiter is not None else shared_limiter()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = self.settings.user_agent
        self.requests_made = 0

    def close(self) -> None:
        """Close the connection pool."""
        self.session.close()

    def __enter__(self) -> PoliteClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- pages -------------------------------------------------------------------------------

    def get_page(
        self,
        url: str,
        *,
        params: Params = None,
        use_cache: bool = True,
        check: Callable[[str, str], object] | None = None,
    ) -> Page:
        """GET a text page, from the disk cache when it is there.

        ``check(text, url)`` runs before a fresh page is cached; if it raises, the page is not
        cached (a page that failed to parse is asked for again next time) and the error propagates.

        Raises
        ------
        FetchError
            After the retries, or at once for a 4xx other than 429.
        """
        key_url = full_url(url, params)
        if use_cache and self.cache_dir is not None:
            cached = self._read_cache(key_url)
            if cached is not None:
                logger.debug("cache hit %s", key_url)
                return cached

        def read(response: requests.Response) -> bytes:
            return response.content

        body, response = self._with_retries(key_url, read, stream=False)
        fetched_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        encoding = response.encoding or response.apparent_encoding or "utf-8"
        text = body.decode(encoding, errors="replace")
        if check is not None:
            check(text, key_url)
        if use_cache and self.cache_dir is not None:
            self._write_cache(key_url, body, encoding=encoding, fetched_at=fetched_at)
        return Page(url=key_url, text=text, fetched_at=fetched_at, from_cache=False)

    def is_cached(self, url: str, *, params: Params = None) -> bool:
        """True when :meth:`get_page` would answer from the disk cache."""
        if self.cache_dir is None:
            return False
        return self._cache_paths(full_url(url, params))[1].exists()

    # -- files -------------------------------------------------------------------------------

    def download(
        self,
        url: str,
        dest: str | Path,
        *,
        validate: Callable[[Path], None] | None = None,
        chunk_size: int = 1 << 16,
        max_bytes: int | None = None,
    ) -> int:
        """Stream ``url`` into ``dest`` atomically; return the number of bytes written.

        The body goes to a temporary file beside ``dest``; ``validate(tmp_path)`` may raise
        :class:`FetchError` (or any :class:`core.errors.GalaxyMorphError`) to reject it, in which
        case ``dest`` is left untouched. Validation failures are not retried: the server sent a
        complete answer and would send it again. Nor is a body of more than ``max_bytes``: it is
        refused from its ``Content-Length`` before any byte is read, else as soon as the count
        passes the limit.
        """
        target = Path(dest)

        def too_large(what: str) -> FetchError:
            return FetchError(
                f"{key_url}: {what}; downloads are limited to {max_bytes:,} bytes (from max_image_pixels). "
                "Not kept; raise max_image_pixels if the image is genuine."
            )

        def save(response: requests.Response) -> int:
            announced = response.headers.get("Content-Length", "")
            if max_bytes is not None and announced.isdigit() and int(announced) > max_bytes:
                raise too_large(f"the server announces {int(announced):,} bytes")
            size = 0
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as handle:
                    for chunk in response.iter_content(chunk_size=chunk_size):
                        size += len(chunk)
                        if max_bytes is not None and size > max_bytes:
                            raise too_large("the body went past the limit")
                        handle.write(chunk)
                if validate is not None:
                    try:
                        validate(tmp)
                    except GalaxyMorphError as exc:
                        raise FetchError(f"{key_url}: {exc}") from exc
            return size

        key_url = full_url(url)
        size, _ = self._with_retries(key_url, save, stream=True)
        return size

    # -- internals ---------------------------------------------------------------------------

    def _with_retries(
        self, url: str, consume: Callable[[requests.Response], Any], *, stream: bool
    ) -> tuple[Any, requests.Response]:
        settings = self.settings
        attempts = settings.max_retries + 1
        last_problem = ""
        for attempt in range(attempts):
            if attempt:
                wait = min(self.backoff_cap, max(settings.request_interval, 0.05) * 2 ** (attempt - 1))
                logger.info("retrying %s in %.2f s after %s", url, wait, last_problem)
                time.sleep(wait)
            with self.limiter.slot(settings.request_interval, lock_path=request_lock_path(settings)):
                self.requests_made += 1
                try:
                    response = self.session.get(url, timeout=settings.request_timeout, stream=stream)
                except requests.Timeout:
                    last_problem = f"no answer within {settings.request_timeout} s"
                    continue
                except requests.ConnectionError as exc:
                    last_problem = f"connection failed ({_short(exc)})"
                    continue
                with response:
                    status = response.status_code
                    if status >= 500 or status == 429:
                        last_problem = f"HTTP {status}"
                        continue
                    if status >= 400:
                        raise FetchError(
                            f"{url}: HTTP {status} {response.reason}. Check the object name or the "
                            f"server (ned_base_url={settings.ned_base_url})."
                        )
                    try:
                        return consume(response), response
                    except (requests.Timeout, requests.ConnectionError) as exc:
                        # The body stalled or was cut off mid-transfer: worth another try.
                        last_problem = f"transfer interrupted ({_short(exc)})"
                        continue
        raise FetchError(
            f"{url}: gave up after {attempts} attempts; last problem: {last_problem}. Try again later "
            f"or raise max_retries / request_timeout."
        )

    def _cache_paths(self, key_url: str) -> tuple[Path, Path]:
        folder = Path(self.cache_dir or ".")
        digest = hashlib.sha256(key_url.encode("utf-8")).hexdigest()
        folder = folder / digest[:2]
        return folder / f"{digest}.body", folder / f"{digest}.json"

    def _read_cache(self, key_url: str) -> Page | None:
        body_path, meta_path = self._cache_paths(key_url)
        if not (body_path.exists() and meta_path.exists()):
            return None
        try:
            meta = read_json_object(meta_path, max_bytes=2**20)
            if meta.get("url") != key_url:
                return None
            body = read_regular_bytes(body_path, max_bytes=MAX_CACHED_PAGE_BYTES)
            text = body.decode(str(meta.get("encoding") or "utf-8"), errors="replace")
        except (OSError, ValueError, LookupError):  # not a regular file, too large, damaged, unknown encoding
            return None
        return Page(url=key_url, text=text, fetched_at=meta.get("fetched_at", ""), from_cache=True)

    def _write_cache(self, key_url: str, body: bytes, *, encoding: str, fetched_at: str) -> None:
        body_path, meta_path = self._cache_paths(key_url)
        # Body first, metadata last: a page counts as cached only once both are complete.
        atomic_write_bytes(body_path, body)
        atomic_write_json(meta_path, {"url": key_url, "encoding": encoding, "fetched_at": fetched_at})


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 160 else text[:157] + "..."
