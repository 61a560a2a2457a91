"""Shared fixtures. Tests never reach the internet: `remote` tests run only with --remote."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Quiet TensorFlow's import banner and keep Keras on the backend the suite was written for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--remote", action="store_true", help="also run tests that talk to the real NED")


#: The files that take longest, slowest first (seconds of one process, measured with --durations on
#: 2 cores). `make test` hands whole files to two processes in collection order
#: (``--dist loadfile --no-loadscope-reorder``): long files first, so that the short ones fill the
#: gaps and both processes finish together. Every other file keeps its place after these.
SLOWEST_FILES = (
    "test_browser.py", "test_hostile_browser.py", "test_training.py", "test_browser_walkthrough.py",
    "test_hostile_folders.py", "test_browser_projector.py", "test_hostile_round2_datasets.py",
    "test_hostile_images.py", "test_app.py", "test_backends.py", "test_hostile_round2_records.py",
    "test_hostile_records.py", "test_app_present.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    if config.getoption("--remote"):
        return
    skip = pytest.mark.skip(reason="talks to the real NED; run with --remote")
    for item in items:
        if "remote" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the developer's own galaxy-morph.toml or GALAXY_MORPH_* variables."""
    for key in list(os.environ):
        if key.startswith("GALAXY_MORPH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GALAXY_MORPH_CONFIG", str(_empty_config(tmp_path_factory)))


def _empty_config(factory: pytest.TempPathFactory) -> str:
    path = factory.getbasetemp() / "galaxy-morph.toml"
    if not path.exists():
        path.write_text("# empty: defaults only\n")
    return str(path)


from core.learn.registry import default_models  # noqa: E402 - after the backend is chosen above

MODELS = default_models()  # the registry's default comparison: LeNet-5, AlexNet, ResNet-18


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A data folder with a sample, 30 galaxies of the shipped gz1 source and a dataset, and a runs
    folder with three finished runs."""
    from core.prepare.builder import build_dataset
    from core.prepare.preprocessing import PreprocessConfig
    from core.acquire.sample import ensure_sample
    from core.learn.training import train_many

    root = tmp_path_factory.mktemp("dashboard")
    data_dir, runs_dir = root / "data", root / "runs"
    sample = ensure_sample(data_dir / "sample", n=120, seed=0)
    _copy_gz1(data_dir / "gz1", n=30)
    dataset = build_dataset(
        sample, scheme="hubble3", preprocess=PreprocessConfig(size=32), min_quality=0.0, min_size=0,
        catalog="all", out=data_dir / "datasets" / "tiny", n_jobs=1,
    )
    outcomes = train_many(dataset, models=list(MODELS), seeds=[0], runs_dir=runs_dir,
                          overrides={"epochs": 1, "batch_size": 16, "patience": 0})
    assert [o["status"] for o in outcomes] == ["finished"] * len(MODELS), outcomes
    return {"data": data_dir, "runs": runs_dir, "sample": sample, "dataset": dataset}


def _copy_gz1(out: Path, *, n: int) -> None:
    """The first ``n`` galaxies of the shipped SDSS / Galaxy Zoo source, with its SOURCE.md and marker."""
    import shutil

    import pandas as pd

    shipped = Path(__file__).resolve().parent.parent / "data" / "gz1"
    rows = pd.read_csv(shipped / "catalog.csv").head(n)
    (out / "images").mkdir(parents=True)
    for file in rows["file"]:
        shutil.copy2(shipped / file, out / file)
    shutil.copy2(shipped / "SOURCE.md", out / "SOURCE.md")
    shutil.copy2(shipped / "GZ1.json", out / "GZ1.json")
    rows.to_csv(out / "catalog.csv", index=False)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    """The dashboard served on the test world (or on SCREENSHOT_DATA_DIR / SCREENSHOT_RUNS_DIR, for
    the README's pictures), one server per test module."""
    from tests.test_browser import require_chromium, serve

    require_chromium()
    data_dir, runs_dir = os.environ.get("SCREENSHOT_DATA_DIR"), os.environ.get("SCREENSHOT_RUNS_DIR")
    if not (data_dir and runs_dir):
        world = request.getfixturevalue("world")
        data_dir, runs_dir = data_dir or str(world["data"]), runs_dir or str(world["runs"])
    with serve(data_dir, runs_dir) as url:
        yield url


@pytest.fixture(scope="session")
def trap() -> Iterator[Any]:
    """A local HTTP server that counts the requests it gets (tests/hostile_world.py)."""
    import threading

    from tests.hostile_world import Trap, TrapHandler

    server = Trap(("127.0.0.1", 0), TrapHandler)
    server.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def hostile_world(tmp_path_factory: pytest.TempPathFactory, trap: Any) -> dict[str, Any]:
    from tests.hostile_world import make_hostile_world, trap_url

    return make_hostile_world(tmp_path_factory.mktemp("hostile-ui"), trap=trap_url(trap))
