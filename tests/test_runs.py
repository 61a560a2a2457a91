"""Run registry: create / status / list / load round trip, stale runs, id resolution, safe-mode model."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest

from core.io import atomic_write_json
from core.learn.models import load_run_model
from core.runs import (
    LIST_COLUMNS,
    RunNotFoundError,
    create_run,
    find_resumable,
    list_runs,
    load_run,
    resolve_run,
    set_status,
)

PARAMS = {"model": "lenet5", "epochs": 3, "seed": 0}


def _run(tmp_path, model="lenet5", seed=0, params=PARAMS):
    return create_run(tmp_path / "runs", model=model, seed=seed, params=params, dataset_path=tmp_path / "ds",
                      dataset_hash="abc123")


def test_round_trip_of_a_finished_run(tmp_path):
    path = _run(tmp_path)
    config = json.loads((path / "config.json").read_text())
    assert config["status"] == "running" and config["params"] == PARAMS
    assert config["dataset"] == {"path": str((tmp_path / "ds").resolve()), "content_hash": "abc123"}
    assert {"keras", "numpy", "python"} <= set(config["versions"])
    pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.5], "accuracy": [0.5, 0.7], "val_loss": [1.1, 0.6],
                  "val_accuracy": [0.4, 0.6]}).to_csv(path / "history.csv", index=False)
    pd.DataFrame({"name": ["NGC 1"], "true": ["E"], "pred": ["E"], "prob_E": [0.9], "prob_S": [0.1]}).to_csv(
        path / "predictions.csv", index=False)
    atomic_write_json(path / "metrics.json", {"accuracy": 0.75, "macro_f1": 0.5, "balanced_accuracy": 0.6})
    set_status(path, "finished", epochs_done=2, classes=["E", "S"])

    run = load_run(path)
    assert run.status == "finished" and run.config["finished"]
    assert run.history["loss"].tolist() == [1.0, 0.5]
    assert run.predictions["name"].tolist() == ["NGC 1"]
    assert run.metrics["accuracy"] == 0.75 and run.classes == ["E", "S"] and run.label == "lenet5 s0"
    table = list_runs(tmp_path / "runs")
    assert list(table.columns) == list(LIST_COLUMNS)
    row = table.iloc[0]
    assert (row["id"], row["status"], row["accuracy"], row["epochs_done"]) == (path.name, "finished", 0.75, 2)


def test_a_running_run_whose_process_died_is_stale(tmp_path):
    path = _run(tmp_path)
    assert load_run(path).status == "running"  # this test process is alive
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    config = json.loads((path / "config.json").read_text())
    config["pid"] = dead.pid
    atomic_write_json(path / "config.json", config)
    assert load_run(path).status == "stale"
    assert list_runs(tmp_path / "runs")["status"].tolist() == ["stale"]


def test_resolve_by_folder_id_and_prefix(tmp_path):
    a = _run(tmp_path, model="lenet5")
    b = _run(tmp_path, model="resnet18")
    runs_dir = tmp_path / "runs"
    assert resolve_run(a).id == a.name
    assert resolve_run(b.name, runs_dir=runs_dir).model_name == "resnet18"
    assert resolve_run(b.name[:-3], runs_dir=runs_dir).id == b.name
    with pytest.raises(RunNotFoundError, match="ambiguous"):
        resolve_run(a.name[:8], runs_dir=runs_dir)
    with pytest.raises(RunNotFoundError, match="not found"):
        resolve_run("nope", runs_dir=runs_dir)
    with pytest.raises(RunNotFoundError, match="no config.json"):
        load_run(tmp_path)


def test_list_runs_shows_unreadable_folders_as_damaged_and_handles_an_empty_registry(tmp_path):
    assert list_runs(tmp_path / "missing").empty
    good = _run(tmp_path)
    broken = tmp_path / "runs" / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    table = list_runs(tmp_path / "runs")
    assert table["id"].tolist() == [good.name, "broken"]  # folder order, as before
    assert table["status"].tolist() == ["running", "damaged"]
    assert table["problem"][1].startswith(f"{broken / 'config.json'} is damaged: it is not readable JSON")
    assert table["problem"][0] == ""


def test_find_resumable_tells_finished_from_unfinished(tmp_path):
    first = _run(tmp_path)
    set_status(first, "stopped")
    chash = load_run(first).config["config_hash"]
    other = _run(tmp_path, params={**PARAMS, "epochs": 9})
    assert load_run(other).config["config_hash"] != chash
    finished, unfinished = find_resumable(tmp_path / "runs", config_hash_=chash)
    assert finished is None and unfinished.id == first.name
    set_status(first, "finished")
    finished, unfinished = find_resumable(tmp_path / "runs", config_hash_=chash)
    assert finished.id == first.name and unfinished is None


def test_model_loads_with_safe_mode(tmp_path):
    path = _run(tmp_path)
    with pytest.raises(RunNotFoundError, match="no model.keras"):
        load_run_model(load_run(path))
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.save(path / "model.keras")
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(load_run_model(load_run(path)).predict(x, verbose=0), model.predict(x, verbose=0))


def test_set_status_rejects_unknown_status(tmp_path):
    from core.errors import GalaxyMorphError

    with pytest.raises(GalaxyMorphError, match="status must be one of"):
        set_status(_run(tmp_path), "done")


@pytest.mark.parametrize(("params", "label"), [
    ({}, "resnet18 s1"),
    ({"folds": 0, "fold": 0, "split_seed": None}, "resnet18 s1"),
    ({"folds": 5, "fold": 3, "split_seed": 0}, "resnet18 s1 f3"),
    ({"folds": 5, "fold": 3, "split_seed": 2}, "resnet18 s1 f3 r2"),
    ({"folds": 0, "fold": 0, "split_seed": 1}, "resnet18 s1 r1"),
    ({"folds": "5", "fold": [3]}, "resnet18 s1"),  # a crafted config changes no label into an error
])
def test_run_label_tells_folds_and_split_seeds_apart(tmp_path, params, label):
    path = create_run(tmp_path / "runs", model="resnet18", seed=1, params=params, dataset_path=tmp_path / "ds",
                      dataset_hash="x")
    assert load_run(path).label == label
