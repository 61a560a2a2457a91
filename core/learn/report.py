"""Comparing runs: tables, verdicts and figures for the dashboard, and the ``compare`` report on disk.

Every function takes :class:`core.learn.runs.Run` objects and returns plain tables (pandas) or plotly
figures, so the dashboard and :func:`write_report` show the same numbers.

- Runs are compared **within one dataset** (its content hash) **and protocol** (``tuned`` /
  ``equal``): pooling runs of different ones raises unless asked for (``pool_datasets=True``,
  ``compare --pool-datasets``). The gradient-boosting baseline has no training recipe, so it
  joins the runs of every protocol on its dataset. A re-run of the same model, seed and split
  counts once (the latest finished).
- One unit on every view: the table's numbers are over runs (mean ± std, intervals as below);
  every figure and the per-class intervals **pool the held-out predictions of all the model's
  runs** (every fold, repeat and seed), so with 5 folds the confusion matrix counts every test
  prediction of the 5 folds, never one fold's.
- Intervals (95 %): with one split, each run's test-set interval (Wilson / stratified bootstrap,
  :mod:`core.learn.metrics`) averaged over seeds; with several splits (``train --folds`` /
  ``--repeats``), the corrected resampled t interval over the per-split means. Per-class recall:
  Wilson on the pooled counts (:func:`per_class_recall`).
- Paired tests: McNemar's test for every pair of runs of different models with the same seed and
  split, on the test galaxies they share (matched by name). Per model pair they are combined: over
  several splits with Nadeau & Bengio's corrected resampled t-test on the per-split accuracy
  differences (seeds averaged within a split); on one split with the largest McNemar p-value over
  the seeds (a difference must hold, in the same direction, for every seed; p = 1 otherwise).
  Two Holm families: the pairs of networks (which architecture is better), and each network
  against the baseline (did it learn more than hand-made features). A model is called better,
  or best, only when the corrected difference is significant **and** replicated over folds or
  seeds: one split with one seed is reported as that, not as a verdict.
"""

from __future__ import annotations

import functools
import html
import itertools
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import GalaxyMorphError
from core.io import REPORT, atomic_write_json, atomic_write_text, check_replaceable
from core.learn.metrics import (
    aggregate_seeds,
    expected_calibration_error,
    corrected_resampled_t,
    evaluate_predictions,
    format_mean_std,
    holm,
    mcnemar,
    normalize_confusion,
    per_class_scores,
    reliability_bins,
    roc_auc,
    roc_curve,
    wilson_interval,
)
from core.learn import registry
from core.learn.runs import Run

logger = logging.getLogger(__name__)

SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "ece", "params", "train_seconds",
                   "inference_img_per_s")
_LABELS = {"accuracy": "Accuracy", "balanced_accuracy": "Balanced acc.", "macro_f1": "Macro F1",
           "roc_auc_macro": "ROC AUC (OvR)", "ece": "ECE", "params": "Parameters", "train_seconds": "Train time (s)",
           "inference_img_per_s": "Inference (img/s)"}
INTERVAL_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro")
BASELINE = registry.BASELINE
PROTOCOL_WORDS = {"equal": "one recipe for every model (equal protocol)",
                  "tuned": "per-model recipes (tuned protocol)"}
ALPHA = 0.05


def model_label(model: str) -> str:
    """``lenet5`` -> ``LeNet-5``, from the model's registry entry (unregistered names unchanged)."""
    return registry.model_label(model)


def protocol_words(name: str) -> str:
    """``equal`` -> ``one recipe for every model (equal protocol)``; unknown names as ``NAME protocol``."""
    return PROTOCOL_WORDS.get(name, f"{name} protocol")


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
    # Runs of the tuned and the equal protocol answer different questions: never one table. The
    # baseline has no recipe: "*" stands for every protocol.
    return f"{dataset_hash(run)}/{'*' if run.model_name == BASELINE else protocol(run)}"


def _same_experiment(a: Run, b: Run) -> bool:
    if dataset_hash(a) != dataset_hash(b):
        return False
    return BASELINE in (a.model_name, b.model_name) or protocol(a) == protocol(b)


def experiment_protocol(runs: list[Run]) -> str:
    """The protocol of the networks among ``runs`` (the baseline has none); ``tuned`` for old runs."""
    networks = [r for r in runs if r.model_name != BASELINE]
    return protocol(networks[0]) if networks else "tuned"


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
    floors = []
    for run in runs:
        if run.model_name == BASELINE:
            floors.append(run)
        else:
            groups.setdefault(_experiment(run), []).append(run)
    for run in floors:  # the baseline joins the networks of every protocol on its dataset
        homes = [key for key in groups if key.split("/")[0] == dataset_hash(run) and not key.endswith("/*")]
        for key in homes:
            groups[key].append(run)
        if not homes:
            groups.setdefault(_experiment(run), []).append(run)
    return groups


def dataset_name(runs: list[Run]) -> str:
    """A readable name of the runs' dataset: the folder name, the first 8 characters of its hash, and the
    protocol unless it is the default ``tuned``."""
    path = str(runs[0].config.get("dataset", {}).get("path", "dataset"))
    suffix = "" if experiment_protocol(runs) == "tuned" else f"-{experiment_protocol(runs)}"
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
                     "split": split_key(run), "dataset": dataset_name([run]), "protocol": protocol(run),
                     "status": run.status,
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
    done = comparable(runs, pool_datasets=pool_datasets)
    table = runs_table(done)
    if table.empty:
        raise GalaxyMorphError("no finished runs to compare. Train some with `python -m core train`.")
    table[list(SUMMARY_METRICS)] = table[list(SUMMARY_METRICS)].astype(float)
    summary = aggregate_seeds(table, by="model", columns=list(SUMMARY_METRICS)).rename(columns={"n_seeds": "n_runs"})
    grouped = table.groupby("model", sort=False)
    summary["n_seeds"] = grouped["seed"].nunique()
    summary["n_splits"] = grouped["split"].nunique()
    summary["interval"] = np.where(summary["n_splits"] > 1, "between splits", "test set")
    # n beside every accuracy: galaxies in one run's test set, and the held-out predictions the figures
    # pool (every split once; seeds repeat the same galaxies).
    summary["n_test"] = grouped["n_test"].mean().astype(float)
    summary["n_test_pooled"] = grouped.apply(lambda part: float(part.groupby("split")["n_test"].mean().sum()))
    summary["protocol"] = experiment_protocol(done)
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


def pooled_predictions(runs: list[Run]) -> dict[str, pd.DataFrame]:
    """Per model, the held-out predictions of all its runs (every fold, repeat and seed) in one table:
    ``name, true, pred, prob_<class>..., split, seed``. Models in :func:`in_model_order`.

    With k folds every galaxy is predicted once per seed by the fold model that never saw it, so
    the table has as many rows as the folds' ``n_test`` add up to (times the seeds).
    """
    frames: dict[str, list[pd.DataFrame]] = {}
    for run in in_model_order(deduplicate(finished(runs))):
        predictions = _predictions(run)
        if not predictions.empty:
            frames.setdefault(run.model_name, []).append(predictions.assign(split=split_key(run), seed=run.seed))
    return {model: pd.concat(parts, ignore_index=True) for model, parts in frames.items()}


