"""The dashboard's colours, in one place: a class or a model has the same colour on every chart.

Classes use the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies);
models use darker hues outside it, so a chart of models is never read as a chart of classes.
"""

from __future__ import annotations

from collections.abc import Sequence

CLASS_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
MODEL_COLORS = {
    "lenet5": "#6A3D9A", "alexnet": "#A6611A", "resnet18": "#1F4E79", "resnet34": "#2E7D6B", "resnet50": "#7F1D3F",
}
MODEL_FALLBACK = ("#5E5E5E", "#8C6D31", "#3B6E8F", "#843C54")
KEPT_COLOR, REJECTED_COLOR = "#3558a8", "#c8cdd8"
THRESHOLD_COLOR = "#d62728"
MISSING_COLOR = "#999999"


def class_colors(classes: Sequence[str]) -> dict[str, str]:
    """One colour per class, in the scheme's class order."""
    return {cls: CLASS_PALETTE[i % len(CLASS_PALETTE)] for i, cls in enumerate(classes)}


def model_color(model: str, index: int = 0) -> str:
    """The colour of a model family (``lenet5``...); others get a fallback by position."""
    return MODEL_COLORS.get(model, MODEL_FALLBACK[index % len(MODEL_FALLBACK)])
