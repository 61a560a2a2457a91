"""The model registry: one entry per architecture, read by the builders, training, the CLI, the report and the pages.

The proof that adding an architecture is one builder and one entry: a toy network registered here, from the
test, shows up in the `train` command's choices and help, trains through the training API, is named by its
label in `compare`'s report and is offered, and its run shown, on the Training page.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.learn import registry
from core.learn.registry import model_entry, register_model, unregister_model

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TOY = "toynet"


def toynet(*, input_size: int, channels: int, num_classes: int, width: int = 4):
    """Two layers: a 3x3 convolution of ``width`` filters, global average pooling, softmax."""
    import keras

    inputs = keras.Input((input_size, input_size, channels), name="image")
    x = keras.layers.Conv2D(width, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="toynet")


@pytest.fixture
def toy() -> Iterator[registry.ModelEntry]:
    entry = register_model(TOY, builder=toynet, label="ToyNet", color="#225E8A", paper="a test of the registry",
                           input_size=16, equal_options={"width": 6},
                           equal_reasons=("ToyNet: six filters, since four learn nothing in one epoch",))
    yield entry
    unregister_model(TOY)


def test_importing_the_registry_imports_neither_keras_nor_numpy():
    code = ("import sys, core.learn.registry as r, core.spec, core.commands.train, core.learn.protocol; "
            "assert r.network_names(); print(sorted(m for m in ('keras', 'numpy', 'tensorflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_every_network_builds_from_its_entry_and_every_model_has_a_label_and_colour():
    from core.learn.report import model_color, model_label

    networks = registry.network_names()
    assert networks[:2] == ("lenet5", "alexnet") and registry.model_names()[-1] == registry.BASELINE
    assert set(registry.default_models()) == {"lenet5", "alexnet", "resnet18"}
    # resnet32 and resnet56 were trainable but had no display name in the report.
    assert [model_label(m) for m in ("resnet32", "resnet56", "baseline")] == ["ResNet-32", "ResNet-56",
                                                                              "Boosting baseline"]
    colours = [model_color(m) for m in registry.model_names()]
    assert len(set(colours)) == len(colours)
    for name in networks:
        entry = model_entry(name)
        assert entry.paper and entry.tuned is not None
        assert callable(registry._resolve(entry.builder, what=name))  # noqa: SLF001 - the lazy reference resolves


def test_unknown_and_unsuitable_names_are_errors_that_name_the_registered_models():
    from core.learn.models import build_model
    from core.learn.training import TrainConfig, default_config

    listed = ", ".join(registry.model_names())
    for call in (lambda: default_config("vgg16"), lambda: TrainConfig(model="vgg16"),
                 lambda: build_model("vgg16", input_size=32, channels=1, num_classes=3)):
        with pytest.raises(ConfigError, match=f"one of {listed}; got 'vgg16'"):
            call()
    with pytest.raises(ConfigError, match="one of the networks lenet5, .*got 'baseline', a features model"):
        default_config("baseline")
    with pytest.raises(ConfigError, match="--models must name lenet5, .* baseline; got vgg16"):
        registry.check_models(["lenet5", "vgg16"], what="--models")


def test_a_model_without_a_tuned_recipe_is_refused_under_the_tuned_protocol_not_given_another_s(toy):
    from core.learn.training import default_config, protocol_differences

    with pytest.raises(ConfigError, match="protocol must be 'equal' for model toynet: .* no tuned recipe"):
        default_config(TOY, protocol="tuned")
    config = default_config(TOY)
    assert config.model_options == {"width": 6}
    assert protocol_differences(config) == ["ToyNet: six filters, since four learn nothing in one epoch"]


@pytest.mark.parametrize(("fields", "message"), [
    ({"label": "", "color": "#000000", "builder": toynet}, "label of model bad must be a display name"),
    ({"label": "Bad", "color": "red", "builder": toynet}, "color of model bad must be '#RRGGBB'"),
    ({"label": "Bad", "color": "#000000", "builder": "no module"}, "builder of network model bad must be"),
    ({"label": "Bad", "color": "#000000", "builder": toynet, "tuned": {"lr": 1}}, "may set only .*; got lr"),
    ({"label": "Bad", "color": "#000000", "builder": toynet, "cpu_images_per_second": 0}, "positive number"),
])
def test_bad_entries_are_refused_with_the_field_named(fields, message):
    with pytest.raises(ConfigError, match=message):
        register_model("bad", **fields)
    assert "bad" not in registry.model_names()


def test_a_name_is_registered_once_and_a_decorator_registers_the_builder_it_decorates(toy):
    with pytest.raises(ConfigError, match="model 'toynet' is already registered \\(ToyNet\\)"):
        register_model(TOY, builder=toynet, label="Again", color="#000000")
    with pytest.raises(ConfigError, match="name must be lower-case"):
        register_model("Tiny/Net", builder=toynet, label="x", color="#000000")

    @register_model("decorated", label="Decorated", color="#101010")
    def decorated(**kwargs):
        return kwargs

    try:
        assert decorated(a=1) == {"a": 1}  # the function itself is returned
        assert model_entry("decorated").build(input_size=8, channels=1, num_classes=2) == {
            "input_size": 8, "channels": 1, "num_classes": 2}
    finally:
        unregister_model("decorated")


def test_the_cli_offers_a_registered_model_in_its_help_and_names_them_all_for_an_unknown_one(toy, tmp_path, capsys):
    from core.cli import build_parser, main

    args = build_parser().parse_args(["train", "--dataset", "d", "--models", TOY, "baseline"])
    assert args.models == [TOY, "baseline"]
    # Refused before anything is read or trained: one line naming every registered model, the toy among them.
    assert main(["train", "--dataset", str(tmp_path / "absent"), "--models", TOY, "vgg16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "models must name lenet5, " in err and f"resnet50, {TOY}, baseline; got vgg16" in err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "toynet (ToyNet)" in text and "resnet56 (ResNet-56)" in text and "baseline (Boosting baseline" in text


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A data folder with a small sample and one 16-px dataset, and a runs folder with a toy run and a baseline run, trained
    through the training API (:func:`core.learn.experiment.train_spec`) while the toy is registered."""
    from core.acquire.sample import ensure_sample
    from core.learn.experiment import train_spec
    from core.spec import TrainSpec
    from tests.test_training import make_separable_dataset

    root = tmp_path_factory.mktemp("toy")
    dataset = make_separable_dataset(root / "data" / "datasets" / "shapes", n=60, size=16)
    ensure_sample(root / "data" / "sample", n=12, seed=0)  # a small source, so the dashboard makes none on start
    register_model(TOY, builder=toynet, label="ToyNet", color="#225E8A", input_size=16)
    try:
        spec = TrainSpec(dataset=str(dataset), models=(TOY, "baseline"), seeds=(0,), epochs=1, batch_size=16)
        outcomes = train_spec(spec, runs_dir=root / "runs")
    finally:
        unregister_model(TOY)  # the tests that read the runs register it again (the `toy` fixture)
    return {"data": root / "data", "runs": root / "runs", "dataset": dataset, "outcomes": outcomes}


