"""Built datasets (the builds): which there are, which are damaged, their manifests, members and images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from core.errors import GalaxyMorphError
from core.learn.device import device_name
from core.paths import data_layout
from core.prepare import dataset
from ui.services.keys import dataset_mtimes
from ui.services.pictures import for_display


def list_dataset_paths() -> list[Path]:
    """Dataset folders under the data folder's ``datasets/`` (those with a manifest), newest first."""
    root = data_layout().datasets
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / "manifest.json").exists()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def dataset_path(name: str) -> Path:
    """The folder a dataset called ``name`` is built into (checked by the caller with :func:`core.io.check_folder_name`)."""
    return data_layout().dataset(name)


@st.cache_data(max_entries=32)
def _manifest(path: str, mtime: float) -> dict[str, Any]:
    return dataset.read_manifest(path)


def dataset_manifest(path: str) -> dict[str, Any]:
    """A dataset's checked ``manifest.json`` (classes, counts, parameters); ``{}`` when there is none.

    Raises
    ------
    core.prepare.dataset.DatasetDamagedError
        If the manifest is damaged.
    """
    manifest = Path(path) / "manifest.json"
    return _manifest(str(path), manifest.stat().st_mtime) if manifest.exists() else {}


@st.cache_data(max_entries=64, show_spinner=False)
def _dataset_problem(path: str, mtimes: tuple[float, ...]) -> str | None:
    try:
        dataset.check_dataset(path)
    except GalaxyMorphError as exc:
        return str(exc)
    return None


def dataset_problem(path: str | Path) -> str | None:
    """Why the dataset at ``path`` cannot be used (the file and what to do), or None when it can.

    Checks headers and the table only (:func:`core.prepare.dataset.check_dataset`), cached until one
    of its files changes.
    """
    return _dataset_problem(str(path), dataset_mtimes(str(path)))


def checked_datasets() -> tuple[list[Path], list[tuple[Path, str]]]:
    """The usable dataset folders, newest first, and ``(folder, message)`` for each damaged one."""
    good, damaged = [], []
    for path in list_dataset_paths():
        problem = dataset_problem(path)
        if problem is None:
            good.append(path)
        else:
            damaged.append((path, problem))
    return good, damaged


@st.cache_data(max_entries=4, show_spinner=False)
def _dataset_index(path: str) -> tuple[np.ndarray, dict[str, int]]:
    loaded = dataset.load_dataset(path, mmap=True)
    return np.asarray(loaded.x), {str(n): i for i, n in enumerate(loaded.names)}


@st.cache_data(max_entries=4, show_spinner=False)
def _dataset_members(path: str, mtimes: tuple[float, ...]) -> dict[str, tuple[str, str]]:
    meta = dataset.load_dataset(path, mmap=True).meta
    return {str(n): (str(label), str(split)) for n, label, split in zip(meta["name"], meta["label"], meta["split"])}


def dataset_member(path: str, name: str) -> tuple[str, str] | None:
    """``(class, split)`` of galaxy ``name`` in a dataset, or None when the dataset does not hold it
    (or is gone or damaged)."""
    if not Path(path).is_dir() or dataset_problem(path) is not None:
        return None
    return _dataset_members(str(path), dataset_mtimes(str(path))).get(str(name))


def dataset_image(path: str, name: str, *, raw: bool = False) -> np.ndarray | None:
    """The preprocessed image of ``name`` in a dataset (as the models saw it), or None (also when
    the dataset is gone or damaged)."""
    if not Path(path).is_dir() or dataset_problem(path) is not None:
        return None
    x, index = _dataset_index(str(path))
    if name not in index:
        return None
    image = x[index[name]]
    return image if raw else for_display(image)


def dataset_source(path: str) -> str | None:
    """The source folder the dataset at ``path`` was built from (for acknowledgements); None if unknown."""
    if dataset_problem(path) is not None:
        return None
    source = dataset_manifest(path).get("source")
    return source if isinstance(source, str) else None


@st.cache_resource(show_spinner=False)
def training_estimate(dataset_path: str, models: list[str], *, protocol: str, epochs: int | None,
                      runs_per_model: int) -> float | None:
    """Seconds a training job should take on a 2-core CPU (:func:`core.learn.estimate.training_seconds`), from the
    dataset's training galaxies and image side and the protocol's epochs (under tuned, times the search's
    candidates) and input sizes; None when the manifest lacks them."""
    from core.learn.estimate import training_seconds  # noqa: PLC0415
    from core.learn.training import model_defaults  # noqa: PLC0415 - imports Keras: only once a form is drawn
    from core.learn.tuning import TUNING_CANDIDATES  # noqa: PLC0415

    manifest = dataset_manifest(dataset_path)
    counts, shape = manifest.get("counts", {}), manifest.get("image_shape") or [None]
    train = counts.get("train") if isinstance(counts, dict) else None
    n_train = sum(v for v in train.values() if isinstance(v, int)) if isinstance(train, dict) else None
    if not n_train or not isinstance(shape[0], int):
        return None
    per_model = {m: epochs or int(model_defaults(m, protocol=protocol).get("epochs", 40)) for m in models}
    if protocol == "tuned":  # every candidate of the search trains as long as one run
        per_model = {m: e * len(TUNING_CANDIDATES) for m, e in per_model.items()}
    return training_seconds(models, n_train=n_train, side=shape[0], epochs=per_model, runs_per_model=runs_per_model,
                            protocol=protocol)


def device_label() -> str:
    """Where training would run (``CPU``, or the GPU's name)."""
    return device_name()
