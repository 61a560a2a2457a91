"""Settings in one place: defaults, overridden by a TOML file, overridden by environment variables.

Settings are read when :func:`get_settings` is called, never frozen at import, so a test (or a
dashboard user) can point the same code at NED or at a local fixture server.

Precedence, lowest first:

1. the defaults of :class:`Settings`;
2. the TOML file named by ``GALAXY_MORPH_CONFIG``, else ``galaxy-morph.toml`` in the working
   directory, if it exists (top-level keys named like the fields below);
3. environment variables ``GALAXY_MORPH_<FIELD>`` (e.g. ``GALAXY_MORPH_NED_BASE_URL``);
4. keyword overrides passed to :func:`get_settings`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError

ENV_PREFIX = "GALAXY_MORPH_"
CONFIG_ENV = "GALAXY_MORPH_CONFIG"
DEFAULT_CONFIG_FILE = "galaxy-morph.toml"


@dataclass(frozen=True)
class Settings:
    """Every setting the tool reads.

    Attributes
    ----------
    data_dir : Path
        Root of everything the tool fetches and builds (``sample/``, ``ned/``, ``datasets/``).
    runs_dir : Path
        Where training runs are registered.
    ned_base_url : str
        NED's server root; ``cgi-bin/OBJatt`` and ``imgdata`` are resolved against it.
    ned_image_origin : str
        Origin prefixed to NED's relative image links. Empty means "same as ``ned_base_url``".
    request_interval : float
        Seconds between the starts of two requests to the server. NED asks for at least 1 s.
    request_timeout : float
        Seconds to wait for a response before retrying.
    max_retries : int
        Retries after a timeout or a 5xx, with exponential backoff.
    workers : int
        Processes for CPU work (reading and preprocessing images); 0 means one per core.
    joblib_backend : str
        joblib backend for parallel work (``loky``, ``threading``, or ``dask`` with a cluster).
    dask_scheduler : str
        Where image work runs on ``dask.distributed``: ``local:N`` for a ``LocalCluster`` of N
        worker processes, or a scheduler address (``tcp://host:8786``) whose workers see the same
        paths. Empty: joblib on this machine. See :mod:`core.parallel`.
    image_size : int
        Default side, in pixels, of the images a dataset is built at.
    user_agent : str
        Sent with every request so NED knows who is asking.
    max_image_pixels : int
        Largest image (width x height, all planes of a cube) any reader decodes; larger files,
        decompression bombs among them, are refused from their header before a pixel is read. It
        also caps how much a gzip file may inflate to and how large a download may be.
    """

    data_dir: Path = Path("data")
    runs_dir: Path = Path("runs")
    ned_base_url: str = "https://ned.ipac.caltech.edu/"
    ned_image_origin: str = ""
    request_interval: float = 1.0
    request_timeout: float = 30.0
    max_retries: int = 4
    workers: int = 0
    joblib_backend: str = "loky"
    dask_scheduler: str = ""
    image_size: int = 64
    user_agent: str = field(
        default="galaxy-morph/0.1 (galaxy morphology teaching tool; python-requests)"
    )
    max_image_pixels: int = 50_000_000

    @property
    def n_workers(self) -> int:
        """``workers`` with 0 resolved to the number of usable cores."""
        if self.workers > 0:
            return self.workers
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return max(1, os.cpu_count() or 1)

    @property
    def image_origin(self) -> str:
        """The origin for NED's image links, defaulting to the base URL's."""
        return (self.ned_image_origin or self.ned_base_url).rstrip("/")


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def get_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the settings now, from defaults, the TOML file, the environment and ``overrides``.

    Raises
    ------
    ConfigError
        If a key is unknown or a value cannot be converted to the field's type.
    """
    values: dict[str, Any] = {}
    path = Path(config_file or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)
    if path.exists():
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the file or unset {CONFIG_ENV}.") from exc
    elif config_file is not None or os.environ.get(CONFIG_ENV):
        raise ConfigError(f"config file {path} does not exist. Create it or unset {CONFIG_ENV}.")
    for name in _FIELDS:
        env_value = os.environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**{name: _convert(name, value, str(path)) for name, value in values.items()})


def _convert(name: str, value: Any, source: str) -> Any:
    if name not in _FIELDS:
        known = ", ".join(sorted(_FIELDS))
        raise ConfigError(f"unknown setting {name!r} (from {source} or overrides); known settings: {known}.")
    default = _FIELDS[name].default
    try:
        if isinstance(default, Path):
            return Path(value)
        if isinstance(default, bool):
            return str(value).lower() in {"1", "true", "yes", "on"}
        converted = type(default)(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"setting {name} must be {type(default).__name__}; got {value!r}. Fix it in {source} or "
            f"{ENV_PREFIX}{name.upper()}."
        ) from exc
    if isinstance(converted, (int, float)) and converted < 0:
        raise ConfigError(f"setting {name} must be >= 0; got {converted}. Use a non-negative number.")
    return converted