def test_a_registered_model_trains_through_the_training_api_beside_the_baseline(toy_world):
    from core.learn.models import load_keras_model
    from core.runs import iter_runs

    outcomes = toy_world["outcomes"]
    assert [(o["model"], o["status"]) for o in outcomes] == [("baseline", "finished"), (TOY, "finished")], outcomes
    runs = {r.model_name: r for r in iter_runs(toy_world["runs"])}
    toy_run = runs[TOY]
    assert toy_run.config["params"]["epochs"] == 1 and toy_run.config["params"]["protocol"] == "equal"
    assert toy_run.config["protocol_differences"] == []
    model = load_keras_model(toy_run.path / "model.keras", damaged=lambda path, reason: AssertionError(reason))
    assert model.name == TOY and model.output_shape == (None, 3)


def test_compare_names_a_registered_model_by_its_label(toy_world, toy, tmp_path, capsys):
    from core.cli import main

    out = tmp_path / "report"
    assert main(["compare", "--runs-dir", str(toy_world["runs"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ToyNet" in printed and "Boosting baseline" in printed
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "ToyNet vs Boosting baseline" in html  # the title, models in the registry's order
    assert json.loads((out / "report.json").read_text())["runs"]


def test_the_training_page_offers_a_registered_model_and_shows_its_run(toy_world, toy, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(toy_world["data"]))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(toy_world["runs"]))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/training.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    models = at.multiselect(key="train_models")
    assert "ToyNet" in models.options and models.value == list(registry.default_models())
    models.set_value([TOY]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Expected time" in m.value for m in at.markdown)
    progress = [p.proto.text for p in at.get("progress")]
    assert any("ToyNet" in text and "finished" in text for text in progress), progress


def test_the_time_estimate_follows_the_protocol_lenet5_computes_on_64_px_under_the_equal_one():
    """Under the equal protocol LeNet-5 is built with native_size and computes on the dataset's 64 px; under the
    tuned one it resizes to 32 px inside the model. The estimate used the 32-px speed for both."""
    from core.learn.estimate import computed_side, images_per_second, training_seconds

    assert computed_side("lenet5", side=64, protocol="equal") == 64
    assert computed_side("lenet5", side=64, protocol="tuned") == 32
    assert computed_side("lenet5", side=16, protocol="equal") == 32  # enlarged to 32: its convolutions need it
    assert computed_side("alexnet", side=64, protocol="tuned") == 64
    assert images_per_second("lenet5", side=64, protocol="equal") < images_per_second("lenet5", side=64, protocol="tuned")
    same = {"n_train": 667, "side": 64, "epochs": {"lenet5": 30}}
    equal, tuned = (training_seconds(["lenet5"], **same, protocol=p) for p in ("equal", "tuned"))
    assert equal > 1.5 * tuned  # the measured 64-px speed is ~1,400 images/s against ~2,400 at 32 px
    assert equal == pytest.approx(667 * 30 / 1400)  # the walkthrough's run: 14.2 s
    # Larger images cost more under the equal protocol only; AlexNet's speed does not depend on it.
    assert images_per_second("lenet5", side=128, protocol="equal") == pytest.approx(1400 / 4)
    assert images_per_second("lenet5", side=128, protocol="tuned") == 2400
    assert (training_seconds(["alexnet"], **{**same, "epochs": {"alexnet": 30}}, protocol="equal")
            == training_seconds(["alexnet"], **{**same, "epochs": {"alexnet": 30}}, protocol="tuned"))


def test_speeds_are_kept_per_image_side_and_a_single_number_is_at_64_px(toy):
    assert dict(model_entry("lenet5").cpu_images_per_second) == {64: 1400.0, 32: 2400.0}
    entry = register_model("speedy", builder=toynet, label="Speedy", color="#000000", cpu_images_per_second=500)
    try:
        assert dict(entry.cpu_images_per_second) == {64: 500.0}
    finally:
        unregister_model("speedy")
    with pytest.raises(ConfigError, match="mapping of image sides"):
        register_model("bad", builder=toynet, label="Bad", color="#000000", cpu_images_per_second={4: 10.0})
    assert "bad" not in registry.model_names()


def test_the_training_page_shows_the_estimate_of_the_protocol_chosen(tmp_path, monkeypatch):
    """A 64-px dataset, LeNet-5 alone, the epochs fixed: the equal protocol computes on 64 px, the tuned one on
    32 px but trains every candidate of its search."""
    from streamlit.testing.v1 import AppTest

    from core.acquire.sample import ensure_sample
    from core.learn.estimate import training_seconds
    from core.learn.tuning import TUNING_CANDIDATES
    from core.progress import format_estimate
    from tests.test_training import make_separable_dataset

    dataset = make_separable_dataset(tmp_path / "data" / "datasets" / "wide", n=60, size=64)
    ensure_sample(tmp_path / "data" / "sample", n=12, seed=0)
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/training.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.multiselect(key="train_models").set_value(["lenet5"])
    at.number_input(key="train_epochs").set_value(500)
    at.number_input(key="train_repeats").set_value(10)
    at.text_input(key="train_seeds").set_value(",".join(map(str, range(50)))).run()
    n_train = json.loads((dataset / "manifest.json").read_text())["counts"]["train"]
    shown = {}
    for protocol in ("equal", "tuned"):
        at.selectbox(key="train_protocol").set_value(protocol).run()
        assert not at.exception, [e.value for e in at.exception]
        said = [m.value for m in at.markdown if "Expected time" in m.value]
        assert len(said) == 1, [m.value for m in at.markdown]
        shown[protocol] = said[0]
        epochs = 500 * (len(TUNING_CANDIDATES) if protocol == "tuned" else 1)
        seconds = training_seconds(["lenet5"], n_train=sum(n_train.values()), side=64, epochs={"lenet5": epochs},
                                   runs_per_model=500, protocol=protocol)
        assert f"{format_estimate(seconds)}** on a 2-core CPU under the {protocol} protocol" in said[0], said[0]
    assert shown["equal"] != shown["tuned"]


def test_an_estimate_reads_in_minutes_not_as_a_clock_time():
    from core.progress import format_estimate

    assert [format_estimate(s) for s in (5, 89, 302, 3599, 3900, 6428)] == [
        "under a minute", "about 1 min", "about 5 min", "about 1 h 00 min", "about 1 h 05 min", "about 1 h 47 min"]
