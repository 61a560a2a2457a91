"""Plotly figures for the dashboard, styled alike (one template, fixed colours per class and model)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from core.learn.report import integer_epoch_axis
from ui.palette import KEPT_COLOR, MISSING_COLOR, REJECTED_COLOR, THRESHOLD_COLOR, class_colors

TEMPLATE = "plotly_white"
# A template passed to each figure is validated whole every time (~9 ms a figure, a third of a slider
# step's server time on Preprocessing); the default template is applied from a cache. Every dashboard
# figure uses this one, so it is the default.
pio.templates.default = TEMPLATE


def text(value: object) -> str:
    """``value`` shown literally in a figure: plotly reads ``<b>``, ``<a href>``, ``<span style>``
    and entities in titles, ticks, legends and hover text, so ``&``, ``<`` and ``>`` become entities."""
    return html.escape(str(value), quote=False)


def texts(values: Iterable[object]) -> list[str]:
    """:func:`text` of each value (category ticks, node labels)."""
    return [text(v) for v in values]


def style(fig: go.Figure, *, title: str | None = None, height: int = 360) -> go.Figure:
    """The shared look: white template, title top left, legend in its own strip under the plot.

    Without ``title`` the figure keeps the one it has (the figures of :mod:`core.learn.report` come titled).

    A legend above the plot collides with the title once it wraps (six learning-curve traces),
    so it sits at the bottom of the figure, and the bottom margin grows with it.
    """
    # Sankey and heatmap traces have no legend entry (no ``showlegend``).
    named = [trace for trace in fig.data if getattr(trace, "showlegend", False) is not False and trace.name]
    has_legend = len(named) > 1
    heading = text(title) if title else fig.layout.title.text
    fig.update_layout(
        title=dict(text=heading, x=0, xanchor="left", y=0.98, yanchor="top") if heading else None,
        height=height + (50 if has_legend else 0),
        margin=dict(l=10, r=10, t=50 if heading else 20, b=10),
        legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", xanchor="left", x=0),
    )
    return fig


def epoch_axis(fig: go.Figure, epochs: pd.Series) -> go.Figure:
    """Whole-number epoch ticks (:func:`core.learn.report.integer_epoch_axis`), never 1.2, 1.4 …"""
    return integer_epoch_axis(fig, float(epochs.max()) if len(epochs) else 1.0)


def class_bar(
    counts: pd.Series, *, title: str, colors: Mapping[str, str] | None = None, y_title: str = "objects"
) -> go.Figure:
    """Bar per class, coloured by class; the y axis says what is counted."""
    colors = colors or class_colors(list(counts.index))
    fig = go.Figure(
        go.Bar(
            x=texts(counts.index),
            y=counts.to_numpy(),
            marker_color=[colors.get(c, MISSING_COLOR) for c in counts.index],
            text=counts.to_numpy(),
            textposition="outside",
        )
    )
    fig.update_yaxes(title=y_title)
    return style(fig, title=title)


def kept_rejected_bar(kept: pd.Series, rejected: pd.Series, *, title: str, y_title: str = "objects") -> go.Figure:
    """Stacked bars per class: kept and left-out objects (what the page's metrics count)."""
    fig = go.Figure(
        [
            go.Bar(name="kept", x=texts(kept.index), y=kept.to_numpy(), marker_color=KEPT_COLOR),
            go.Bar(name="left out", x=texts(rejected.index), y=rejected.to_numpy(), marker_color=REJECTED_COLOR),
        ]
    )
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title=y_title)
    return style(fig, title=title)


