"""What a run was trained on, whether its dataset folder still holds that, and classifying new
images the run's way.

A run's ``config.json`` stores its dataset's path, content hash and resolved preprocessing
(:func:`core.runs.create_run`). Classify and the misclassified gallery read that, not the dataset
folder's current manifest: a folder rebuilt under the same name after training (other images,
another crop) would otherwise make a model see inputs it was not trained on, silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.prepare import dataset, preprocessing

from core import runs
from core.errors import GalaxyMorphError
from core.images import ImageData


class DatasetChangedError(GalaxyMorphError):
    """A run's dataset folder no longer holds the data the run was trained on."""


@dataclass(frozen=True)
class TrainedPreprocessing:
    """The preprocessing a run's inputs went through.

    Attributes
    ----------
    config : PreprocessConfig
        Resolved (``centre`` as the builder used it for the source kind).
    stored : bool
        True when read from the run itself; False for runs older than that record, whose
        preprocessing is taken from the dataset folder's current manifest.
    """

    config: preprocessing.PreprocessConfig
    stored: bool


def dataset_change(run: runs.Run, *, verify_data: bool = False) -> str | None:
    """Why ``run``'s dataset folder no longer holds what the run was trained on; None when it does.

    Compares the content hash stored in the run with the folder's ``manifest.json``; with
    ``verify_data`` the hash is also recomputed from ``x.npy`` and ``meta.parquet`` (reads every
    image once), which catches a folder whose files were altered without its manifest.
    """
    record = run.config.get("dataset", {})
    path, trained = Path(str(record.get("path", ""))), record.get("content_hash")
    try:
        manifest = dataset.read_manifest(path)
    except GalaxyMorphError as exc:
        return f"run {run.id}: its dataset {path} cannot be read ({exc})"
    if manifest["content_hash"] != trained:
        n_now = sum(sum(per_class.values()) for per_class in manifest.get("counts", {}).values())
        return (f"run {run.id} was trained on an earlier version of the dataset {path.name} "
                f"(content hash {str(trained)[:12]}; the folder now holds {manifest['content_hash'][:12]}, "
                f"{n_now:,} images): it was rebuilt after training. Retrain on it, or rebuild the old "
                "parameters under another name.")
    if verify_data:
        try:
            loaded = dataset.load_dataset(path, mmap=True)
        except GalaxyMorphError as exc:  # a damaged x.npy or meta.parquet is a change too
            return f"run {run.id}: its dataset {path} cannot be read ({exc})"
        actual = dataset.content_hash(loaded.x, loaded.meta)
        if actual != trained:
            return (f"run {run.id}: the files of its dataset {path} were changed after training "
                    f"(content hash {actual[:12]}, manifest and run say {str(trained)[:12]}). Rebuild the "
                    "dataset with `python -m core build --force`, then retrain.")
    return None


def check_dataset_unchanged(run: runs.Run, *, verify_data: bool = False) -> None:
    """Raise :class:`DatasetChangedError` when :func:`dataset_change` finds a change."""
    problem = dataset_change(run, verify_data=verify_data)
    if problem is not None:
        raise DatasetChangedError(problem)


def trained_preprocessing(run: runs.Run) -> TrainedPreprocessing:
    """The preprocessing ``run`` was trained with: its own record, else (older runs) the dataset's manifest.

    Raises
    ------
    GalaxyMorphError
        When an older run's dataset manifest cannot be read, or a stored record is not a valid
        :class:`~core.prepare.preprocessing.PreprocessConfig`.
    """
    record = run.config.get("dataset", {})
    stored = record.get("preprocess")
    if isinstance(stored, dict):
        return TrainedPreprocessing(preprocessing.PreprocessConfig.from_dict(stored), stored=True)
    manifest = dataset.read_manifest(str(record.get("path", "")))
    params = manifest.get("params") if isinstance(manifest.get("params"), dict) else {}
    config = preprocessing.PreprocessConfig.from_dict(params.get("preprocess", {}))
    return TrainedPreprocessing(config, stored=False)


def input_steps(
    image: ImageData,
    config: preprocessing.PreprocessConfig,
    *,
    ra: float | None = None,
    dec: float | None = None,
) -> dict[str, np.ndarray]:
    """The preprocessing steps of one image as the builder ran them (``"final"`` is the model input).

    ``ra``/``dec`` (degrees) are the catalogue position: with ``centre="auto"`` or ``"wcs"`` the
    builder centred on it through the WCS, so an image classified without it may be centred on
    another peak. Non-finite positions count as absent, as in the builder.
    """
    return preprocessing.preprocess_steps(image, config, ra=_finite(ra), dec=_finite(dec))


def probabilities(model: Any, classes: list[str], x: np.ndarray) -> dict[str, float]:
    """``{class: probability}`` of one model input ``x`` (``(S, S, C)`` float32)."""
    proba = np.asarray(model.predict(x[None].astype(np.float32), verbose=0))[0]
    return {cls: float(p) for cls, p in zip(classes, proba)}


def dependent_runs(dataset_path: str | Path, runs_dir: str | Path | None = None) -> list[runs.Run]:
    """Finished runs in ``runs_dir`` trained on the dataset now in ``dataset_path`` (same path and hash).

    Runs whose folder is damaged, or that were trained on an earlier content of the folder, are
    not counted: replacing the folder cannot take from them what they already lost.
    """
    target = Path(dataset_path).resolve()
    try:
        current = dataset.read_manifest(target)["content_hash"]
    except GalaxyMorphError:
        return []
    found, _ = runs.scan_runs(runs_dir)
    return [
        run for run in found
        if run.status == "finished"
        and Path(str(run.config["dataset"]["path"])).resolve() == target
        and run.config["dataset"].get("content_hash") == current
    ]


def training_runs(dataset_path: str | Path, runs_dir: str | Path | None = None) -> list[runs.Run]:
    """Runs in ``runs_dir`` training on the dataset folder ``dataset_path`` right now.

    A run counts while its status is ``running`` and, on this host, its process is alive
    (:func:`core.runs.effective_status`); a killed one is ``stale`` and does not hold the folder.
    """
    target = Path(dataset_path).resolve()
    found, _ = runs.scan_runs(runs_dir)
    return [run for run in found
            if run.status == "running" and Path(str(run.config["dataset"].get("path", ""))).resolve() == target]


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None
