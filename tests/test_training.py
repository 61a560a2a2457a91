"""Training: every model learns a separable set, seeds reproduce, a killed run resumes, failures are contained."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from core.prepare.dataset import load_dataset
from core.prepare.save import save_dataset
from core.errors import ConfigError
from core.io import read_jsonl
from core.learn.models import load_run_model
from core.runs import create_run, list_runs, load_run
from core.learn.training import (
    EVENT_FIELDS,
    RandomDihedral,
    SparseSmoothedCrossentropy,
    TrainConfig,
    balanced_class_weight,
    default_config,
    early_stopping_replay,
    protocol_differences,
    train,
    train_many,
)
from core.cli import build_parser
from core.spec import TrainSpec

ROOT = Path(__file__).resolve().parents[1]


def make_separable_dataset(out: Path, *, n: int = 300, size: int = 32, seed: int = 0) -> Path:
    """Noisy blobs, rings and randomly oriented bars: easy for any CNN, hard for chance (1/3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(xx, yy)
    y = np.arange(n) % 3
    x = np.empty((n, size, size, 1), np.float32)
    for i in range(n):
        if y[i] == 0:
            img = np.exp(-(r**2) / (2 * (size / 8) ** 2))
        elif y[i] == 1:
            img = np.exp(-((r - size / 4) ** 2) / (2 * 1.5**2))
        else:
            a = rng.uniform(0, np.pi)
            img = np.exp(-((xx * np.sin(a) - yy * np.cos(a)) ** 2) / (2 * 1.5**2)) * (r < size / 2.5)
        x[i, ..., 0] = np.clip(img + rng.normal(0, 0.1, img.shape), 0, 1)
    split = np.full(n, "train", dtype=object)
    order = rng.permutation(n)
    split[order[: n // 5]] = "val"
    split[order[n // 5: 2 * n // 5]] = "test"
    classes = ["blob", "ring", "bar"]
    meta = pd.DataFrame({"name": [f"G{i:04d}" for i in range(n)], "label": np.array(classes)[y], "y": y,
                         "split": split})
    return save_dataset(out, x=x, meta=meta, classes=classes, manifest={"params": {"size": size}})


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory):
    return make_separable_dataset(tmp_path_factory.mktemp("data") / "shapes")


def _train(dataset_path, tmp_path, config, **kwargs):
    dataset = load_dataset(dataset_path)
    run_dir = create_run(tmp_path / "runs", model=config.model, seed=config.seed, params=config.to_dict(),
                         dataset_path=dataset_path, dataset_hash=dataset.content_hash)
    return train(dataset, config, run_dir=run_dir, **kwargs)


@pytest.mark.parametrize("model", ["lenet5", "alexnet", "resnet18"])
def test_each_model_learns_a_separable_set_well_above_chance(dataset_path, tmp_path, model):
    events = []
    # Batch 8 gives ~23 steps per epoch: enough for batch-norm statistics (momentum 0.9) to settle.
    config = default_config(model, epochs=3, batch_size=8, patience=0)
    result = _train(dataset_path, tmp_path, config, progress_callback=events.append)
    assert result.metrics["accuracy"] >= 0.8, result.history  # chance is 1/3
    run = load_run(result.run_dir)
    assert run.status == "finished" and len(run.history) == 3
    assert run.predictions.shape == (60, 3 + 3) and run.metrics["n_test"] == 60
    assert run.metrics["params"] == result.model.count_params()
    assert run.config["device"].startswith("CPU") and run.config["n_train"] == 180
    # The saved inference model has no augmentation and reproduces the stored predictions.
    loaded = load_run_model(run)
    assert not any(isinstance(layer, RandomDihedral) for layer in loaded.layers)
    x_test = load_dataset(dataset_path).subset("test")[0]
    np.testing.assert_allclose(loaded.predict(x_test, verbose=0)[:, 0], run.predictions["prob_blob"], atol=1e-5)
    # Events: every field, per-epoch events with validation numbers, batch events in between.
    written = read_jsonl(result.run_dir / "events.jsonl")
    assert written == events and all(set(EVENT_FIELDS) <= set(e) for e in written)
    epoch_events = [e for e in written if e["val_loss"] is not None and e["status"] == "running"]
    assert [e["epoch"] for e in epoch_events] == [1, 2, 3]
    assert any(e["val_loss"] is None and e["batch"] < e["batches"] for e in written)
    assert written[-1]["status"] == "finished"


def test_same_seed_gives_the_same_metrics(dataset_path, tmp_path):
    config = default_config("lenet5", epochs=2, batch_size=16, seed=3)
    first = _train(dataset_path, tmp_path / "a", config)
    keras.backend.clear_session()
    second = _train(dataset_path, tmp_path / "b", config)
    pd.testing.assert_frame_equal(first.history.drop(columns="seconds"), second.history.drop(columns="seconds"))
    pd.testing.assert_frame_equal(load_run(first.run_dir).predictions, load_run(second.run_dir).predictions)
    keras.backend.clear_session()
    other = _train(dataset_path, tmp_path / "c", default_config("lenet5", epochs=2, batch_size=16, seed=4))
    assert not np.allclose(other.history["loss"], first.history["loss"])


def test_a_killed_run_resumes_at_the_right_epoch(dataset_path, tmp_path):
    runs_dir = tmp_path / "runs"
    # Batch 4 makes a LeNet epoch ~45 steps: the process is killed well before its 6 epochs end.
    argv = [sys.executable, "-m", "core", "train", "--dataset", str(dataset_path), "--models", "lenet5",
            "--epochs", "6", "--batch-size", "4", "--patience", "0", "--runs-dir", str(runs_dir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    state_files: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        state_files = list(runs_dir.glob("*/checkpoint/state.json"))
        if state_files:
            break
        time.sleep(0.05)
    assert state_files, f"no checkpoint appeared; output: {proc.communicate()[0].decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run_dir = state_files[0].parents[1]
    saved_epoch = json.loads(state_files[0].read_text())["epoch"]
    assert 1 <= saved_epoch < 6
    assert load_run(run_dir).status == "stale"

    n_events_before = len(read_jsonl(run_dir / "events.jsonl"))

    done = subprocess.run([*argv, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [p.name for p in runs_dir.iterdir()] == [run_dir.name]  # continued, not restarted elsewhere
    run = load_run(run_dir)
    assert run.status == "finished"
    assert run.history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    resumed = run.events()[n_events_before:]
    assert resumed[0]["epoch"] == saved_epoch + 1
    epoch_ends = [e["epoch"] for e in resumed if e["status"] == "running" and e["val_loss"] is not None]
    assert epoch_ends == list(range(saved_epoch + 1, 7))

    again = train_many(dataset_path, models=["lenet5"], seeds=[0], runs_dir=runs_dir, resume=True,
                       overrides={"epochs": 6, "batch_size": 4, "patience": 0})
    assert again[0]["status"] == "skipped (finished)" and again[0]["run_dir"] == str(run_dir)


def test_one_failing_model_does_not_stop_the_others(tmp_path):
    # ResNet needs >= 32 px: on a 16-px dataset it fails, LeNet (resized inside) still trains.
    path = make_separable_dataset(tmp_path / "tiny", n=90, size=16)
    outcomes = train_many(path, models=["resnet18", "lenet5"], seeds=[0], runs_dir=tmp_path / "runs",
                          overrides={"epochs": 1})
    assert [o["status"] for o in outcomes] == ["failed", "finished"]
    assert "input_size must be an integer >= 32" in outcomes[0]["error"]
    table = list_runs(tmp_path / "runs").set_index("model")
    assert table.loc["resnet18", "status"] == "failed" and table.loc["lenet5", "status"] == "finished"
    assert "input_size" in load_run(outcomes[0]["run_dir"]).config["error"]


def test_smoothed_crossentropy_matches_the_formula_and_plain_crossentropy_without_smoothing():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    labels = np.array([0, 1])
    smoothing = 0.1
    target = np.eye(3)[labels] * (1 - smoothing) + smoothing / 3
    expected = -(target * np.log(probs)).sum(axis=1).mean()
    got = float(SparseSmoothedCrossentropy(smoothing)(labels, probs))
    assert got == pytest.approx(expected, rel=1e-5)
    plain = float(keras.losses.SparseCategoricalCrossentropy()(labels, probs))
    assert float(SparseSmoothedCrossentropy(0.0)(labels, probs)) == pytest.approx(plain, rel=1e-5)
    assert got > plain  # smoothing puts a price on confident predictions


def test_a_label_smoothed_run_trains_saves_and_resumes_from_its_checkpoint(dataset_path, tmp_path):
    config = default_config("lenet5", epochs=2, batch_size=16, label_smoothing=0.1)
    result = _train(dataset_path, tmp_path, config)
    assert result.metrics["accuracy"] > 0.5
    assert load_run(result.run_dir).config["params"]["label_smoothing"] == 0.1
    # The checkpoint keeps the compiled loss; safe-mode loading must know it to resume.
    checkpoint = next((result.run_dir / "checkpoint").glob("*.keras"))
    restored = keras.saving.load_model(checkpoint, safe_mode=True)
    assert isinstance(restored.loss, SparseSmoothedCrossentropy) and restored.loss.label_smoothing == 0.1


def test_a_config_without_label_smoothing_records_the_parameters_runs_had_before_the_option():
    # A run recorded before label smoothing existed must keep its config hash, or --resume would
    # retrain it instead of finding it.
    config = default_config("resnet18")
    params = config.to_dict()
    assert "label_smoothing" not in params
    assert TrainConfig.from_dict(params) == config
    smoothed = default_config("resnet18", label_smoothing=0.1)
    assert smoothed.to_dict()["label_smoothing"] == 0.1
    assert TrainConfig.from_dict(smoothed.to_dict()) == smoothed


def test_random_dihedral_gives_the_eight_symmetries_and_is_inactive_at_inference():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    batch = np.repeat(image, 256, axis=0)
    layer = RandomDihedral(seed=0)
    out = keras.ops.convert_to_numpy(layer(batch, training=True))
    symmetries = {np.rot90(m, k).tobytes() for m in (image[0, ..., 0], image[0, ..., 0].T) for k in range(4)}
    seen = {o[..., 0].tobytes() for o in out}
    assert seen == symmetries
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(batch, training=False)), batch)


def test_balanced_class_weight_matches_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0, 0, 0, 0, 1, 1, 2])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert balanced_class_weight(y, 3) == pytest.approx(dict(enumerate(expected)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "vgg"}, "model must be one of"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"learning_rate": -1.0}, r"learning_rate must be in \(0, 10\)"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"class_weight": "inverse"}, "class_weight must be"),
        ({"distribute": "tpu"}, "distribute must be one of"),
        ({"shift": 0.7}, r"shift must be in \[0, 0.5\)"),
        ({"schedule": "step"}, "schedule must be one of"),
        ({"protocol": "fair"}, "protocol must be one of"),
        ({"folds": 2}, "folds must be 0 .* or an integer >= 3"),
        ({"folds": 5, "fold": 5}, r"fold must be an integer in \[0, 5\)"),
        ({"split_seed": -1}, "split_seed must be None or an integer >= 0"),
        ({"label_smoothing": 0.5}, r"label_smoothing must be in \[0, 0.5\)"),
        ({"label_smoothing": True}, r"label_smoothing must be in \[0, 0.5\)"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_config_round_trip_and_per_model_defaults():
    config = default_config("alexnet", seed=2, class_weight="none")
    assert config.model_options == {"normalization": "batchnorm"} and config.class_weight is None
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert default_config("resnet18", learning_rate=0.01).learning_rate == 0.01
    # Under tuned every model starts from the same base recipe; only its architecture options are its own
    # (the learning rate and schedule are searched, the same way for every model: tests/test_tuning.py).
    base = {(c.optimizer, c.weight_decay, c.epochs, c.patience, c.batch_size)
            for c in (default_config(m, protocol="tuned") for m in ("lenet5", "alexnet", "resnet18"))}
    assert base == {("adamw", 1e-4, 30, 10, 32)}
    with pytest.raises(ConfigError, match="under the tuned protocol the search picks learning_rate, schedule"):
        default_config("lenet5", protocol="tuned", learning_rate=0.01)
    with pytest.raises(ConfigError, match="unknown training parameters"):
        TrainConfig.from_dict({"model": "lenet5", "lr": 0.1})


def test_train_folds_rotates_the_test_fold_and_compare_aggregates_over_them(tmp_path):
    from core.learn.report import paired_tests, summary_table
    from core.runs import iter_runs

    path = make_separable_dataset(tmp_path / "tiny", n=90, size=16)
    outcomes = train_many(path, models=["lenet5"], seeds=[0], runs_dir=tmp_path / "runs", folds=3,
                          overrides={"epochs": 1, "batch_size": 16, "patience": 0})
    assert [(o["fold"], o["split_seed"], o["status"]) for o in outcomes] == [(f, 0, "finished") for f in range(3)]
    runs = iter_runs(tmp_path / "runs")
    tested = []
    for run in runs:
        assert {k: run.config["params"][k] for k in ("folds", "split_seed")} == {"folds": 3, "split_seed": 0}
        assert run.config["n_test"] == 30 and run.config["n_val"] == 30 and run.config["n_train"] == 30
        assert run.config["dataset"]["content_hash"] == load_dataset(path).content_hash
        tested += list(run.predictions["name"])
    assert sorted(tested) == sorted(load_dataset(path).names)  # every galaxy tested once over the folds
    summary = summary_table(runs)
    assert summary.loc["lenet5", "n_splits"] == 3 and summary.loc["lenet5", "interval"] == "between splits"
    assert paired_tests(runs).empty  # one model: nothing to pair


def test_the_equal_protocol_is_the_default_and_every_model_records_what_it_alone_gets():
    models = ("lenet5", "alexnet", "resnet18", "resnet20")
    assert {default_config(m).protocol for m in models} == {"equal"}
    assert TrainSpec(dataset="d").protocol == "equal"
    assert build_parser().parse_args(["train", "--dataset", "d"]).protocol == "equal"
    differences = {m: protocol_differences(default_config(m)) for m in models}
    assert differences["resnet18"] == differences["resnet20"] == []
    assert [d.split(":")[0] for d in differences["lenet5"]] == ["LeNet-5", "LeNet-5"]
    assert "batch normalisation in place of local response normalisation" in differences["alexnet"][0]
    # A model option changed away from the protocol's is listed as such, not as the protocol's reason.
    assert protocol_differences(default_config("alexnet", model_options={"normalization": "lrn"})) == [
        "alexnet: model options {'normalization': 'lrn'}"]
    assert protocol_differences(default_config("resnet18", protocol="tuned")) == [
        "resnet18: per-model recipe picked on validation from 3 candidates"]


def test_a_run_of_train_many_records_its_protocol_differences(tmp_path):
    from core.runs import iter_runs

    path = make_separable_dataset(tmp_path / "tiny", n=60, size=16)
    outcomes = train_many(path, models=["lenet5"], seeds=[0], runs_dir=tmp_path / "runs",
                          overrides={"epochs": 1, "batch_size": 16})
    assert outcomes[0]["status"] == "finished"
    (run,) = iter_runs(tmp_path / "runs")
    assert run.config["params"]["protocol"] == "equal"
    assert run.config["protocol_differences"] == protocol_differences(default_config("lenet5"))


def test_folds_on_a_dataset_with_a_frozen_test_set_never_train_on_it_and_score_it_once(tmp_path):
    # A dataset built from a source with a split.csv: every fold trains and validates on the other
    # galaxies and is scored on the frozen test set; the comparison scores the folds as one ensemble.
    import shutil

    from core.learn.report import format_summary, summary_table
    from core.runs import iter_runs, set_status

    shapes = load_dataset(make_separable_dataset(tmp_path / "shapes", n=90, size=16))
    path = save_dataset(tmp_path / "frozen", x=np.asarray(shapes.x), meta=shapes.meta, classes=shapes.classes,
                        manifest={"params": {"size": 16, "split_file_sha256": "ab12"}})
    frozen = set(shapes.names[shapes.split == "test"])
    # A finished fold run from before folds kept the frozen test set (no split_file_sha256 in its record):
    # same parameters, same config hash, but it trained on test galaxies, so --resume trains it again.
    overrides = {"epochs": 1, "batch_size": 16, "patience": 0}
    old = create_run(tmp_path / "runs", model="lenet5", seed=0, dataset_path=path,
                     params=default_config("lenet5", folds=3, fold=0, split_seed=0, **overrides).to_dict(),
                     dataset_hash=load_dataset(path).content_hash)
    set_status(old, "finished", classes=shapes.classes)
    outcomes = train_many(path, models=["lenet5"], seeds=[0], runs_dir=tmp_path / "runs", folds=3,
                          overrides=overrides, resume=True)
    assert [o["status"] for o in outcomes] == ["finished"] * 3
    shutil.rmtree(old)
    runs = iter_runs(tmp_path / "runs")
    for run in runs:
        assert set(run.predictions["name"]) == frozen
        assert run.config["n_test"] == len(frozen) and run.config["n_train"] + run.config["n_val"] == 90 - len(frozen)
        assert run.config["dataset"]["split_file_sha256"] == "ab12"
    summary = summary_table(runs)
    assert summary.loc["lenet5", "n_test"] == len(frozen) == summary.loc["lenet5", "n_test_pooled"]
    assert summary.loc["lenet5", "interval"] == "frozen test set, fold ensemble"
    # The table counts the trained fold models behind the one ensemble it scores.
    assert "3 fold models, 1 ensemble" in format_summary(summary)


def test_runs_recorded_under_the_former_fixed_tuned_recipes_are_not_resumed_as_searched_ones():
    # Runs trained before the nested search applied a fixed per-model recipe chosen on folds that also
    # scored it: `train --protocol tuned --resume` must not take one for a run of the search (another hash).
    recorded = {"model": "alexnet", "epochs": 40, "batch_size": 32, "optimizer": "adam", "learning_rate": 3e-4,
                "weight_decay": 0.0, "schedule": "cosine", "protocol": "tuned", "augment": True, "shift": 0.05,
                "zoom": 0.1, "class_weight": "balanced", "patience": 0, "seed": 0, "mixed_precision": False,
                "xla": False, "distribute": "auto", "model_options": {"normalization": "batchnorm"},
                "events_every": 5, "deterministic": True, "folds": 0, "fold": 0, "split_seed": None}
    assert default_config("alexnet", protocol="tuned").to_dict() != recorded


def test_equal_protocol_gives_every_model_the_same_recipe_and_input_size():
    configs = {m: default_config(m, protocol="equal") for m in ("lenet5", "alexnet", "resnet18", "resnet20")}
    recipe = {(c.optimizer, c.learning_rate, c.weight_decay, c.schedule, c.epochs, c.batch_size, c.patience, c.protocol)
              for c in configs.values()}
    assert recipe == {("adamw", 1e-3, 1e-4, "cosine", 30, 32, 10, "equal")}
    assert configs["lenet5"].model_options["native_size"] is True
    tuned = default_config("lenet5", protocol="tuned")
    assert tuned.protocol == "tuned" and "native_size" not in tuned.model_options
    # LeNet-5 at the dataset's 64 px: no resizing layer, and F6 sees C5's 9 x 9 x 120 map.
    from core.learn.models import build_model

    native = build_model("lenet5", input_size=64, channels=1, num_classes=3, **configs["lenet5"].model_options)
    assert not any(isinstance(layer, keras.layers.Resizing) for layer in native.layers)
    assert native.get_layer("f6").count_params() == 9 * 9 * 120 * 84 + 84
    resized = build_model("lenet5", input_size=64, channels=1, num_classes=3, **tuned.model_options)
    assert resized.get_layer("f6").count_params() == 120 * 84 + 84


def test_cosine_schedule_decays_the_learning_rate_to_zero_over_the_epochs(tmp_path):
    path = make_separable_dataset(tmp_path / "tiny", n=90, size=16)
    config = default_config("lenet5", epochs=2, batch_size=16, patience=0, schedule="cosine", learning_rate=1e-3)
    result = _train(path, tmp_path, config)
    # After epoch 1 of 2 the cosine is at its half-way point (0.5 x lr); after epoch 2 at 0.
    assert result.history["learning_rate"].tolist() == pytest.approx([5e-4, 0.0], abs=1e-9)
    # The schedule is saved with the checkpoint's optimiser, so --resume continues the same curve.
    loaded = keras.saving.load_model(result.run_dir / "checkpoint" / "epoch-0002.keras", safe_mode=True)
    steps = int(loaded.optimizer.iterations.numpy())
    assert steps == 2 * int(np.ceil(load_run(result.run_dir).config["n_train"] / 16))
    loaded.optimizer.iterations.assign(steps // 2)
    assert float(keras.ops.convert_to_numpy(loaded.optimizer.learning_rate)) == pytest.approx(5e-4, rel=1e-5)


def test_grad_cam_hand_worked_and_on_each_model():
    from core.learn.models import build_model, grad_cam

    # Identity 1x1 convolution, global average pooling, a 2-way softmax: the class-0 score's gradient is the
    # same positive number at every position of the map, so Grad-CAM is the (non-negative) image scaled to 1.
    inputs = keras.Input((8, 8, 1))
    conv = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(conv)
    out = keras.layers.Dense(2, activation="softmax", kernel_initializer=keras.initializers.Constant([[1.0, -1.0]]),
                             bias_initializer="zeros")(pooled)
    model = keras.Model(inputs, out)
    image = np.random.default_rng(0).uniform(0.1, 1, (8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(grad_cam(model, image, 0), image[..., 0] / image.max(), atol=1e-6)
    assert (grad_cam(model, image, 1) == 0).all()  # class 1's evidence falls as the image brightens: ReLU -> 0
    for name, size in (("lenet5", 32), ("alexnet", 64), ("resnet18", 64)):
        net = build_model(name, input_size=size, channels=1, num_classes=3)
        batch = np.random.default_rng(1).uniform(0, 1, (2, size, size, 1)).astype(np.float32)
        maps = grad_cam(net, batch, 2)
        assert maps.shape == (2, size, size) and maps.min() >= 0 and maps.max() <= 1
    with pytest.raises(ConfigError, match="layer must be one of"):
        grad_cam(model, image, 0, layer="dense")


@pytest.mark.parametrize(("losses", "patience", "expected"), [
    ([1.0, 0.9, 0.8], 2, (3, 3)),                       # never stops: still improving
    ([1.0, 0.9, 0.95, 0.97, 0.5], 2, (4, 2)),           # two epochs without a new best: stop at 4
    ([1.0, 0.9, 0.9, 0.8], 1, (3, 2)),                  # equal is not better
    ([1.0, float("nan"), 0.9], 1, (2, 1)),              # a NaN epoch counts as no improvement
    ([1.0, 1.1, 1.2, 1.3], 0, (4, 1)),                  # 0 never stops
])
def test_early_stopping_replay_follows_the_rule(losses, patience, expected):
    assert early_stopping_replay(losses, patience) == expected


def test_early_stopping_replay_matches_a_real_run(dataset_path, tmp_path):
    """Replaying the run's own patience on its history gives the epochs it trained and its best epoch."""
    config = default_config("lenet5", epochs=12, batch_size=16, patience=1, learning_rate=3e-2)
    result = _train(dataset_path, tmp_path, config)
    losses = load_run(result.run_dir).history["val_loss"].tolist()
    assert early_stopping_replay(losses, 1) == (result.metrics["epochs_done"], result.metrics["best_epoch"])
    assert result.metrics["stopped_early"] == (result.metrics["epochs_done"] < 12)


def test_xla_is_refused_with_layers_it_cannot_compile():
    with pytest.raises(ConfigError, match="--shift 0 --zoom 0"):
        default_config("lenet5", xla=True)


def test_xla_really_compiles_when_asked(dataset_path, tmp_path):
    """--xla used to be dropped silently (augmentation layers, op determinism); now the step is compiled."""
    config = default_config("lenet5", epochs=1, batch_size=16, patience=0, xla=True, shift=0.0, zoom=0.0)
    assert config.deterministic is False
    result = _train(dataset_path, tmp_path, config)
    assert load_run(result.run_dir).config["xla_compiled"] is True
    # A deterministic run after it in the same process turns determinism back on.
    _train(dataset_path, tmp_path / "again", default_config("lenet5", epochs=1, batch_size=16, patience=0))
    from tensorflow.python.framework import config as tf_config

    assert tf_config.is_op_determinism_enabled()