def pooled_confusion(predictions: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """Counts of true class (row) predicted as each class (column) in pooled predictions."""
    index = {c: k for k, c in enumerate(classes)}
    true = predictions["true"].astype(str).map(index)
    pred = predictions["pred"].astype(str).map(index)
    known = true.notna() & pred.notna()
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(counts, (true[known].astype(int).to_numpy(), pred[known].astype(int).to_numpy()), 1)
    return counts


def _replicates(predictions: pd.DataFrame) -> float:
    """How many times each (split, galaxy) is predicted: the number of seeds, on average."""
    distinct = len(predictions.drop_duplicates(["split", "name"]))
    return len(predictions) / distinct if distinct else 1.0


def pooled_note(runs: list[Run]) -> str:
    """What the figures pool, in words: ``pooled over 5 folds: 580 held-out predictions per model``."""
    done = deduplicate(finished(runs))
    splits = {split_key(r) for r in done if r.model_name != BASELINE} or {split_key(r) for r in done}
    seeds = {r.seed for r in done}
    pooled = pooled_predictions(done)
    n = max((len(frame) for frame in pooled.values()), default=0)
    kind = "fold" if all(s.startswith("k") for s in splits) else "split"
    what = [_count(len(splits), kind)] if len(splits) > 1 else []
    what += [_count(len(seeds), "seed")] if len(seeds) > 1 else []
    if not what:
        return f"one split and seed: {n:,} test galaxies per model"
    return f"pooled over {' × '.join(what)}: {n:,} held-out predictions per model"


def per_class_recall(runs: list[Run]) -> pd.DataFrame:
    """Recall per class and model from the pooled held-out predictions, with its 95 % Wilson interval and n,
    as display text.

    Classes by row, models by column, cells ``0.900 [0.804, 0.951] (n = 40)``. The interval is Wilson's on
    the pooled counts, never an average of per-run bounds; with several seeds each galaxy is predicted
    once per seed, so the counts are divided by the seeds (``n`` counts galaxies, not predictions).
    """
    pooled = pooled_predictions(runs)
    done = deduplicate(finished(runs))
    if not pooled or not done:
        return pd.DataFrame()
    classes = done[0].classes
    columns = {}
    for model, predictions in pooled.items():
        counts = pooled_confusion(predictions, classes)
        replicates = _replicates(predictions)
        right, support = np.diag(counts) / replicates, counts.sum(axis=1) / replicates
        low, high = wilson_interval(right, support)
        columns[model] = [f"{r / n:.3f} [{lo:.3f}, {hi:.3f}] (n = {n:,.0f})" if n > 0 else "–"
                          for r, n, lo, hi in zip(right, support, np.atleast_1d(low), np.atleast_1d(high))]
    return pd.DataFrame(columns, index=pd.Index(classes, name="class"))


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
    """The run's reliability diagram table (:func:`core.learn.metrics.reliability_bins`) from its test predictions."""
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
                or not _same_experiment(a, b)):
            continue
        (names_a, right_a), (names_b, right_b) = _correct(a), _correct(b)
        shared, in_a, in_b = np.intersect1d(names_a, names_b, assume_unique=True, return_indices=True)
        if len(shared) == 0:
            logger.warning("runs %s and %s share no test galaxies; not compared", a.id, b.id)
            continue
        correct_a, correct_b = right_a[in_a], right_b[in_b]
        result = mcnemar(correct_a, correct_b)
        rows.append({"dataset": dataset_name([a]), "split": split_key(a), "seed": a.seed, "model_a": a.model_name,
                     "model_b": b.model_name, "n": len(shared), "n_train": a.config.get("n_train", np.nan), "acc_a": float(correct_a.mean()),
                     "acc_b": float(correct_b.mean()), **result.to_dict()})
    columns = ["dataset", "split", "seed", "model_a", "model_b", "n", "n_train", "acc_a", "acc_b", "b", "c",
               "statistic", "p_value", "method"]
    return pd.DataFrame(rows, columns=columns)


