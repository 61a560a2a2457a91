"""Serve the dashboard with its libraries already imported: ``python -m ui.serve [streamlit options]``.

``streamlit run app.py`` imports a page's modules only when the first visitor arrives, so on a
fresh server the first page paid ~1.5 s (of ~3.9 s) importing pandas, polars, SciPy, Astropy,
Plotly and ``core``. Importing them here, before the server listens, moves that cost to start-up
(``make run`` spends longer rendering the sample anyway). Only libraries and ``core`` are warmed:
the ``ui`` modules define Streamlit caches, which must be created inside the running server.

Then the warmed objects are frozen out of the garbage collector (:func:`gc.freeze`): Streamlit runs
a full collection after every script run, and over the ~230,000 objects of these libraries and
Streamlit's own it took ~0.1 s, a third of a slider step on the Preprocessing page, holding the
interpreter while the step's last message waited to be sent. Frozen objects are never collected,
which costs nothing here: they are modules and their tables, alive for the whole server anyway.
"""

from __future__ import annotations

import gc
import importlib
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app.py"

WARM_MODULES: tuple[str, ...] = (
    "numpy", "pandas", "polars", "plotly.graph_objects",
    "core.builder", "core.catalogue", "core.counts", "core.dataset", "core.device", "core.images", "core.io",
    "core.jobs", "core.labels", "core.metrics", "core.preprocessing", "core.progress", "core.provenance",
    "core.quality", "core.report", "core.runs", "core.sample", "core.spec",
)
"""What the pages import beside Streamlit and ``ui`` (``tests/test_serve.py`` checks the list is complete)."""


def warm_imports() -> None:
    """Import :data:`WARM_MODULES` (the slow part of a first page visit) and load the charts' template."""
    for name in WARM_MODULES:
        importlib.import_module(name)
    import plotly.io as pio

    from ui.charts import TEMPLATE  # plain Plotly, no Streamlit cache

    pio.templates[TEMPLATE]  # loads the module of every trace type


def prepare() -> None:
    """Warm the imports (Streamlit's server too), then freeze every object so far out of the collector."""
    warm_imports()
    importlib.import_module("streamlit.web.cli")
    gc.collect()
    gc.freeze()


def main(argv: list[str] | None = None) -> None:
    """:func:`prepare`, then ``streamlit run app.py`` with ``argv`` (default: this command's options)."""
    prepare()
    from streamlit.web import cli

    cli.main(["run", str(APP), *(sys.argv[1:] if argv is None else argv)], prog_name="streamlit")


if __name__ == "__main__":
    main()
