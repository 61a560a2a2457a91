"""Comparing runs: tables and figures for the dashboard, and the ``compare`` report on disk.

Every function takes :class:`core.runs.Run` objects and returns plain tables (pandas) or plotly
figures, so the dashboard and :func:`write_report` show the same numbers. McNemar's tests pair
runs of different models **with the same seed** on the test galaxies they share (matched by name).
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
from core.metrics import aggregate_seeds, format_mean_std, mcnemar, normalize_confusion, roc_curve
from core.runs import Run

logger = logging.getLogger(__name__)

SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "ece", "params", "train_seconds",
                   "inference_img_per_s")
_LABELS = {"accuracy": "Accuracy", "balanced_accuracy": "Balanced acc.", "macro_f1": "Macro F1",
           "roc_auc_macro": "ROC AUC (OvR)", "ece": "ECE", "params": "Parameters", "train_seconds": "Train time (s)",
           "inference_img_per_s": "Inference (img/s)"}


def finished(runs: list[Run]) -> list[Run]:
    """The runs that have test metrics; the others are logged and left out."""
    kept = [r for r in runs if r.metrics]
    for r in runs:
        if not r.metrics:
            logger.warning("run %s has no metrics (status %s); left out of the comparison", r.id, r.status)
    return kept


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: id, label, model, seed, status and :data:`SUMMARY_METRICS`."""
    rows = []
    for run in runs:
        m = run.metrics
        rows.append({"id": run.id, "label": run.label, "model": run.model_name, "seed": run.seed,
                     "status": run.status, "epochs_done": m.get("epochs_done"), "best_epoch": m.get("best_epoch"),
                     **{k: m.get(k, np.nan) for k in SUMMARY_METRICS}})
    return pd.DataFrame(rows)


def summary_table(runs: list[Run]) -> pd.DataFrame:
    """Per model: mean and std over seeds of :data:`SUMMARY_METRICS`, and ``n_seeds``."""
    table = runs_table(finished(runs))
    if table.empty:
        raise GalaxyMorphError("no finished runs to compare. Train some with `python -m core train`.")
    table[list(SUMMARY_METRICS)] = table[list(SUMMARY_METRICS)].astype(float)
    return aggregate_seeds(table, by="model", columns=list(SUMMARY_METRICS))


def per_class_table(runs: list[Run]) -> pd.DataFrame:
    """Long table: label, model, seed, class, precision, recall, f1, support, roc_auc."""
    rows = [{"label": r.label, "model": r.model_name, "seed": r.seed, "class": cls, **scores}
            for r in finished(runs) for cls, scores in r.metrics.get("per_class", {}).items()]
    return pd.DataFrame(rows)


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


def mcnemar_table(runs: list[Run]) -> pd.DataFrame:
    """McNemar's test for every pair of runs of different models with the same seed.

    Columns: seed, model_a, model_b, n (shared test galaxies), acc_a, acc_b, b, c, statistic,
    p_value, method.
    """
    rows = []
    done = finished(runs)
    for a, b in itertools.combinations(done, 2):
        if a.model_name == b.model_name or a.seed != b.seed:
            continue
        pa, pb = a.predictions.set_index("name"), b.predictions.set_index("name")
        shared = pa.index.intersection(pb.index)
        if len(shared) == 0:
            logger.warning("runs %s and %s share no test galaxies; not compared", a.id, b.id)
            continue
        correct_a = (pa.loc[shared, "true"] == pa.loc[shared, "pred"]).to_numpy()
        correct_b = (pb.loc[shared, "true"] == pb.loc[shared, "pred"]).to_numpy()
        result = mcnemar(correct_a, correct_b)
        rows.append({"seed": a.seed, "model_a": a.model_name, "model_b": b.model_name, "n": len(shared),
                     "acc_a": float(correct_a.mean()), "acc_b": float(correct_b.mean()), **result.to_dict()})
    columns = ["seed", "model_a", "model_b", "n", "acc_a", "acc_b", "b", "c", "statistic", "p_value", "method"]
    return pd.DataFrame(rows, columns=columns)