def histogram_with_threshold(
    values: pd.Series, *, threshold: float | None, title: str, x_title: str, kept_above: bool = True,
    y_title: str = "images",
) -> go.Figure:
    """Histogram of one quality metric with the slider's threshold drawn as a line."""
    values = values.dropna()
    fig = go.Figure(go.Histogram(x=values, nbinsx=40, marker_color=KEPT_COLOR, opacity=0.85))
    if threshold is not None:
        fig.add_vline(x=threshold, line=dict(color=THRESHOLD_COLOR, width=2, dash="dash"))
        # Above the plot, not inside it: at the top of the plot the label sat on the tallest bars.
        fig.add_annotation(x=threshold, xref="x", y=1, yref="paper", yanchor="bottom", xanchor="left",
                           text=f"{'≥' if kept_above else '≤'} {threshold:g} kept", showarrow=False,
                           font=dict(color=THRESHOLD_COLOR))
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title)
    fig = style(fig, title=title, height=280)
    fig.update_layout(margin=dict(t=70))  # room for the threshold's label under the title
    return fig


def per_class_violin(
    frame: pd.DataFrame, *, column: str, classes: Sequence[str], title: str, y_title: str
) -> go.Figure:
    """One violin of ``column`` per class, with its quartiles, spanning only the data's range.

    Overlaid histograms of a few hundred objects per class hid each other; side by side the
    classes' medians and spreads compare at a glance. A long tail (on the built-in sample 3 % of
    the redshifts lie between 0.1 and 0.5, 95 % below 0.072) would flatten every violin, so the axis
    then ends at 1.5 times the 95th percentile's distance from the minimum and a note says how many
    values lie beyond it.
    """
    colors = class_colors(classes)
    fig = go.Figure()
    shown = frame.loc[frame["label"].isin(classes), column].dropna()
    for cls in classes:
        values = frame.loc[frame["label"] == cls, column].dropna()
        if len(values):
            fig.add_trace(go.Violin(y=values, name=text(f"{cls} ({len(values):,})"), line_color=colors[cls], box_visible=True,
                                    meanline_visible=False, points=False, spanmode="hard"))
    fig.update_layout(showlegend=False)
    fig.update_yaxes(title=y_title)
    if len(shown):
        low, top, high = float(shown.min()), float(shown.quantile(0.95)), float(shown.max())
        if high - low > 3 * (top - low) > 0:
            edge = top + 0.5 * (top - low)
            beyond = int((shown > edge).sum())
            fig.update_yaxes(range=[low - 0.02 * (edge - low), edge])
            fig.add_annotation(text=text(f"{beyond:,} above {edge:.3g} (up to {high:.3g}) not shown"), xref="paper",
                               yref="paper", x=1, y=1, xanchor="right", yanchor="bottom", showarrow=False,
                               font={"size": 11})
    return style(fig, title=title)


def stacked_histogram(
    frame: pd.DataFrame, *, column: str, classes: Sequence[str], title: str, x_title: str, y_title: str
) -> go.Figure:
    """Histogram of ``column``, each bar split by class."""
    colors = class_colors(classes)
    fig = go.Figure()
    for cls in classes:
        values = frame.loc[frame["label"] == cls, column].dropna()
        if len(values):
            fig.add_trace(go.Histogram(x=values, name=text(cls), marker_color=colors[cls], nbinsx=30))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title)
    return style(fig, title=title)


def type_bars(flows: pd.DataFrame, *, classes: Sequence[str], title: str) -> go.Figure:
    """Raw type strings as horizontal bars, most common on top, coloured by the class each becomes.

    ``flows``: source (raw string), target (class), n. Replaces a Sankey whose dozens of tiny
    labels could not be read.
    """
    colors = class_colors(classes)
    order = flows.groupby("source")["n"].sum().sort_values()  # plotly draws the first bar at the bottom
    fig = go.Figure()
    for cls in classes:
        part = flows[flows["target"] == cls].groupby("source")["n"].sum().reindex(order.index)
        if part.notna().any():
            fig.add_trace(go.Bar(y=texts(order.index), x=part.to_numpy(), name=text(cls), orientation="h",
                                 marker_color=colors.get(cls, MISSING_COLOR)))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="catalogue rows")
    return style(fig, title=title, height=max(360, 22 * len(order) + 140))


