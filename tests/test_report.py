"""Comparison: tables over seeds and splits, intervals, paired tests with Holm, datasets kept apart, the report
files and the compare/evaluate commands."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pandas as pd
import pytest

from core.cli import main
from core.errors import GalaxyMorphError
from core.io import atomic_write_json
from core.learn.metrics import corrected_resampled_t, evaluate_predictions, holm, wilson_interval
from core.learn.report import (
    best_model,
    confusion_matrices,
    figures,
    format_summary,
    latex_table,
    learning_curves,
    mcnemar_table,
    misclassified,
    paired_matrix,
    paired_tests,
    reliability,
    roc_curves,
    summary_table,
    verdicts,
    write_report,
)
from core.runs import create_run, iter_runs, set_status

CLASSES = ["E", "S0", "Spiral"]
NAMES = [f"NGC {i}" for i in range(30)]
Y = np.arange(30) % 3


def _fake_run(root, model, seed, *, wrong, finish=True, dataset="h", fold=None, protocol=None):
    """A finished run whose predictions are right except at the indices in ``wrong``.

    ``fold``: the run is fold ``fold`` of a 5-fold split (seed 0) instead of the dataset's own split.
    """
    params = {"model": model, "seed": seed}
    if fold is not None:
        params.update(folds=5, fold=fold, split_seed=0)
    if protocol is not None:
        params["protocol"] = protocol
    path = create_run(root, model=model, seed=seed, params=params, dataset_path=root / dataset, dataset_hash=dataset)
    pred = Y.copy()
    pred[wrong] = (pred[wrong] + 1) % 3
    proba = np.full((30, 3), 0.1)
    proba[np.arange(30), pred] = 0.8
    metrics = evaluate_predictions(Y, proba, classes=CLASSES)
    metrics.update(params=1000 * (seed + 1), train_seconds=10.0, inference_img_per_s=100.0, epochs_done=2,
                   best_epoch=2)
    frame = pd.DataFrame({"name": NAMES, "true": np.array(CLASSES)[Y], "pred": np.array(CLASSES)[pred]})
    for k, cls in enumerate(CLASSES):
        frame[f"prob_{cls}"] = proba[:, k]
    frame.to_csv(path / "predictions.csv", index=False)
    pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.4], "accuracy": [0.5, 0.8], "val_loss": [1.1, 0.6],
                  "val_accuracy": [0.4, 0.7]}).to_csv(path / "history.csv", index=False)
    if finish:
        atomic_write_json(path / "metrics.json", metrics)
        set_status(path, "finished", classes=CLASSES, n_train=90)
    return path


@pytest.fixture
def registry(tmp_path):
    root = tmp_path / "runs"
    _fake_run(root, "lenet5", 0, wrong=list(range(10)))        # 20/30
    _fake_run(root, "lenet5", 1, wrong=list(range(6)))         # 24/30
    _fake_run(root, "resnet18", 0, wrong=[0])                  # 29/30
    _fake_run(root, "resnet18", 1, wrong=[])                   # 30/30
    _fake_run(root, "alexnet", 0, wrong=[], finish=False)      # unfinished: left out
    return root


def test_summary_is_mean_and_std_over_seeds(registry):
    summary = summary_table(iter_runs(registry))
    assert list(summary.index) == ["lenet5", "resnet18"]
    assert summary.loc["lenet5", "accuracy_mean"] == pytest.approx(np.mean([20 / 30, 24 / 30]))
    assert summary.loc["lenet5", "accuracy_std"] == pytest.approx(np.std([20 / 30, 24 / 30], ddof=1))
    assert summary.loc["resnet18", "n_seeds"] == 2 and summary.loc["resnet18", "n_runs"] == 2
    # One split: the interval is each seed's Wilson interval on its 30 test galaxies, averaged over seeds.
    lows, highs = wilson_interval(np.array([20, 24]), np.array([30, 30]))
    assert summary.loc["lenet5", "accuracy_lo"] == pytest.approx(lows.mean())
    assert summary.loc["lenet5", "accuracy_hi"] == pytest.approx(highs.mean())
    assert summary.loc["lenet5", "balanced_accuracy_lo"] < summary.loc["lenet5", "balanced_accuracy_mean"]
    text = format_summary(summary)
    assert f"0.733 ± 0.094 [{lows.mean():.3f}, {highs.mean():.3f}]" in text and "ResNet-18" in text.splitlines()[0]
    assert "Test galaxies (n)" in text.splitlines()[2]  # n right under the accuracy
    assert "95 % intervals" in text


def test_mcnemar_pairs_models_with_the_same_seed_and_the_verdict_takes_the_largest_p(registry):
    table = mcnemar_table(iter_runs(registry))
    assert sorted(table["seed"]) == [0, 1] and set(table["split"]) == {"dataset"}
    row = table[table["seed"] == 0].iloc[0]
    # seed 0: lenet wrong on 0-9, resnet wrong on 0 -> b (lenet right, resnet wrong) 0, c 9; exact p = 2/2^9
    pair = {row["model_a"]: "a", row["model_b"]: "b"}
    b, c = (row["b"], row["c"]) if pair["lenet5"] == "a" else (row["c"], row["b"])
    assert (b, c, row["n"], row["method"]) == (0, 9, 30, "exact")
    assert row["p_value"] == pytest.approx(2 / 2**9)
    # One split, two seeds: seed 1 has b = 0, c = 6, p = 2 / 2^6; the pair's p is the larger one (every seed
    # must show the difference); one pair, so Holm changes nothing.
    tests = paired_tests(iter_runs(registry))
    assert len(tests) == 1 and tests.loc[0, "p_value"] == pytest.approx(2 / 2**6)
    assert tests.loc[0, "p_holm"] == pytest.approx(2 / 2**6) and tests.loc[0, "better"] == "resnet18"
    assert verdicts(tests) == ["ResNet-18 is better than LeNet-5 (p = 0.031, Holm-corrected)"]
    assert best_model(tests, ["lenet5", "resnet18"]) == "resnet18"
    matrix = paired_matrix(iter_runs(registry))
    assert matrix.loc["lenet5", "resnet18"] == pytest.approx(2 / 2**6)
    assert np.isnan(matrix.loc["lenet5", "lenet5"])


def test_dashboard_helpers(registry):
    runs = iter_runs(registry)
    lenet0 = next(r for r in runs if r.label == "lenet5 s0")
    classes, counts, norm = confusion_matrices(lenet0)
    assert classes == CLASSES and counts.sum() == 30 and np.allclose(norm.sum(axis=1), 1)
    wrong = misclassified(lenet0)
    assert len(wrong) == 10 and set(wrong["name"]) == set(NAMES[:10]) and (wrong["confidence"] == 0.8).all()
    roc = roc_curves(lenet0)
    assert set(roc["class"]) == set(CLASSES) and roc.groupby("class")["tpr"].max().eq(1).all()
    curves = learning_curves(runs)
    assert len(curves) == 2 * 5 and {"label", "epoch", "val_accuracy"} <= set(curves.columns)
    assert {"learning_curves", "confusion", "per_class_f1", "roc", "reliability", "paired_tests"} <= set(figures(runs))
    bins = reliability(lenet0)
    # Every prediction has confidence 0.8 (bin (0.7333, 0.8]); 20 of 30 are right.
    filled = bins[bins["count"] > 0]
    assert filled["count"].tolist() == [30] and filled[["confidence", "accuracy"]].iloc[0].tolist() == pytest.approx(
        [0.8, 20 / 30])


def test_write_report_files_are_complete_and_self_contained(registry, tmp_path):
    paths = write_report(iter_runs(registry), tmp_path / "out")
    assert sorted(paths) == ["mcnemar.csv", "per_class.csv", "report.html", "report.json", "runs.csv", "summary.csv",
                             "summary.tex", "tests.csv"]
    summary_csv = pd.read_csv(paths["summary.csv"]).set_index("model")
    assert {"accuracy_lo", "accuracy_hi", "macro_f1_lo", "roc_auc_macro_hi", "n_splits"} <= set(summary_csv.columns)
    assert "Recall per class" in paths["report.html"].read_text()
    per_class = pd.read_csv(paths["per_class.csv"])
    assert (per_class["recall_lo"] <= per_class["recall"]).all() and (per_class["recall"] <= per_class["recall_hi"]).all()
    runs_csv = pd.read_csv(paths["runs.csv"])
    assert sorted(runs_csv["label"]) == ["lenet5 s0", "lenet5 s1", "resnet18 s0", "resnet18 s1"]
    html = paths["report.html"].read_text()
    assert html.count("<script src=") == 0 and "Plotly" in html and len(html) > 1_000_000  # plotly.js inlined
    assert html.count("plotly-graph-div") >= 5
    tex = paths["summary.tex"].read_text()
    assert r"\begin{tabular}{lrr}" in tex and r"0.733 $\pm$ 0.094 [" in tex and "±" not in tex
    assert r"\textbf{0.983" in tex  # ResNet-18 is significantly better than the only other model
    assert "<b>0.983" in html and "ResNet-18 is better than LeNet-5 (p = 0.031, Holm-corrected)" in html


def test_latex_escapes_model_names():
    summary = pd.DataFrame({f"{m}_{s}": [0.5] for m in ("accuracy", "balanced_accuracy", "macro_f1",
                            "roc_auc_macro", "ece", "params", "train_seconds", "inference_img_per_s")
                            for s in ("mean", "std")}, index=pd.Index(["my_net"], name="model"))
    summary["n_seeds"] = 1
    summary["n_runs"] = summary["n_splits"] = 1
    assert r"my\_net" in latex_table(summary)


def test_no_finished_runs_is_a_clear_error(tmp_path):
    with pytest.raises(GalaxyMorphError, match="no finished runs"):
        summary_table([])


def test_compare_and_evaluate_commands(registry, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["compare", "--runs-dir", str(registry), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "LeNet-5" in printed and "McNemar" in printed and (out / "report.html").exists()
    assert "ResNet-18 is better than LeNet-5 (p = 0.031, Holm-corrected)" in printed
    # lenet5 seeds 0 and 1 got 6/10 and 8/10 ellipticals right (wrong at 0, 3, 6, 9 and at 0, 3: every third is E):
    # pooled 14 of 20 predictions of the same 10 galaxies, so Wilson on 7 of 10, not the mean of two intervals.
    low, high = wilson_interval(7, 10)
    assert f"0.700 [{low:.3f}, {high:.3f}] (n = 10)" in printed
    assert "one recipe" not in printed and "per-model recipes (tuned protocol)" in printed
    assert main(["evaluate", "--runs-dir", str(registry)]) == 0
    listing = capsys.readouterr().out
    assert listing.count("finished") == 4 and "alexnet" in listing
    run_id = next(r.id for r in iter_runs(registry) if r.label == "resnet18 s0")
    assert main(["evaluate", "--runs-dir", str(registry), run_id, "missing-run"]) == 2
    text = capsys.readouterr().out
    assert "accuracy 0.967" in text and "Spiral" in text and "missing-run" in text


def _set_finished(path, when):
    config = json.loads((path / "config.json").read_text())
    atomic_write_json(path / "config.json", {**config, "finished": when})


def test_a_rerun_of_the_same_model_seed_and_split_counts_once_the_latest(tmp_path):
    root = tmp_path / "runs"
    first = _fake_run(root, "lenet5", 0, wrong=list(range(10)))
    again = _fake_run(root, "lenet5", 0, wrong=[])
    _set_finished(first, "2026-11-30T05:00:00+00:00")
    _set_finished(again, "2026-11-30T06:00:00+00:00")
    _fake_run(root, "lenet5", 1, wrong=list(range(6)))
    summary = summary_table(iter_runs(root))
    assert summary.loc["lenet5", "n_runs"] == 2 and summary.loc["lenet5", "n_seeds"] == 2
    assert summary.loc["lenet5", "accuracy_mean"] == pytest.approx(np.mean([30 / 30, 24 / 30]))


def test_a_report_on_two_datasets_does_not_pool_them(tmp_path, capsys):
    root = tmp_path / "runs"
    _fake_run(root, "lenet5", 0, wrong=list(range(10)), dataset="aaaa1111")
    _fake_run(root, "resnet18", 0, wrong=[], dataset="aaaa1111")
    _fake_run(root, "lenet5", 0, wrong=[], dataset="bbbb2222")
    _fake_run(root, "resnet18", 0, wrong=list(range(12)), dataset="bbbb2222")
    with pytest.raises(GalaxyMorphError, match="one dataset and protocol.*got 2.*--pool-datasets"):
        summary_table(iter_runs(root))
    out = tmp_path / "report"
    assert main(["compare", "--runs-dir", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("=== dataset") == 2
    for name, expected in (("aaaa1111-aaaa1111", {"lenet5": 20 / 30, "resnet18": 1.0}),
                           ("bbbb2222-bbbb2222", {"lenet5": 1.0, "resnet18": 18 / 30})):
        summary = pd.read_csv(out / name / "summary.csv").set_index("model")
        assert summary["accuracy_mean"].to_dict() == pytest.approx(expected)
        assert summary["n_runs"].tolist() == [1, 1]
        assert len(pd.read_csv(out / name / "runs.csv")) == 2
    # Asked to pool, one table over both datasets; McNemar still pairs runs only within a dataset.
    pooled = tmp_path / "pooled"
    assert main(["compare", "--runs-dir", str(root), "--out", str(pooled), "--pool-datasets"]) == 0
    assert pd.read_csv(pooled / "summary.csv")["n_runs"].tolist() == [2, 2]
    assert sorted(pd.read_csv(pooled / "mcnemar.csv")["dataset"]) == ["aaaa1111-aaaa1111", "bbbb2222-bbbb2222"]


def test_folds_are_combined_with_the_corrected_t_test_and_holm_across_pairs(tmp_path):
    root = tmp_path / "runs"
    lenet_wrong, alexnet_wrong = [3, 4, 2, 5, 3], [2, 3, 3, 2, 2]
    for fold in range(5):
        _fake_run(root, "lenet5", 0, wrong=list(range(lenet_wrong[fold])), fold=fold)
        _fake_run(root, "alexnet", 0, wrong=list(range(10, 10 + alexnet_wrong[fold])), fold=fold)
        _fake_run(root, "resnet18", 0, wrong=[], fold=fold)
    runs = iter_runs(root)
    assert len(mcnemar_table(runs)) == 15  # 3 pairs x 5 folds
    tests = paired_tests(runs)
    tests.index = [" vs ".join(sorted(pair)) for pair in zip(tests["model_a"], tests["model_b"])]
    ratio = 30 / 90  # n_test / n_train of every fold
    acc = {"lenet5": 1 - np.array(lenet_wrong) / 30, "alexnet": 1 - np.array(alexnet_wrong) / 30,
           "resnet18": np.ones(5)}
    expected = {" vs ".join(sorted(pair)): corrected_resampled_t(acc[pair[0]] - acc[pair[1]], test_train_ratio=ratio).p_value
                for pair in (("lenet5", "alexnet"), ("lenet5", "resnet18"), ("alexnet", "resnet18"))}
    for pair, p in expected.items():
        assert tests.loc[pair, "p_value"] == pytest.approx(p)
        assert tests.loc[pair, "n_splits"] == 5 and "Nadeau & Bengio" in tests.loc[pair, "method"]
    adjusted = dict(zip(expected, holm(list(expected.values()))))
    for pair, p in adjusted.items():
        assert tests.loc[pair, "p_holm"] == pytest.approx(p)
    # The same numbers by hand for ResNet-18 vs LeNet-5: d = w/30 = 0.1, 0.1333, 0.0667, 0.1667, 0.1;
    # mean 0.11333, S² = 0.0014444, corrected variance (1/5 + 1/3) S², se 0.027756 -> t = 4.0833 with 4 d.f.
    resnet_lenet = "lenet5 vs resnet18"
    assert expected[resnet_lenet] == pytest.approx(0.015058, abs=2e-6)
    assert tests.loc[resnet_lenet, "better"] == "resnet18"
    # A mix of significant and non-significant pairs: the latter must read as such, not as "nan is better".
    assert adjusted[resnet_lenet] < 0.05 < adjusted["alexnet vs lenet5"]
    said = verdicts(tests)
    assert f"ResNet-18 is better than LeNet-5 (p = {adjusted[resnet_lenet]:.2g}, Holm-corrected)" in said
    assert any(line.startswith("no significant difference between") and "LeNet-5" in line and "AlexNet" in line
               and f"p = {adjusted['alexnet vs lenet5']:.2g}" in line for line in said)
    assert len(said) == 3 and not any("nan" in line for line in said)
    # Interval between folds for one model: the corrected t interval of its five accuracies.
    summary = summary_table(runs)
    assert summary.loc["lenet5", "n_splits"] == 5 and summary.loc["lenet5", "interval"] == "between splits"
    band = corrected_resampled_t(acc["lenet5"], test_train_ratio=ratio)
    assert (summary.loc["lenet5", "accuracy_lo"], summary.loc["lenet5", "accuracy_hi"]) == pytest.approx(
        (band.low, band.high))


def test_no_model_is_bold_unless_it_beats_every_other_significantly(tmp_path):
    root = tmp_path / "runs"
    _fake_run(root, "lenet5", 0, wrong=[0, 1])
    _fake_run(root, "resnet18", 0, wrong=[0])
    tests = paired_tests(iter_runs(root))
    assert tests.loc[0, "better"] is None and tests.loc[0, "p_holm"] == pytest.approx(1.0)
    assert verdicts(tests) == ["no significant difference between LeNet-5 and ResNet-18 (p = 1, Holm-corrected)"]
    assert not tests.loc[0, "replicated"]
    assert best_model(tests, ["lenet5", "resnet18"]) is None
    paths = write_report(iter_runs(root), tmp_path / "out")
    assert r"\textbf" not in paths["summary.tex"].read_text()
    assert "<b>" not in paths["report.html"].read_text().split("<h2>Recall per class")[0]


def test_runs_of_the_equal_protocol_are_not_taken_for_re_runs_of_the_tuned_one(tmp_path):
    root = tmp_path / "runs"
    tuned = _fake_run(root, "lenet5", 0, wrong=list(range(10)))
    equal = _fake_run(root, "lenet5", 0, wrong=[], protocol="equal")
    _set_finished(tuned, "2026-11-30T05:00:00+00:00")
    _set_finished(equal, "2026-11-30T06:00:00+00:00")
    with pytest.raises(GalaxyMorphError, match="one dataset and protocol"):
        summary_table(iter_runs(root))
    assert main(["compare", "--runs-dir", str(root), "--out", str(tmp_path / "out")]) == 0
    assert pd.read_csv(tmp_path / "out" / "h-h" / "summary.csv")["accuracy_mean"].tolist() == pytest.approx([20 / 30])
    assert pd.read_csv(tmp_path / "out" / "h-h-equal" / "summary.csv")["accuracy_mean"].tolist() == [1.0]


def test_an_interval_between_splits_stays_inside_the_metrics_range(tmp_path):
    root = tmp_path / "runs"
    for fold in range(5):  # accuracies 1, 1, 1, 1, 0.8: the t interval 0.96 ± 0.18 would pass 1
        _fake_run(root, "lenet5", 0, wrong=list(range(6)) if fold == 4 else [], fold=fold)
    band = corrected_resampled_t([1, 1, 1, 1, 0.8], test_train_ratio=30 / 90)
    assert band.high > 1
    summary = summary_table(iter_runs(root))
    assert summary.loc["lenet5", "accuracy_hi"] == 1.0
    assert summary.loc["lenet5", "accuracy_lo"] == pytest.approx(band.low)


def test_seeds_that_disagree_on_the_direction_give_no_verdict(tmp_path):
    root = tmp_path / "runs"
    _fake_run(root, "lenet5", 0, wrong=list(range(10)))   # seed 0: ResNet-18 better, exact p = 2 / 2^10
    _fake_run(root, "resnet18", 0, wrong=[])
    _fake_run(root, "lenet5", 1, wrong=[])                # seed 1: LeNet-5 better by as much
    _fake_run(root, "resnet18", 1, wrong=list(range(10)))
    tests = paired_tests(iter_runs(root))
    assert tests.loc[0, "p_value"] == 1.0 and tests.loc[0, "better"] is None
    assert "disagree" in tests.loc[0, "method"]


def test_a_title_names_the_models_the_dataset_the_protocol_and_what_is_pooled(registry, tmp_path):
    from core.learn.report import comparison_title as presentation_title

    # Runs that predate protocols were trained with per-model recipes: the title says so.
    assert presentation_title(iter_runs(registry)) == "LeNet-5 vs ResNet-18 · h · per-model recipes (tuned protocol) · 2 seeds"
    folds = tmp_path / "folds"
    for fold in range(5):  # trained largest first: the title still reads smallest first
        for model in ("resnet18", "alexnet", "lenet5"):
            _fake_run(folds, model, 0, wrong=[fold], fold=fold, protocol="equal")
    assert presentation_title(iter_runs(folds)) == ("LeNet-5 vs AlexNet vs ResNet-18 · h · one recipe for every model "
                                                    "(equal protocol) · 5 folds")
    from core.learn.report import in_model_order

    assert [r.model_name for r in in_model_order(iter_runs(folds))[::5]] == ["lenet5", "alexnet", "resnet18"]
    with pytest.raises(GalaxyMorphError, match="no finished runs"):
        presentation_title([])


def test_the_verdict_is_one_sentence_or_none(registry, tmp_path):
    from core.learn.report import verdict_sentence

    assert verdict_sentence(paired_tests(iter_runs(registry))) == "ResNet-18 is better than LeNet-5 (p = 0.031, Holm-corrected)."
    _fake_run(tmp_path / "one", "lenet5", 0, wrong=[1])
    assert verdict_sentence(paired_tests(iter_runs(tmp_path / "one"))) is None
    # Three models, no pair differs: one clause, not three.
    for model, wrong in (("resnet18", [0, 1]), ("alexnet", [2])):
        _fake_run(tmp_path / "one", model, 0, wrong=wrong)
    assert verdict_sentence(paired_tests(iter_runs(tmp_path / "one"))) == (
        "No significant difference between any two of LeNet-5, AlexNet and ResNet-18 (p = 1 for every pair, Holm-corrected).")
    _fake_run(tmp_path / "one", "resnet34", 0, wrong=list(range(8)))  # far worse than AlexNet, but not p < 0.05
    said = verdict_sentence(paired_tests(iter_runs(tmp_path / "one")))
    assert said.startswith("No significant difference between any two of LeNet-5, AlexNet, ResNet-18 and ResNet-34 "
                           "(every p ≥ 0.")


def test_sections_with_nothing_to_show_are_left_out(registry, tmp_path):
    from core.learn.report import sections

    everything = ["recall", "confusion", "accuracy", "per_class_f1", "learning_curves", "roc", "size_accuracy",
                  "reliability", "paired_tests", "misclassified"]
    assert sections(iter_runs(registry)) == everything
    # One model, every test galaxy right, no history: no pairs to test, no mistakes, no curves.
    alone = _fake_run(tmp_path / "one", "lenet5", 0, wrong=[])
    (alone / "history.csv").unlink()
    assert sections(iter_runs(tmp_path / "one")) == [s for s in everything
                                                     if s not in ("paired_tests", "misclassified", "learning_curves")]
    assert set(figures(iter_runs(tmp_path / "one"))) == {"accuracy", "confusion", "per_class_f1", "roc",
                                                          "size_accuracy", "reliability"}


def test_accuracy_axes_run_from_0_to_1(registry):
    from core.learn.report import (
        learning_curves_figure,
        per_class_f1_figure,
        reliability_figure,
        roc_figure,
        size_accuracy_figure,
    )

    runs = iter_runs(registry)
    for fig in (size_accuracy_figure(runs), learning_curves_figure(runs), per_class_f1_figure(runs),
                reliability_figure(runs), roc_figure(runs, "E")):
        assert tuple(fig.layout.yaxis.range) == (0, 1), fig.layout.title.text
    # A perfect run sits on the top edge: its marker is drawn whole, not clipped by the axis.
    assert all(trace.cliponaxis is False for trace in size_accuracy_figure(runs).data)


def test_headline_figures_keep_every_label_readable(registry):
    """Seen in the presentation-mode screenshots: the top accuracy label was clipped by the plot area, and the
    p-value colour bar's "0" sat on its "0.05 (significant below)"."""
    from core.learn.report import accuracy_figure, paired_figure, summary_table

    runs = iter_runs(registry)
    assert all(trace.cliponaxis is False for trace in accuracy_figure(summary_table(runs)).data)
    colorbar = paired_figure(runs).data[0].colorbar
    assert list(colorbar.tickvals) == [0.05, 0.5, 1] and colorbar.ticktext[0] == "0.05 (significant below)"


