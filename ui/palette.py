"""The dashboard's colours, in one place: a class or a model has the same colour on every chart.

Classes use the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies);
models use darker hues outside it, so a chart of models is never read as a chart of classes.
"""

from __future__ import annotations

from collections.abc import Sequence

# Pages take model colours from here; their home is core.learn.report, whose HTML report uses them too.
from core.learn.report import model_color  # noqa: F401

CLASS_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
KEPT_COLOR, REJECTED_COLOR = "#3558a8", "#c8cdd8"
THRESHOLD_COLOR = "#d62728"
MISSING_COLOR = "#999999"


def class_colors(classes: Sequence[str]) -> dict[str, str]:
    """One colour per class, in the scheme's class order."""
    return {cls: CLASS_PALETTE[i % len(CLASS_PALETTE)] for i, cls in enumerate(classes)}