def heatmap(
    matrix: pd.DataFrame, *, title: str, colorscale: str = "Blues", text_format: str = "d", height: int = 340,
    zmin: float | None = None, zmax: float | None = None, x_title: str = "", y_title: str = "",
) -> go.Figure:
    """Annotated heatmap (confusion matrices, survey × band coverage, p-values)."""
    z = matrix.to_numpy(dtype=float)
    text = [[("" if np.isnan(v) else format(int(v) if text_format == "d" else v, text_format)) for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z, x=texts(matrix.columns), y=texts(matrix.index), colorscale=colorscale,
            text=text, texttemplate="%{text}", showscale=False, zmin=zmin, zmax=zmax,
        )
    )
    fig.update_yaxes(autorange="reversed", title=y_title)
    fig.update_xaxes(title=x_title, side="bottom")
    return style(fig, title=title, height=height)


def grouped_bars(frame: pd.DataFrame, *, title: str, y_title: str) -> go.Figure:
    """One bar group per index value, one bar per column (e.g. before / after filters)."""
    shades = (REJECTED_COLOR, KEPT_COLOR, MISSING_COLOR, THRESHOLD_COLOR)
    fig = go.Figure(
        [
            go.Bar(name=text(col), x=texts(frame.index), y=frame[col].to_numpy(),
                   marker_color=shades[i % len(shades)], text=frame[col].to_numpy(), textposition="outside")
            for i, col in enumerate(frame.columns)
        ]
    )
    fig.update_layout(barmode="group")
    fig.update_yaxes(title=y_title)
    return style(fig, title=title)


def probability_bar(probs: dict[str, float], *, color: str) -> go.Figure:
    """Horizontal bars of one model's class probabilities."""
    classes = list(probs)
    fig = go.Figure(go.Bar(x=[probs[c] for c in classes], y=texts(classes), orientation="h", marker_color=color,
                           text=[f"{probs[c]:.0%}" for c in classes], textposition="auto"))
    fig.update_xaxes(range=[0, 1], title="probability")
    fig.update_yaxes(autorange="reversed")
    return style(fig, height=60 + 40 * len(classes))


# Saliency / Grad-CAM over the galaxy: transparent where the map is 0, then yellow to dark red (YlOrRd).
# At most 65 % opaque, so the galaxy still shows under the strongest evidence.
OVERLAY_COLORSCALE = [[0.0, "rgba(255,255,178,0)"], [0.15, "rgba(254,217,118,0.1)"], [0.4, "rgba(254,178,76,0.3)"],
                      [0.7, "rgba(240,59,32,0.5)"], [1.0, "rgba(189,0,38,0.65)"]]


def saliency_overlay(image: np.ndarray, heat: np.ndarray, *, title: str, scale_title: str) -> go.Figure:
    """An explanation map drawn in colour over the galaxy it explains, with a colour bar.

    ``image``: the galaxy as displayed (2-D grey or 3-channel colour, values in [0, 1], top row first);
    ``heat``: the map in [0, 1], same height and width. Where the map is near 0 the galaxy shows through.
    """
    image = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float32)), 0.0, 1.0)
    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)
    if heat.shape[:2] != image.shape[:2]:
        raise ValueError(f"heat must have the image's size {image.shape[:2]}; got {heat.shape[:2]}.")
    fig = go.Figure()
    if image.ndim == 3 and image.shape[2] == 3:
        fig.add_trace(go.Image(z=(image * 255).astype(np.uint8), hoverinfo="skip"))
    else:
        grey = image[..., 0] if image.ndim == 3 else image
        fig.add_trace(go.Heatmap(z=grey, colorscale="gray", zmin=0, zmax=1, showscale=False, hoverinfo="skip"))
    fig.add_trace(go.Heatmap(z=heat, colorscale=OVERLAY_COLORSCALE, zmin=0, zmax=1,
                             colorbar=dict(title=dict(text=text(scale_title), side="right"), thickness=12, len=0.9),
                             hovertemplate="x %{x}, y %{y}: %{z:.2f}<extra></extra>"))
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_layout(title=dict(text=text(title), x=0, xanchor="left", font=dict(size=13)), height=280,
                      margin=dict(l=0, r=0, t=40, b=0))
    return fig
