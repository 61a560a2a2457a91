"""Metrics against scikit-learn, hand-worked cases, and McNemar's test against worked examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from core.errors import GalaxyMorphError
from core.metrics import (
    aggregate_seeds,
    confusion_matrix,
    evaluate_predictions,
    expected_calibration_error,
    format_mean_std,
    mcnemar,
    normalize_confusion,
    roc_auc,
    roc_curve,
)

CLASSES = ["E", "S0", "Spiral", "Irr"]


def _random_predictions(seed: int, n: int = 200, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_predictions_matches_scikit_learn(seed):
    y, proba = _random_predictions(seed)
    pred = proba.argmax(axis=1)
    m = evaluate_predictions(y, proba, classes=CLASSES)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, pred, labels=range(4), zero_division=0)
    for k, cls in enumerate(CLASSES):
        assert m["per_class"][cls]["precision"] == pytest.approx(precision[k])
        assert m["per_class"][cls]["recall"] == pytest.approx(recall[k])
        assert m["per_class"][cls]["f1"] == pytest.approx(f1[k])
        assert m["per_class"][cls]["support"] == support[k]
        assert m["per_class"][cls]["roc_auc"] == pytest.approx(skm.roc_auc_score(y == k, proba[:, k]))
    np.testing.assert_array_equal(m["confusion"], skm.confusion_matrix(y, pred, labels=range(4)))
    np.testing.assert_allclose(m["confusion_normalized"],
                               skm.confusion_matrix(y, pred, labels=range(4), normalize="true"), atol=1e-6)


def test_hand_worked_confusion_and_scores():
    # true: E E E S0 S0 Spiral ; pred: E E S0 S0 Spiral Spiral
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    matrix = confusion_matrix(y, pred, n_classes=3)
    assert matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    np.testing.assert_allclose(normalize_confusion(matrix), [[2 / 3, 1 / 3, 0], [0, 0.5, 0.5], [0, 0, 1]])
    proba = np.eye(3)[pred] * 0.7 + 0.1
    m = evaluate_predictions(y, proba, classes=["E", "S0", "Spiral"])
    # precision: E 2/2, S0 1/2, Spiral 1/2 ; recall: E 2/3, S0 1/2, Spiral 1/1
    assert m["per_class"]["S0"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["E"]["recall"] == pytest.approx(2 / 3)
    assert m["per_class"]["E"]["f1"] == pytest.approx(0.8)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)


def test_a_class_never_predicted_gets_zero_precision_not_nan():
    m = evaluate_predictions(np.array([0, 1, 2]), np.eye(3)[[0, 1, 1]], classes=["a", "b", "c"])
    assert m["per_class"]["c"]["precision"] == 0.0 and m["per_class"]["c"]["f1"] == 0.0


def test_ece_hand_worked():
    # Confidences 0.9, 0.9 (one right, one wrong) in bin (0.8, 0.9]; 0.6 (right) in (0.5, 0.6] with 10 bins.
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]])
    y = np.array([0, 1, 1])
    # bin 0.9: |0.5 - 0.9| * 2/3 ; bin 0.6: |1 - 0.6| * 1/3  -> 0.2667 + 0.1333 = 0.4
    assert expected_calibration_error(y, proba, n_bins=10) == pytest.approx(0.4)
    assert expected_calibration_error(np.array([0, 0]), np.array([[1.0, 0.0], [1.0, 0.0]])) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=2, max_size=40))
def test_roc_curve_and_auc_match_scikit_learn_with_ties(pairs):
    y = np.array([p[0] for p in pairs])
    score = np.array([p[1] for p in pairs], dtype=float) / 5
    if y.all() or not y.any():
        assert np.isnan(roc_auc(y, score))
        return
    fpr, tpr, thr = roc_curve(y, score)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    assert roc_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score))


def test_mcnemar_exact_worked_example():
    # b = 1, c = 6: two-sided exact p = 2 * P(X <= 1 | n=7, 1/2) = 2 * (1 + 7) / 128 = 0.125
    a = np.array([True] * 1 + [False] * 6 + [True] * 10)
    b = np.array([False] * 1 + [True] * 6 + [True] * 10)
    result = mcnemar(a, b)
    assert (result.b, result.c, result.method) == (1, 6, "exact")
    assert result.p_value == pytest.approx(0.125)


def test_mcnemar_chi_square_worked_example():
    # The classic 2x2 table (a=101, b=121, c=59, d=33): chi2 with continuity correction
    # (|121 - 59| - 1)^2 / 180 = 3721 / 180 = 20.672; p = P(chi2_1 > 20.672) = 5.45e-6.
    a_right = np.r_[np.ones(101 + 121, bool), np.zeros(59 + 33, bool)]
    b_right = np.r_[np.ones(101, bool), np.zeros(121, bool), np.ones(59, bool), np.zeros(33, bool)]
    result = mcnemar(a_right, b_right)
    assert (result.b, result.c, result.method) == (121, 59, "chi2")
    assert result.statistic == pytest.approx(20.6722, abs=1e-4)
    assert result.p_value == pytest.approx(5.45e-6, rel=0.01)


def test_mcnemar_no_disagreement_and_mismatched_lengths():
    same = np.array([True, False, True])
    assert mcnemar(same, same).p_value == 1.0
    with pytest.raises(GalaxyMorphError, match="same galaxies"):
        mcnemar(same, same[:2])


def test_aggregate_seeds_mean_and_sample_std():
    table = pd.DataFrame({"model": ["a", "a", "a", "b"], "accuracy": [0.8, 0.9, 1.0, 0.5]})
    out = aggregate_seeds(table, by="model", columns=["accuracy"])
    assert out.loc["a", "accuracy_mean"] == pytest.approx(0.9)
    assert out.loc["a", "accuracy_std"] == pytest.approx(0.1)
    assert np.isnan(out.loc["b", "accuracy_std"])
    assert out["n_seeds"].tolist() == [3, 1]
    assert format_mean_std(0.9, 0.1) == "0.900 ± 0.100"
    assert format_mean_std(0.5, float("nan")) == "0.500"


def test_bad_inputs_name_the_problem():
    with pytest.raises(GalaxyMorphError, match=r"proba must have shape \(N, 3\)"):
        evaluate_predictions(np.array([0, 1]), np.ones((2, 2)) / 2, classes=["a", "b", "c"])
    with pytest.raises(GalaxyMorphError, match=r"y_true must be in \[0, 2\)"):
        confusion_matrix(np.array([0, 5]), np.array([0, 1]), n_classes=2)
    with pytest.raises(GalaxyMorphError, match="empty"):
        confusion_matrix(np.array([], int), np.array([], int), n_classes=2)