def test_the_page_and_the_html_report_draw_the_same_figures(registry, tmp_path):
    from core.learn.report import model_color, size_accuracy_figure

    runs = iter_runs(registry)
    size = size_accuracy_figure(runs)
    assert [t.marker.color for t in size.data] == [model_color("lenet5"), model_color("resnet18")]
    assert figures(runs)["size_accuracy"].to_dict() == size.to_dict()
    # The report's ROC has a panel per class and one legend: model names, not the first class's AUC.
    assert {t.name for t in figures(runs)["roc"].data if t.showlegend is not False} == {"LeNet-5", "ResNet-18", "chance"}
    html = write_report(runs, tmp_path / "out")["report.html"].read_text()
    assert "Size vs accuracy (one marker per run; marker area: training time)" in html


# ------------------------------------------------------------------ issue 19 / 20: one unit, verdicts, exports


def _folds(root, models=("lenet5", "alexnet", "resnet18"), *, wrong=None, protocol="equal"):
    """Five folds of each model; ``wrong[model][fold]`` galaxies wrong (default: fold + model index)."""
    for fold in range(5):
        for i, model in enumerate(models):
            count = wrong[model][fold] if wrong else fold + i
            _fake_run(root, model, 0, wrong=list(range(count)), fold=fold,
                      protocol=None if model == "baseline" else protocol)
    return iter_runs(root)


