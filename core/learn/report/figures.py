"""The comparison figures (plotly): one home, drawn by the Comparison page and the HTML report alike, and
the figure download."""

from __future__ import annotations

import html
import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd

from core.errors import GalaxyMorphError
from core.learn import registry
from core.learn.metrics import (
    expected_calibration_error,
    normalize_confusion,
    per_class_scores,
    reliability_bins,
    roc_auc,
    roc_curve,
)
from core.learn.report.tables import (
    ALPHA,
    deduplicate,
    finished,
    in_model_order,
    learning_curves,
    model_label,
    paired_matrix,
    pooled_confusion,
    pooled_predictions,
    runs_table,
    smallest_first,
    summary_table,
)
from core.learn.report.text import n_test_cell
from core.runs import Run

logger = logging.getLogger(__name__)

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

    models = smallest_first(list(summary.index))
    labels = [_text(f"{model_label(m)} (n = {n_test_cell(summary.loc[m, 'n_test'], summary.loc[m, 'n_test_pooled'], int(summary.loc[m, 'n_splits']))})")
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
            cliponaxis=False,  # the top row's label rises above the plot area: clipped, it was cut off
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
    # Short enough for half the page at 1440 px: the longer title lost its closing bracket there.
    return _titled(fig, "Reliability diagram (15 bins, pooled held-out predictions)")


def paired_figure(runs: list[Run]) -> Any:
    """Heatmap of the Holm-corrected p-value of every model pair (:func:`paired_matrix`), with a colour bar:
    blues below 0.05 (a significant difference), greys above."""
    import plotly.graph_objects as go

    matrix = paired_matrix(runs)
    labels = [_text(model_label(m)) for m in matrix.columns]
    z = matrix.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(
        z=z, x=labels, y=labels, colorscale=P_VALUE_COLORSCALE, zmin=0, zmax=1, showscale=True,
        # No tick at 0: on a short chart its label sat on top of the 0.05 one.
        colorbar=dict(title=dict(text="Holm-corrected p", side="right"), tickvals=[ALPHA, 0.5, 1],
                      ticktext=[f"{ALPHA:g} (significant below)", "0.5", "1"], thickness=14),
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


def figures(runs: list[Run]) -> dict[str, Any]:
    """The comparison's plotly figures, titled in words, for the HTML report and the figure download:
    ``accuracy``, ``confusion`` (one panel per model), then those of :data:`FIGURE_NAMES` that
    :func:`sections` finds something for (ROC: one panel per class). Every figure but the learning curves and
    the per-run size chart pools the held-out predictions of all the model's runs."""
    from plotly.subplots import make_subplots  # plotting is optional for the library

    done = in_model_order(deduplicate(finished(runs)))
    shown = set(sections(done))
    models = smallest_first([r.model_name for r in done])
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
