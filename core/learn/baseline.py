"""A classical floor for every comparison: gradient boosting on hand-made morphology features.

A network that does not beat this baseline on the same split has learnt nothing that a few
numbers per galaxy (how concentrated, how elongated, how symmetric, what colour) do not already
say. :func:`morphology_features` measures those numbers on the dataset's own images
(``x.npy``: already cropped, stretched and resized, so the baseline sees exactly what the
networks see); :func:`train_baseline` fits scikit-learn's ``HistGradientBoostingClassifier`` on
the training split and writes a run folder like a network's (``config.json``, ``history.csv``,
``metrics.json``, ``predictions.csv``, ``model.joblib``), so ``compare`` and the Model comparison
page show it beside the CNNs under the model name ``baseline``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import runs
from core.prepare.dataset import Dataset
from core.errors import ConfigError
from core.io import atomic_path, atomic_write_json, atomic_write_text
from core.learn.metrics import evaluate_predictions

logger = logging.getLogger(__name__)

BASELINE_MODEL = "baseline"
PROFILE_BINS = 8
COLOUR_BINS = 4


@dataclass(frozen=True)
class BaselineConfig:
    """Parameters of the gradient-boosting baseline; validated on construction.

    Attributes
    ----------
    max_iter : int
        Boosting iterations (trees per class).
    learning_rate : float
    max_leaf_nodes : int
    l2_regularization : float
    class_weight : {"balanced", None}
        "balanced" weights classes like the networks' ``class_weight="balanced"``.
    seed : int
    folds, fold, split_seed : int, int, int or None
        Which train/val/test split, as for the networks (:func:`core.prepare.splits.resplit`): the baseline
        trained on the same folds is paired with each network fold by fold on the Comparison page.
    """

    max_iter: int = 200
    learning_rate: float = 0.05
    max_leaf_nodes: int = 15
    l2_regularization: float = 1.0
    class_weight: str | None = "balanced"
    seed: int = 0
    folds: int = 0
    fold: int = 0
    split_seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ConfigError(f"max_iter must be a positive integer; got {self.max_iter!r}. Try 200.")
        if not 0 < self.learning_rate <= 1:
            raise ConfigError(f"learning_rate must be in (0, 1]; got {self.learning_rate!r}. Try 0.05.")
        if not isinstance(self.max_leaf_nodes, int) or self.max_leaf_nodes < 2:
            raise ConfigError(f"max_leaf_nodes must be an integer >= 2; got {self.max_leaf_nodes!r}. Try 15.")
        if self.l2_regularization < 0:
            raise ConfigError(f"l2_regularization must be >= 0; got {self.l2_regularization!r}. Try 1.0.")
        if self.class_weight == "none":
            object.__setattr__(self, "class_weight", None)
        if self.class_weight not in ("balanced", None):
            raise ConfigError(f"class_weight must be 'balanced', 'none' or None; got {self.class_weight!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0; got {self.seed!r}.")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 0 or self.folds in (1, 2):
            raise ConfigError(f"folds must be 0 (the dataset's own split) or an integer >= 3; got {self.folds!r}. "
                              "Try 5.")
        if isinstance(self.fold, bool) or not isinstance(self.fold, int) or not 0 <= self.fold < max(self.folds, 1):
            raise ConfigError(f"fold must be an integer in [0, {max(self.folds, 1)}); got {self.fold!r}.")
        if self.split_seed is not None and (isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int)
                                            or self.split_seed < 0):
            raise ConfigError(f"split_seed must be None or an integer >= 0; got {self.split_seed!r}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (what ``config.json`` stores under ``params``). The split is written only when
        it is not the dataset's own, so runs recorded before folds keep their config hash (and ``--resume``
        still finds them)."""
        params = dataclasses.asdict(self)
        if not self.folds and self.split_seed is None:
            for key in ("folds", "fold", "split_seed"):
                params.pop(key)
        return params


def feature_names(channels: int) -> list[str]:
    """The columns of :func:`morphology_features` for images with ``channels`` channels."""
    names = ["r20", "r50", "r80", "r90", "concentration", "axis_ratio", "asymmetry", "gini", "peak_fraction"]
    names += [f"profile_{k}" for k in range(PROFILE_BINS)]
    if channels == 3:
        names += ["colour_02", "colour_12"]
        names += [f"colour_02_ring{k}" for k in range(COLOUR_BINS)]
    return names