def _correct(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """The run's test galaxy names (unique) and whether each was classified correctly."""
    predictions = _predictions(run)
    if predictions.empty:
        return np.array([], dtype=str), np.array([], dtype=bool)
    frame = predictions.drop_duplicates("name")
    return frame["name"].astype(str).to_numpy(), (frame["true"] == frame["pred"]).to_numpy()


def _predictions(run: Run) -> pd.DataFrame:
    """``run.predictions``, read once per version of the file: a comparison reads every run's predictions
    for the table, each figure and each pair."""
    path = run.path / "predictions.csv"
    try:
        stat = path.stat()
    except OSError:
        return pd.DataFrame()
    return _read_predictions(str(path), stat.st_mtime_ns, stat.st_size).copy()


@functools.lru_cache(maxsize=256)
def _read_predictions(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    return pd.read_csv(path)


PAIRED_COLUMNS = ["model_a", "model_b", "family", "n_splits", "n_pairs", "n", "acc_a", "acc_b", "difference",
                  "method", "p_value", "p_holm", "replicated", "better"]
FAMILIES = {"architectures": "the pairs of networks", "baseline": "each network against the baseline"}


def paired_tests(runs: list[Run], *, alpha: float = ALPHA) -> pd.DataFrame:
    """One combined test per pair of models, Holm-adjusted within its family.

    Columns: model_a, model_b, family (``architectures``: two networks; ``baseline``: a network against
    the gradient-boosting baseline; each family is Holm-corrected on its own, so adding a baseline does not
    change the verdicts between architectures), n_splits, n_pairs (paired runs), n (test galaxies per
    pair, summed over the splits, mean over seeds), acc_a, acc_b (mean accuracy on the shared test
    galaxies), difference (``acc_a - acc_b``), method, p_value (uncorrected), p_holm, replicated (the
    test spans several splits or seeds), and better (the model that is significantly more accurate at
    ``alpha`` after Holm, or ``None``). A ``better`` that is not ``replicated`` is one split and one
    seed: :func:`verdicts` reports it as that.
    """
    mc = mcnemar_table(runs)
    models = [m for m in _smallest_first([r.model_name for r in finished(runs)])]
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
            p_value, method = float(part["p_value"].iloc[0]), f"McNemar ({part['method'].iloc[0]}), one split and seed"
        elif (part["diff"] > 0).all() or (part["diff"] < 0).all():
            p_value, method = float(part["p_value"].max()), f"McNemar, largest p of {len(part)} seeds"
        else:
            # Seeds that disagree on which model is better cannot all show the same difference.
            p_value, method = 1.0, f"McNemar over {len(part)} seeds, which disagree on the direction"
        family = "baseline" if BASELINE in (a, b) else "architectures"
        rows.append({"model_a": a, "model_b": b, "family": family, "n_splits": len(per_split), "n_pairs": len(part),
                     "n": float(part.groupby(["dataset", "split"])["n"].mean().sum()),
                     "acc_a": float(part["acc_a"].mean()), "acc_b": float(part["acc_b"].mean()),
                     "difference": float(part["diff"].mean()), "method": method, "p_value": p_value,
                     "replicated": len(part) > 1})
    table = pd.DataFrame(rows, columns=[c for c in PAIRED_COLUMNS if c not in ("p_holm", "better")])
    table["p_holm"] = np.nan
    for family, members in table.groupby("family").groups.items():
        table.loc[members, "p_holm"] = holm(table.loc[members, "p_value"].to_numpy())
    significant = table["p_holm"] < alpha
    better = np.where(significant, np.where(table["difference"] > 0, table["model_a"], table["model_b"]), None)
    # object dtype: pandas 3 would infer a string column and turn None into NaN.
    table["better"] = pd.Series(better, index=table.index, dtype=object)
    table["replicated"] = table["replicated"].astype(bool)
    return table[PAIRED_COLUMNS]


def format_p(p: float) -> str:
    """``p = 0.003``, ``p = 0.41``, ``p < 0.001``."""
    if p != p:
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def _holm_tag(row: Any) -> str:
    # The family size travels with every p, so a reader knows what Holm corrected for.
    return f"{format_p(row.p_holm)}, Holm-corrected"


def verdicts(tests: pd.DataFrame) -> list[str]:
    """One sentence per model pair from :func:`paired_tests`, e.g. "ResNet-18 is better than LeNet-5
    (p = 0.003, Holm-corrected)", "no significant difference between LeNet-5 and AlexNet (p = 0.41,
    Holm-corrected)", or, for one split and one seed, "AlexNet was more accurate than LeNet-5 on this one
    split and seed (p = 0.003, Holm-corrected); train more seeds or folds before calling it better"."""
    lines = []
    for row in tests.itertuples():
        p = _holm_tag(row)
        if pd.isna(row.better):
            lines.append(f"no significant difference between {model_label(row.model_a)} and "
                         f"{model_label(row.model_b)} ({p})")
            continue
        worse = row.model_b if row.better == row.model_a else row.model_a
        if row.replicated:
            lines.append(f"{model_label(row.better)} is better than {model_label(worse)} ({p})")
        else:
            lines.append(f"{model_label(row.better)} was more accurate than {model_label(worse)} on this one split "
                         f"and seed ({p}); train more seeds or folds before calling it better")
    return lines


def best_model(tests: pd.DataFrame, models: list[str]) -> str | None:
    """The network significantly more accurate than every other network (Holm), replicated over folds or
    seeds, or ``None``. The baseline is a floor, never the best model."""
    networks = [m for m in models if m != BASELINE]
    settled = tests[(tests["family"] == "architectures") & tests["replicated"]]
    for model in networks:
        others = [m for m in networks if m != model]
        wins = settled[((settled["model_a"] == model) | (settled["model_b"] == model)) & (settled["better"] == model)]
        opponents = set(wins["model_a"]) | set(wins["model_b"])
        if others and set(others) <= opponents:
            return model
    return None


def floor_sentences(tests: pd.DataFrame) -> list[str]:
    """Per network, in words, whether it beat the gradient-boosting baseline on hand-made features
    (the ``baseline`` family of :func:`paired_tests`)."""
    lines = []
    for row in tests[tests["family"] == "baseline"].itertuples():
        network = row.model_b if row.model_a == BASELINE else row.model_a
        name, p = model_label(network), _holm_tag(row)
        if row.better == network and row.replicated:
            lines.append(f"{name} beats the gradient-boosting baseline ({p}): it learned more than the hand-made "
                         "morphology features say")
        elif row.better == network:
            lines.append(f"{name} beat the gradient-boosting baseline on this one split and seed ({p}); train more "
                         "seeds or folds before calling it better")
        elif row.better == BASELINE:
            lines.append(f"{name} is worse than the gradient-boosting baseline ({p}): the hand-made features "
                         "classify better")
        else:
            lines.append(f"{name} does not beat the gradient-boosting baseline ({p}): no evidence that it learned "
                         "more than the hand-made morphology features")
    return lines


def paired_matrix(runs: list[Run]) -> pd.DataFrame:
    """Square table of the Holm-adjusted combined p-values between models (NaN on the diagonal)."""
    tests = paired_tests(runs)
    models = _smallest_first([r.model_name for r in finished(runs)])
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


def misclassified_gallery(runs: list[Run], *, limit: int) -> pd.DataFrame:
    """Test galaxies that at least one model got wrong, from the pooled held-out predictions: ``name``,
    ``true``, and per model ``pred_<model>`` (its most frequent prediction over its runs), ``conf_<model>``
    (mean top probability) and ``wrong_<model>`` (fraction of its runs that got the galaxy wrong); most
    models wrong first. With folds every galaxy comes from the fold model that never saw it."""
    merged = None
    for model, predictions in pooled_predictions(runs).items():
        probs = [c for c in predictions.columns if c.startswith("prob_")]
        frame = predictions.assign(wrong=(predictions["true"] != predictions["pred"]).astype(float),
                                   conf=predictions[probs].max(axis=1))
        grouped = frame.groupby(["name", "true"], sort=False)
        part = pd.DataFrame({f"pred_{model}": grouped["pred"].agg(lambda s: s.value_counts().index[0]),
                             f"conf_{model}": grouped["conf"].mean(), f"wrong_{model}": grouped["wrong"].mean()})
        merged = part if merged is None else merged.join(part, how="inner")
    if merged is None or merged.empty:
        return pd.DataFrame()
    wrong = merged[[c for c in merged.columns if c.startswith("wrong_")]]
    merged = merged.assign(n_wrong=(wrong > 0.5).sum(axis=1), wrong_mean=wrong.mean(axis=1)).reset_index()
    merged = merged[merged["n_wrong"] > 0].sort_values(["n_wrong", "wrong_mean", "name"], ascending=[False, False, True])
    return merged.drop(columns="wrong_mean").head(limit).reset_index(drop=True)


def summary_cells(summary: pd.DataFrame) -> pd.DataFrame:
    """Display text of the summary: metric labels by row (accuracy first, then :data:`N_TEST_LABEL`, the
    test galaxies behind it), model ids by column, ``mean ± std [low, high]`` (the std only with several
    runs, the interval only for :data:`INTERVAL_METRICS`), and a last row ``Runs`` (``15: 5 splits × 3
    seeds``)."""
    columns = {}
    for model in summary.index:
        row = summary.loc[model]
        cells = {_LABELS[m]: _format_cell(m, row[f"{m}_mean"], row[f"{m}_std"], row.get(f"{m}_lo", np.nan),
                                          row.get(f"{m}_hi", np.nan)) for m in SUMMARY_METRICS}
        cells = {_LABELS["accuracy"]: cells.pop(_LABELS["accuracy"]),
                 N_TEST_LABEL: _n_test_cell(row.get("n_test", np.nan), row.get("n_test_pooled", np.nan),
                                            int(row.get("n_splits", 1))), **cells}
        cells["Runs"] = _runs_cell(int(row.get("n_runs", row.get("n_seeds", 1))), int(row.get("n_splits", 1)),
                                   int(row.get("n_seeds", 1)))
        columns[model] = cells
    return pd.DataFrame(columns)


N_TEST_LABEL = "Test galaxies (n)"


def _n_test_cell(n_test: float, pooled: float, n_splits: int) -> str:
    """``87`` on one split; ``580 (116 per fold)`` pooled over splits."""
    if n_test != n_test:
        return "–"
    if n_splits > 1 and pooled == pooled:
        return f"{pooled:,.0f} ({n_test:,.0f} per split)"
    return f"{n_test:,.0f}"


def _runs_cell(n_runs: int, n_splits: int, n_seeds: int) -> str:
    parts = [f"{n} {word}{'s' if n != 1 else ''}" for n, word in ((n_splits, "split"), (n_seeds, "seed")) if n > 1]
    return f"{n_runs}: {' × '.join(parts)}" if parts else str(n_runs)


def format_summary(summary: pd.DataFrame, *, best: str | None = None) -> str:
    """The summary as a side-by-side text table (metrics by row, models by column), with a note on
    the intervals and ``*`` on the accuracy of ``best`` (significantly better than every other model)."""
    cells = summary_cells(summary)
    if best is not None:
        cells.loc[_LABELS["accuracy"], best] += " *"
    models = [model_label(m) for m in cells.columns]
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
# one are never escaped again); a line break would end the table row's paragraph. The non-ASCII
# signs of the tables and verdicts become LaTeX's own, so the file needs no inputenc or fontenc, and
# < and > print as themselves (not ¡ and ¿ in the default OT1 font encoding).
_LATEX_SPECIALS = str.maketrans({
    "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "\n": " ", "\r": " ",
    "<": r"$<$", ">": r"$>$", "±": r"$\pm$", "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$", "–": "--",
    "—": "---", "·": r"\textperiodcentered{}", "→": r"$\rightarrow$",
})
# The only packages summary.tex loads (tests/test_report.py checks it and compiles it when pdflatex is there).
LATEX_PACKAGES = ("booktabs",)


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
    text = str(text).translate(_LATEX_SPECIALS)
    # Any other character outside ASCII would need inputenc and a font that has it: a placeholder instead.
    return "".join(c if ord(c) < 128 else "?" for c in text)


def latex_table(summary: pd.DataFrame, *, best: str | None = None,
                caption: str = "Test-set comparison (mean ± std over runs, 95 % interval in brackets).") -> str:
    """A ``booktabs`` LaTeX table of the summary: metrics by row (accuracy, then its n), models by column under
    their display names; the accuracy of ``best`` (significantly better than every other network) in bold."""
    models = list(summary.index)
    cells = summary_cells(summary)
    out = [r"\begin{table}[ht]", r"\centering", r"\small", rf"\caption{{{latex_escape(caption)}}}",
           r"\begin{tabular}{l" + "r" * len(models) + "}", r"\toprule",
           "Metric & " + " & ".join(latex_escape(model_label(m)) for m in models) + r" \\", r"\midrule"]
    for label, row in cells.iterrows():
        texts = [latex_escape(row[m]) for m in models]
        if label == _LABELS["accuracy"] and best in models:
            texts[models.index(best)] = rf"\textbf{{{texts[models.index(best)]}}}"
        out.append(f"{latex_escape(label)} & " + " & ".join(texts) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def latex_tests_table(tests: pd.DataFrame) -> str:
    """The paired tests as a ``booktabs`` table: pair, family, n, accuracy difference, uncorrected and
    Holm-corrected p, with display names."""
    out = [r"\begin{table}[ht]", r"\centering", r"\small",
           r"\caption{Paired tests between models. p: uncorrected; Holm: corrected within its family "
           r"(pairs of networks; each network against the baseline).}",
           r"\begin{tabular}{llrrrr}", r"\toprule",
           r"Pair & Family & n & Difference & p & Holm \\", r"\midrule"]
    for row in tests.itertuples():
        pair = f"{model_label(row.model_a)} vs {model_label(row.model_b)}"
        out.append(" & ".join([latex_escape(pair), latex_escape(row.family), f"{row.n:,.0f}".replace(",", "{,}"),
                               f"{row.difference:+.3f}", latex_escape(format_p(row.p_value)[4:].strip()),
                               latex_escape(format_p(row.p_holm)[4:].strip())]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def latex_document(summary: pd.DataFrame, tests: pd.DataFrame, *, best: str | None, title: str,
                   notes: list[str]) -> str:
    """``summary.tex``: a standalone document (``pdflatex summary.tex``) with the title (models, dataset,
    protocol), the notes (verdict, what is pooled), the summary table and the paired tests. It loads only
    :data:`LATEX_PACKAGES`; each table can be pasted into slides as it is."""
    lines = [
        "% galaxy-morph model comparison: a standalone LaTeX document; compile with `pdflatex summary.tex`.",
        f"% Packages needed: {', '.join(LATEX_PACKAGES)} (in TeX Live's texlive-latex-recommended).",
        "% To paste a table into slides, copy from \\begin{table} to \\end{table} and load the same packages.",
        r"\documentclass{article}",
        *(rf"\usepackage{{{package}}}" for package in LATEX_PACKAGES),
        r"\begin{document}",
        rf"\section*{{{latex_escape(title)}}}",
        *(latex_escape(note) + "\n" for note in notes),
        latex_table(summary, best=best),
    ]
    if not tests.empty:
        lines.append(latex_tests_table(tests))
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- figures
# The one home of the comparison figures: the Comparison page and the HTML report both draw these.

ACCURACY_RANGE = (0.0, 1.0)
_GREY = "#999999"
FIGURE_NAMES = ("accuracy", "per_class_f1", "learning_curves", "roc", "size_accuracy", "reliability", "paired_tests")
# Headings of the figures in the HTML report and in the figure download, in words.
FIGURE_TITLES = {"accuracy": "Test accuracy with 95 % interval", "confusion": "Confusion matrices",
                 "per_class_f1": "F1 per class", "learning_curves": "Learning curves", "roc": "ROC curves",
                 "size_accuracy": "Size, training time and accuracy", "reliability": "Reliability diagram",
                 "paired_tests": "Paired tests (Holm-corrected p-values)"}
# The p-value heatmap: shades of blue below ALPHA (a significant difference), greys above.
P_VALUE_COLORSCALE = [[0.0, "#08306B"], [ALPHA, "#6BAED6"], [ALPHA, "#E0E0E0"], [1.0, "#FFFFFF"]]


def model_color(model: str, index: int = 0) -> str:
    """The colour of a model, from its registry entry; unregistered ones get a fallback by position.

    The registry's colours are darker hues outside the Okabe-Ito class palette (ui/palette.py), so a chart
    of models is never read as a chart of classes."""
    return registry.model_color(model, index)


def _text(value: object) -> str:
    # Plotly reads <b>, <a href> and entities in titles, ticks, legends and hover text.
    return html.escape(str(value), quote=False)


def _titled(fig: Any, title: str | None) -> Any:
    if title:
        fig.update_layout(title=dict(text=_text(title)))
    return fig


def first_seed_runs(runs: list[Run]) -> list[Run]:
    """One run per model, the one with the smallest seed (then the smallest split), in first-seen model order."""
    chosen: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: (r.seed, split_key(r))):
        chosen.setdefault(run.model_name, run)
    return [chosen[m] for m in dict.fromkeys(r.model_name for r in runs)]


def run_holding_out(runs: list[Run], model: str, name: str) -> Run | None:
    """The run of ``model`` (smallest seed) whose test split holds galaxy ``name``: the model that never
    saw it, for saliency on a held-out galaxy; its first run when none does."""
    own = sorted((r for r in deduplicate(finished(runs)) if r.model_name == model), key=lambda r: (r.seed, split_key(r)))
    for run in own:
        if name in set(run.predictions.get("name", pd.Series(dtype=str)).astype(str)):
            return run
    return own[0] if own else None


def _colors(runs: list[Run]) -> dict[str, str]:
    return {m: model_color(m, i) for i, m in enumerate(dict.fromkeys(r.model_name for r in runs))}


def integer_epoch_axis(fig: Any, last_epoch: float) -> Any:
    """Whole-number epoch ticks at 1, 2, 5, 10 … steps (at most about ten), never 1.2, 1.4 …"""
    last = int(last_epoch) if last_epoch == last_epoch else 1
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 10**9) if last / s <= 10)
    fig.update_xaxes(title="epoch", tick0=0 if step > 1 else 1, dtick=step, tickformat="d")
    return fig


def accuracy_figure(summary: pd.DataFrame) -> Any:
    """The headline, compact: each model's mean test accuracy with its 95 % interval, n beside it."""
    import plotly.graph_objects as go  # plotting is optional for the library

    models = _smallest_first(list(summary.index))
    labels = [_text(f"{model_label(m)} (n = {_n_test_cell(summary.loc[m, 'n_test'], summary.loc[m, 'n_test_pooled'], int(summary.loc[m, 'n_splits']))})")
              for m in models]
    fig = go.Figure()
    for i, (model, label) in enumerate(zip(models, labels)):
        row = summary.loc[model]
        mean, low, high = float(row["accuracy_mean"]), float(row["accuracy_lo"]), float(row["accuracy_hi"])
        fig.add_trace(go.Scatter(
            x=[mean], y=[label], mode="markers+text", marker=dict(color=model_color(model, i), size=12),
            error_x=dict(type="data", symmetric=False, array=[max(0.0, high - mean)], arrayminus=[max(0.0, mean - low)],
                         thickness=2, width=6) if low == low else None,
            text=[f"{mean:.3f} [{low:.3f}, {high:.3f}]" if low == low else f"{mean:.3f}"], textposition="top center",
            name=_text(model_label(model)), showlegend=False,
            hovertemplate="accuracy %{x:.3f}<extra>%{y}</extra>"))
    lows = [float(v) for v in summary["accuracy_lo"] if v == v] or [float(summary["accuracy_mean"].min())]
    fig.update_xaxes(title="test accuracy (95 % interval)", range=[max(0.0, min(lows) - 0.1), 1.0])
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=120 + 55 * len(models))
    return _titled(fig, FIGURE_TITLES["accuracy"])


def confusion_figure(runs: list[Run], model: str) -> Any:
    """The confusion matrix of ``model`` over its pooled held-out predictions: colour and text the fraction
    of each true class (rows), the count below it."""
    import plotly.graph_objects as go  # plotting is optional for the library

    predictions = pooled_predictions(runs).get(model)
    done = deduplicate(finished(runs))
    if predictions is None or not done:
        raise GalaxyMorphError(f"model {model!r} has no test predictions among these runs.")
    classes = done[0].classes
    counts = pooled_confusion(predictions, classes)
    norm = normalize_confusion(counts)
    labels = [_text(c) for c in classes]
    fig = go.Figure(go.Heatmap(z=norm, x=labels, y=labels, colorscale="Blues", zmin=0, zmax=1, showscale=False,
                               customdata=counts, hovertemplate="true %{y}, predicted %{x}: %{customdata} galaxies"
                                                                "<extra></extra>",
                               text=[[f"{v:.2f}<br>({n})" for v, n in zip(vrow, nrow)] for vrow, nrow in zip(norm, counts)],
                               texttemplate="%{text}"))
    fig.update_yaxes(autorange="reversed", title="true")
    fig.update_xaxes(title="predicted", side="bottom")
    return _titled(fig, f"{model_label(model)}: {int(counts.sum()):,} held-out predictions")


def per_class_f1_figure(runs: list[Run]) -> Any:
    """Grouped bars of each class's F1 per model from the pooled held-out predictions, on [0, 1]."""
    import plotly.graph_objects as go

    colors = _colors(in_model_order(runs))
    done = deduplicate(finished(runs))
    classes = done[0].classes if done else []
    fig = go.Figure()
    for model, predictions in pooled_predictions(runs).items():
        f1 = per_class_scores(pooled_confusion(predictions, classes))["f1"]
        fig.add_trace(go.Bar(name=_text(model_label(model)), x=[_text(c) for c in classes], y=f1,
                             marker_color=colors[model], hovertemplate="F1 %{y:.3f}"))
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="F1", range=list(ACCURACY_RANGE))
    return _titled(fig, "F1 per class (pooled held-out predictions)")


