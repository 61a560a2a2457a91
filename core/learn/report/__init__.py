"""Comparing runs: tables, verdicts and figures for the dashboard, and the ``compare`` report on disk.

Every function takes :class:`core.runs.Run` objects and returns plain tables (pandas) or plotly
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

The package's modules, each importing only those before it: :mod:`~core.learn.report.tables` (which
runs count, summaries, pooled predictions, paired tests), :mod:`~core.learn.report.text` (verdicts,
titles, notes and cells in words), :mod:`~core.learn.report.figures` (plotly) and
:mod:`~core.learn.report.export` (CSV, LaTeX, HTML: :func:`write_report`). Import from
``core.learn.report``: every public name is here.
"""

from __future__ import annotations

from core.learn.report.tables import (
    ALPHA, BASELINE, FAMILIES, INTERVAL_METRICS, PAIRED_COLUMNS, SUMMARY_METRICS, FoldEnsemble, best_model,
    by_dataset, comparable, confusion_matrices, dataset_hash, dataset_name, deduplicate, experiment_protocol, finished,
    first_seed_runs, fold_ensembles, in_model_order, learning_curves, mcnemar_table, misclassified, misclassified_gallery,
    model_label, paired_matrix, paired_tests, per_class_recall, per_class_table, pooled_confusion,
    pooled_predictions, protocol, reliability, roc_curves, run_holding_out, run_metrics, runs_table, smallest_first,
    split_key, summary_table,
)
from core.learn.report.text import (
    METRIC_LABELS, N_TEST_LABEL, PROTOCOL_MEANINGS, PROTOCOL_WORDS, best_note, comparison_headline, comparison_title,
    excluded_note, floor_sentences,
    format_p, format_summary, interval_note, n_test_cell, pooled_note, protocol_words, report_notes, run_name,
    summary_cells, tuning_note, verdict_lines, verdict_sentence, verdicts,
)
from core.learn.report.figures import (
    ACCURACY_RANGE, FIGURE_NAMES, FIGURE_TITLES, P_VALUE_COLORSCALE, accuracy_figure, confusion_figure, figures,
    figures_zip, integer_epoch_axis, learning_curves_figure, model_color, paired_figure, per_class_f1_figure,
    reliability_figure, roc_figure, sections, size_accuracy_figure,
)
from core.learn.report.export import (
    FORMULA_STARTS, LATEX_PACKAGES, inert_csv, latex_document, latex_escape, latex_table, latex_tests_table,
    readable_mcnemar, readable_tests, write_report,
)

__all__ = [
    "ACCURACY_RANGE", "ALPHA", "BASELINE", "FAMILIES", "FIGURE_NAMES", "FIGURE_TITLES", "FORMULA_STARTS",
    "INTERVAL_METRICS", "LATEX_PACKAGES", "METRIC_LABELS", "N_TEST_LABEL", "PAIRED_COLUMNS", "PROTOCOL_MEANINGS",
    "PROTOCOL_WORDS",
    "P_VALUE_COLORSCALE", "SUMMARY_METRICS", "accuracy_figure", "best_model", "best_note", "by_dataset",
    "comparable", "comparison_headline", "comparison_title", "confusion_figure", "confusion_matrices", "dataset_hash", "dataset_name",
    "deduplicate", "excluded_note", "experiment_protocol", "figures", "figures_zip", "finished", "first_seed_runs",
    "floor_sentences", "fold_ensembles", "FoldEnsemble", "format_p", "format_summary", "in_model_order", "inert_csv", "integer_epoch_axis",
    "interval_note", "latex_document", "latex_escape", "latex_table", "latex_tests_table", "learning_curves",
    "learning_curves_figure", "mcnemar_table", "misclassified", "misclassified_gallery", "model_color",
    "model_label", "n_test_cell", "paired_figure", "paired_matrix", "paired_tests", "per_class_f1_figure",
    "per_class_recall", "per_class_table", "pooled_confusion", "pooled_note", "pooled_predictions", "protocol",
    "protocol_words", "readable_mcnemar", "readable_tests", "reliability", "reliability_figure", "report_notes",
    "roc_curves", "roc_figure", "run_holding_out", "run_metrics", "run_name", "runs_table", "sections",
    "size_accuracy_figure", "smallest_first", "split_key", "summary_cells", "summary_table", "tuning_note",
    "verdict_lines", "verdict_sentence", "verdicts", "write_report",
]
