"""Comparing runs: tables, verdicts and figures for the dashboard, and the ``compare`` report on disk.

Every function takes :class:`core.runs.Run` objects and returns plain tables (pandas) or plotly
figures, so the dashboard and :func:`write_report` show the same numbers.

- Runs are compared **within one dataset** (its content hash) **and protocol** (``tuned`` /
  ``equal``): pooling runs of different ones raises unless asked for (``pool_datasets=True``,
  ``compare --pool-datasets``). A re-run of the same model, seed and split counts once (the
  latest finished).
- Intervals (95 %): with one split, each run's test-set interval (Wilson / stratified bootstrap,
  :mod:`core.metrics`) averaged over seeds; with several splits (``train --folds`` /
  ``--repeats``), the corrected resampled t interval over the per-split means.
- Paired tests: McNemar's test for every pair of runs of different models with the same seed and
  split, on the test galaxies they share (matched by name). Per model pair they are combined: over
  several splits with Nadeau & Bengio's corrected resampled t-test on the per-split accuracy
  differences (seeds averaged within a split); on one split with the largest McNemar p-value over
  the seeds (a difference must hold, in the same direction, for every seed; p = 1 otherwise). The pairs' p-values are Holm-adjusted, and a
  model is called best only when it is significantly better than every other one.
"""

from __future__ import annotations

import html
import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import GalaxyMorphError
from core.io import REPORT, atomic_write_json, atomic_write_text, check_replaceable
from core.metrics import (
    aggregate_seeds,
    corrected_resampled_t,
    evaluate_predictions,
    format_mean_std,
    holm,
    mcnemar,
    normalize_confusion,
    reliability_bins,
    roc_curve,
)
from core.runs import Run

logger = logging.getLogger(__name__)

SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "ece", "params", "train_seconds",
                   "inference_img_per_s")
_LABELS = {"accuracy": "Accuracy", "balanced_accuracy": "Balanced acc.", "macro_f1": "Macro F1",
           "roc_auc_macro": "ROC AUC (OvR)", "ece": "ECE", "params": "Parameters", "train_seconds": "Train time (s)",
           "inference_img_per_s": "Inference (img/s)"}
INTERVAL_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro")
MODEL_LABELS = {"lenet5": "LeNet-5", "alexnet": "AlexNet", "resnet18": "ResNet-18", "resnet34": "ResNet-34",
                "resnet50": "ResNet-50", "baseline": "Boosting baseline"}
ALPHA = 0.05


def model_label(model: str) -> str:
    """``lenet5`` -> ``LeNet-5`` (unknown names unchanged)."""
    return MODEL_LABELS.get(model, model)


def finished(runs: list[Run]) -> list[Run]:
    """The runs that have test metrics; the others are logged and left out."""
    kept = [r for r in runs if r.metrics]
    for r in runs:
        if not r.metrics:
            logger.warning("run %s has no metrics (status %s); left out of the comparison", r.id, r.status)
    return kept


def dataset_hash(run: Run) -> str:
    """The content hash of the dataset the run was trained on."""
    return str(run.config.get("dataset", {}).get("content_hash", "?"))


def protocol(run: Run) -> str:
    """The training protocol the run's defaults came from (``tuned`` for runs that predate protocols)."""
    return str(run.config.get("params", {}).get("protocol", "tuned"))


def _experiment(run: Run) -> str:
    # Runs of the tuned and the equal protocol answer different questions: never one table.
    return f"{dataset_hash(run)}/{protocol(run)}"


def split_key(run: Run) -> str:
    """Which train/val/test split the run used: ``dataset`` (the dataset's own), ``k5 f2 s0`` (fold 2 of
    a 5-fold split with split seed 0) or ``shuffle s1`` (a stratified re-split with seed 1)."""
    params = run.config.get("params", {})
    folds, split_seed = int(params.get("folds", 0) or 0), params.get("split_seed")
    if folds:
        return f"k{folds} f{int(params.get('fold', 0))} s{int(split_seed or 0)}"
    return "dataset" if split_seed is None else f"shuffle s{int(split_seed)}"


def deduplicate(runs: list[Run]) -> list[Run]:
    """One run per (dataset, model, seed, split): the latest finished; re-runs are logged and left out.

    A re-run of the same experiment is not a new seed: counting it twice would shrink the spread
    and double its weight in the mean.
    """
    latest: dict[tuple[str, str, int, str], Run] = {}
    for run in runs:
        key = (_experiment(run), run.model_name, run.seed, split_key(run))
        kept = latest.get(key)
        if kept is None or _finished_at(run) >= _finished_at(kept):
            if kept is not None:
                logger.warning("run %s repeats %s (same model, seed and split); counting only the later one",
                               kept.id, run.id)
            latest[key] = run
        else:
            logger.warning("run %s repeats %s (same model, seed and split); counting only the later one", run.id,
                           kept.id)
    return [r for r in runs if latest.get((_experiment(r), r.model_name, r.seed, split_key(r))) is r]


def _finished_at(run: Run) -> str:
    return str(run.config.get("finished") or run.config.get("created") or "")


