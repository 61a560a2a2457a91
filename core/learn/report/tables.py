"""The numbers of a comparison: which runs count, per-model summaries with intervals, pooled predictions,
and the paired tests between models (see :mod:`core.learn.report` for the rules)."""

from __future__ import annotations

import functools
import itertools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import GalaxyMorphError
from core.learn import registry
from core.learn.metrics import (
    aggregate_seeds,
    corrected_resampled_t,
    evaluate_predictions,
    holm,
    mcnemar,
    normalize_confusion,
    reliability_bins,
    roc_curve,
    wilson_interval,
)
from core.runs import Run

logger = logging.getLogger(__name__)

SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "ece", "params", "train_seconds",
                   "inference_img_per_s")

INTERVAL_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro")

BASELINE = registry.BASELINE

ALPHA = 0.05


def model_label(model: str) -> str:
    """``lenet5`` -> ``LeNet-5``, from the model's registry entry (unregistered names unchanged)."""
    return registry.model_label(model)


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
    if isinstance(run, FoldEnsemble):
        return f"frozen test, k{folds} ensemble" if folds else "frozen test, re-split ensemble"
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
    done = fold_ensembles(comparable(runs, pool_datasets=pool_datasets))
    table = runs_table(done)
    if table.empty:
        raise GalaxyMorphError("no finished runs to compare. Train some with `python -m core train`.")
    table[list(SUMMARY_METRICS)] = table[list(SUMMARY_METRICS)].astype(float)
    summary = aggregate_seeds(table, by="model", columns=list(SUMMARY_METRICS)).rename(columns={"n_seeds": "n_runs"})
    grouped = table.groupby("model", sort=False)
    summary["n_seeds"] = grouped["seed"].nunique()
    summary["n_splits"] = grouped["split"].nunique()
    summary["interval"] = np.where(summary["n_splits"] > 1, "between splits", "test set")
    ensembled = grouped["split"].agg(lambda s: s.str.startswith("frozen test").all())
    summary.loc[ensembled[ensembled].index, "interval"] = "frozen test set, fold ensemble"
    # The trained models behind each row: an ensemble counts its fold models, not itself.
    summary["n_models"] = [sum(len(r.members) if isinstance(r, FoldEnsemble) else 1 for r in done
                               if r.model_name == model) for model in summary.index]
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


@dataclass(frozen=True, eq=False)
class FoldEnsemble(Run):
    """The fold (or re-split) models of one model and seed, scored as one on a frozen test set.

    On a dataset whose test set is its source's frozen ``split.csv``, ``train --folds K`` rotates only
    train and validation, so every fold model predicts the same test galaxies
    (:func:`core.prepare.splits.resplit`). Pooling those predictions would count each test galaxy K
    times as if it were independent. The ensemble averages the fold models' class probabilities per
    galaxy (its prediction is the arg-max of the mean), so every count, interval and paired test has
    n = the number of distinct test galaxies. ``metrics`` are the ensemble's on them, with
    ``fold_accuracies`` (each fold model alone) and ``train_seconds`` summed over the folds (what the
    ensemble cost).
    """

    members: tuple[Run, ...] = ()
    ensembled: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def label(self) -> str:
        return f"{self.model_name} s{self.seed} ensemble of {len(self.members)} folds"

    @property
    def history(self) -> pd.DataFrame:
        return pd.DataFrame()

    @property
    def predictions(self) -> pd.DataFrame:
        return self.ensembled.copy()

    @functools.cached_property
    def metrics(self) -> dict[str, Any]:  # type: ignore[override]
        classes = self.classes
        y = self.ensembled["true"].astype(str).map({c: k for k, c in enumerate(classes)}).to_numpy()
        proba = self.ensembled[[f"prob_{c}" for c in classes]].to_numpy(dtype=np.float64)
        metrics = evaluate_predictions(y, proba, classes=classes)
        alone = [m.metrics for m in self.members]
        metrics["fold_accuracies"] = [float(m.get("accuracy", np.nan)) for m in alone]
        metrics["train_seconds"] = float(sum(float(m.get("train_seconds", 0) or 0) for m in alone))
        for key in ("params", "inference_img_per_s", "epochs_done", "best_epoch"):
            values = [float(m[key]) for m in alone if isinstance(m.get(key), (int, float))]
            metrics[key] = float(np.mean(values)) if values else np.nan
        return metrics