def test_with_folds_every_figure_pools_the_held_out_predictions_of_all_folds(tmp_path):
    from core.learn.report import confusion_figure, per_class_recall, pooled_note, reliability_figure, roc_figure

    runs = _folds(tmp_path / "runs")
    n_test = sum(r.metrics["n_test"] for r in runs if r.model_name == "lenet5")
    assert n_test == 150
    for model in ("lenet5", "alexnet", "resnet18"):
        counts = np.asarray(confusion_figure(runs, model).data[0].customdata)
        assert counts.sum() == n_test, model  # not one fold's 30
    # LeNet-5 got 0 + 1 + 2 + 3 + 4 = 10 of the 150 wrong: the diagonal holds the 140 right ones.
    assert np.trace(np.asarray(confusion_figure(runs, "lenet5").data[0].customdata)) == 140
    assert "150 held-out predictions" in confusion_figure(runs, "lenet5").layout.title.text
    reliability = reliability_figure(runs).data[0]
    assert sum(reliability.customdata) == 150
    assert "pooled" in roc_figure(runs, "S0").layout.title.text
    assert pooled_note(runs) == "pooled over 5 folds: 150 held-out predictions per model"
    # Per-class recall: Wilson on the pooled counts, never the mean of the five folds' bounds.
    # LeNet-5's ellipticals (every third galaxy) wrong: 0, 1 (0), 1 (0), 1 (0, 3 -> 2 with index 3), ...
    right = sum(sum(1 for i in range(0, 30, 3) if i >= fold) for fold in range(5))
    low, high = wilson_interval(right, 50)
    assert per_class_recall(runs).loc["E", "lenet5"] == f"{right / 50:.3f} [{low:.3f}, {high:.3f}] (n = 50)"
    per_fold = [wilson_interval(sum(1 for i in range(0, 30, 3) if i >= fold), 10) for fold in range(5)]
    assert f"{np.mean([b[0] for b in per_fold]):.3f}" != f"{low:.3f}"  # the two would differ here


