"""The dataset container: arrays, per-image table and manifest in one folder.

A dataset folder (written by :func:`save_dataset`, read by :func:`load_dataset`) holds

- ``x.npy``: float32 images ``(N, S, S, C)`` in [0, 1];
- ``meta.parquet``: one row per image of ``x``: ``name, label, y, split`` (and ``path``);
- ``images.parquet``: every candidate image with its quality metrics, ``kept`` and ``reason``;
- ``manifest.json``: parameters, classes, counts per split and class, hashes.

Training, evaluation and the dashboard all read datasets through :func:`load_dataset`, so the
split and the preprocessing are the same for every model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import GalaxyMorphError

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
REQUIRED_META = ("name", "label", "y", "split")


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
        return pd.read_parquet(path) if path.exists() else pd.DataFrame()


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
    ``manifest`` is completed with ``version``, ``classes``, ``counts``, ``n_images`` and
    ``content_hash``. ``x`` may be the path of a float32 ``.npy`` file on the same file system
    as ``out`` (the builder writes one through a memory map): it is moved into the folder, never
    loaded whole.

    Raises
    ------
    GalaxyMorphError
        If the arrays and the table disagree (shapes, labels out of range, unknown splits).
    """
    out = Path(out)
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
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
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
        _replace_dir(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out


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
        If the folder is not a complete dataset.
    """
    path = Path(path)
    missing = [n for n in ("x.npy", "meta.parquet", "manifest.json") if not (path / n).exists()]
    if missing:
        raise GalaxyMorphError(
            f"{path} is not a dataset folder (missing {', '.join(missing)}). Build one with `python -m core build`."
        )
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    x = np.load(path / "x.npy", mmap_mode="r" if mmap else None)
    meta = pd.read_parquet(path / "meta.parquet")
    classes = list(manifest["classes"])
    _validate(x, meta, classes)
    return Dataset(path=path, x=x, meta=meta, classes=classes, manifest=manifest)


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
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{staging.name[-12:]}")
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