def morphology_features(x: np.ndarray) -> pd.DataFrame:
    """Simple morphology numbers of each image, about the image centre (images are centred).

    Per image, on the luminance (channel mean) minus the border's median:

    - ``r20 … r90``: radii holding 20–90 % of the flux inside the inscribed circle, as a fraction
      of the half side; ``concentration`` = 5 log10(r80 / r20) (Conselice 2003);
    - ``axis_ratio``: minor over major axis from the flux-weighted second moments inside r90;
    - ``asymmetry``: Σ|I − I₁₈₀| / 2Σ|I| inside r90 (rotation by 180° about the centre);
    - ``gini``: the Gini coefficient of the pixels inside r90 (Lotz et al. 2004);
    - ``peak_fraction``: the brightest pixel over the flux inside r90;
    - ``profile_k``: the mean brightness in 8 rings out to the half side, over the central ring's;
    - with 3 channels, ``colour_02`` / ``colour_12``: log flux ratios of channel 0 and 1 to
      channel 2 inside r50 (for gri cutouts: i-band-redness), and ``colour_02_ring{k}`` the same
      in 4 rings (a colour gradient: red bulge, blue disc).

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, S, S, C)`` with C = 1 or 3, as in a dataset's ``x.npy``.

    Returns
    -------
    pandas.DataFrame
        One row per image, columns :func:`feature_names` ``(C)``; all finite.

    Raises
    ------
    ConfigError
        If ``x`` is not a batch of square 1- or 3-channel images of at least 8 px.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4 or x.shape[1] != x.shape[2] or x.shape[3] not in (1, 3) or x.shape[1] < 8:
        raise ConfigError(f"x must have shape (N, S, S, 1 or 3) with S >= 8; got {x.shape}. Pass a dataset's x.")
    n, side, _, channels = x.shape
    centre = (side - 1) / 2
    yy, xx = np.mgrid[0:side, 0:side]
    dx, dy = xx - centre, yy - centre
    radius = np.hypot(dx, dy) / (side / 2)
    inside = radius <= 1.0
    border = np.zeros((side, side), dtype=bool)
    border[:2, :], border[-2:, :], border[:, :2], border[:, -2:] = True, True, True, True
    order = np.argsort(radius[inside])
    sorted_radius = radius[inside][order]
    rings = np.minimum((radius * PROFILE_BINS).astype(int), PROFILE_BINS)
    colour_rings = np.minimum((radius * COLOUR_BINS).astype(int), COLOUR_BINS)
    rows = []
    for image in x:
        planes = image - np.median(image[border], axis=0)
        lum = np.clip(planes.mean(axis=-1), 0.0, None)
        rows.append(_features(lum, np.clip(planes, 0.0, None), channels=channels, radius=radius, inside=inside,
                              order=order, sorted_radius=sorted_radius, rings=rings, colour_rings=colour_rings,
                              dx=dx, dy=dy))
    table = pd.DataFrame(rows, columns=feature_names(channels))
    return table.replace([np.inf, -np.inf], np.nan).fillna(0.0)


def _features(lum: np.ndarray, planes: np.ndarray, *, channels: int, radius: np.ndarray, inside: np.ndarray,
              order: np.ndarray, sorted_radius: np.ndarray, rings: np.ndarray, colour_rings: np.ndarray,
              dx: np.ndarray, dy: np.ndarray) -> list[float]:
    tiny = 1e-12
    growth = np.cumsum(lum[inside][order])
    total = growth[-1] if growth.size else 0.0
    if total <= tiny:
        return [0.0] * len(feature_names(channels))
    r20, r50, r80, r90 = (float(sorted_radius[min(np.searchsorted(growth, f * total), growth.size - 1)])
                          for f in (0.2, 0.5, 0.8, 0.9))
    concentration = 5 * np.log10(max(r80, tiny) / max(r20, 1e-3))
    aperture = radius <= max(r90, 2 / len(lum))
    weights = lum * aperture
    flux = weights.sum() + tiny
    mx, my = (weights * dx).sum() / flux, (weights * dy).sum() / flux
    cxx = (weights * (dx - mx) ** 2).sum() / flux
    cyy = (weights * (dy - my) ** 2).sum() / flux
    cxy = (weights * (dx - mx) * (dy - my)).sum() / flux
    eig = np.linalg.eigvalsh(np.array([[cxx, cxy], [cxy, cyy]]))
    axis_ratio = float(np.sqrt(max(eig[0], 0.0) / max(eig[1], tiny)))
    rotated = lum[::-1, ::-1]
    asymmetry = float(np.abs(lum - rotated)[aperture].sum() / (2 * np.abs(lum)[aperture].sum() + tiny))
    values = np.sort(lum[aperture])
    k = np.arange(1, values.size + 1)
    gini = float(((2 * k - values.size - 1) * values).sum() / ((values.size - 1) * values.sum() + tiny)) \
        if values.size > 1 else 0.0
    peak_fraction = float(lum[aperture].max() / flux)
    ring_means = np.array([lum[rings == b].mean() if (rings == b).any() else 0.0 for b in range(PROFILE_BINS)])
    profile = list(ring_means / (ring_means[0] + tiny))
    out = [r20, r50, r80, r90, concentration, axis_ratio, asymmetry, gini, peak_fraction, *profile]
    if channels == 3:
        core = radius <= max(r50, 2 / len(lum))
        c0, c1, c2 = (planes[..., c][core].sum() + 1e-6 for c in range(3))
        out += [float(np.log(c0 / c2)), float(np.log(c1 / c2))]
        for b in range(COLOUR_BINS):
            ring = colour_rings == b
            out.append(float(np.log((planes[..., 0][ring].sum() + 1e-6) / (planes[..., 2][ring].sum() + 1e-6))))
    return out


def _classifier(config: BaselineConfig) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: PLC0415 - only a baseline run needs it

    return HistGradientBoostingClassifier(
        max_iter=config.max_iter, learning_rate=config.learning_rate, max_leaf_nodes=config.max_leaf_nodes,
        l2_regularization=config.l2_regularization, class_weight=config.class_weight, early_stopping=False,
        random_state=config.seed,
    )


def _log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1.0))))


def train_baseline(dataset: Dataset, config: BaselineConfig, *, run_dir: str | Path) -> dict[str, Any]:
    """Fit the baseline on the training split, score validation and test, write the run folder.

    Parameters
    ----------
    dataset : Dataset
        Its split is used as is; ``val`` is only scored (``history.csv``), ``test`` evaluated once.
    config : BaselineConfig
    run_dir : Path
        A folder made by :func:`core.runs.create_run` (model ``"baseline"``).

    Returns
    -------
    dict
        The test metrics written to ``metrics.json`` (those of :func:`core.learn.metrics.evaluate_predictions`
        plus ``train_seconds``, ``inference_img_per_s`` and ``val_accuracy``; no ``params``: trees
        have no weights to count).
    """
    import joblib  # noqa: PLC0415

    from core.prepare.splits import resplit  # noqa: PLC0415

    run_dir = Path(run_dir)
    dataset = resplit(dataset, folds=config.folds, fold=config.fold, split_seed=config.split_seed)
    classes = list(dataset.classes)
    parts = {s: dataset.subset(s) for s in ("train", "val", "test")}
    for split, (_, y, _) in parts.items():
        if len(y) == 0:
            raise ConfigError(f"dataset {dataset.path}: the {split} split is empty. Rebuild it with more images.")
    runs.set_status(run_dir, "running", device="CPU (scikit-learn)", classes=classes,
                    n_train=len(parts["train"][1]), n_val=len(parts["val"][1]), n_test=len(parts["test"][1]))
    try:
        started = time.perf_counter()
        train_features = morphology_features(parts["train"][0])
        model = _classifier(config).fit(train_features, parts["train"][1])
        train_seconds = time.perf_counter() - started

        def proba(split: str) -> np.ndarray:
            """Features and probabilities of one split (inference timing includes the features)."""
            out = np.zeros((len(parts[split][1]), len(classes)))
            # predict_proba's columns are model.classes_; a class missing from train keeps 0.
            out[:, model.classes_] = model.predict_proba(morphology_features(parts[split][0]))
            return out

        train_proba, val_proba = proba("train"), proba("val")
        started = time.perf_counter()
        test_proba = proba("test")
        infer_seconds = time.perf_counter() - started
        y_train, y_val, y_test = parts["train"][1], parts["val"][1], parts["test"][1]
        history = pd.DataFrame([{
            "epoch": 1, "loss": _log_loss(y_train, train_proba),
            "accuracy": float((train_proba.argmax(1) == y_train).mean()),
            "val_loss": _log_loss(y_val, val_proba), "val_accuracy": float((val_proba.argmax(1) == y_val).mean()),
            "learning_rate": config.learning_rate, "seconds": round(train_seconds, 3),
        }])
        metrics = evaluate_predictions(y_test, test_proba, classes=classes)
        metrics.update(train_seconds=round(train_seconds, 3),
                       epochs_done=1, best_epoch=1, best_val_loss=float(history["val_loss"].iloc[0]),
                       val_accuracy=float(history["val_accuracy"].iloc[0]), stopped_early=False,
                       inference_img_per_s=round(len(y_test) / infer_seconds, 1) if infer_seconds > 0 else None)
        names = np.asarray(classes, dtype=object)
        predictions = pd.DataFrame({"name": parts["test"][2], "true": names[y_test], "pred": names[test_proba.argmax(1)]})
        for k, cls in enumerate(classes):
            predictions[f"prob_{cls}"] = test_proba[:, k].round(6)
        with atomic_path(run_dir / "model.joblib") as tmp:
            joblib.dump({"model": model, "features": list(train_features.columns), "classes": classes}, tmp)
        atomic_write_text(run_dir / "history.csv", history.to_csv(index=False))
        atomic_write_text(run_dir / "predictions.csv", predictions.to_csv(index=False))
        atomic_write_json(run_dir / "metrics.json", metrics)
    except Exception as exc:
        runs.set_status(run_dir, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    runs.set_status(run_dir, "finished", epochs_done=1,
                    timings={"train_seconds": metrics["train_seconds"], "inference_seconds": round(infer_seconds, 4)})
    logger.info("baseline: validation accuracy %.3f, test accuracy %.3f", metrics["val_accuracy"], metrics["accuracy"])
    return metrics


def train_baseline_runs(
    dataset_path: str | Path,
    *,
    seeds: list[int],
    runs_dir: str | Path | None = None,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    folds: int = 0,
    repeats: int = 1,
) -> list[dict[str, Any]]:
    """One baseline run per seed (and fold and repeat, as :func:`core.learn.training.train_many` makes them for the
    networks) on a dataset, in the shape of its outcomes.

    With ``resume``, a run whose experiment (same parameters and split, same dataset) already finished is skipped.
    """
    from core.prepare.dataset import load_dataset  # noqa: PLC0415

    dataset = load_dataset(dataset_path)
    root = Path(runs_dir) if runs_dir is not None else runs.default_runs_dir()
    outcomes = []
    split_seeds: list[int | None] = list(range(repeats)) if folds or repeats > 1 else [None]
    plans = [(seed, fold, split_seed) for split_seed in split_seeds for fold in range(max(folds, 1)) for seed in seeds]
    for seed, fold, split_seed in plans:
        config = BaselineConfig(seed=seed, folds=folds, fold=fold, split_seed=split_seed, **(overrides or {}))
        where = {"fold": fold if folds else None, "split_seed": split_seed}
        params = config.to_dict()
        if resume:
            finished, _ = runs.find_resumable(root, config_hash_=runs.config_hash(params, dataset.content_hash))
            if finished is not None:
                outcomes.append({"model": BASELINE_MODEL, "seed": seed, **where, "run_dir": str(finished.path),
                                 "status": "skipped (finished)", "accuracy": finished.metrics.get("accuracy"),
                                 "error": None})
                continue
        run_dir = runs.create_run(root, model=BASELINE_MODEL, seed=seed, params=params, dataset_path=dataset.path,
                                  dataset_hash=dataset.content_hash, dataset_manifest=dataset.manifest)
        try:
            metrics = train_baseline(dataset, config, run_dir=run_dir)
            outcomes.append({"model": BASELINE_MODEL, "seed": seed, **where, "run_dir": str(run_dir),
                             "status": "finished", "accuracy": metrics["accuracy"], "error": None})
        except Exception as exc:  # like train_many: one failing run does not stop the others
            logger.error("run %s failed: %s", run_dir.name, exc)
            outcomes.append({"model": BASELINE_MODEL, "seed": seed, **where, "run_dir": str(run_dir),
                             "status": "failed", "accuracy": None, "error": f"{type(exc).__name__}: {exc}"})
    return outcomes
