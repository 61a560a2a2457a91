"""The dashboard's caches follow the files they read: a changed source shows without a restart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.io import atomic_write_text

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _catalogue_rows(at: AppTest) -> int:
    values = [m.value for m in at.metric if m.label == "Catalogue rows"]
    assert values, f"no 'Catalogue rows' metric; have {[m.label for m in at.metric]}"
    return int(values[0].replace(",", ""))


def test_a_changed_catalogue_shows_on_the_next_run(world: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    shutil.copytree(world["sample"], data / "sample")
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(data))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    before = _catalogue_rows(at)

    catalog = data / "sample" / "catalog.csv"
    table = pd.read_csv(catalog)
    atomic_write_text(catalog, table.head(len(table) - 7).to_csv(index=False))
    at.run()

    assert not at.exception, [e.value for e in at.exception]
    assert _catalogue_rows(at) == before - 7


def test_a_rebuilt_dataset_shows_on_the_next_run(world: dict[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Rebuilding a dataset under the same name (no run depends on it) shows its new size at once."""
    from core.prepare.builder import build_dataset
    from core.prepare.preprocessing import PreprocessConfig

    data = tmp_path / "data"
    data.mkdir()
    # The world's sample as the built-in one: without it the router generates the 2,000-galaxy sample
    # (minutes of this test's time on 2 cores).
    (data / "sample").symlink_to(world["sample"], target_is_directory=True)
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(data))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(tmp_path / "runs"))
    out = data / "datasets" / "mine"

    def build(size: int) -> None:
        build_dataset(world["sample"], scheme="hubble3", preprocess=PreprocessConfig(size=size), min_quality=0.0,
                      min_size=0, catalog="all", out=out, n_jobs=1, force=True)

    build(32)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/training.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    captions = " ".join(c.value for c in at.caption)
    assert "of 32 px" in captions, captions

    build(48)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    captions = " ".join(c.value for c in at.caption)
    assert "of 48 px" in captions and "of 32 px" not in captions, captions