def learning_curves_figure(runs: list[Run]) -> Any:
    """Train (solid) and validation (dashed) accuracy per epoch, each model's mean over its runs, on [0, 1]."""
    import plotly.graph_objects as go

    colors = _colors(in_model_order(runs))
    curves = learning_curves(in_model_order(deduplicate(finished(runs))))
    fig = go.Figure()
    if curves.empty:
        return _titled(fig, "Learning curves")
    n_runs = curves.groupby("model", sort=False)["id"].nunique()
    for model, part in curves.groupby("model", sort=False):
        mean = part.groupby("epoch")[["accuracy", "val_accuracy"]].mean().reset_index()
        name = model_label(model) + (f" (mean of {n_runs[model]} runs)" if n_runs[model] > 1 else "")
        fig.add_trace(go.Scatter(x=mean["epoch"], y=mean["accuracy"], name=_text(f"{name} train"),
                                 line=dict(color=colors[model])))
        fig.add_trace(go.Scatter(x=mean["epoch"], y=mean["val_accuracy"], name=_text(f"{name} validation"),
                                 line=dict(color=colors[model], dash="dash")))
    integer_epoch_axis(fig, float(curves["epoch"].max()))
    fig.update_yaxes(title="accuracy", range=list(ACCURACY_RANGE))
    return _titled(fig, "Learning curves (solid: train, dashed: validation)")


