"""Evaluation: classification metrics, calibration, ROC, McNemar's test, aggregation over seeds.

Everything is computed with NumPy/SciPy from labels and probabilities (the tests check the
results against scikit-learn), so the numbers in ``metrics.json``, the comparison report and
the dashboard come from one place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from core.errors import GalaxyMorphError


def _check_labels(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise GalaxyMorphError(f"y_true and y_pred must be 1-D of equal length; got {y_true.shape} and {y_pred.shape}.")
    if len(y_true) == 0:
        raise GalaxyMorphError("y_true is empty; there is nothing to evaluate. Check the test split.")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.min() < 0 or y.max() >= n_classes:
            raise GalaxyMorphError(f"{name} must be in [0, {n_classes}); got range [{y.min()}, {y.max()}].")
    return y_true, y_pred


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, *, n_classes: int) -> np.ndarray:
    """Counts ``C[i, j]`` of true class ``i`` predicted as ``j``."""
    y_true, y_pred = _check_labels(y_true, y_pred, n_classes)
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def normalize_confusion(matrix: np.ndarray) -> np.ndarray:
    """Rows divided by their sums (recall on the diagonal); empty rows stay 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    sums = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)


def per_class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where undefined)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(matrix)
    predicted = matrix.sum(axis=0)
    support = matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, *, n_bins: int = 15) -> float:
    """ECE (Guo et al. 2017): ``sum_b |acc_b - conf_b| * n_b / N`` over equal-width confidence bins.

    Confidence is the top-class probability; bins are ``(k/n, (k+1)/n]``, with 0 in the first.
    """
    if n_bins < 1:
        raise GalaxyMorphError(f"n_bins must be >= 1; got {n_bins}. 15 is the usual choice.")
    proba = np.asarray(proba, dtype=np.float64)
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        members = bins == b
        ece += abs(correct[members].mean() - confidence[members].mean()) * members.sum()
    return float(ece / len(confidence))