def by_dataset(runs: list[Run]) -> dict[str, list[Run]]:
    """The runs grouped by dataset content hash and training protocol, in first-seen order."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(_experiment(run), []).append(run)
    return groups


def dataset_name(runs: list[Run]) -> str:
    """A readable name of the runs' dataset: the folder name, the first 8 characters of its hash, and the
    protocol unless it is the default ``tuned``."""
    path = str(runs[0].config.get("dataset", {}).get("path", "dataset"))
    suffix = "" if protocol(runs[0]) == "tuned" else f"-{protocol(runs[0])}"
    return f"{Path(path).name}-{dataset_hash(runs[0])[:8]}{suffix}"


def comparable(runs: list[Run], *, pool_datasets: bool = False) -> list[Run]:
    """The finished runs, one per experiment, checked to share one dataset.

    Raises
    ------
    GalaxyMorphError
        If the runs were trained on different datasets and ``pool_datasets`` is off.
    """
    done = deduplicate(finished(runs))
    groups = by_dataset(done)
    if len(groups) > 1 and not pool_datasets:
        names = ", ".join(dataset_name(g) for g in groups.values())
        raise GalaxyMorphError(f"runs must come from one dataset and protocol to be compared; got {len(groups)} "
                               f"({names}). Compare one at a time (`compare --dataset PATH`, or name the runs), "
                               "or pass --pool-datasets to pool them on purpose.")
    return done


def run_metrics(run: Run) -> dict[str, Any]:
    """The run's test metrics, with intervals recomputed from its predictions if it predates them."""
    metrics = run.metrics
    if "accuracy_ci" in metrics or not metrics:
        return metrics
    predictions = run.predictions
    classes = run.classes
    if predictions.empty or not classes:
        return metrics
    index = {c: k for k, c in enumerate(classes)}
    y = predictions["true"].astype(str).map(index).to_numpy()
    proba = predictions[[f"prob_{c}" for c in classes]].to_numpy(dtype=np.float64)
    fresh = evaluate_predictions(y, proba, classes=classes)
    merged = {**metrics, **{k: v for k, v in fresh.items() if k.endswith("_ci") or k == "intervals"}}
    old = metrics.get("per_class", {})
    merged["per_class"] = {c: {**old.get(c, {}), "recall_ci": fresh["per_class"][c]["recall_ci"]} for c in classes}
    return merged


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: id, label, model, seed, split, dataset, status, :data:`SUMMARY_METRICS`, and the
    interval ``<metric>_lo`` / ``<metric>_hi`` of each of :data:`INTERVAL_METRICS`."""
    rows = []
    for run in runs:
        m = run_metrics(run)
        intervals = {}
        for k in INTERVAL_METRICS:
            low, high = m.get(f"{k}_ci", [np.nan, np.nan])
            intervals.update({f"{k}_lo": low, f"{k}_hi": high})
        rows.append({"id": run.id, "label": run.label, "model": run.model_name, "seed": run.seed,
                     "split": split_key(run), "dataset": dataset_name([run]), "status": run.status,
                     "n_train": run.config.get("n_train", np.nan), "n_test": m.get("n_test", np.nan),
                     "epochs_done": m.get("epochs_done"), "best_epoch": m.get("best_epoch"),
                     **{k: m.get(k, np.nan) for k in SUMMARY_METRICS}, **intervals})
    return pd.DataFrame(rows)


def summary_table(runs: list[Run], *, pool_datasets: bool = False) -> pd.DataFrame:
    """Per model: mean and std over runs of :data:`SUMMARY_METRICS`, intervals, and run counts.

    Columns ``<metric>_mean``, ``<metric>_std``; ``<metric>_lo`` / ``<metric>_hi`` for
    :data:`INTERVAL_METRICS` (see the module docstring for how); ``n_runs``, ``n_seeds``
    (distinct seeds), ``n_splits`` (distinct splits) and ``interval`` (``test set`` or
    ``between splits``).

    Raises
    ------
    GalaxyMorphError
        If no run has finished, or the runs come from several datasets and ``pool_datasets`` is off.
    """
    table = runs_table(comparable(runs, pool_datasets=pool_datasets))
    if table.empty:
        raise GalaxyMorphError("no finished runs to compare. Train some with `python -m core train`.")
    table[list(SUMMARY_METRICS)] = table[list(SUMMARY_METRICS)].astype(float)
    summary = aggregate_seeds(table, by="model", columns=list(SUMMARY_METRICS)).rename(columns={"n_seeds": "n_runs"})
    grouped = table.groupby("model", sort=False)
    summary["n_seeds"] = grouped["seed"].nunique()
    summary["n_splits"] = grouped["split"].nunique()
    summary["interval"] = np.where(summary["n_splits"] > 1, "between splits", "test set")
    for metric in INTERVAL_METRICS:
        bounds = {model: _model_interval(part, metric) for model, part in grouped}
        summary[f"{metric}_lo"] = [bounds[m][0] for m in summary.index]
        summary[f"{metric}_hi"] = [bounds[m][1] for m in summary.index]
    return summary


def _model_interval(rows: pd.DataFrame, metric: str) -> tuple[float, float]:
    """One model's interval of ``metric``: see the module docstring."""
    per_split = rows.groupby("split")[metric].mean()
    if len(per_split) < 2:
        return float(rows[f"{metric}_lo"].mean()), float(rows[f"{metric}_hi"].mean())
    ratio = float((rows["n_test"].astype(float) / rows["n_train"].astype(float)).mean())
    if not ratio > 0:
        return float("nan"), float("nan")
    result = corrected_resampled_t(per_split.to_numpy(), test_train_ratio=ratio)
    # A t interval knows nothing of the metric's range; every interval metric lives in [0, 1].
    return max(0.0, result.low), min(1.0, result.high)


def per_class_table(runs: list[Run]) -> pd.DataFrame:
    """Long table: label, model, seed, split, class, precision, recall, recall_lo, recall_hi (Wilson), f1,
    support, roc_auc."""
    rows = []
    for r in finished(runs):
        for cls, scores in run_metrics(r).get("per_class", {}).items():
            scores = dict(scores)
            low, high = scores.pop("recall_ci", [np.nan, np.nan])
            rows.append({"label": r.label, "model": r.model_name, "seed": r.seed, "split": split_key(r),
                         "class": cls, **scores, "recall_lo": low, "recall_hi": high})
    return pd.DataFrame(rows)