def _pooled_scores(predictions: pd.DataFrame, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    y = predictions["true"].astype(str).map({c: k for k, c in enumerate(classes)})
    known = y.notna().to_numpy()
    proba = predictions.loc[known, [f"prob_{c}" for c in classes]].to_numpy(dtype=np.float64)
    return y[known].astype(int).to_numpy(), proba


def roc_figure(runs: list[Run], roc_class: str) -> Any:
    """One-vs-rest ROC curve of ``roc_class`` for each model over its pooled held-out predictions, with its AUC."""
    import plotly.graph_objects as go

    colors = _colors(in_model_order(runs))
    done = deduplicate(finished(runs))
    classes = done[0].classes if done else []
    if roc_class not in classes:
        raise GalaxyMorphError(f"roc_class must be one of the classes {classes}; got {roc_class!r}.")
    k = classes.index(roc_class)
    fig = go.Figure()
    for model, predictions in pooled_predictions(runs).items():
        y, proba = _pooled_scores(predictions, classes)
        fpr, tpr, _ = roc_curve(y == k, proba[:, k])
        auc = roc_auc(y == k, proba[:, k])
        fig.add_trace(go.Scatter(x=fpr, y=tpr, line=dict(color=colors[model]),
                                 name=_text(f"{model_label(model)} (AUC {auc:.3f})")))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], line=dict(color=_GREY, dash="dot"), name="chance"))
    fig.update_xaxes(title="false positive rate", range=list(ACCURACY_RANGE))
    fig.update_yaxes(title="true positive rate", range=list(ACCURACY_RANGE))
    return _titled(fig, f"ROC curves: {roc_class} vs rest (pooled held-out predictions)")