def mcnemar_matrix(runs: list[Run], *, seed: int | None = None) -> pd.DataFrame:
    """Square table of McNemar p-values between models (one seed: ``seed`` or the smallest shared)."""
    table = mcnemar_table(runs)
    models = list(dict.fromkeys(r.model_name for r in finished(runs)))
    matrix = pd.DataFrame(np.nan, index=models, columns=models)
    if table.empty:
        return matrix
    seed = int(table["seed"].min()) if seed is None else seed
    for row in table[table["seed"] == seed].itertuples():
        matrix.loc[row.model_a, row.model_b] = matrix.loc[row.model_b, row.model_a] = row.p_value
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


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as a side-by-side text table: metrics by row, models by column, ``mean ± std``."""
    lines = []
    models = list(summary.index)
    width = max(18, *(len(m) + 2 for m in models))
    lines.append(f"{'':<20}" + "".join(f"{m:>{width}}" for m in models))
    for metric in SUMMARY_METRICS:
        cells = []
        for m in models:
            mean, std = summary.loc[m, f"{metric}_mean"], summary.loc[m, f"{metric}_std"]
            cells.append(_format_cell(metric, mean, std))
        lines.append(f"{_LABELS[metric]:<20}" + "".join(f"{c:>{width}}" for c in cells))
    lines.append(f"{'Seeds':<20}" + "".join(f"{int(summary.loc[m, 'n_seeds']):>{width}}" for m in models))
    return "\n".join(lines)


def _format_cell(metric: str, mean: float, std: float) -> str:
    if mean != mean:
        return "–"
    if metric == "params":
        return f"{mean / 1e6:.2f} M" if mean >= 1e5 else f"{mean / 1e3:.1f} k"
    if metric in ("train_seconds", "inference_img_per_s"):
        return format_mean_std(mean, std, digits=0)
    return format_mean_std(mean, std, digits=3)


# All ten characters that LaTeX gives a meaning to, in one pass (so the backslashes added for
# one are never escaped again); a line break would end the table row's paragraph.
_LATEX_SPECIALS = str.maketrans({
    "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "\n": " ", "\r": " ",
})


def latex_escape(text: str) -> str:
    r"""``text`` as literal LaTeX text: a model label ``$\input{/etc/passwd}$`` is printed, not run.

    Examples
    --------
    >>> print(latex_escape(r"$\input{x}$ 50% a_b ~^"))
    \$\textbackslash{}input\{x\}\$ 50\% a\_b \textasciitilde{}\textasciicircum{}
    """
    return str(text).translate(_LATEX_SPECIALS)


def latex_table(summary: pd.DataFrame, *, caption: str = r"Test-set comparison (mean $\pm$ std over seeds).") -> str:
    """A ``booktabs`` LaTeX table of the summary: metrics by row, models by column.

    Model labels are escaped with :func:`latex_escape`; ``caption`` is LaTeX as given.
    """
    models = list(summary.index)
    out = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{caption}}}",
           r"\begin{tabular}{l" + "r" * len(models) + "}", r"\toprule",
           "Metric & " + " & ".join(latex_escape(m) for m in models) + r" \\", r"\midrule"]
    for metric in SUMMARY_METRICS:
        cells = [_format_cell(metric, summary.loc[m, f"{metric}_mean"], summary.loc[m, f"{metric}_std"])
                 for m in models]
        cells = [c.replace("±", r"$\pm$").replace("–", "--") for c in cells]
        out.append(f"{_LABELS[metric]} & " + " & ".join(cells) + r" \\")
    out.append(r"Seeds & " + " & ".join(str(int(summary.loc[m, "n_seeds"])) for m in models) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------- figures


def figures(runs: list[Run]) -> dict[str, Any]:
    """Plotly figures of the comparison: learning curves, confusion matrices, per-class F1, ROC, McNemar."""
    import plotly.express as px  # noqa: PLC0415 - plotting is optional for the library
    import plotly.graph_objects as go  # noqa: PLC0415
    from plotly.subplots import make_subplots  # noqa: PLC0415

    done = finished(runs)
    figs: dict[str, Any] = {}
    curves = learning_curves(done)
    if not curves.empty:
        long = curves.melt(id_vars=["label", "epoch"], value_vars=["accuracy", "val_accuracy"],
                           var_name="split", value_name="value")
        figs["learning_curves"] = px.line(long, x="epoch", y="value", color="label", line_dash="split",
                                          title="Learning curves (accuracy; dashed = validation)",
                                          labels={"value": "accuracy"})
    first = _first_seed_runs(done)
    if first:
        fig = make_subplots(rows=1, cols=len(first), subplot_titles=[r.label for r in first])
        for i, run in enumerate(first, start=1):
            classes, counts, norm = confusion_matrices(run)
            fig.add_trace(go.Heatmap(z=norm, x=classes, y=classes, text=counts, texttemplate="%{text}",
                                     zmin=0, zmax=1, colorscale="Blues", showscale=i == len(first)), 1, i)
            fig.update_yaxes(autorange="reversed", row=1, col=i)
        fig.update_layout(title="Confusion matrices (colour: row-normalised; text: counts; rows = true class)")
        figs["confusion"] = fig
    per_class = per_class_table(done)
    if not per_class.empty:
        f1 = per_class.groupby(["model", "class"], sort=False)["f1"].agg(["mean", "std"]).reset_index()
        figs["per_class_f1"] = px.bar(f1, x="class", y="mean", error_y="std", color="model", barmode="group",
                                      title="Per-class F1 (mean ± std over seeds)", labels={"mean": "F1"})
    if first:
        roc = pd.concat([roc_curves(r).assign(label=r.label) for r in first], ignore_index=True)
        figs["roc"] = px.line(roc, x="fpr", y="tpr", color="class", facet_col="label",
                              title="One-vs-rest ROC curves", labels={"fpr": "false positive rate",
                                                                       "tpr": "true positive rate"})
    matrix = mcnemar_matrix(done)
    if matrix.notna().any().any():
        figs["mcnemar"] = px.imshow(matrix, text_auto=".3g", zmin=0, zmax=1, color_continuous_scale="RdBu",
                                    title="McNemar p-values between models (same seed, same test galaxies)")
    return figs


def _first_seed_runs(runs: list[Run]) -> list[Run]:
    chosen: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: r.seed):
        chosen.setdefault(run.model_name, run)
    return list(chosen.values())


# --------------------------------------------------------------------------------------------- report


def write_report(runs: list[Run], out_dir: str | Path, *, title: str = "galaxy-morph model comparison") -> dict[str, Path]:
    """Write the comparison into ``out_dir``: CSV tables, a LaTeX table and a self-contained HTML report.

    Files: ``runs.csv`` (one row per run), ``summary.csv`` (mean/std per model), ``per_class.csv``,
    ``mcnemar.csv``, ``summary.tex`` and ``report.html`` (plotly.js inlined once, so the file
    opens offline), and ``report.json``, which marks the folder as a report this tool may rewrite.
    ``out_dir`` must be absent, empty or such a report: nothing else is overwritten.

    Raises
    ------
    GalaxyMorphError
        If none of the runs has finished, or ``out_dir`` holds anything but a report.
    """
    out = Path(out_dir)
    check_replaceable(out, kind=REPORT)
    done = finished(runs)
    summary = summary_table(done)
    tables = {"runs.csv": runs_table(done), "summary.csv": summary.reset_index(),
              "per_class.csv": per_class_table(done), "mcnemar.csv": mcnemar_table(done)}
    # The marker goes first, so a report cut off half-way is still known as ours next time.
    paths = {"report.json": atomic_write_json(out / "report.json", {
        "written_by": "galaxy-morph compare", "runs": [r.id for r in done]})}
    for name, table in tables.items():
        paths[name] = atomic_write_text(out / name, table.to_csv(index=False))
    paths["summary.tex"] = atomic_write_text(out / "summary.tex", latex_table(summary))
    paths["report.html"] = atomic_write_text(out / "report.html", _html(title, done, summary, tables["mcnemar.csv"]))
    return paths


def _html(title: str, runs: list[Run], summary: pd.DataFrame, mcnemar_rows: pd.DataFrame) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             "<h2>Summary</h2><pre>" + html.escape(format_summary(summary)) + "</pre>",
             "<h2>Runs</h2>" + runs_table(runs).to_html(index=False, float_format=lambda v: f"{v:.4g}"),
             "<h2>McNemar tests</h2>" + (mcnemar_rows.to_html(index=False, float_format=lambda v: f"{v:.4g}")
                                        if not mcnemar_rows.empty else "<p>Fewer than two models share a seed.</p>")]
    include = "inline"
    for name, fig in figures(runs).items():
        parts.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=include))
        include = False  # plotly.js is inlined once; later figures reuse it
    parts.append("</body></html>")
    return "\n".join(parts)