def _frozen_resplit(run: Run) -> bool:
    """The run is a fold or re-split of a dataset whose test set is its source's frozen one."""
    params = run.config.get("params", {})
    resplit = bool(params.get("folds")) or params.get("split_seed") is not None
    return resplit and bool(run.config.get("dataset", {}).get("split_file_sha256")) and run.model_name != "?"


def fold_ensembles(runs: list[Run]) -> list[Run]:
    """``runs`` with the fold models that share a frozen test set replaced by one :class:`FoldEnsemble` per
    experiment, model, seed and kind of split (folds / re-splits); every other run as it is.

    A group whose members do not all predict the same galaxies is left as it is (the split is not a
    frozen one after all).
    """
    groups: dict[tuple[str, str, int, int], list[Run]] = {}
    for run in runs:
        if _frozen_resplit(run) and not isinstance(run, FoldEnsemble):
            folds = int(run.config.get("params", {}).get("folds", 0) or 0)
            groups.setdefault((_experiment(run), run.model_name, run.seed, folds), []).append(run)
    replaced: dict[str, Run] = {}
    for members in groups.values():
        frames = [_predictions(m) for m in members]
        if len(members) < 2 or any(f.empty for f in frames):
            continue
        names = [frozenset(f["name"].astype(str)) for f in frames]
        if any(n != names[0] for n in names):
            continue
        classes = members[0].classes
        probabilities = [f"prob_{c}" for c in classes]
        stacked = pd.concat([f.drop_duplicates("name") for f in frames], ignore_index=True)
        mean = stacked.groupby("name", sort=True).agg({"true": "first", **{p: "mean" for p in probabilities}})
        best = mean[probabilities].to_numpy().argmax(axis=1)
        mean.insert(1, "pred", np.asarray(classes, dtype=object)[best])
        first = members[0]
        config = {**first.config, "id": f"{first.id}+{len(members) - 1}",
                  "params": {**first.config.get("params", {}), "fold": None}}
        ensemble = FoldEnsemble(path=first.path, config=config, members=tuple(members),
                                ensembled=mean.reset_index())
        replaced.update({m.id: ensemble for m in members})
    kept: list[Run] = []
    for run in runs:
        chosen = replaced.get(run.id, run)
        if not any(chosen is k for k in kept):
            kept.append(chosen)
    return kept


def pooled_predictions(runs: list[Run]) -> dict[str, pd.DataFrame]:
    """Per model, the held-out predictions of all its runs (every fold, repeat and seed) in one table:
    ``name, true, pred, prob_<class>..., split, seed``. Models in :func:`in_model_order`.

    With k folds every galaxy is predicted once per seed by the fold model that never saw it, so
    the table has as many rows as the folds' ``n_test`` add up to (times the seeds).
    """
    frames: dict[str, list[pd.DataFrame]] = {}
    for run in in_model_order(fold_ensembles(deduplicate(finished(runs)))):
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
    done = fold_ensembles(deduplicate(finished(runs)))
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
    if isinstance(run, FoldEnsemble):
        return run.predictions
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
    models = [m for m in smallest_first([r.model_name for r in finished(runs)])]
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
            split = str(part["split"].iloc[0])  # split_key's words
            folds = re.fullmatch(r"frozen test, k(\d+) ensemble", split)
            where = (f"the {folds.group(1)}-fold ensemble on the frozen test set, one seed" if folds else
                     "the re-split ensemble on the frozen test set, one seed" if split.startswith("frozen test")
                     else "one split and seed")
            p_value, method = float(part["p_value"].iloc[0]), f"McNemar ({part['method'].iloc[0]}), {where}"
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


def paired_matrix(runs: list[Run]) -> pd.DataFrame:
    """Square table of the Holm-adjusted combined p-values between models (NaN on the diagonal)."""
    tests = paired_tests(runs)
    models = smallest_first([r.model_name for r in finished(runs)])
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


def smallest_first(models: list[str]) -> list[str]:
    return sorted(dict.fromkeys(models), key=_model_rank)


def _model_rank(model: str) -> int:
    # The registry's order (LeNet-5 first, the baseline last); unregistered models after them, in the order given.
    return registry.model_rank(model)


def in_model_order(runs: list[Run]) -> list[Run]:
    """``runs`` with the architectures smallest first (LeNet-5, AlexNet, ResNet-18 …), whatever order they
    were trained in; runs of one model keep their order. Tables and figures list models in this order."""
    return sorted(runs, key=lambda r: _model_rank(r.model_name))