def test_n_test_sits_beside_every_accuracy(tmp_path):
    from core.learn.report import N_TEST_LABEL, accuracy_figure, summary_cells

    runs = _folds(tmp_path / "runs")
    summary = summary_table(runs)
    assert summary.loc["lenet5", "n_test"] == 30 and summary.loc["lenet5", "n_test_pooled"] == 150
    cells = summary_cells(summary)
    assert list(cells.index[:2]) == ["Accuracy", N_TEST_LABEL]
    assert cells.loc[N_TEST_LABEL, "lenet5"] == "150 (30 per split)"
    chart = accuracy_figure(summary)
    assert [t.y[0] for t in chart.data] == ["LeNet-5 (n = 150 (30 per split))", "AlexNet (n = 150 (30 per split))",
                                            "ResNet-18 (n = 150 (30 per split))"]
    assert chart.data[0].error_x.arrayminus[0] == pytest.approx(summary.loc["lenet5", "accuracy_mean"]
                                                               - summary.loc["lenet5", "accuracy_lo"])


def test_one_split_and_one_seed_is_not_called_better(tmp_path):
    from core.learn.report import verdict_sentence

    root = tmp_path / "runs"
    _fake_run(root, "lenet5", 0, wrong=list(range(12)))
    _fake_run(root, "resnet18", 0, wrong=[])
    tests = paired_tests(iter_runs(root))
    assert tests.loc[0, "p_holm"] < 0.05 and tests.loc[0, "better"] == "resnet18" and not tests.loc[0, "replicated"]
    assert verdicts(tests)[0].startswith("ResNet-18 was more accurate than LeNet-5 on this one split and seed (p < 0.001")
    assert "is better than" not in verdict_sentence(tests)
    assert best_model(tests, ["lenet5", "resnet18"]) is None
    paths = write_report(iter_runs(root), tmp_path / "out")
    assert r"\textbf" not in paths["summary.tex"].read_text()


