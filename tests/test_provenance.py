"""A run classifies new images the way it was trained, and says so when its dataset changed.

Everything here works on copies of the session ``world`` (tests/conftest.py) under ``tmp_path``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.prepare import dataset, provenance

from core import runs
from core.prepare.builder import build_dataset
from core.acquire.catalogue import load_source
from core.errors import ConfigError
from core.prepare.preprocessing import PreprocessConfig

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _copy_world(world: dict[str, Path], out: Path) -> dict[str, Path]:
    """The world's data and runs under ``out``, the runs pointing at the copied dataset."""
    old_root = Path(world["data"]).parent.resolve()
    shutil.copytree(world["data"], out / "data")
    shutil.copytree(world["runs"], out / "runs")
    for config_file in (out / "runs").glob("*/config.json"):
        config = json.loads(config_file.read_text())
        config["dataset"]["path"] = config["dataset"]["path"].replace(str(old_root), str(out.resolve()))
        config_file.write_text(json.dumps(config))
    dataset_dir = out / "data" / "datasets" / Path(world["dataset"]).name
    return {"data": out / "data", "runs": out / "runs", "sample": out / "data" / "sample",
            "dataset": dataset_dir}


@pytest.fixture(scope="module")
def trained(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A LeNet-5 run on a dataset of the world's sample (every survey) with a test split of at
    least 20 galaxies."""
    from core.learn.training import train_many

    root = tmp_path_factory.mktemp("provenance")
    sample = root / "sample"
    shutil.copytree(world["sample"], sample)
    built = build_dataset(sample, scheme="hubble3", preprocess=PreprocessConfig(size=32), min_quality=0.0,
                          min_size=0, catalog="all", survey="all", band="all", test_fraction=0.3,
                          out=root / "datasets" / "wide-test", n_jobs=1)
    outcomes = train_many(built, models=["lenet5"], seeds=[0], runs_dir=root / "runs",
                          overrides={"epochs": 1, "batch_size": 16, "patience": 0})
    assert [o["status"] for o in outcomes] == ["finished"], outcomes
    return {"sample": sample, "dataset": built, "run": Path(outcomes[0]["run_dir"])}


def test_a_run_stores_the_preprocessing_it_was_trained_with(trained: dict[str, Path]) -> None:
    run = runs.load_run(trained["run"])
    manifest = dataset.read_manifest(trained["dataset"])
    assert run.config["dataset"]["preprocess"] == manifest["params"]["preprocess"]
    assert run.config["dataset"]["source_kind"] == manifest["source_kind"] == "sample"
    assert provenance.trained_preprocessing(run).stored
    assert provenance.dataset_change(run, verify_data=True) is None


def test_classify_gives_the_probabilities_of_predictions_csv(trained: dict[str, Path]) -> None:
    """The path the Classify page takes (ui.services helpers) on a test galaxy's source image repeats the run."""
    from ui.services import pictures, results

    run = runs.load_run(trained["run"])
    predictions = run.predictions
    assert len(predictions) >= 20
    catalogue = load_source(trained["sample"]).table.drop_duplicates("name").set_index("name")
    config = results.trained_preprocessing(run).config
    prob_columns = [f"prob_{c}" for c in run.classes]
    for _, row in predictions.head(20).iterrows():
        galaxy = catalogue.loc[row["name"]]
        image = pictures.read_path(galaxy["path"], channels=config.channels)
        x = pictures.steps_for(image, config, ra=galaxy["ra"], dec=galaxy["dec"])["final"]
        probs = results.predict(str(run.path), x)
        np.testing.assert_allclose([probs[c] for c in run.classes], row[prob_columns].to_numpy(dtype=float),
                                   atol=1e-5, err_msg=row["name"])


def test_older_runs_fall_back_to_the_manifest(trained: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(trained["run"], tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    for key in ("preprocess", "source", "source_kind"):
        del config["dataset"][key]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    old = provenance.trained_preprocessing(runs.load_run(tmp_path / "old"))
    assert not old.stored
    assert old.config == provenance.trained_preprocessing(runs.load_run(trained["run"])).config


def test_rebuilding_a_trained_dataset_is_refused_then_flagged(world: dict[str, Path], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    copy = _copy_world(world, tmp_path)
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(copy["runs"]))
    before = (copy["dataset"] / "x.npy").read_bytes()
    options = {"scheme": "hubble3", "preprocess": PreprocessConfig(size=16), "min_quality": 0.0,
               "min_size": 0, "catalog": "all", "out": copy["dataset"], "n_jobs": 1, "force": True}
    with pytest.raises(ConfigError, match=r"3 finished run\(s\) were trained on .*--replace-trained"):
        build_dataset(copy["sample"], **options)
    assert (copy["dataset"] / "x.npy").read_bytes() == before
    assert all(provenance.dataset_change(run) is None for run in runs.iter_runs(copy["runs"]))

    build_dataset(copy["sample"], **options, replace_trained=True)
    for run in runs.iter_runs(copy["runs"]):
        assert "earlier version of the dataset" in provenance.dataset_change(run)
        with pytest.raises(provenance.DatasetChangedError, match="rebuilt after training"):
            provenance.check_dataset_unchanged(run)
        # The record of how it was trained outlives the folder's new content.
        assert provenance.trained_preprocessing(run).config.size == 32
    # Nothing depends on the new content yet: a further rebuild is allowed.
    assert provenance.dependent_runs(copy["dataset"], copy["runs"]) == []


def test_build_force_on_a_trained_dataset_is_one_line_and_exit_2(world: dict[str, Path], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from core.cli import main

    copy = _copy_world(world, tmp_path)
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(copy["runs"]))
    argv = ["build", "--source", str(copy["sample"]), "--scheme", "hubble3", "--size", "16",
            "--min-quality", "0", "--min-size", "0", "--catalog", "all", "--out", str(copy["dataset"]),
            "--jobs", "1", "--force"]
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: --out ") and "--replace-trained" in errors[0]
    assert all(provenance.dataset_change(run) is None for run in runs.iter_runs(copy["runs"]))


def test_data_altered_behind_the_manifest_is_caught(world: dict[str, Path], tmp_path: Path) -> None:
    copy = _copy_world(world, tmp_path)
    x = np.load(copy["dataset"] / "x.npy")
    np.save(copy["dataset"] / "x.npy", x[::-1].copy())
    run = runs.iter_runs(copy["runs"])[0]
    assert provenance.dataset_change(run) is None  # the manifest alone still agrees
    assert "were changed after training" in provenance.dataset_change(run, verify_data=True)


@pytest.fixture
def altered_app(world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppTest]:
    """The dashboard on a copy of the world whose dataset images were shuffled after training."""
    copy = _copy_world(world, tmp_path)
    x = np.load(copy["dataset"] / "x.npy")
    np.save(copy["dataset"] / "x.npy", x[::-1].copy())
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(copy["data"]))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(copy["runs"]))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    yield at


def _warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning]


def test_classify_refuses_runs_whose_dataset_changed(altered_app: AppTest) -> None:
    at = altered_app
    assert any("trained on a dataset that has changed" in w for w in _warnings(at)), "home shows no warning"
    at.switch_page("pages/classify.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("3 finished runs were trained on a dataset that has changed" in w for w in _warnings(at))
    assert any("earlier version of it" in e.value for e in at.error)
    assert not [m for m in at.markdown if " → **" in m.body], "a changed run still classified"


def test_gallery_shows_no_images_of_a_changed_dataset(altered_app: AppTest) -> None:
    at = altered_app
    at.switch_page("pages/comparison.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("trained on a dataset that has changed" in w for w in _warnings(at))
    assert any("No gallery" in c.value for c in at.caption)
    assert not at.get("imgs"), "the gallery still shows images from the altered folder"
    tables = [t.value for t in at.dataframe if isinstance(t.value, pd.DataFrame) and "problem" in t.value]
    assert any(t["problem"].str.contains("changed after training").all() for t in tables)
