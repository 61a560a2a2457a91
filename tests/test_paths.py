"""Every default folder comes from the settings through core.paths, read when asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import jobs
from core.acquire.http import request_lock_path
from core.config import get_settings
from core.runs import default_runs_dir
from core.paths import data_layout, runs_root


def test_the_layout_follows_the_settings_read_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(tmp_path / "first"))
    assert data_layout().sample == tmp_path / "first" / "sample"
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(tmp_path / "runs"))
    layout = data_layout()
    assert (layout.gz1, layout.ned_catalogue, layout.ned_manifest) == (
        tmp_path / "data" / "gz1", tmp_path / "data" / "ned" / "catalog.csv",
        tmp_path / "data" / "ned" / "images" / "manifest.csv")
    assert (layout.imported_source("mine"), layout.dataset("tiny")) == (
        tmp_path / "data" / "imported" / "mine", tmp_path / "data" / "datasets" / "tiny")
    assert layout.http_cache == tmp_path / "data" / "cache" / "http"


def test_the_modules_that_write_default_folders_ask_the_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(tmp_path / "runs"))
    layout = data_layout()
    assert jobs.jobs_dir() == layout.jobs == tmp_path / "data" / "jobs"
    assert jobs.jobs_dir(tmp_path / "other") == tmp_path / "other" / "jobs"
    assert request_lock_path(get_settings()) == layout.request_lock == tmp_path / "data" / ".cache" / "ned-requests.lock"
    assert default_runs_dir() == runs_root() == tmp_path / "runs"
