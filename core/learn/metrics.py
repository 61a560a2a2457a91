"""Evaluation: classification metrics, their intervals, calibration, ROC, McNemar's test, aggregation.

Everything is computed with NumPy/SciPy from labels and probabilities (the tests check the
results against scikit-learn), so the numbers in ``metrics.json``, the comparison report and
the dashboard come from one place.

Intervals (95 % by default): Wilson score intervals for accuracy and per-class recall (binomial
proportions); a stratified percentile bootstrap (resampling galaxies within each true class,
seeded, 1,000 resamples, vectorised) for balanced accuracy, macro F1 and macro ROC AUC, whose
sampling distributions have no closed form.
"""

from __future__ import annotations

import warnings
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
    """Precision, recall, F1, support and predicted count per class from a confusion matrix (0 where undefined).

    ``matrix`` may be a stack ``(..., K, K)`` (one matrix per bootstrap resample); every
    output then has shape ``(..., K)``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diagonal(matrix, axis1=-2, axis2=-1)
    predicted = matrix.sum(axis=-2)
    support = matrix.sum(axis=-1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64),
            "predicted": predicted.astype(np.int64)}


def balanced_accuracy_from_confusion(matrix: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present in the truth, per matrix of a ``(..., K, K)`` stack."""
    scores = per_class_scores(matrix)
    present = scores["support"] > 0
    return (scores["recall"] * present).sum(axis=-1) / present.sum(axis=-1)


def macro_f1_from_confusion(matrix: np.ndarray) -> np.ndarray:
    """Mean F1 over the classes present in the truth **or** the predictions (scikit-learn's convention).

    A class that is neither true nor predicted for any test galaxy has an undefined F1 and is
    left out, as ``sklearn.metrics.f1_score(average="macro")`` does when it is not given
    ``labels``; a class that is present but never right counts as 0.
    """
    scores = per_class_scores(matrix)
    present = (scores["support"] > 0) | (scores["predicted"] > 0)
    return (scores["f1"] * present).sum(axis=-1) / present.sum(axis=-1)