def per_class_recall(runs: list[Run]) -> pd.DataFrame:
    """Recall per class and model with its 95 % Wilson interval (means over the runs), as display text.

    Classes by row, models by column, cells ``0.900 [0.804, 0.951]``.
    """
    table = per_class_table(deduplicate(runs))
    if table.empty:
        return pd.DataFrame()
    means = table.groupby(["class", "model"], sort=False)[["recall", "recall_lo", "recall_hi"]].mean()
    cells = means.apply(lambda r: f"{r['recall']:.3f} [{r['recall_lo']:.3f}, {r['recall_hi']:.3f}]", axis=1)
    return cells.unstack("model").reindex(columns=list(dict.fromkeys(table["model"])))


def confusion_matrices(run: Run) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(classes, counts, normalised)`` of one run (true class by row)."""
    counts = np.asarray(run.metrics.get("confusion", []), dtype=np.int64)
    if counts.size == 0:
        raise GalaxyMorphError(f"run {run.id} has no confusion matrix (status {run.status}).")
    return run.classes, counts, normalize_confusion(counts)


def learning_curves(runs: list[Run]) -> pd.DataFrame:
    """Long table of every run's history: label, model, seed, epoch, loss, val_loss, accuracy, val_accuracy."""
    frames = []
    for r in runs:
        history = r.history
        if not history.empty:
            frames.append(history.assign(label=r.label, model=r.model_name, seed=r.seed, id=r.id))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def roc_curves(run: Run) -> pd.DataFrame:
    """One-vs-rest ROC points of one run: class, fpr, tpr, threshold, auc."""
    predictions = run.predictions
    if predictions.empty:
        raise GalaxyMorphError(f"run {run.id} has no predictions (status {run.status}).")
    frames = []
    for cls in run.classes:
        fpr, tpr, thr = roc_curve(predictions["true"].astype(str) == cls, predictions[f"prob_{cls}"])
        auc = run.metrics.get("per_class", {}).get(cls, {}).get("roc_auc", np.nan)
        frames.append(pd.DataFrame({"class": cls, "fpr": fpr, "tpr": tpr, "threshold": thr, "auc": auc}))
    return pd.concat(frames, ignore_index=True)


def reliability(run: Run, *, n_bins: int = 15) -> pd.DataFrame:
    """The run's reliability diagram table (:func:`core.metrics.reliability_bins`) from its test predictions."""
    predictions = run.predictions
    if predictions.empty:
        raise GalaxyMorphError(f"run {run.id} has no predictions (status {run.status}).")
    classes = run.classes
    y = predictions["true"].astype(str).map({c: k for k, c in enumerate(classes)}).to_numpy()
    proba = predictions[[f"prob_{c}" for c in classes]].to_numpy(dtype=np.float64)
    return reliability_bins(y, proba, n_bins=n_bins)


def mcnemar_table(runs: list[Run]) -> pd.DataFrame:
    """McNemar's test for every pair of runs of different models with the same dataset, split and seed.

    Columns: dataset, split, seed, model_a, model_b, n (shared test galaxies), n_train, acc_a, acc_b, b, c,
    statistic, p_value, method.
    """
    rows = []
    done = deduplicate(finished(runs))
    for a, b in itertools.combinations(done, 2):
        if (a.model_name == b.model_name or a.seed != b.seed or split_key(a) != split_key(b)
                or _experiment(a) != _experiment(b)):
            continue
        pa, pb = a.predictions.set_index("name"), b.predictions.set_index("name")
        shared = pa.index.intersection(pb.index)
        if len(shared) == 0:
            logger.warning("runs %s and %s share no test galaxies; not compared", a.id, b.id)
            continue
        correct_a = (pa.loc[shared, "true"] == pa.loc[shared, "pred"]).to_numpy()
        correct_b = (pb.loc[shared, "true"] == pb.loc[shared, "pred"]).to_numpy()
        result = mcnemar(correct_a, correct_b)
        rows.append({"dataset": dataset_name([a]), "split": split_key(a), "seed": a.seed, "model_a": a.model_name,
                     "model_b": b.model_name, "n": len(shared), "n_train": a.config.get("n_train", np.nan), "acc_a": float(correct_a.mean()),
                     "acc_b": float(correct_b.mean()), **result.to_dict()})
    columns = ["dataset", "split", "seed", "model_a", "model_b", "n", "n_train", "acc_a", "acc_b", "b", "c",
               "statistic", "p_value", "method"]
    return pd.DataFrame(rows, columns=columns)


PAIRED_COLUMNS = ["model_a", "model_b", "n_splits", "n_pairs", "acc_a", "acc_b", "difference", "method", "p_value",
                  "p_holm", "better"]


