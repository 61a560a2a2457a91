"""Metrics against scikit-learn, hand-worked cases, and McNemar's test against worked examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from core.errors import GalaxyMorphError
from core.learn.metrics import (
    aggregate_seeds,
    balanced_accuracy_from_confusion,
    bootstrap_intervals,
    confusion_matrix,
    corrected_resampled_t,
    evaluate_predictions,
    expected_calibration_error,
    format_mean_std,
    holm,
    mcnemar,
    normalize_confusion,
    reliability_bins,
    roc_auc,
    roc_auc_ranks,
    roc_curve,
    stratified_bootstrap_indices,
    wilson_interval,
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


def test_macro_f1_follows_scikit_learn_when_a_class_is_absent_from_truth_and_predictions():
    # Class 2 is neither true nor predicted: scikit-learn leaves it out (0.667), it must not count as 0 (0.444).
    y, pred = np.array([0, 1, 1]), np.array([0, 1, 0])
    m = evaluate_predictions(y, np.eye(3)[pred], classes=["a", "b", "c"])
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro")) == pytest.approx(2 / 3)
    # A class predicted but never true does count (F1 0), as in scikit-learn.
    y, pred = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1])
    m = evaluate_predictions(y, np.eye(3)[pred], classes=["a", "b", "c"])
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))


def test_wilson_interval_hand_worked_and_against_statsmodels():
    # The README's LeNet-5 figure: 125 of 140 right -> [0.831, 0.934].
    low, high = wilson_interval(125, 140)
    assert (round(low, 3), round(high, 3)) == (0.831, 0.934)
    # By hand for 8/10 at 95 %: z = 1.959964; centre (0.8 + z²/20) / (1 + z²/10),
    # half-width z·sqrt(0.016 + z²/400) / (1 + z²/10).
    z = 1.959963984540054
    centre, half = (0.8 + z**2 / 20) / (1 + z**2 / 10), z * np.sqrt(0.016 + z**2 / 400) / (1 + z**2 / 10)
    assert wilson_interval(8, 10) == pytest.approx((centre - half, centre + half))
    from statsmodels.stats.proportion import proportion_confint

    k, n = np.array([0, 3, 50, 99, 100]), np.array([10, 40, 100, 100, 100])
    for level in (0.9, 0.95):
        ours = wilson_interval(k, n, confidence=level)
        ref = proportion_confint(k, n, alpha=1 - level, method="wilson")
        np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert np.isnan(wilson_interval(0, 0)).all()
    with pytest.raises(GalaxyMorphError, match=r"confidence must be in \(0, 1\)"):
        wilson_interval(1, 2, confidence=95)


def test_wilson_interval_covers_the_true_accuracy_in_95_percent_of_trials():
    # 2,000 simulated test sets of 140 galaxies, each galaxy right with probability 0.8 (the true accuracy).
    # (Wilson's exact coverage oscillates with n and p: 0.956 here, 0.935 at p = 0.9.)
    rng = np.random.default_rng(0)
    correct = (rng.random((2000, 140)) < 0.8).sum(axis=1)
    low, high = wilson_interval(correct, np.full(2000, 140))
    coverage = np.mean((low <= 0.8) & (0.8 <= high))
    assert 0.93 <= coverage <= 0.97, coverage


def test_bootstrap_interval_of_balanced_accuracy_covers_the_truth_in_95_percent_of_trials():
    # 2,000 simulated test sets (60 / 50 / 40 galaxies per class) from a classifier with known per-class
    # recall 0.9 / 0.8 / 0.7, so the true balanced accuracy is 0.8. The resamples of all trials are scored
    # at once with the same building blocks bootstrap_intervals uses (checked equal on the first trials).
    counts, recall = np.array([60, 50, 40]), np.array([0.9, 0.8, 0.7])
    k, truth, trials, resamples, chunk = 3, 0.8, 2000, 500, 100
    y = np.repeat(np.arange(k), counts)
    rng = np.random.default_rng(0)
    covered = 0
    for start in range(0, trials, chunk):
        right = rng.random((chunk, len(y))) < recall[y]
        pred = np.where(right, y, (y + rng.integers(1, k, size=(chunk, len(y)))) % k)
        index = np.stack([stratified_bootstrap_indices(y, n_resamples=resamples, seed=start + i) for i in range(chunk)])
        true_b, pred_b = y[index], pred[np.arange(chunk)[:, None, None], index]
        offset = np.arange(chunk * resamples).reshape(chunk, resamples, 1) * k * k
        matrices = np.bincount((offset + true_b * k + pred_b).ravel(), minlength=chunk * resamples * k * k)
        values = balanced_accuracy_from_confusion(matrices.reshape(chunk, resamples, k, k))
        low, high = np.quantile(values, [0.025, 0.975], axis=1)
        covered += int(np.sum((low <= truth) & (truth <= high)))
        if start == 0:
            for i in range(3):
                ours = bootstrap_intervals(y, np.eye(k)[pred[i]], n_resamples=resamples, seed=i)
                assert ours["balanced_accuracy"] == pytest.approx([low[i], high[i]])
    assert 0.93 <= covered / trials <= 0.97, covered / trials


def test_bootstrap_is_stratified_seeded_and_brackets_the_estimate():
    y, proba = _random_predictions(0, n=150, k=3)
    index = stratified_bootstrap_indices(y, n_resamples=200, seed=1)
    assert index.shape == (200, 150)
    np.testing.assert_array_equal(np.sort(y[index], axis=1), np.broadcast_to(np.sort(y), (200, 150)))
    first = bootstrap_intervals(y, proba, n_resamples=1000, seed=5)
    assert first == bootstrap_intervals(y, proba, n_resamples=1000, seed=5)
    assert first != bootstrap_intervals(y, proba, n_resamples=1000, seed=6)
    m = evaluate_predictions(y, proba, classes=["a", "b", "c"])
    for metric in ("balanced_accuracy", "macro_f1", "roc_auc_macro"):
        low, high = m[f"{metric}_ci"]
        assert low < m[metric] < high and high - low < 0.3, (metric, low, high)
    low, high = m["accuracy_ci"]
    assert (low, high) == pytest.approx(wilson_interval(round(m["accuracy"] * 150), 150))
    support = m["per_class"]["a"]["support"]
    right = round(m["per_class"]["a"]["recall"] * support)
    assert m["per_class"]["a"]["recall_ci"] == pytest.approx(list(wilson_interval(right, support)))
    assert m["intervals"]["bootstrap"] == {"kind": "stratified percentile", "resamples": 1000, "seed": 0}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=2, max_size=40))
def test_rank_auc_equals_the_trapezoidal_auc(pairs):
    y = np.array([p[0] for p in pairs])
    score = np.array([p[1] for p in pairs], dtype=float)
    expected = roc_auc(y, score)
    got = float(roc_auc_ranks(y, score))
    assert (np.isnan(expected) and np.isnan(got)) or got == pytest.approx(expected)


def test_holm_hand_worked_and_against_statsmodels():
    # Sorted 0.01, 0.03, 0.04 of m = 3: 3 x 0.01 = 0.03; 2 x 0.03 = 0.06; 1 x 0.04 = 0.04 -> running max 0.06.
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    out = holm([0.02, np.nan, 0.01])  # NaN is not a member of the family
    assert np.isnan(out[1]) and out[[0, 2]].tolist() == pytest.approx([0.02, 0.02])
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    for m in (1, 2, 3, 6, 15):
        p = rng.uniform(0, 0.2, m) ** 2
        np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], atol=1e-15)


def test_corrected_resampled_t_hand_worked():
    # d = 0.02, 0.04, 0.00, 0.06, 0.03: mean 0.03, S² = (1+1+9+9+0)e-4 / 4 = 5e-4; with n_test/n_train = 0.25
    # the corrected variance is (1/5 + 0.25) x 5e-4 = 2.25e-4, so se = 0.015, t = 2.0 with 4 d.f.:
    # p = 2 P(T_4 > 2) = 0.11612, and the 95 % interval is 0.03 ± 2.7764 x 0.015.
    result = corrected_resampled_t([0.02, 0.04, 0.00, 0.06, 0.03], test_train_ratio=0.25)
    assert result.mean == pytest.approx(0.03) and result.statistic == pytest.approx(2.0)
    assert result.p_value == pytest.approx(0.116117, abs=1e-6) and result.n_splits == 5
    assert (result.low, result.high) == pytest.approx((0.03 - 2.776445 * 0.015, 0.03 + 2.776445 * 0.015))
    # Without the correction term (ratio -> 0) it is the ordinary one-sample t-test.
    from scipy import stats

    d = np.array([0.02, 0.04, 0.00, 0.06, 0.03])
    assert corrected_resampled_t(d, test_train_ratio=1e-12).p_value == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    assert corrected_resampled_t([0.0, 0.0], test_train_ratio=0.25).p_value == 1.0
    with pytest.raises(GalaxyMorphError, match="at least 2 splits"):
        corrected_resampled_t([0.1], test_train_ratio=0.25)


def test_reliability_bins_hand_worked_and_consistent_with_ece():
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]])
    y = np.array([0, 1, 1])
    table = reliability_bins(y, proba, n_bins=10)
    assert table["count"].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 2, 0]
    assert table.loc[8, ["low", "high", "confidence", "accuracy"]].tolist() == pytest.approx([0.8, 0.9, 0.9, 0.5])
    assert table.loc[5, ["confidence", "accuracy"]].tolist() == pytest.approx([0.6, 1.0])
    assert table.loc[0, ["confidence", "accuracy"]].isna().all()
    y, proba = _random_predictions(4)
    table = reliability_bins(y, proba, n_bins=15)
    filled = table[table["count"] > 0]
    by_hand = float(((filled["accuracy"] - filled["confidence"]).abs() * filled["count"]).sum() / len(y))
    assert expected_calibration_error(y, proba) == pytest.approx(by_hand) and table["count"].sum() == len(y)