def reliability_bins(y_true: np.ndarray, proba: np.ndarray, *, n_bins: int = 15) -> pd.DataFrame:
    """The reliability diagram's table: per equal-width confidence bin, its edges, count, mean confidence
    and accuracy (NaN for an empty bin).

    Confidence is the top-class probability; bins are ``(k/n, (k+1)/n]``, with 0 in the first.
    A calibrated model has accuracy equal to confidence in every bin.
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise GalaxyMorphError(f"n_bins must be an integer >= 1; got {n_bins!r}. 15 is the usual choice.")
    proba = np.asarray(proba, dtype=np.float64)
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / count
    edges = np.arange(n_bins + 1) / n_bins
    return pd.DataFrame({"low": edges[:-1], "high": edges[1:], "count": count, "confidence": mean_confidence,
                         "accuracy": accuracy})


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, *, n_bins: int = 15) -> float:
    """ECE (Guo et al. 2017): ``sum_b |acc_b - conf_b| * n_b / N`` over the bins of :func:`reliability_bins`."""
    table = reliability_bins(y_true, proba, n_bins=n_bins)
    filled = table[table["count"] > 0]
    gap = (filled["accuracy"] - filled["confidence"]).abs() * filled["count"]
    return float(gap.sum() / table["count"].sum())


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


def wilson_interval(successes: Any, n: Any, *, confidence: float = 0.95) -> tuple[Any, Any]:
    """Wilson score interval ``(low, high)`` for a binomial proportion ``successes / n``.

    Vectorised over arrays of counts; NaN where ``n`` is 0. Unlike the normal (Wald) interval it
    stays inside [0, 1] and keeps close to its nominal coverage for small ``n`` and proportions
    near 0 or 1, which is where test accuracies on a few hundred galaxies live.
    """
    _check_confidence(confidence)
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    # At k = 0 or k = n one bound is exactly 0 or 1; rounding would leave it a hair inside.
    low = np.where(k == 0, 0.0, np.clip(centre - half, 0, 1))
    high = np.where(k == n, 1.0, np.clip(centre + half, 0, 1))
    low, high = np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise GalaxyMorphError(f"confidence must be in (0, 1); got {confidence!r}. Use 0.95 for 95 % intervals.")


def stratified_bootstrap_indices(y_true: np.ndarray, *, n_resamples: int, seed: int) -> np.ndarray:
    """``(n_resamples, N)`` row indices: each resample draws, with replacement, as many galaxies of each
    true class as the test set has (so every class keeps its support and every resample can be scored).
    """
    if not isinstance(n_resamples, int) or n_resamples < 1:
        raise GalaxyMorphError(f"n_resamples must be a positive integer; got {n_resamples!r}. Use >= 1000.")
    y_true = np.asarray(y_true)
    rng = np.random.default_rng(seed)
    blocks = []
    for k in np.unique(y_true):
        members = np.flatnonzero(y_true == k)
        blocks.append(members[rng.integers(0, len(members), size=(n_resamples, len(members)))])
    return np.concatenate(blocks, axis=1)


def roc_auc_ranks(y_binary: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC along the last axis from ranks (Mann–Whitney U; ties count one half).

    Equal to the trapezoidal area under :func:`roc_curve`; vectorised over leading axes (one AUC
    per bootstrap resample). NaN where one class is absent.
    """
    y_binary = np.asarray(y_binary, dtype=bool)
    ranks = stats.rankdata(np.asarray(score, dtype=np.float64), axis=-1)
    positives = y_binary.sum(axis=-1).astype(np.float64)
    negatives = y_binary.shape[-1] - positives
    u = (ranks * y_binary).sum(axis=-1) - positives * (positives + 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((positives > 0) & (negatives > 0), u / (positives * negatives), np.nan)


def bootstrap_intervals(
    y_true: np.ndarray, proba: np.ndarray, *, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, list[float]]:
    """Stratified percentile-bootstrap intervals of balanced accuracy, macro F1 and macro ROC AUC.

    Parameters
    ----------
    y_true : array of int, shape (N,)
    proba : array of float, shape (N, K)
    n_resamples : int
        Bootstrap resamples (all computed at once as ``(n_resamples, N)`` index arrays).
    seed : int
        Seeds the resampling: the same inputs give the same intervals.
    confidence : float

    Returns
    -------
    dict
        ``{"balanced_accuracy": [low, high], "macro_f1": [...], "roc_auc_macro": [...]}``.
    """
    _check_confidence(confidence)
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    n_classes = proba.shape[1]
    y_pred = proba.argmax(axis=1)
    index = stratified_bootstrap_indices(y_true, n_resamples=n_resamples, seed=seed)
    true, pred = y_true[index], y_pred[index]
    offset = np.arange(n_resamples)[:, None] * n_classes * n_classes
    matrices = np.bincount((offset + true * n_classes + pred).ravel(), minlength=n_resamples * n_classes**2)
    matrices = matrices.reshape(n_resamples, n_classes, n_classes)
    aucs = np.stack([roc_auc_ranks(true == k, proba[index, k]) for k in range(n_classes)], axis=-1)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows when one class only: NaN interval
        auc_macro = np.nanmean(aucs, axis=-1)
    samples = {"balanced_accuracy": balanced_accuracy_from_confusion(matrices),
               "macro_f1": macro_f1_from_confusion(matrices), "roc_auc_macro": auc_macro}
    alpha = 1 - confidence
    out = {}
    for name, values in samples.items():
        if np.isnan(values).all():
            out[name] = [float("nan"), float("nan")]
        else:
            low, high = np.nanquantile(values, [alpha / 2, 1 - alpha / 2])
            out[name] = [float(low), float(high)]
    return out


def evaluate_predictions(
    y_true: np.ndarray, proba: np.ndarray, *, classes: list[str], n_bins: int = 15, n_resamples: int = 1000,
    seed: int = 0, confidence: float = 0.95,
) -> dict[str, Any]:
    """Every test-set metric of one run, with intervals, JSON-ready.

    Parameters
    ----------
    y_true : array of int, shape (N,)
    proba : array of float, shape (N, K)
        Predicted class probabilities; the prediction is the arg-max.
    classes : list of str
        The K class names.
    n_resamples, seed, confidence
        The bootstrap's resamples and seed, and the intervals' confidence level.

    Returns
    -------
    dict
        ``accuracy, balanced_accuracy, macro_f1, roc_auc_macro, ece, n_test``; ``<metric>_ci``
        (``[low, high]``) for the first four; ``intervals`` (how they were computed);
        ``per_class`` (``{class: {precision, recall, recall_ci, f1, support, roc_auc}}``),
        ``confusion`` and ``confusion_normalized`` (lists of rows, true class by row).
        Macro F1 averages over the classes present in the truth or the predictions
        (:func:`macro_f1_from_confusion`).
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
    valid_auc = [a for a in aucs if not np.isnan(a)]
    correct = int(np.trace(matrix))
    recall_low, recall_high = wilson_interval(np.diag(matrix), scores["support"], confidence=confidence)
    boot = bootstrap_intervals(y_true, proba, n_resamples=n_resamples, seed=seed, confidence=confidence)
    return {
        "n_test": int(len(y_true)),
        "accuracy": float(correct / matrix.sum()),
        "accuracy_ci": list(wilson_interval(correct, int(matrix.sum()), confidence=confidence)),
        "balanced_accuracy": float(balanced_accuracy_from_confusion(matrix)),
        "balanced_accuracy_ci": boot["balanced_accuracy"],
        "macro_f1": float(macro_f1_from_confusion(matrix)),
        "macro_f1_ci": boot["macro_f1"],
        "roc_auc_macro": float(np.mean(valid_auc)) if valid_auc else float("nan"),
        "roc_auc_macro_ci": boot["roc_auc_macro"],
        "ece": expected_calibration_error(y_true, proba, n_bins=n_bins),
        "intervals": {"confidence": confidence, "accuracy": "wilson", "recall": "wilson",
                      "balanced_accuracy": "bootstrap", "macro_f1": "bootstrap", "roc_auc_macro": "bootstrap",
                      "bootstrap": {"kind": "stratified percentile", "resamples": n_resamples, "seed": seed}},
        "per_class": {
            cls: {
                "precision": float(scores["precision"][k]),
                "recall": float(scores["recall"][k]),
                "recall_ci": [float(recall_low[k]), float(recall_high[k])],
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


def holm(p_values: Any) -> np.ndarray:
    """Holm's step-down adjustment (Holm 1979) of p-values for a family of tests.

    Sorted ascending, the ``i``-th smallest of ``m`` p-values becomes ``(m - i + 1) p_(i)``, made
    monotone with a running maximum and capped at 1. Rejecting where the adjusted value is below
    alpha controls the family-wise error rate at alpha. NaN entries are left out of the family and
    stay NaN.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    if len(valid) == 0:
        return out
    order = valid[np.argsort(p[valid], kind="mergesort")]
    m = len(order)
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


@dataclass(frozen=True)
class ResampledTResult:
    """Nadeau & Bengio's corrected resampled t-test on per-split differences (or values) ``d_j``."""

    mean: float
    low: float
    high: float
    statistic: float
    p_value: float
    n_splits: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def corrected_resampled_t(values: Any, *, test_train_ratio: float, confidence: float = 0.95) -> ResampledTResult:
    """Corrected resampled t-test and interval over ``J`` train/test splits (Nadeau & Bengio 2003).

    The ``J`` test sets overlap the other splits' training sets, so the per-split values are
    correlated and the plain t-test is far too liberal. The corrected variance is
    ``(1/J + n_test/n_train) * S²`` (``S²`` the sample variance of the values, ddof 1); the
    statistic ``mean / sqrt(that)`` has ``J - 1`` degrees of freedom. For k-fold
    cross-validation repeated with different split seeds this is Bouckaert & Frank's (2004)
    corrected repeated k-fold test.

    Parameters
    ----------
    values : array of float, shape (J,)
        One value per split (an accuracy difference for a paired test, or a metric for an
        interval), already averaged over training seeds within the split.
    test_train_ratio : float
        ``n_test / n_train`` of the splits.
    confidence : float
        Level of the interval ``[low, high]`` around the mean.

    Raises
    ------
    GalaxyMorphError
        With fewer than two splits: the variance between splits is unknown.
    """
    _check_confidence(confidence)
    d = np.asarray(values, dtype=np.float64)
    if d.ndim != 1 or len(d) < 2:
        raise GalaxyMorphError(f"values must hold one number per split for at least 2 splits; got shape {d.shape}. "
                               "Train with --folds or --repeats to get several splits.")
    if not test_train_ratio > 0:
        raise GalaxyMorphError(f"test_train_ratio must be > 0; got {test_train_ratio!r}. Use n_test / n_train.")
    n = len(d)
    mean = float(d.mean())
    se = float(np.sqrt((1 / n + test_train_ratio) * d.var(ddof=1)))
    quantile = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
    if se == 0:
        statistic = 0.0 if mean == 0 else float(np.copysign(np.inf, mean))
        p_value = 1.0 if mean == 0 else 0.0
    else:
        statistic = mean / se
        p_value = float(2 * stats.t.sf(abs(statistic), n - 1))
    return ResampledTResult(mean, mean - quantile * se, mean + quantile * se, float(statistic), p_value, n)


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
