"""Training runs and what they give: the runs table, models, comparisons, explanations, predictions."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core import runs
from core.learn import report
from core.paths import runs_root
from core.prepare import provenance
from ui.services.builds import dataset_source as dataset_source_of
from ui.services.keys import dataset_mtimes
from ui.services.pictures import for_display


def runs_table() -> pd.DataFrame:
    """Every run under the runs folder (see :func:`core.runs.list_runs`), newest last."""
    return runs.list_runs(runs_root())


@st.cache_resource(max_entries=8, show_spinner="Loading the model …")
def load_model(run_path: str, mtime: float) -> Any:
    """The trained Keras model of a run, loaded once per server."""
    from core.learn.models import load_run_model  # noqa: PLC0415 - Keras, only when a model is shown

    return load_run_model(runs.load_run(run_path))


def _model(run_path: str) -> Any:
    return load_model(str(run_path), (Path(run_path) / "model.keras").stat().st_mtime)


def load_runs(paths: tuple[str, ...]) -> list[runs.Run]:
    """The runs at ``paths`` (read fresh: a few small JSON files)."""
    return [runs.load_run(p) for p in paths]


@st.cache_data(max_entries=256, show_spinner="Checking the dataset the run was trained on …")
def _dataset_change(run_path: str, fingerprint: tuple[float, ...]) -> str | None:
    return provenance.dataset_change(runs.load_run(run_path), verify_data=True)


def dataset_change(run: runs.Run) -> str | None:
    """Why ``run``'s dataset folder no longer holds what it was trained on, data included
    (:func:`core.prepare.provenance.dataset_change`), or None; cached until the run's config or one of the
    dataset's files changes."""
    config_mtime = (run.path / "config.json").stat().st_mtime
    fingerprint = (*dataset_mtimes(str(run.config["dataset"]["path"])), config_mtime)
    return _dataset_change(str(run.path), fingerprint)


def changed_datasets(table: pd.DataFrame) -> list[tuple[str, str]]:
    """``(run folder, message)`` for each finished run of :func:`runs_table` whose dataset changed
    after training."""
    if table.empty:
        return []
    finished = table[table["status"] == "finished"]
    changes = [(run.path, dataset_change(run)) for run in load_runs(tuple(finished["path"]))]
    return [(str(path), message) for path, message in changes if message is not None]


def dataset_source(run: runs.Run) -> str | None:
    """The source folder a run's dataset was built from (for acknowledgements); None if unknown."""
    return dataset_source_of(run.config["dataset"]["path"])


def styled_summary(summary: pd.DataFrame, *, best: str | None = None) -> Any:
    """:func:`core.learn.report.summary_cells` with model labels; the accuracy of ``best`` (significantly better
    than every other model) in bold green, nothing bold otherwise."""
    table = report.summary_cells(summary)
    table.columns = [report.model_label(m) for m in table.columns]
    accuracy_row, best_column = table.index[0], report.model_label(best) if best is not None else None

    def highlight(column: pd.Series) -> list[str]:
        return ["font-weight: bold; color: #1a7f37" if column.name == best_column and row == accuracy_row else ""
                for row in column.index]

    return table.style.apply(highlight, axis=0)


def misclassified_gallery(run_list: list[runs.Run], *, limit: int) -> pd.DataFrame:
    """Test galaxies at least one model got wrong, over the pooled held-out predictions of every fold and seed
    (:func:`core.learn.report.misclassified_gallery`)."""
    return report.misclassified_gallery(run_list, limit=limit)


def saliency(run_path: str, image: np.ndarray) -> tuple[np.ndarray, int]:
    """Gradient saliency of the predicted class (via :func:`core.learn.models.saliency`), ready for display."""
    model = _model(run_path)
    x = image.astype(np.float32)
    predicted = int(np.argmax(model.predict(x[None], verbose=0)[0]))
    from core.learn import models  # noqa: PLC0415 - Keras loads only where a model is explained

    return for_display(models.saliency(model, x, predicted)), predicted


def grad_cam(run_path: str, image: np.ndarray) -> tuple[np.ndarray, int]:
    """Grad-CAM of the predicted class (via :func:`core.learn.models.grad_cam`), ready for display."""
    model = _model(run_path)
    x = image.astype(np.float32)
    predicted = int(np.argmax(model.predict(x[None], verbose=0)[0]))
    from core.learn import models  # noqa: PLC0415

    return for_display(models.grad_cam(model, x, predicted)), predicted


@st.cache_data(max_entries=8, show_spinner="Writing the report …")
def exports(paths: tuple[str, ...], left_out: tuple[str, ...] = ()) -> dict[str, bytes]:
    """``summary.csv``, ``summary.tex``, ``report.html`` … of these runs, as bytes for download; ``left_out``:
    the runs of the experiment left out by hand, named in the title of every file."""
    with tempfile.TemporaryDirectory() as tmp:
        written = report.write_report(load_runs(paths), tmp, excluded=load_runs(left_out))
        return {name: Path(p).read_bytes() for name, p in written.items()}


@st.cache_data(max_entries=4, show_spinner="Drawing every figure as PNG and SVG …")
def figures_zip(paths: tuple[str, ...], title: str) -> bytes:
    """Every comparison figure as PNG, SVG and HTML in one zip (:func:`core.learn.report.figures_zip`)."""
    payload, _ = report.figures_zip(load_runs(paths), title=title)
    return payload


def trained_preprocessing(run: runs.Run) -> provenance.TrainedPreprocessing:
    """The preprocessing ``run`` was trained with (:func:`core.prepare.provenance.trained_preprocessing`)."""
    return provenance.trained_preprocessing(run)


def predict(run_path: str, x: np.ndarray) -> dict[str, float]:
    """``{class: probability}`` of one preprocessed image by the run's model."""
    run = runs.load_run(run_path)
    return provenance.probabilities(_model(run_path), run.classes, x)
