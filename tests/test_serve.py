"""The launcher behind ``make run`` imports, before the server listens, every library a first page visit would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLOW_PACKAGES = {"core", "numpy", "pandas", "polars", "plotly", "scipy", "astropy", "sklearn", "PIL"}

PROBE = """
import json, sys
import streamlit
import gc
from ui import serve
serve.prepare()
frozen = gc.get_freeze_count() / (gc.get_freeze_count() + len(gc.get_objects()))
before = set(sys.modules)
import ui.charts, ui.common, ui.palette, ui.present, ui.session, ui.state
import ui.services.builds, ui.services.catalogue, ui.services.pictures, ui.services.preview, ui.services.results
late = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in SLOW)
print(json.dumps({"late": late, "frozen": frozen,
                  "ui_warmed": sorted(m for m in before if m.startswith("ui.") and m not in ("ui.serve", "ui.charts", "ui.palette"))}))
"""


def test_warm_imports_leave_nothing_slow_for_the_first_visit() -> None:
    # A fresh interpreter: what the pages' modules import after the launcher warmed up.
    out = subprocess.run([sys.executable, "-c", f"SLOW = {sorted(SLOW_PACKAGES)!r}\n{PROBE}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=180, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["late"] == [], f"add the packages of these modules to ui.serve.WARM_MODULES: {seen['late'][:20]}"
    # ui modules that define Streamlit caches must be first imported inside the running server.
    assert seen["ui_warmed"] == []
    # Streamlit collects garbage after every script run; what was imported here is out of its way.
    assert seen["frozen"] > 0.95


def test_makefile_serves_through_the_launcher() -> None:
    run_recipe = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "-m ui.serve" in run_recipe and "streamlit run" not in run_recipe
