"""Cache keys that follow files: a loader takes one as an argument, so a changed file misses the cache.

A key never starts with an underscore in a loader's signature: Streamlit does not hash underscore
arguments, and a fingerprint that is not hashed invalidates nothing.
"""

from __future__ import annotations

from pathlib import Path

SOURCE_FILES = ("catalog.csv", "images/manifest.csv")
"""The files that define a source's table (the catalogue, and NED's image manifest)."""
DATASET_FILES = ("manifest.json", "x.npy", "meta.parquet")
"""The files of a dataset folder that a loader reads."""


def source_fingerprint(source: str) -> tuple[float, ...]:
    """Modification time and size of the files that define a source, so caches follow its changes."""
    folder = Path(source)
    stamps: list[float] = []
    for name in SOURCE_FILES:
        stat = (folder / name).stat() if (folder / name).exists() else None
        stamps += [stat.st_mtime_ns, stat.st_size] if stat else [0, 0]
    return tuple(stamps)


def dataset_mtimes(path: str) -> tuple[float, ...]:
    """Modification times of a dataset's files (0 for one that is missing)."""
    folder = Path(path)
    return tuple((folder / name).stat().st_mtime if (folder / name).exists() else 0.0 for name in DATASET_FILES)