def roc_curve(y_binary: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` over every distinct score, starting at (0, 0) with threshold +inf."""
    y_binary = np.asarray(y_binary, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    score, y_binary = score[order], y_binary[order]
    # The last index of each run of equal scores: ties move the curve diagonally, in one step.
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tps = np.cumsum(y_binary)[last]
    fps = (last + 1) - tps
    positives, negatives = y_binary.sum(), (~y_binary).sum()
    tpr = np.r_[0.0, tps / positives] if positives else np.full(len(last) + 1, np.nan)
    fpr = np.r_[0.0, fps / negatives] if negatives else np.full(len(last) + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, score[last]]


def roc_auc(y_binary: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (trapezoidal); NaN when one class is absent."""
    fpr, tpr, _ = roc_curve(y_binary, score)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    return float(np.trapezoid(tpr, fpr))


def evaluate_predictions(
    y_true: np.ndarray, proba: np.ndarray, *, classes: list[str], n_bins: int = 15
) -> dict[str, Any]:
    """Every test-set metric of one run, JSON-ready.

    Parameters
    ----------
    y_true : array of int, shape (N,)
    proba : array of float, shape (N, K)
        Predicted class probabilities; the prediction is the arg-max.
    classes : list of str
        The K class names.

    Returns
    -------
    dict
        ``accuracy, balanced_accuracy, macro_f1, roc_auc_macro, ece, n_test, per_class``
        (``{class: {precision, recall, f1, support, roc_auc}}``), ``confusion`` and
        ``confusion_normalized`` (lists of rows, true class by row).
    """
    proba = np.asarray(proba, dtype=np.float64)
    n_classes = len(classes)
    if proba.ndim != 2 or proba.shape[1] != n_classes:
        raise GalaxyMorphError(f"proba must have shape (N, {n_classes}); got {proba.shape}.")
    y_pred = proba.argmax(axis=1)
    matrix = confusion_matrix(y_true, y_pred, n_classes=n_classes)
    y_true = np.asarray(y_true, dtype=np.int64)
    scores = per_class_scores(matrix)
    aucs = [roc_auc(y_true == k, proba[:, k]) for k in range(n_classes)]
    present = scores["support"] > 0
    valid_auc = [a for a in aucs if not np.isnan(a)]
    return {
        "n_test": int(len(y_true)),
        "accuracy": float(np.trace(matrix) / matrix.sum()),
        "balanced_accuracy": float(scores["recall"][present].mean()),
        "macro_f1": float(scores["f1"].mean()),
        "roc_auc_macro": float(np.mean(valid_auc)) if valid_auc else float("nan"),
        "ece": expected_calibration_error(y_true, proba, n_bins=n_bins),
        "per_class": {
            cls: {
                "precision": float(scores["precision"][k]),
                "recall": float(scores["recall"][k]),
                "f1": float(scores["f1"][k]),
                "support": int(scores["support"][k]),
                "roc_auc": float(aucs[k]),
            }
            for k, cls in enumerate(classes)
        },
        "confusion": matrix.tolist(),
        "confusion_normalized": normalize_confusion(matrix).round(6).tolist(),
    }


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on paired predictions of two models.

    ``b``: galaxies A got right and B wrong; ``c``: the reverse; ``method`` is ``"exact"``
    (two-sided binomial, used when ``b + c < exact_below``) or ``"chi2"`` (with continuity
    correction).
    """

    b: int
    c: int
    statistic: float
    p_value: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, *, exact_below: int = 25) -> McNemarResult:
    """McNemar's test: do models A and B err on different galaxies more often than chance?

    Parameters
    ----------
    correct_a, correct_b : array of bool, shape (N,)
        Whether each model classified each (same, aligned) test galaxy correctly.
    exact_below : int
        Use the exact binomial test when the discordant count ``b + c`` is below this (the
        chi-square approximation is poor for small counts; 25 is the usual rule).
    """
    correct_a = np.asarray(correct_a, dtype=bool)
    correct_b = np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape:
        raise GalaxyMorphError(
            f"correct_a and correct_b must cover the same galaxies; got {correct_a.shape} and {correct_b.shape}."
        )
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    n = b + c
    if n == 0:
        return McNemarResult(b, c, 0.0, 1.0, "exact")
    if n < exact_below:
        p = min(1.0, 2.0 * float(stats.binom.cdf(min(b, c), n, 0.5)))
        return McNemarResult(b, c, float(min(b, c)), p, "exact")
    statistic = (abs(b - c) - 1.0) ** 2 / n
    return McNemarResult(b, c, float(statistic), float(stats.chi2.sf(statistic, 1)), "chi2")


def aggregate_seeds(table: pd.DataFrame, *, by: str = "model", columns: list[str] | None = None) -> pd.DataFrame:
    """Mean, sample standard deviation (ddof=1; NaN for a single seed) and count of ``columns`` per group.

    Returns a frame indexed by ``by`` with columns ``<metric>_mean``, ``<metric>_std`` and ``n_seeds``.
    """
    if by not in table.columns:
        raise GalaxyMorphError(f"by must be a column of the table; got {by!r}, columns are {list(table.columns)}.")
    columns = columns or [c for c in table.columns if c != by and pd.api.types.is_numeric_dtype(table[c])]
    grouped = table.groupby(by, sort=False)[columns]
    mean = grouped.mean().add_suffix("_mean")
    std = grouped.std(ddof=1).add_suffix("_std")
    out = pd.concat([mean, std], axis=1)
    out = out[[f"{c}_{s}" for c in columns for s in ("mean", "std")]]
    out["n_seeds"] = grouped.size()
    return out


def format_mean_std(mean: float, std: float, *, digits: int = 3) -> str:
    """``0.912 ± 0.004`` (just the mean when ``std`` is NaN)."""
    if std != std:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