def paired_tests(runs: list[Run], *, alpha: float = ALPHA) -> pd.DataFrame:
    """One combined test per pair of models, Holm-adjusted across the pairs.

    Columns: model_a, model_b, n_splits, n_pairs (paired runs), acc_a, acc_b (mean accuracy on the
    shared test galaxies), difference (``acc_a - acc_b``), method, p_value, p_holm, and better
    (the model that is significantly more accurate at ``alpha`` after Holm, or ``None``).
    """
    mc = mcnemar_table(runs)
    models = list(dict.fromkeys(r.model_name for r in finished(runs)))
    rows = []
    for a, b in itertools.combinations(models, 2):
        forward = mc[(mc["model_a"] == a) & (mc["model_b"] == b)]
        backward = mc[(mc["model_a"] == b) & (mc["model_b"] == a)].rename(columns={"acc_a": "acc_b", "acc_b": "acc_a"})
        part = pd.concat([forward, backward], ignore_index=True)
        if part.empty:
            continue
        part = part.assign(diff=part["acc_a"] - part["acc_b"])
        per_split = part.groupby(["dataset", "split"])["diff"].mean()
        if len(per_split) >= 2:
            ratio = float((part["n"] / part["n_train"].astype(float)).mean())
            p_value = corrected_resampled_t(per_split.to_numpy(), test_train_ratio=ratio).p_value if ratio > 0 \
                else float("nan")
            method = f"corrected resampled t over {len(per_split)} splits (Nadeau & Bengio 2003)"
        elif len(part) == 1:
            p_value, method = float(part["p_value"].iloc[0]), f"McNemar ({part['method'].iloc[0]})"
        elif (part["diff"] > 0).all() or (part["diff"] < 0).all():
            p_value, method = float(part["p_value"].max()), f"McNemar, largest p of {len(part)} seeds"
        else:
            # Seeds that disagree on which model is better cannot all show the same difference.
            p_value, method = 1.0, f"McNemar over {len(part)} seeds, which disagree on the direction"
        rows.append({"model_a": a, "model_b": b, "n_splits": len(per_split), "n_pairs": len(part),
                     "acc_a": float(part["acc_a"].mean()), "acc_b": float(part["acc_b"].mean()),
                     "difference": float(part["diff"].mean()), "method": method, "p_value": p_value})
    table = pd.DataFrame(rows, columns=PAIRED_COLUMNS[:-2])
    table["p_holm"] = holm(table["p_value"].to_numpy()) if len(table) else []
    significant = table["p_holm"] < alpha
    better = np.where(significant, np.where(table["difference"] > 0, table["model_a"], table["model_b"]), None)
    # object dtype: pandas 3 would infer a string column and turn None into NaN.
    table["better"] = pd.Series(better, index=table.index, dtype=object)
    return table[PAIRED_COLUMNS]


def format_p(p: float) -> str:
    """``p = 0.003``, ``p = 0.41``, ``p < 0.001``."""
    if p != p:
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def verdicts(tests: pd.DataFrame) -> list[str]:
    """One sentence per model pair from :func:`paired_tests`, e.g. "ResNet-18 is better than LeNet-5
    (p = 0.003, Holm)" or "no significant difference between LeNet-5 and AlexNet (p = 0.41, Holm)"."""
    lines = []
    for row in tests.itertuples():
        p = format_p(row.p_holm)
        if pd.isna(row.better):
            lines.append(f"no significant difference between {model_label(row.model_a)} and "
                         f"{model_label(row.model_b)} ({p}, Holm)")
        else:
            worse = row.model_b if row.better == row.model_a else row.model_a
            lines.append(f"{model_label(row.better)} is better than {model_label(worse)} ({p}, Holm)")
    return lines


def best_model(tests: pd.DataFrame, models: list[str]) -> str | None:
    """The model significantly more accurate than every other one (Holm), or ``None``."""
    for model in models:
        others = [m for m in models if m != model]
        wins = tests[((tests["model_a"] == model) | (tests["model_b"] == model)) & (tests["better"] == model)]
        opponents = set(wins["model_a"]) | set(wins["model_b"])
        if others and set(others) <= opponents:
            return model
    return None


def paired_matrix(runs: list[Run]) -> pd.DataFrame:
    """Square table of the Holm-adjusted combined p-values between models (NaN on the diagonal)."""
    tests = paired_tests(runs)
    models = list(dict.fromkeys(r.model_name for r in finished(runs)))
    matrix = pd.DataFrame(np.nan, index=models, columns=models)
    for row in tests.itertuples():
        matrix.loc[row.model_a, row.model_b] = matrix.loc[row.model_b, row.model_a] = row.p_holm
    return matrix


def misclassified(run: Run) -> pd.DataFrame:
    """Test galaxies the run got wrong, most confident mistakes first, with ``confidence``."""
    predictions = run.predictions
    if predictions.empty:
        return predictions
    prob_columns = [c for c in predictions.columns if c.startswith("prob_")]
    wrong = predictions[predictions["true"] != predictions["pred"]].copy()
    wrong["confidence"] = wrong[prob_columns].max(axis=1)
    return wrong.sort_values("confidence", ascending=False).reset_index(drop=True)


def summary_cells(summary: pd.DataFrame) -> pd.DataFrame:
    """Display text of the summary: metric labels by row, model names by column, ``mean ± std [low, high]``
    (the std only with several runs, the interval only for :data:`INTERVAL_METRICS`), and a last row
    ``Runs`` (``15: 5 splits × 3 seeds``)."""
    columns = {}
    for model in summary.index:
        row = summary.loc[model]
        cells = {_LABELS[m]: _format_cell(m, row[f"{m}_mean"], row[f"{m}_std"], row.get(f"{m}_lo", np.nan),
                                          row.get(f"{m}_hi", np.nan)) for m in SUMMARY_METRICS}
        cells["Runs"] = _runs_cell(int(row.get("n_runs", row.get("n_seeds", 1))), int(row.get("n_splits", 1)),
                                   int(row.get("n_seeds", 1)))
        columns[model] = cells
    return pd.DataFrame(columns)


def _runs_cell(n_runs: int, n_splits: int, n_seeds: int) -> str:
    parts = [f"{n} {word}{'s' if n != 1 else ''}" for n, word in ((n_splits, "split"), (n_seeds, "seed")) if n > 1]
    return f"{n_runs}: {' × '.join(parts)}" if parts else str(n_runs)