def test_each_network_is_tested_against_the_baseline_in_its_own_holm_family(tmp_path):
    from core.learn.report import floor_sentences, verdict_lines

    wrong = {"lenet5": [6, 5, 7, 6, 6], "alexnet": [2, 3, 2, 2, 3], "resnet18": [1, 0, 1, 2, 0],
             "baseline": [6, 6, 5, 7, 6]}
    networks = paired_tests(_folds(tmp_path / "cnn", ("lenet5", "alexnet", "resnet18"), wrong=wrong))
    # The baseline has no protocol of its own: it joins the networks' equal-protocol experiment.
    runs = _folds(tmp_path / "all", ("lenet5", "alexnet", "resnet18", "baseline"), wrong=wrong)
    assert len(summary_table(runs)) == 4
    tests = paired_tests(runs)
    assert sorted(tests["family"].value_counts().items()) == [("architectures", 3), ("baseline", 3)]
    # Adding the baseline leaves the architectures' family, and so its Holm-corrected p-values, alone.
    architectures = tests[tests["family"] == "architectures"].reset_index(drop=True)
    assert architectures["p_holm"].tolist() == pytest.approx(networks["p_holm"].tolist())
    floor = tests[tests["family"] == "baseline"]
    assert floor["p_holm"].tolist() == pytest.approx(holm(floor["p_value"].to_numpy()).tolist())
    said = floor_sentences(tests)
    assert len(said) == 3 and said[0].startswith("LeNet-5 does not beat the gradient-boosting baseline")
    assert said[2].startswith("ResNet-18 beats the gradient-boosting baseline") and "learned more" in said[2]
    assert best_model(tests, list(summary_table(runs).index)) != "baseline"
    assert any(line.startswith("Holm-corrected within each family") for line in verdict_lines(runs))
    # When no network beats the baseline, one sentence says so for all of them.
    no_floor = tests.assign(better=np.where(tests["family"] == "baseline", None, tests["better"]))
    assert floor_sentences(no_floor) == [
        "None of LeNet-5, AlexNet and ResNet-18 beats the gradient-boosting baseline (every p ≥ "
        f"{no_floor.loc[no_floor['family'] == 'baseline', 'p_holm'].min():.2g}, Holm-corrected): no evidence that "
        "they learned more than the hand-made morphology features"]
    # Without a baseline the page says how to get the floor.
    assert any("No gradient-boosting baseline" in line for line in verdict_lines(
        [r for r in runs if r.model_name != "baseline"]))


