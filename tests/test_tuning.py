"""The tuned protocol's nested search: the same candidates for every model, picked on validation only."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from core.learn.report import comparison_title, tuning_note
from core.runs import iter_runs
from core.learn.training import default_config, train_many
from core.learn.tuning import TUNING_CANDIDATES, best_candidate, check_candidates, describe
from core.prepare.dataset import load_dataset
from core.prepare.save import save_dataset
from core.spec import TrainSpec
from tests.test_training import make_separable_dataset

#: Two candidates, one epoch each: enough to see the search work, quick on a shared CPU.
TWO = ({"learning_rate": 1e-3, "schedule": "constant"}, {"learning_rate": 1e-2, "schedule": "constant"})
FAST = {"protocol": "tuned", "epochs": 1, "batch_size": 16, "augment": False}


def test_the_shared_grid_is_small_and_sets_only_the_learning_rate_and_schedule():
    assert 2 <= len(TUNING_CANDIDATES) <= 4
    assert check_candidates(TUNING_CANDIDATES) == [dict(c) for c in TUNING_CANDIDATES]
    with pytest.raises(ConfigError, match="may set only learning_rate, schedule; got"):
        check_candidates([{"epochs": 5}])
    assert describe(TUNING_CANDIDATES[1]) == "lr 0.0003, cosine schedule"


def test_the_pick_is_the_most_correct_on_validation_then_the_lower_loss_then_the_first():
    assert best_candidate([{"val_correct": 5, "val_loss": 0.1}, {"val_correct": 7, "val_loss": 0.9}]) == 1
    assert best_candidate([{"val_correct": 7, "val_loss": 0.5}, {"val_correct": 7, "val_loss": 0.4}]) == 1
    assert best_candidate([{"val_correct": 7, "val_loss": 0.4}, {"val_correct": 7, "val_loss": 0.4}]) == 0
    assert best_candidate([{"val_correct": None, "val_loss": None}, {"val_correct": 1, "val_loss": 2.0}]) == 1


@pytest.fixture(scope="module")
def tuned_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuned")
    path = make_separable_dataset(root / "tiny", n=90, size=16)
    outcomes = train_many(path, models=["lenet5", "resnet20"], seeds=[0], runs_dir=root / "runs",
                          overrides=FAST, candidates=TWO)
    assert [o["status"] for o in outcomes] == ["finished", "finished"]
    return path, root / "runs"


def test_every_model_gets_the_same_candidates_and_its_run_records_the_search(tuned_runs):
    _, runs_dir = tuned_runs
    runs = {run.model_name: run for run in iter_runs(runs_dir)}
    assert set(runs) == {"lenet5", "resnet20"}
    for name, run in runs.items():
        tuning = run.config["tuning"]
        assert tuning["candidates"] == [dict(c) for c in TWO]  # the same grid, whatever the model
        results = tuning["results"]
        assert [r["recipe"] for r in results] == tuning["candidates"]
        assert all(0 <= r["val_accuracy"] <= 1 and r["val_loss"] > 0 and r["epochs_done"] == 1 for r in results)
        # The one kept is the best on validation; the run's own recipe and metrics say which.
        chosen = tuning["chosen"]
        assert chosen == best_candidate(results) and tuning["chosen_recipe"] == dict(TWO[chosen])
        assert run.metrics["tuned_recipe"] == dict(TWO[chosen])
        assert run.config["protocol_differences"][0].startswith(
            f"{name}: per-model recipe picked on validation from 2 candidates (chosen: {describe(TWO[chosen])})")
        assert (run.path / "search" / f"candidate-{chosen}" / "history.csv").exists()
        assert not (run.path / "search" / f"candidate-{chosen}" / "checkpoint").exists()


def test_the_comparison_of_tuned_runs_says_per_model_recipes(tuned_runs):
    _, runs_dir = tuned_runs
    runs = iter_runs(runs_dir)
    assert "per-model recipes (tuned protocol)" in comparison_title(runs)
    assert tuning_note(runs).startswith("Each tuned run picked its learning rate and schedule on its own validation "
                                        "galaxies from the same 2 candidates for every model (nested")


def test_the_choice_never_depends_on_the_test_labels(tuned_runs, tmp_path):
    # The same galaxies with the test labels shuffled: the search sees the same training and validation
    # galaxies, so it scores the candidates the same and keeps the same one.
    path, runs_dir = tuned_runs
    dataset = load_dataset(path)
    meta = dataset.meta.copy()
    test = np.flatnonzero(meta["split"].to_numpy() == "test")
    shuffled = np.random.default_rng(1).permutation(meta.loc[test, "y"].to_numpy())
    assert (shuffled != meta.loc[test, "y"].to_numpy()).any()
    meta.loc[test, "y"] = shuffled
    meta.loc[test, "label"] = np.asarray(dataset.classes)[shuffled]
    copy = save_dataset(tmp_path / "shuffled", x=np.asarray(dataset.x), meta=meta, classes=dataset.classes,
                        manifest=dataset.manifest)
    train_many(copy, models=["lenet5"], seeds=[0], runs_dir=tmp_path / "runs", overrides=FAST, candidates=TWO)
    (again,) = iter_runs(tmp_path / "runs")
    (before,) = [run for run in iter_runs(runs_dir) if run.model_name == "lenet5"]
    def scores(run):  # what the pick reads, without the timings
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in run.config["tuning"]["results"]]

    assert scores(again) == scores(before)
    assert again.config["tuning"]["chosen"] == before.config["tuning"]["chosen"]


def test_the_search_picks_the_learning_rate_and_schedule_so_they_cannot_also_be_given():
    with pytest.raises(ConfigError, match="the search picks learning_rate, schedule for every model; got schedule"):
        default_config("alexnet", protocol="tuned", schedule="constant")
    with pytest.raises(ConfigError, match="the search picks learning_rate, schedule for every model; got learning_rate"):
        TrainSpec(dataset="d", protocol="tuned", learning_rate=0.01)
    assert TrainSpec(dataset="d", learning_rate=0.01).learning_rate == 0.01


def test_the_comparison_says_when_tuned_runs_predate_the_search(tmp_path):
    from tests.test_report import _fake_run

    _fake_run(tmp_path, "lenet5", 0, wrong=[1], protocol="tuned")
    _fake_run(tmp_path, "resnet18", 0, wrong=[2], protocol="tuned")
    assert tuning_note(iter_runs(tmp_path)) == ("Tuned runs recorded before the search used fixed per-model recipes, "
                                               "chosen on folds that also scored them (not nested).")
    _fake_run(tmp_path / "equal", "lenet5", 0, wrong=[1], protocol="equal")
    assert tuning_note(iter_runs(tmp_path / "equal")) == ""
