"""Where everything lives: every folder of the data and runs layout, derived from the settings here only.

::

    <data_dir>/
        sample/                  the built-in synthetic sample (``python -m core sample``)
        gz1/                     the shipped SDSS / Galaxy Zoo 1 cutouts
        ned/                     the NED scrape: catalog.csv, images/ (manifest.csv, the FITS files)
        imported/NAME/           a user's import (``python -m core import``)
        datasets/NAME/           built datasets (``python -m core build``)
        jobs/                    the dashboard's background jobs
        cache/http/              NED's pages, cached
        .cache/ned-requests.lock the polite limiter's lock, shared by every process
    <runs_dir>/RUN_ID/           training runs

Settings are read when a function is called (:func:`data_layout`), never frozen at import; a
folder given on a command line or in a spec wins over these defaults, where the caller offers one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.config import Settings, get_settings


@dataclass(frozen=True)
class DataLayout:
    """The folders under one data folder, ``root``."""

    root: Path

    @property
    def sample(self) -> Path:
        """The built-in synthetic sample."""
        return self.root / "sample"

    @property
    def gz1(self) -> Path:
        """The shipped SDSS / Galaxy Zoo 1 sample."""
        return self.root / "gz1"

    @property
    def ned(self) -> Path:
        """The NED scrape (``catalog.csv``) and its images."""
        return self.root / "ned"

    @property
    def ned_catalogue(self) -> Path:
        """The scraper's catalogue, which ``fetch`` reads by default."""
        return self.ned / "catalog.csv"

    @property
    def ned_images(self) -> Path:
        """Where ``fetch`` puts NED's images (with their ``manifest.csv``)."""
        return self.ned / "images"

    @property
    def ned_manifest(self) -> Path:
        """One line per fetched (or failed) image of the NED source."""
        return self.ned_images / "manifest.csv"

    @property
    def imported(self) -> Path:
        """The folder that holds one folder per import."""
        return self.root / "imported"

    def imported_source(self, name: str) -> Path:
        """The folder of the import called ``name`` (checked by the caller with :func:`core.io.check_folder_name`)."""
        return self.imported / name

    @property
    def datasets(self) -> Path:
        """The folder that holds one folder per built dataset."""
        return self.root / "datasets"

    def dataset(self, name: str) -> Path:
        """The folder of the dataset called ``name`` (checked by the caller with :func:`core.io.check_folder_name`)."""
        return self.datasets / name

    @property
    def jobs(self) -> Path:
        """The dashboard's background jobs: record, log, exit and progress files."""
        return self.root / "jobs"

    @property
    def http_cache(self) -> Path:
        """NED's pages, cached by the polite client."""
        return self.root / "cache" / "http"

    @property
    def request_lock(self) -> Path:
        """The lock file every process that talks to NED through this data folder shares."""
        return self.root / ".cache" / "ned-requests.lock"


def data_layout(settings: Settings | None = None, *, data_dir: str | os.PathLike[str] | None = None) -> DataLayout:
    """The layout under ``data_dir``, else under the settings' ``data_dir`` (read now when not given)."""
    if data_dir is not None:
        return DataLayout(Path(data_dir))
    return DataLayout(Path((settings if settings is not None else get_settings()).data_dir))


def runs_root(settings: Settings | None = None) -> Path:
    """The folder of training runs: the settings' ``runs_dir`` (read now when not given)."""
    return Path((settings if settings is not None else get_settings()).runs_dir)