def format_summary(summary: pd.DataFrame, *, best: str | None = None) -> str:
    """The summary as a side-by-side text table (metrics by row, models by column), with a note on
    the intervals and ``*`` on the accuracy of ``best`` (significantly better than every other model)."""
    cells = summary_cells(summary)
    if best is not None:
        cells.loc[_LABELS["accuracy"], best] += " *"
    models = list(cells.columns)
    width = max(18, *(len(m) + 2 for m in models), *(len(c) + 2 for c in cells.to_numpy().ravel()))
    lines = [f"{'':<20}" + "".join(f"{m:>{width}}" for m in models)]
    for label, row in cells.iterrows():
        lines.append(f"{label:<20}" + "".join(f"{c:>{width}}" for c in row))
    lines.append(interval_note(summary))
    if best is not None:
        lines.append(f"* {best_note(best)}")
    return "\n".join(lines)


def interval_note(summary: pd.DataFrame) -> str:
    """One sentence saying what ``±`` and ``[low, high]`` mean for this summary."""
    if (summary["n_splits"] > 1).any():
        where = ("95 % intervals [low, high] between splits (corrected resampled t, Nadeau & Bengio 2003) where a "
                 "model has several splits, else on the test set")
    else:
        where = ("95 % intervals [low, high] on the test set: Wilson for accuracy, stratified bootstrap (1,000 "
                 "resamples) for the others, averaged over seeds")
    return f"mean ± std over runs; {where}."


def _format_cell(metric: str, mean: float, std: float, low: float = float("nan"), high: float = float("nan")) -> str:
    if mean != mean:
        return "–"
    if metric == "params":
        return f"{mean / 1e6:.2f} M" if mean >= 1e5 else f"{mean / 1e3:.1f} k"
    if metric in ("train_seconds", "inference_img_per_s"):
        return format_mean_std(mean, std, digits=0)
    text = format_mean_std(mean, std, digits=3)
    return text if low != low else f"{text} [{low:.3f}, {high:.3f}]"


# All ten characters that LaTeX gives a meaning to, in one pass (so the backslashes added for
# one are never escaped again); a line break would end the table row's paragraph.
_LATEX_SPECIALS = str.maketrans({
    "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "\n": " ", "\r": " ",
})


#: What a spreadsheet reads as the start of a formula (or a DDE command) in a cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert_csv(table: pd.DataFrame) -> str:
    """``table`` as CSV (no index) that a spreadsheet opens as plain text: every text cell and
    header starting with one of :data:`FORMULA_STARTS` gets a leading ``'`` (OWASP's CSV injection
    advice), so a galaxy, class, model or dataset named ``=HYPERLINK(...)`` stays a name. Numbers
    are left alone: ``-0.5`` is a number, not a formula."""

    def inert(value: object) -> object:
        return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value

    safe = table.rename(columns=inert)
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column].dtype):
            safe[column] = safe[column].map(inert)
    return safe.to_csv(index=False)


def latex_escape(text: str) -> str:
    r"""``text`` as literal LaTeX text: a model label ``$\input{/etc/passwd}$`` is printed, not run.

    Examples
    --------
    >>> print(latex_escape(r"$\input{x}$ 50% a_b ~^"))
    \$\textbackslash{}input\{x\}\$ 50\% a\_b \textasciitilde{}\textasciicircum{}
    """
    return str(text).translate(_LATEX_SPECIALS)


def latex_table(summary: pd.DataFrame, *, best: str | None = None,
                caption: str = r"Test-set comparison (mean $\pm$ std over runs, 95\,\% interval in brackets).") -> str:
    """A ``booktabs`` LaTeX table of the summary: metrics by row, models by column; the accuracy of
    ``best`` (significantly better than every other model) in bold."""
    models = list(summary.index)
    out = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{caption}}}",
           r"\begin{tabular}{l" + "r" * len(models) + "}", r"\toprule",
           "Metric & " + " & ".join(latex_escape(m) for m in models) + r" \\", r"\midrule"]
    cells = summary_cells(summary)
    for metric in SUMMARY_METRICS:
        row = [cells.loc[_LABELS[metric], m].replace("±", r"$\pm$").replace("–", "--") for m in models]
        if metric == "accuracy" and best in models:
            row[models.index(best)] = rf"\textbf{{{row[models.index(best)]}}}"
        out.append(f"{_LABELS[metric]} & " + " & ".join(row) + r" \\")
    out.append(r"Runs & " + " & ".join(cells.loc["Runs", m].replace("×", r"$\times$") for m in models) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------- figures
# The one home of the comparison figures: the Comparison page and the HTML report both draw these.

ACCURACY_RANGE = (0.0, 1.0)
# Model colours, darker hues outside the Okabe-Ito class palette (ui/palette.py), so a chart of
# models is never read as a chart of classes; kept here so the HTML report uses them too.
MODEL_COLORS = {
    "lenet5": "#6A3D9A", "alexnet": "#A6611A", "resnet18": "#1F4E79", "resnet34": "#2E7D6B", "resnet50": "#7F1D3F",
}
_MODEL_FALLBACK = ("#5E5E5E", "#8C6D31", "#3B6E8F", "#843C54")
_GREY = "#999999"
FIGURE_NAMES = ("per_class_f1", "learning_curves", "roc", "size_accuracy", "reliability", "paired_tests")


def model_color(model: str, index: int = 0) -> str:
    """The colour of a model family (``lenet5``...); others get a fallback by position."""
    return MODEL_COLORS.get(model, _MODEL_FALLBACK[index % len(_MODEL_FALLBACK)])


def _text(value: object) -> str:
    # Plotly reads <b>, <a href> and entities in titles, ticks, legends and hover text.
    return html.escape(str(value), quote=False)


def _titled(fig: Any, title: str | None) -> Any:
    if title:
        fig.update_layout(title=dict(text=_text(title)))
    return fig


def first_seed_runs(runs: list[Run]) -> list[Run]:
    """One run per model, the one with the smallest seed, in first-seen model order."""
    chosen: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: r.seed):
        chosen.setdefault(run.model_name, run)
    return [chosen[m] for m in dict.fromkeys(r.model_name for r in runs)]


