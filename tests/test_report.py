"""Comparison: tables over seeds, McNemar pairing, the report files and the compare/evaluate commands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.cli import main
from core.errors import GalaxyMorphError
from core.io import atomic_write_json
from core.metrics import evaluate_predictions
from core.report import (
    confusion_matrices,
    figures,
    format_summary,
    latex_table,
    learning_curves,
    mcnemar_matrix,
    mcnemar_table,
    misclassified,
    roc_curves,
    summary_table,
    write_report,
)
from core.runs import create_run, iter_runs, set_status

CLASSES = ["E", "S0", "Spiral"]
NAMES = [f"NGC {i}" for i in range(30)]
Y = np.arange(30) % 3


def _fake_run(root, model, seed, *, wrong, finish=True):
    """A finished run whose predictions are right except at the indices in ``wrong``."""
    path = create_run(root, model=model, seed=seed, params={"model": model, "seed": seed}, dataset_path=root,
                      dataset_hash="h")
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
        set_status(path, "finished", classes=CLASSES)
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
    assert summary.loc["resnet18", "n_seeds"] == 2
    text = format_summary(summary)
    assert "0.733 ± 0.094" in text and "resnet18" in text.splitlines()[0]


def test_mcnemar_pairs_models_with_the_same_seed(registry):
    table = mcnemar_table(iter_runs(registry))
    assert sorted(table["seed"]) == [0, 1]
    row = table[table["seed"] == 0].iloc[0]
    # seed 0: lenet wrong on 0-9, resnet wrong on 0 -> b (lenet right, resnet wrong) 0, c 9; exact p = 2/2^9
    pair = {row["model_a"]: "a", row["model_b"]: "b"}
    b, c = (row["b"], row["c"]) if pair["lenet5"] == "a" else (row["c"], row["b"])
    assert (b, c, row["n"], row["method"]) == (0, 9, 30, "exact")
    assert row["p_value"] == pytest.approx(2 / 2**9)
    matrix = mcnemar_matrix(iter_runs(registry))
    assert matrix.loc["lenet5", "resnet18"] == pytest.approx(2 / 2**9)
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
    assert {"learning_curves", "confusion", "per_class_f1", "roc", "mcnemar"} <= set(figures(runs))


def test_write_report_files_are_complete_and_self_contained(registry, tmp_path):
    paths = write_report(iter_runs(registry), tmp_path / "out")
    assert sorted(paths) == ["mcnemar.csv", "per_class.csv", "report.html", "report.json", "runs.csv", "summary.csv",
                            "summary.tex"]
    runs_csv = pd.read_csv(paths["runs.csv"])
    assert sorted(runs_csv["label"]) == ["lenet5 s0", "lenet5 s1", "resnet18 s0", "resnet18 s1"]
    html = paths["report.html"].read_text()
    assert html.count("<script src=") == 0 and "Plotly" in html and len(html) > 1_000_000  # plotly.js inlined
    assert html.count("plotly-graph-div") >= 5
    tex = paths["summary.tex"].read_text()
    assert r"\begin{tabular}{lrr}" in tex and r"0.733 $\pm$ 0.094" in tex and "±" not in tex


def test_latex_escapes_model_names():
    summary = pd.DataFrame({f"{m}_{s}": [0.5] for m in ("accuracy", "balanced_accuracy", "macro_f1",
                            "roc_auc_macro", "ece", "params", "train_seconds", "inference_img_per_s")
                            for s in ("mean", "std")}, index=pd.Index(["my_net"], name="model"))
    summary["n_seeds"] = 1
    assert r"my\_net" in latex_table(summary)


def test_no_finished_runs_is_a_clear_error(tmp_path):
    with pytest.raises(GalaxyMorphError, match="no finished runs"):
        summary_table([])


def test_compare_and_evaluate_commands(registry, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["compare", "--runs-dir", str(registry), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "lenet5" in printed and "McNemar" in printed and (out / "report.html").exists()
    assert main(["evaluate", "--runs-dir", str(registry)]) == 0
    listing = capsys.readouterr().out
    assert listing.count("finished") == 4 and "alexnet" in listing
    run_id = next(r.id for r in iter_runs(registry) if r.label == "resnet18 s0")
    assert main(["evaluate", "--runs-dir", str(registry), run_id, "missing-run"]) == 2
    text = capsys.readouterr().out
    assert "accuracy 0.967" in text and "Spiral" in text and "missing-run" in text