def size_accuracy_figure(runs: list[Run]) -> Any:
    """Test accuracy (on [0, 1]) against parameter count (log), one marker per run, marker area the training time."""
    import plotly.graph_objects as go

    colors = _colors(in_model_order(runs))
    rows = runs_table(in_model_order(finished(runs)))
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
    return _titled(fig, "Size vs accuracy (one marker per run; marker area: training time)")


def reliability_figure(runs: list[Run]) -> Any:
    """Reliability diagram (15 confidence bins) of each model's pooled held-out predictions, with their ECE."""
    import plotly.graph_objects as go

    colors = _colors(in_model_order(runs))
    done = deduplicate(finished(runs))
    classes = done[0].classes if done else []
    fig = go.Figure()
    for model, predictions in pooled_predictions(runs).items():
        y, proba = _pooled_scores(predictions, classes)
        bins = reliability_bins(y, proba).dropna()
        ece = expected_calibration_error(y, proba)
        fig.add_trace(go.Scatter(x=bins["confidence"], y=bins["accuracy"], mode="lines+markers",
                                 line=dict(color=colors[model]), customdata=bins["count"],
                                 name=_text(f"{model_label(model)} (ECE {ece:.3f})"),
                                 hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>%{customdata} predictions"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], line=dict(color=_GREY, dash="dot"), name="calibrated"))
    fig.update_xaxes(title="mean confidence in bin", range=list(ACCURACY_RANGE))
    fig.update_yaxes(title="accuracy in bin", range=list(ACCURACY_RANGE))
    return _titled(fig, "Reliability diagram (15 confidence bins, pooled held-out predictions)")


def paired_figure(runs: list[Run]) -> Any:
    """Heatmap of the Holm-corrected p-value of every model pair (:func:`paired_matrix`), with a colour bar:
    blues below 0.05 (a significant difference), greys above."""
    import plotly.graph_objects as go

    matrix = paired_matrix(runs)
    labels = [_text(model_label(m)) for m in matrix.columns]
    z = matrix.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(
        z=z, x=labels, y=labels, colorscale=P_VALUE_COLORSCALE, zmin=0, zmax=1, showscale=True,
        colorbar=dict(title=dict(text="Holm-corrected p", side="right"), tickvals=[0, ALPHA, 0.5, 1],
                      ticktext=["0", f"{ALPHA:g} (significant below)", "0.5", "1"], thickness=14),
        text=[["" if np.isnan(v) else f"{v:.3g}" for v in row] for row in z], texttemplate="%{text}",
        hovertemplate="%{y} vs %{x}: Holm-corrected p = %{z:.3g}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="bottom")
    return _titled(fig, "Paired tests between models: Holm-corrected p-values")


def sections(runs: list[Run]) -> list[str]:
    """The comparison sections that have something to show for ``runs``, in page order: ``recall``,
    ``confusion`` and the :data:`FIGURE_NAMES` (``paired_tests`` needs two models sharing a seed and
    split), then ``misclassified`` (some test galaxy classified wrongly)."""
    done = deduplicate(finished(runs))
    pooled = pooled_predictions(done)
    predicted = bool(pooled) and len(pooled) == len({r.model_name for r in done})
    have = {
        "recall": predicted,
        "confusion": predicted,
        "accuracy": bool(done),
        "per_class_f1": predicted,
        "learning_curves": not learning_curves(done).empty,
        "roc": predicted,
        "size_accuracy": bool(done),
        "reliability": predicted,
        "paired_tests": bool(paired_matrix(done).notna().any().any()),
        "misclassified": any((frame["true"] != frame["pred"]).any() for frame in pooled.values()),
    }
    return [name for name, shown in have.items() if shown]


def comparison_title(runs: list[Run], *, excluded: list[Run] | tuple[Run, ...] = ()) -> str:
    """The headline of a comparison: ``LeNet-5 vs AlexNet vs ResNet-18 · tiny · one recipe for every model
    (equal protocol) · 5 folds``, then ``· left out: ResNet-18 s0 f2`` when runs of the experiment were
    excluded by hand.

    The models smallest first, the dataset folder, the protocol (always), how many runs each model's
    numbers pool (seeds on one split, or ``5 folds × 2 seeds``), and the runs left out.
    """
    done = deduplicate(finished(runs))
    if not done:
        raise GalaxyMorphError("no finished runs to title. Train some with `python -m core train`.")
    models = " vs ".join(model_label(m) for m in _smallest_first([r.model_name for r in done]))
    dataset = Path(str(done[0].config.get("dataset", {}).get("path", "dataset"))).name
    networks = [r for r in done if r.model_name != BASELINE] or done
    splits = {split_key(r) for r in networks}
    seeds = _count(len({r.seed for r in networks}), "seed")
    if len(splits) > 1:
        kind = "fold" if all(s.startswith("k") for s in splits) else "split"
        seeds = (f"{_count(len(splits), kind)} × {seeds}" if len({r.seed for r in networks}) > 1
                 else _count(len(splits), kind))
    title = f"{models} · {dataset} · {protocol_words(experiment_protocol(done))} · {seeds}"
    if excluded:
        shown = [_run_name(r) for r in excluded[:4]]
        more = f" and {len(excluded) - 4} more" if len(excluded) > 4 else ""
        title += f" · left out: {', '.join(shown)}{more}"
    return title


def _run_name(run: Run) -> str:
    # "ResNet-18 s0 f2": the run label with the display name of the model.
    return model_label(run.model_name) + run.label[len(run.model_name):]


def excluded_note(runs: list[Run], every: list[Run]) -> str | None:
    """What leaving runs out changed, or ``None`` when ``runs`` is all of ``every`` (the experiment's runs):
    which runs are left out, and that the Holm families now hold only the pairs the runs shown can test."""
    shown_ids = {r.id for r in runs}
    left_out = [r for r in deduplicate(finished(every)) if r.id not in shown_ids]
    if not left_out:
        return None
    pairs_shown, pairs_all = len(paired_tests(runs)), len(paired_tests(every))
    names = ", ".join(_run_name(r) for r in left_out)
    return (f"{_count(len(left_out), 'run')} left out by hand ({names}). The Holm correction now covers "
            f"{_count(pairs_shown, 'model pair')} of the runs shown (with every run: {pairs_all}), and the "
            "means, intervals and p-values are those of the runs shown, not of the whole experiment.")


def _smallest_first(models: list[str]) -> list[str]:
    return sorted(dict.fromkeys(models), key=_model_rank)


def _model_rank(model: str) -> int:
    # The registry's order (LeNet-5 first, the baseline last); unregistered models after them, in the order given.
    return registry.model_rank(model)


def in_model_order(runs: list[Run]) -> list[Run]:
    """``runs`` with the architectures smallest first (LeNet-5, AlexNet, ResNet-18 …), whatever order they
    were trained in; runs of one model keep their order. Tables and figures list models in this order."""
    return sorted(runs, key=lambda r: _model_rank(r.model_name))


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def verdict_sentence(tests: pd.DataFrame) -> str | None:
    """Every pair of networks' :func:`verdicts` as one sentence (``ResNet-18 is better than LeNet-5 (p = 0.003,
    Holm-corrected); no significant …``), or ``None`` when no two networks share a seed and split. The
    baseline's pairs are :func:`floor_sentences`."""
    tests = tests[tests["family"] == "architectures"]
    said = verdicts(tests)
    if not said:
        return None
    if len(tests) > 2 and tests["better"].isna().all():
        # Three "no significant difference" clauses in a row read as noise: one clause says it.
        models = _smallest_first([*tests["model_a"], *tests["model_b"]])
        names = ", ".join(model_label(m) for m in models[:-1]) + f" and {model_label(models[-1])}"
        lowest, highest = format_p(float(tests["p_holm"].min())), format_p(float(tests["p_holm"].max()))
        p = f"{lowest} for every pair" if lowest == highest else "every " + lowest.replace("p = ", "p ≥ ")
        return f"No significant difference between any two of {names} ({p}, Holm-corrected)."
    text = "; ".join(said)
    return text[0].upper() + text[1:] + "."


def verdict_lines(runs: list[Run]) -> list[str]:
    """The verdict in words for a page, a slide or an export: the architectures' sentence, one sentence per
    network against the baseline (or how to get one), and which family Holm corrected."""
    tests = paired_tests(runs)
    lines = []
    if (sentence := verdict_sentence(tests)) is not None:
        lines.append(sentence)
    floors = floor_sentences(tests)
    lines += [line[0].upper() + line[1:] + "." for line in floors]
    networks = {r.model_name for r in finished(runs)} - {BASELINE}
    if networks and not floors:
        lines.append("No gradient-boosting baseline shares these splits, so the page cannot say whether a network "
                     "learned more than hand-made features: train one (`python -m core train --models baseline`, "
                     "on the same split).")
    if not tests.empty:
        families = [f"{FAMILIES[f]} ({_count(int(n), 'pair')})" for f, n in tests["family"].value_counts().items()]
        lines.append("Holm-corrected within each family: " + "; ".join(families) + ".")
    return lines


def best_note(best: str | None) -> str:
    """What the highlighted accuracy means, or that none is highlighted."""
    if best is None:
        return "No network is significantly more accurate than every other one over folds or seeds."
    return f"{model_label(best)} is significantly more accurate than every other network (Holm-corrected)."


def figures(runs: list[Run]) -> dict[str, Any]:
    """The comparison's plotly figures, titled in words, for the HTML report and the figure download:
    ``accuracy``, ``confusion`` (one panel per model), then those of :data:`FIGURE_NAMES` that
    :func:`sections` finds something for (ROC: one panel per class). Every figure but the learning curves and
    the per-run size chart pools the held-out predictions of all the model's runs."""
    from plotly.subplots import make_subplots  # plotting is optional for the library

    done = in_model_order(deduplicate(finished(runs)))
    shown = set(sections(done))
    models = _smallest_first([r.model_name for r in done])
    figs: dict[str, Any] = {}
    if "accuracy" in shown:
        figs["accuracy"] = accuracy_figure(summary_table(done, pool_datasets=True))
    if "confusion" in shown:
        panels = [confusion_figure(done, m) for m in models]
        fig = make_subplots(rows=1, cols=len(models), subplot_titles=[p.layout.title.text for p in panels])
        for i, panel in enumerate(panels, start=1):
            fig.add_trace(panel.data[0], 1, i)
            fig.update_yaxes(autorange="reversed", row=1, col=i)
        figs["confusion"] = _titled(fig, "Confusion matrices (fraction of each true class, count below; rows: true "
                                         "class; pooled held-out predictions)")
    builders = {"per_class_f1": per_class_f1_figure, "learning_curves": learning_curves_figure,
                "size_accuracy": size_accuracy_figure, "reliability": reliability_figure,
                "paired_tests": paired_figure}
    for name in FIGURE_NAMES:
        if name not in shown or name == "accuracy":
            continue
        if name == "roc":
            classes = done[0].classes
            fig = make_subplots(rows=1, cols=len(classes), subplot_titles=[_text(f"{c} vs rest") for c in classes])
            names = [_text(model_label(m)) for m in models] + ["chance"]
            for i, cls in enumerate(classes, start=1):
                # One legend for every panel: the model, not its AUC for the first panel's class.
                for trace, label in zip(roc_figure(done, cls).data, names):
                    fig.add_trace(trace.update(name=label, legendgroup=label, showlegend=i == 1), 1, i)
            figs["roc"] = _titled(fig, "One-vs-rest ROC curves (pooled held-out predictions)")
        else:
            figs[name] = builders[name](done)
    return figs


def figures_zip(runs: list[Run], *, title: str) -> tuple[bytes, str]:
    """Every figure of :func:`figures` in one zip, as ``NN-name.svg`` and ``NN-name.png`` (Plotly's static
    export through kaleido and a Chromium browser) and ``NN-name.html`` (interactive, always); returns the
    zip's bytes and a note saying what it holds (why PNG / SVG are missing when they cannot be drawn here).

    Static export starts one headless Chromium for all the figures (about a second per image on 2 cores).
    """
    import io
    import zipfile

    import plotly.io as pio

    figs = figures(runs)
    images: dict[str, bytes] = {}
    problem = None
    try:
        import kaleido

        kaleido.start_sync_server(silence_warnings=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "kopts ignored with a server": we pass none
                for k, (name, fig) in enumerate(figs.items(), start=1):
                    fig = _for_export(fig, title)
                    for fmt in ("svg", "png"):
                        images[f"{k:02d}-{name}.{fmt}"] = pio.to_image(fig, format=fmt, width=1100,
                                                                      height=fig.layout.height or 500, scale=2 if fmt == "png" else 1)
        finally:
            kaleido.stop_sync_server(silence_warnings=True)
    except Exception as exc:  # noqa: BLE001 - no kaleido, no Chromium, a browser crash: the HTML still goes out
        images.clear()
        problem = (f"PNG and SVG could not be drawn here ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                   "install kaleido (requirements.txt) and Chromium (`apt-get install chromium`) for them.")
        logger.warning("figure export: %s", problem)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for k, (name, fig) in enumerate(figs.items(), start=1):
            archive.writestr(f"{k:02d}-{name}.html", _for_export(fig, title).to_html(include_plotlyjs="cdn"))
        for path, payload in images.items():
            archive.writestr(path, payload)
        note = (f"{title}\n\n{len(figs)} figures: " + ", ".join(FIGURE_TITLES.get(n, n) for n in figs) + ".\n"
                + ("PNG (2x), SVG and interactive HTML of each.\n" if not problem else f"Interactive HTML only. {problem}\n"))
        archive.writestr("README.txt", note)
    return buffer.getvalue(), note


def _for_export(fig: Any, title: str) -> Any:
    """A copy of ``fig`` with the comparison's title (models, dataset, protocol) above its own, white."""
    import plotly.graph_objects as go

    copy = go.Figure(fig)
    own = copy.layout.title.text or ""
    copy.update_layout(title=dict(text=f"{own}<br><sup>{_text(title)}</sup>", x=0, xanchor="left"),
                       template="plotly_white", margin=dict(t=90))
    return copy


# --------------------------------------------------------------------------------------------- report


def write_report(runs: list[Run], out_dir: str | Path, *, title: str | None = None,
                 pool_datasets: bool = False, excluded: list[Run] | tuple[Run, ...] = ()) -> dict[str, Path]:
    """Write the comparison into ``out_dir``: CSV tables, a LaTeX document and a self-contained HTML report.

    Files: ``runs.csv`` (one row per run), ``summary.csv`` (mean, std, interval and n per model),
    ``per_class.csv``, ``mcnemar.csv`` (per split and seed, uncorrected), ``tests.csv`` (the combined,
    Holm-corrected test per model pair), ``summary.tex`` (standalone: ``pdflatex summary.tex``),
    ``report.html`` (plotly.js inlined once, so the file opens offline), and ``report.json``, which
    marks the folder as a report this tool may rewrite. Every file names the protocol; the title
    (default :func:`comparison_title`) heads the LaTeX and HTML. ``out_dir`` must be absent, empty or
    such a report: nothing else is overwritten.

    Raises
    ------
    GalaxyMorphError
        If none of the runs has finished, they come from several datasets and ``pool_datasets`` is
        off, or ``out_dir`` holds anything but a report.
    """
    out = Path(out_dir)
    check_replaceable(out, kind=REPORT)
    done = in_model_order(comparable(runs, pool_datasets=pool_datasets))
    title = title or comparison_title(done, excluded=excluded)
    summary = summary_table(done, pool_datasets=pool_datasets)
    tests = paired_tests(done)
    best = best_model(tests, list(summary.index))
    notes = report_notes(done, summary, excluded=excluded)
    experiment = experiment_protocol(done)
    tables = {"runs.csv": runs_table(done), "summary.csv": summary.reset_index(),
              "per_class.csv": per_class_table(done).assign(protocol=experiment),
              "mcnemar.csv": mcnemar_table(done).assign(protocol=experiment, corrected=False),
              "tests.csv": tests.assign(protocol=experiment)}
    # The marker goes first, so a report cut off half-way is still known as ours next time.
    paths = {"report.json": atomic_write_json(out / "report.json", {
        "written_by": "galaxy-morph compare", "title": title, "protocol": experiment, "runs": [r.id for r in done],
        "left_out": [r.id for r in excluded]})}
    for name, table in tables.items():
        paths[name] = atomic_write_text(out / name, inert_csv(table))
    paths["summary.tex"] = atomic_write_text(out / "summary.tex", latex_document(summary, tests, best=best, title=title,
                                                                                 notes=notes))
    paths["report.html"] = atomic_write_text(out / "report.html", _html(title, notes, done, summary, tests,
                                                                        tables["mcnemar.csv"], best))
    return paths


def report_notes(runs: list[Run], summary: pd.DataFrame, *, excluded: list[Run] | tuple[Run, ...] = ()) -> list[str]:
    """The sentences that go with every export: the verdict in words (:func:`verdict_lines`), what the figures
    pool, what the intervals are, and the runs left out."""
    notes = verdict_lines(runs)
    notes.append(f"Protocol: {protocol_words(experiment_protocol(runs))}. Figures and per-class intervals: "
                 f"{pooled_note(runs)}.")
    notes.append(interval_note(summary)[0].upper() + interval_note(summary)[1:])
    if excluded:
        notes.append(f"Left out by hand: {', '.join(_run_name(r) for r in excluded)}; the Holm families cover "
                     "only the pairs of the runs shown.")
    return notes


_TEST_COLUMNS = {"model_a": "Model A", "model_b": "Model B", "family": "Holm family", "n": "Test galaxies (n)",
                 "acc_a": "Accuracy A", "acc_b": "Accuracy B", "difference": "A − B", "method": "Test",
                 "p_value": "p (uncorrected)", "p_holm": "p (Holm-corrected)", "better": "Significantly better"}
_MCNEMAR_COLUMNS = {"split": "Split", "seed": "Seed", "model_a": "Model A", "model_b": "Model B",
                    "n": "Test galaxies (n)", "acc_a": "Accuracy A", "acc_b": "Accuracy B",
                    "b": "A right, B wrong", "c": "A wrong, B right", "p_value": "p (uncorrected)", "method": "Test"}
_RUN_COLUMNS = {"label": "Run", "model": "Model", "seed": "Seed", "split": "Split", "protocol": "Protocol",
                "n_train": "Training galaxies", "n_test": "Test galaxies (n)", "accuracy": "Accuracy",
                "accuracy_lo": "Accuracy low (95 %)", "accuracy_hi": "Accuracy high (95 %)", "macro_f1": "Macro F1",
                "params": "Parameters", "train_seconds": "Train time (s)", "epochs_done": "Epochs", "best_epoch": "Best epoch"}


def readable_tests(tests: pd.DataFrame) -> pd.DataFrame:
    """:func:`paired_tests` for reading: display names, column headings in words, the Holm family spelt out."""
    table = tests.copy()
    for column in ("model_a", "model_b", "better"):
        table[column] = table[column].map(lambda m: "–" if pd.isna(m) else model_label(m))
    table["family"] = table["family"].map(lambda f: FAMILIES.get(f, f))
    return table[list(_TEST_COLUMNS)].rename(columns=_TEST_COLUMNS)


def readable_mcnemar(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`mcnemar_table` for reading: display names and column headings in words (its p is uncorrected)."""
    table = table.copy()
    for column in ("model_a", "model_b"):
        table[column] = table[column].map(model_label)
    return table[list(_MCNEMAR_COLUMNS)].rename(columns=_MCNEMAR_COLUMNS)


def _html(title: str, notes: list[str], runs: list[Run], summary: pd.DataFrame, tests: pd.DataFrame,
          mcnemar_rows: pd.DataFrame, best: str | None) -> str:
    number = {"float_format": lambda v: f"{v:.4g}", "index": False}
    cells = summary_cells(summary).map(html.escape)
    if best is not None:
        cells.loc[_LABELS["accuracy"], best] = f"<b>{cells.loc[_LABELS['accuracy'], best]}</b>"
    cells.columns = [html.escape(model_label(m)) for m in cells.columns]
    said = verdict_lines(runs)
    context = " ".join(html.escape(n) for n in notes if n not in said)
    run_rows = runs_table(runs)
    run_rows["label"] = [_run_name(r) for r in runs]
    run_rows["model"] = run_rows["model"].map(model_label)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}.note{color:#555}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             "<h2>Verdict</h2>" + "".join(f"<p>{html.escape(line)}</p>" for line in said),
             "<h2>Test-set metrics</h2>" + cells.to_html(escape=False),
             f"<p class='note'>{context} {'Bold: ' if best else ''}{html.escape(best_note(best))}</p>",
             "<h2>Recall per class [95 % Wilson interval on the pooled counts]</h2>"
             + per_class_recall(runs).rename(columns=model_label).to_html(),
             "<h2>Paired tests per model pair (Holm-corrected within each family)</h2>"
             + (readable_tests(tests).to_html(**number) if not tests.empty else "<p>No pairs.</p>")]
    include = "inline"
    for name, fig in figures(runs).items():
        parts.append(f"<h2>{html.escape(FIGURE_TITLES.get(name, name))}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=include))
        include = False  # plotly.js is inlined once; later figures reuse it
    parts += ["<h2>Runs</h2>" + run_rows[list(_RUN_COLUMNS)].rename(columns=_RUN_COLUMNS).to_html(**number),
              "<h2>McNemar tests per split and seed (uncorrected p-values)</h2>"
              + (readable_mcnemar(mcnemar_rows).to_html(**number) if not mcnemar_rows.empty
                 else "<p>Fewer than two models share a seed.</p>"),
              "</body></html>"]
    return "\n".join(parts)