def _colors(runs: list[Run]) -> dict[str, str]:
    return {m: model_color(m, i) for i, m in enumerate(dict.fromkeys(r.model_name for r in runs))}


def confusion_figure(run: Run) -> Any:
    """The run's confusion matrix: colour and text the fraction of each true class (rows)."""
    import plotly.graph_objects as go  # plotting is optional for the library

    classes, _, norm = confusion_matrices(run)
    labels = [_text(c) for c in classes]
    fig = go.Figure(go.Heatmap(z=norm, x=labels, y=labels, colorscale="Blues", zmin=0, zmax=1, showscale=False,
                               text=[[f"{v:.2f}" for v in row] for row in norm], texttemplate="%{text}"))
    fig.update_yaxes(autorange="reversed", title="true")
    fig.update_xaxes(title="predicted", side="bottom")
    return fig


def per_class_f1_figure(runs: list[Run]) -> Any:
    """Grouped bars of each class's F1 per model (mean ± std over runs), on [0, 1]."""
    import plotly.graph_objects as go

    colors = _colors(runs)
    f1 = per_class_table(runs).groupby(["model", "class"], sort=False)["f1"].agg(["mean", "std"]).reset_index()
    fig = go.Figure([go.Bar(name=_text(model_label(m)), x=[_text(c) for c in part["class"]], y=part["mean"],
                            marker_color=colors[m], error_y=dict(type="data", array=part["std"].fillna(0)))
                     for m, part in f1.groupby("model", sort=False)])
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="F1", range=list(ACCURACY_RANGE))
    return _titled(fig, "Per-class F1 (mean ± std over seeds)")


def learning_curves_figure(runs: list[Run]) -> Any:
    """Train (solid) and validation (dashed) accuracy per epoch of every run, on [0, 1]."""
    import plotly.graph_objects as go

    colors = _colors(runs)
    curves = learning_curves(runs)
    fig = go.Figure()
    for _, part in curves.groupby("id", sort=False):
        m = part["model"].iloc[0]
        name = _text(f"{model_label(m)} s{part['seed'].iloc[0]}")
        fig.add_trace(go.Scatter(x=part["epoch"], y=part["accuracy"], name=name + " train", line=dict(color=colors[m])))
        fig.add_trace(go.Scatter(x=part["epoch"], y=part["val_accuracy"], name=name + " val",
                                 line=dict(color=colors[m], dash="dash")))
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title="accuracy", range=list(ACCURACY_RANGE))
    return _titled(fig, "Learning curves (solid: train, dashed: validation)")


def roc_figure(runs: list[Run], roc_class: str) -> Any:
    """One-vs-rest ROC curve of ``roc_class`` for the first seed of each model, with its AUC."""
    import plotly.graph_objects as go

    colors = _colors(runs)
    fig = go.Figure()
    for run in first_seed_runs(finished(runs)):
        roc = roc_curves(run)
        part = roc[roc["class"] == roc_class]
        fig.add_trace(go.Scatter(x=part["fpr"], y=part["tpr"], line=dict(color=colors[run.model_name]),
                                 name=_text(f"{model_label(run.model_name)} (AUC {part['auc'].iloc[0]:.3f})")))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], line=dict(color=_GREY, dash="dot"), name="chance"))
    fig.update_xaxes(title="false positive rate", range=list(ACCURACY_RANGE))
    fig.update_yaxes(title="true positive rate", range=list(ACCURACY_RANGE))
    return _titled(fig, f"ROC curves — {roc_class} vs rest")


def size_accuracy_figure(runs: list[Run]) -> Any:
    """Test accuracy (on [0, 1]) against parameter count (log), marker area the training time."""
    import plotly.graph_objects as go

    colors = _colors(runs)
    rows = runs_table(finished(runs))
    rows["train_seconds"] = rows["train_seconds"].fillna(0.0)
    longest = max(1.0, float(rows["train_seconds"].max()))
    fig = go.Figure()
    for m, part in rows.groupby("model", sort=False):
        fig.add_trace(go.Scatter(
            x=part["params"], y=part["accuracy"], mode="markers", name=_text(model_label(m)), cliponaxis=False,
            marker=dict(color=colors[m], size=10 + 30 * part["train_seconds"] / longest, opacity=0.9,
                        line=dict(color="white", width=1)),
            hovertemplate="%{x:,} parameters<br>accuracy %{y:.3f}<br>%{customdata:.0f} s training",
            customdata=part["train_seconds"]))
    fig.update_xaxes(title="parameters (log scale)", type="log", dtick=1)
    # Plotly pads the axis around big markers (below 0, above 1): pin it to the metric's range,
    # and let markers at the edge draw past it rather than be cut.
    fig.update_yaxes(title="test accuracy", range=list(ACCURACY_RANGE))
    return _titled(fig, "Size vs accuracy (marker area: training time)")