def test_runs_left_out_by_hand_are_named_in_the_title_with_the_holm_family_they_change(tmp_path):
    from core.learn.report import comparison_title, excluded_note

    runs = _folds(tmp_path / "runs")
    left_out = [r for r in runs if r.label == "resnet18 s0 f0"]
    shown = [r for r in runs if r.label != "resnet18 s0 f0"]
    assert comparison_title(shown, excluded=left_out).endswith("· left out: ResNet-18 s0 f0")
    note = excluded_note(shown, runs)
    assert note.startswith("1 run left out by hand (ResNet-18 s0 f0)") and "Holm" in note
    assert excluded_note(runs, runs) is None
    only_two = [r for r in runs if r.model_name != "resnet18"]
    assert "covers 1 model pair of the runs shown (with every run: 3)" in excluded_note(only_two, runs)


def test_the_page_title_fits_a_projector_and_keeps_the_protocol_n_and_the_runs_left_out(tmp_path):
    """At 1024 px the one-line title wrapped onto 3 lines of the page's h1 (docs/screenshots/present-comparison-1024.png):
    the page shows a short title and the details in a smaller line under it."""
    from core.learn.report import comparison_headline

    runs = _folds(tmp_path / "runs")
    title, details = comparison_headline(runs)
    assert title == "LeNet-5 vs AlexNet vs ResNet-18 · equal protocol"
    assert details == "h · one recipe for every model · pooled over 5 folds: 150 held-out predictions per model"
    left_out = [r for r in runs if r.label == "resnet18 s0 f0"]
    title, details = comparison_headline([r for r in runs if r not in left_out], excluded=left_out)
    assert title == "LeNet-5 vs AlexNet vs ResNet-18 · equal protocol · 1 run left out"
    assert details.endswith(" · left out: ResNet-18 s0 f0")
    # 41 characters filled one line of the h1 at 1024 px: two lines hold the three default models' title.
    assert len(title) <= 2 * 41
    one_split = tmp_path / "one"
    for model in ("lenet5", "resnet18"):
        _fake_run(one_split, model, 0, wrong=[1], protocol="tuned")
    assert comparison_headline(iter_runs(one_split)) == (
        "LeNet-5 vs ResNet-18 · tuned protocol", "h · per-model recipes · one split and seed: 30 test galaxies per model")


