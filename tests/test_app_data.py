"""The Data page starts real scrape and import jobs from their specs (scrape against the local NED look-alike)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import jobs
from core.spec import ImportSpec, ScrapeSpec
from tests.fixture_server import ned_server  # noqa: F401 - fixture
from tests.test_app import APP, _open

GZ1 = Path(__file__).resolve().parent.parent / "data" / "gz1"


def _finish(job_id: str, timeout: float = 120.0) -> jobs.Job:
    job = jobs.load_job(job_id)
    deadline = time.monotonic() + timeout
    while jobs.job_status(job) == jobs.RUNNING:
        assert time.monotonic() < deadline, jobs.tail_log(job)
        time.sleep(0.1)
    return job


@pytest.fixture
def data_page(world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ned_server) -> AppTest:
    data = tmp_path / "data"
    data.mkdir()
    (data / "sample").symlink_to(world["sample"], target_is_directory=True)
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(data))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("GALAXY_MORPH_NED_BASE_URL", ned_server.url)
    monkeypatch.setenv("GALAXY_MORPH_REQUEST_INTERVAL", "0.05")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    return _open(at, "data")


def test_scrape_button_runs_a_scrape_job_of_its_spec(data_page: AppTest, tmp_path: Path) -> None:
    data_page.multiselect(key="data_classes").set_value(["E"])
    data_page.number_input(key="data_max_pages").set_value(0)
    data_page.button(key="data_scrape").click().run()
    assert not data_page.exception, [e.value for e in data_page.exception]
    job = _finish(data_page.session_state["data_job"])
    assert jobs.job_status(job) == jobs.FINISHED, jobs.tail_log(job)
    assert job.kind == "scrape"
    assert ScrapeSpec(**{k: v for k, v in job.spec.items() if k != "kind"}) == ScrapeSpec(
        classes=("E",), out=str(tmp_path / "data" / "ned"), max_pages=0)
    assert len(pd.read_csv(tmp_path / "data" / "ned" / "catalog.csv")) == 8  # the fixture's class E


def test_import_button_runs_an_import_job_of_its_spec(data_page: AppTest, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "images").mkdir(parents=True)
    rows = pd.read_csv(GZ1 / "catalog.csv").head(6)
    for file in rows["file"]:
        shutil.copy(GZ1 / file, mine / file)
    rows.to_csv(mine / "catalog.csv", index=False)

    data_page.text_input(key="data_import_csv").input(str(mine / "catalog.csv"))
    data_page.text_input(key="data_import_images").input(str(mine))
    data_page.text_input(key="data_import_name").input("my-galaxies").run()  # the button is enabled by the paths
    data_page.button(key="data_import").click().run()
    assert not data_page.exception, [e.value for e in data_page.exception]
    job = _finish(data_page.session_state["data_import_job"])
    assert jobs.job_status(job) == jobs.FINISHED, jobs.tail_log(job)
    assert job.kind == "import" and jobs.job_progress(job)  # the panel follows its progress events
    assert ImportSpec(**{k: v for k, v in job.spec.items() if k != "kind"}) == ImportSpec(
        catalog=str(mine / "catalog.csv"), images=str(mine), name="my-galaxies")
    imported = pd.read_csv(tmp_path / "data" / "imported" / "my-galaxies" / "catalog.csv")
    assert len(imported) == 6