def reliability_figure(runs: list[Run]) -> Any:
    """Reliability diagram (15 confidence bins) of the first seed of each model, with its ECE."""
    import plotly.graph_objects as go

    colors = _colors(runs)
    fig = go.Figure()
    for run in first_seed_runs(finished(runs)):
        bins = reliability(run).dropna()
        ece = run.metrics.get("ece", np.nan)
        fig.add_trace(go.Scatter(x=bins["confidence"], y=bins["accuracy"], mode="lines+markers",
                                 line=dict(color=colors[run.model_name]), customdata=bins["count"],
                                 name=_text(f"{model_label(run.model_name)} (ECE {ece:.3f})"),
                                 hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>%{customdata} galaxies"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], line=dict(color=_GREY, dash="dot"), name="calibrated"))
    fig.update_xaxes(title="mean confidence in bin", range=list(ACCURACY_RANGE))
    fig.update_yaxes(title="accuracy in bin", range=list(ACCURACY_RANGE))
    return _titled(fig, "Reliability diagram (15 confidence bins)")


def paired_figure(runs: list[Run]) -> Any:
    """Heatmap of the Holm-adjusted p-value of every model pair (:func:`paired_matrix`)."""
    import plotly.graph_objects as go

    matrix = paired_matrix(runs)
    labels = [_text(model_label(m)) for m in matrix.columns]
    z = matrix.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, colorscale="RdBu", zmin=0, zmax=1, showscale=False,
                               text=[["" if np.isnan(v) else f"{v:.3g}" for v in row] for row in z],
                               texttemplate="%{text}"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="bottom")
    return _titled(fig, "Paired tests between models: Holm-adjusted p-values")


def sections(runs: list[Run]) -> list[str]:
    """The comparison sections that have something to show for ``runs``, in page order: ``recall``,
    ``confusion`` and the :data:`FIGURE_NAMES` (``paired_tests`` needs two models sharing a seed and
    split), then ``misclassified`` (some test galaxy classified wrongly)."""
    done = deduplicate(finished(runs))
    first = first_seed_runs(done)
    predicted = bool(first) and all(not r.predictions.empty for r in first)
    have = {
        "recall": not per_class_recall(done).empty,
        "confusion": bool(first) and all(r.metrics.get("confusion") for r in first),
        "per_class_f1": not per_class_table(done).empty,
        "learning_curves": not learning_curves(done).empty,
        "roc": predicted,
        "size_accuracy": bool(done),
        "reliability": predicted,
        "paired_tests": bool(paired_matrix(done).notna().any().any()),
        "misclassified": any(not misclassified(r).empty for r in done),
    }
    return [name for name, shown in have.items() if shown]


def presentation_title(runs: list[Run]) -> str:
    """The headline of a presentation: ``LeNet-5 vs AlexNet vs ResNet-18 · tiny · 3 seeds``.

    The models in first-seen order, the dataset folder (and its protocol unless ``tuned``), and
    how many runs each model's numbers pool: seeds on one split, or ``5 folds × 2 seeds``.
    """
    done = deduplicate(finished(runs))
    if not done:
        raise GalaxyMorphError("no finished runs to title. Train some with `python -m core train`.")
    models = " vs ".join(model_label(m) for m in _smallest_first([r.model_name for r in done]))
    dataset = Path(str(done[0].config.get("dataset", {}).get("path", "dataset"))).name
    if protocol(done[0]) != "tuned":
        dataset += f" ({protocol(done[0])} protocol)"
    splits = {split_key(r) for r in done}
    seeds = _count(len({r.seed for r in done}), "seed")
    if len(splits) > 1:
        kind = "fold" if all(s.startswith("k") for s in splits) else "split"
        seeds = f"{_count(len(splits), kind)} × {seeds}" if len({r.seed for r in done}) > 1 else _count(len(splits), kind)
    return f"{models} · {dataset} · {seeds}"


def _smallest_first(models: list[str]) -> list[str]:
    return sorted(dict.fromkeys(models), key=_model_rank)


def _model_rank(model: str) -> int:
    # The order of MODEL_LABELS (LeNet-5 first); other models after them, in the order given.
    order = list(MODEL_LABELS)
    return order.index(model) if model in order else len(order)


def in_model_order(runs: list[Run]) -> list[Run]:
    """``runs`` with the architectures smallest first (LeNet-5, AlexNet, ResNet-18 …), whatever order they
    were trained in; runs of one model keep their order. Tables and figures list models in this order."""
    return sorted(runs, key=lambda r: _model_rank(r.model_name))


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def verdict_sentence(tests: pd.DataFrame) -> str | None:
    """Every pair's :func:`verdicts` as one sentence (``ResNet-18 is better than LeNet-5 (p = 0.003,
    Holm); no significant …``), or ``None`` when no two models share a seed and split."""
    said = verdicts(tests)
    if not said:
        return None
    if len(tests) > 2 and tests["better"].isna().all():
        # Three "no significant difference" clauses in a row read as noise: one clause says it.
        models = _smallest_first([*tests["model_a"], *tests["model_b"]])
        names = ", ".join(model_label(m) for m in models[:-1]) + f" and {model_label(models[-1])}"
        lowest, highest = format_p(float(tests["p_holm"].min())), format_p(float(tests["p_holm"].max()))
        p = f"{lowest} for every pair" if lowest == highest else "every " + lowest.replace("p = ", "p ≥ ")
        return f"No significant difference between any two of {names} ({p}, Holm)."
    text = "; ".join(said)
    return text[0].upper() + text[1:] + "."


def best_note(best: str | None) -> str:
    """What the highlighted accuracy means, or that none is highlighted."""
    if best is None:
        return "No model is significantly more accurate than every other one."
    return f"{model_label(best)} is significantly more accurate than every other model (Holm)."


def figures(runs: list[Run]) -> dict[str, Any]:
    """The comparison's plotly figures for the HTML report: ``confusion`` (one panel per model), then
    those of :data:`FIGURE_NAMES` that :func:`sections` finds something for (ROC: one panel per class)."""
    from plotly.subplots import make_subplots  # plotting is optional for the library

    done = deduplicate(finished(runs))
    shown = set(sections(done))
    first = first_seed_runs(done)
    figs: dict[str, Any] = {}
    if "confusion" in shown:
        fig = make_subplots(rows=1, cols=len(first), subplot_titles=[_text(r.label) for r in first])
        for i, run in enumerate(first, start=1):
            fig.add_trace(confusion_figure(run).data[0], 1, i)
            fig.update_yaxes(autorange="reversed", row=1, col=i)
        figs["confusion"] = _titled(fig, "Confusion matrices (fraction of each true class; rows = true class)")
    builders = {"per_class_f1": per_class_f1_figure, "learning_curves": learning_curves_figure,
                "size_accuracy": size_accuracy_figure, "reliability": reliability_figure,
                "paired_tests": paired_figure}
    for name in FIGURE_NAMES:
        if name not in shown:
            continue
        if name == "roc":
            classes = first[0].classes
            fig = make_subplots(rows=1, cols=len(classes), subplot_titles=[_text(f"{c} vs rest") for c in classes])
            names = [_text(model_label(r.model_name)) for r in first] + ["chance"]
            for i, cls in enumerate(classes, start=1):
                # One legend for every panel: the model, not its AUC for the first panel's class.
                for trace, label in zip(roc_figure(first, cls).data, names):
                    fig.add_trace(trace.update(name=label, legendgroup=label, showlegend=i == 1), 1, i)
            figs["roc"] = _titled(fig, "One-vs-rest ROC curves (first seed of each model)")
        else:
            figs[name] = builders[name](done)
    return figs


# --------------------------------------------------------------------------------------------- report


def write_report(runs: list[Run], out_dir: str | Path, *, title: str = "galaxy-morph model comparison",
                 pool_datasets: bool = False) -> dict[str, Path]:
    """Write the comparison into ``out_dir``: CSV tables, a LaTeX table and a self-contained HTML report.

    Files: ``runs.csv`` (one row per run), ``summary.csv`` (mean, std and interval per model),
    ``per_class.csv``, ``mcnemar.csv`` (per split and seed), ``tests.csv`` (the combined,
    Holm-adjusted test per model pair), ``summary.tex``, ``report.html`` (plotly.js inlined
    once, so the file opens offline), and ``report.json``, which marks the folder as a report this
    tool may rewrite. ``out_dir`` must be absent, empty or such a report: nothing else is overwritten.

    Raises
    ------
    GalaxyMorphError
        If none of the runs has finished, they come from several datasets and ``pool_datasets`` is
        off, or ``out_dir`` holds anything but a report.
    """
    out = Path(out_dir)
    check_replaceable(out, kind=REPORT)
    done = comparable(runs, pool_datasets=pool_datasets)
    summary = summary_table(done, pool_datasets=pool_datasets)
    tests = paired_tests(done)
    best = best_model(tests, list(summary.index))
    tables = {"runs.csv": runs_table(done), "summary.csv": summary.reset_index(),
              "per_class.csv": per_class_table(done), "mcnemar.csv": mcnemar_table(done), "tests.csv": tests}
    # The marker goes first, so a report cut off half-way is still known as ours next time.
    paths = {"report.json": atomic_write_json(out / "report.json", {
        "written_by": "galaxy-morph compare", "runs": [r.id for r in done]})}
    for name, table in tables.items():
        paths[name] = atomic_write_text(out / name, inert_csv(table))
    paths["summary.tex"] = atomic_write_text(out / "summary.tex", latex_table(summary, best=best))
    paths["report.html"] = atomic_write_text(out / "report.html", _html(title, done, summary, tests,
                                                                        tables["mcnemar.csv"], best))
    return paths


def _html(title: str, runs: list[Run], summary: pd.DataFrame, tests: pd.DataFrame, mcnemar_rows: pd.DataFrame,
          best: str | None) -> str:
    number = {"float_format": lambda v: f"{v:.4g}", "index": False}
    cells = summary_cells(summary).map(html.escape)
    if best is not None:
        cells.loc[_LABELS["accuracy"], best] = f"<b>{cells.loc[_LABELS['accuracy'], best]}</b>"
    cells.columns = [html.escape(model_label(m)) for m in cells.columns]
    said = verdicts(tests)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             "<h2>Summary</h2>" + cells.to_html(escape=False),
             f"<p>{html.escape(interval_note(summary))} {'Bold: ' if best else ''}{html.escape(best_note(best))}</p>",
             "<h2>Verdicts</h2>" + ("<ul>" + "".join(f"<li>{html.escape(v)}</li>" for v in said) + "</ul>"
                                    if said else "<p>Fewer than two models share a split and seed.</p>"),
             "<h2>Recall per class [95 % Wilson interval]</h2>"
             + per_class_recall(runs).rename(columns=model_label).to_html(),
             "<h2>Paired tests (combined per model pair, Holm-adjusted)</h2>"
             + (tests.to_html(**number) if not tests.empty else "<p>No pairs.</p>"),
             "<h2>Runs</h2>" + runs_table(runs).to_html(**number),
             "<h2>McNemar tests (per split and seed)</h2>" + (mcnemar_rows.to_html(**number)
                                        if not mcnemar_rows.empty else "<p>Fewer than two models share a seed.</p>")]
    include = "inline"
    for name, fig in figures(runs).items():
        parts.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=include))
        include = False  # plotly.js is inlined once; later figures reuse it
    parts.append("</body></html>")
    return "\n".join(parts)