def test_no_sentence_for_the_page_or_an_export_carries_markdown_backticks(tmp_path):
    """Seen on the Model comparison page: the no-baseline sentence showed its command between literal backticks
    (the page escapes Markdown), and LaTeX, HTML and the CLI printed them too."""
    from core.learn.report import comparison_headline, comparison_title, excluded_note, report_notes, verdict_lines

    runs = [r for r in _folds(tmp_path / "runs") if r.model_name != "baseline"]
    left_out, shown = runs[-1:], runs[:-1]
    texts = [*verdict_lines(shown), *report_notes(shown, summary_table(shown), excluded=left_out),
             comparison_title(shown, excluded=left_out), *comparison_headline(shown, excluded=left_out),
             excluded_note(shown, runs)]
    assert any("No gradient-boosting baseline" in t for t in texts)
    assert not [t for t in texts if "`" in t]
    out = write_report(shown, tmp_path / "out", excluded=left_out)
    html = out["report.html"].read_text()
    assert "No gradient-boosting baseline" in html and "`" not in html.split("<h2>Test-set metrics")[0]
    tex = out["summary.tex"].read_text()
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert "python -m core train -{}-models baseline" in body and "`" not in body and "textasciigrave" not in body


def test_the_exports_name_models_the_protocol_n_and_the_corrected_verdict(tmp_path):
    runs = _folds(tmp_path / "runs")
    paths = write_report(runs, tmp_path / "out")
    for name in ("summary.csv", "runs.csv", "per_class.csv", "mcnemar.csv", "tests.csv"):
        assert set(pd.read_csv(paths[name])["protocol"]) == {"equal"}, name
    html = paths["report.html"].read_text()
    title = "LeNet-5 vs AlexNet vs ResNet-18 · h · one recipe for every model (equal protocol) · 5 folds"
    assert f"<h1>{title}</h1>" in html
    headings = re.findall(r"<h2>(.*?)</h2>", html)
    assert "F1 per class" in headings and "Confusion matrices" in headings and "ROC curves" in headings
    assert not any("_" in h or h.islower() for h in headings), headings
    assert "lenet5 s0" not in html and "per class f1" not in html
    assert "p (Holm-corrected)" in html and "uncorrected" in html and "Test galaxies (n)" in html
    tex = paths["summary.tex"].read_text()
    assert "LeNet-5 & AlexNet & ResNet-18" in tex and "lenet5" not in tex
    assert r"Test galaxies (n) & 150 (30 per split)" in tex and "Holm" in tex and "equal protocol" in tex
    assert tex.isascii()


def test_the_latex_export_loads_only_the_packages_it_lists_and_compiles(tmp_path):
    import shutil
    import subprocess

    from core.learn.report import LATEX_PACKAGES

    runs = _folds(tmp_path / "runs")
    tex = write_report(runs, tmp_path / "out")["summary.tex"]
    text = tex.read_text()
    used = set(re.findall(r"\\usepackage(?:\[[^]]*\])?\{([^}]*)\}", text))
    assert used == set(LATEX_PACKAGES) and f"% Packages needed: {', '.join(LATEX_PACKAGES)}" in text
    assert text.startswith("%") and r"\documentclass{article}" in text and text.rstrip().endswith(r"\end{document}")
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        if os.environ.get("REQUIRE_LATEX") == "1":
            pytest.fail("REQUIRE_LATEX=1 but pdflatex is missing: apt-get install texlive-latex-base "
                        "texlive-latex-recommended")
        pytest.skip("pdflatex is not installed (make latex)")
    done = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", tex.name],
                          cwd=tex.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tex.parent / "summary.pdf").stat().st_size > 1000


def test_learning_curves_tick_whole_epochs_and_the_p_value_heatmap_has_a_legend(registry):
    from core.learn.report import learning_curves_figure, paired_figure

    curves = learning_curves_figure(iter_runs(registry))
    assert curves.layout.xaxis.dtick == 1 and curves.layout.xaxis.tickformat == "d"
    heatmap = paired_figure(iter_runs(registry)).data[0]
    assert heatmap.showscale and heatmap.colorbar.title.text == "Holm-corrected p"


def test_all_figures_download_as_one_zip(registry):
    import io
    import zipfile

    from core.learn.report import figures, figures_zip

    payload, note = figures_zip(iter_runs(registry), title="LeNet-5 vs ResNet-18")
    names = zipfile.ZipFile(io.BytesIO(payload)).namelist()
    count = len(figures(iter_runs(registry)))
    assert sum(n.endswith(".html") for n in names) == count and "README.txt" in names
    if "PNG (2x), SVG" in note:
        archive = zipfile.ZipFile(io.BytesIO(payload))
        pngs = [n for n in names if n.endswith(".png")]
        svgs = [n for n in names if n.endswith(".svg")]
        assert len(pngs) == len(svgs) == count
        assert archive.read(pngs[0]).startswith(b"\x89PNG") and b"<svg" in archive.read(svgs[0])[:500]
    elif os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but the static figure export failed: {note}")
    else:
        assert "could not be drawn here" in note


def _frozen_folds(root, wrong):
    """Five fold models per model, all scored on the same 30 frozen test galaxies (a dataset built from a
    source with a split.csv): ``wrong[model][fold]`` lists the galaxies that fold model gets wrong."""
    manifest = {"params": {"split_file_sha256": "ab" * 32}}
    for fold in range(5):
        for model, per_fold in wrong.items():
            params = {"model": model, "seed": 0, "folds": 5, "fold": fold, "split_seed": 0, "protocol": "equal"}
            path = create_run(root, model=model, seed=0, params=params, dataset_path=root / "h", dataset_hash="h",
                              dataset_manifest=manifest)
            pred = Y.copy()
            pred[per_fold[fold]] = (pred[per_fold[fold]] + 1) % 3
            proba = np.full((30, 3), 0.1)
            proba[np.arange(30), pred] = 0.8
            metrics = evaluate_predictions(Y, proba, classes=CLASSES)
            metrics.update(params=1000, train_seconds=10.0, inference_img_per_s=100.0, epochs_done=2, best_epoch=2)
            frame = pd.DataFrame({"name": NAMES, "true": np.array(CLASSES)[Y], "pred": np.array(CLASSES)[pred]})
            for k, cls in enumerate(CLASSES):
                frame[f"prob_{cls}"] = proba[:, k]
            frame.to_csv(path / "predictions.csv", index=False)
            atomic_write_json(path / "metrics.json", metrics)
            set_status(path, "finished", classes=CLASSES, n_train=90)
    return iter_runs(root)


def test_folds_on_a_frozen_test_set_count_each_test_galaxy_once(tmp_path):
    # Every fold scores the same 30 frozen test galaxies: pooling the five folds would count each
    # galaxy five times as if independent. The fold models are scored as one mean-probability
    # ensemble, so n is 30 everywhere: table, interval, figures, per-class counts and paired tests.
    from core.learn.report import confusion_figure, per_class_recall, pooled_note

    # LeNet-5's folds get galaxies 0-5 wrong in 3 of 5 folds (the ensemble too), ResNet-18's each
    # get a different one wrong (the ensemble none).
    wrong = {"lenet5": [list(range(6))] * 3 + [[]] * 2, "resnet18": [[0], [1], [2], [3], [4]]}
    runs = _frozen_folds(tmp_path / "runs", wrong)
    summary = summary_table(runs)
    assert summary.loc["lenet5", "n_test"] == 30 and summary.loc["lenet5", "n_test_pooled"] == 30
    assert summary.loc["lenet5", "accuracy_mean"] == pytest.approx(24 / 30)
    low, high = wilson_interval(24, 30)
    assert (summary.loc["lenet5", "accuracy_lo"], summary.loc["lenet5", "accuracy_hi"]) == pytest.approx((low, high))
    assert summary.loc["resnet18", "accuracy_mean"] == 1.0
    counts = np.asarray(confusion_figure(runs, "lenet5").data[0].customdata)
    assert counts.sum() == 30 and np.trace(counts) == 24
    assert per_class_recall(runs).loc["E", "resnet18"].endswith("(n = 10)")
    note = pooled_note(runs)
    assert "30 frozen test galaxies" in note and "ensemble of 5 fold models" in note
    tests = paired_tests(runs)
    # McNemar on the 30 shared galaxies: 6 that only ResNet-18 gets right, none the other way.
    assert tests.loc[0, "n"] == 30 and tests.loc[0, "method"].startswith("McNemar")
    assert tests.loc[0, "p_value"] == pytest.approx(mcnemar_table(runs)["p_value"].iloc[0])
    assert len(mcnemar_table(runs)) == 1 and mcnemar_table(runs)["n"].iloc[0] == 30
