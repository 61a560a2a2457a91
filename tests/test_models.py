"""Architectures: parameter counts of the faithful forms against the papers, shapes, options, saliency."""

from __future__ import annotations

import ast
from pathlib import Path

import keras
import numpy as np
import pytest

from core.errors import ConfigError
from core.models import (
    LocalResponseNormalization,
    alexnet,
    build_model,
    count_params,
    lenet5,
    resnet,
    saliency,
)

MODELS_PY = Path(__file__).resolve().parents[1] / "core" / "models.py"


def test_lenet5_classic_form_has_61706_parameters():
    # C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850 (LeCun 1998's ~60 k).
    assert count_params(lenet5(num_classes=10)) == 61_706


def test_alexnet_faithful_form_has_the_papers_60_million():
    # Two-GPU grouping of conv2/4/5 as in Krizhevsky 2012: 60,965,224 (Caffe's reference count).
    model = alexnet(input_size=227, channels=3, num_classes=1000)
    assert count_params(model, trainable_only=True) == 60_965_224
    assert model.output_shape == (None, 1000)
    assert model.get_layer("pool5").output.shape[1:] == (6, 6, 256)


@pytest.mark.parametrize(("depth", "expected"), [(18, 11_689_512), (34, 21_797_672), (50, 25_557_032)])
def test_resnet_trainable_parameters_match_the_reference_counts(depth, expected):
    model = resnet(depth=depth, input_size=224, channels=3, num_classes=1000)
    assert count_params(model, trainable_only=True) == expected


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "resnet18", "resnet50"])
@pytest.mark.parametrize(("size", "channels"), [(32, 1), (64, 3)])
def test_every_model_maps_images_to_class_probabilities(name, size, channels):
    model = build_model(name, input_size=size, channels=channels, num_classes=3)
    x = np.random.default_rng(0).random((2, size, size, channels), dtype=np.float32)
    proba = keras.ops.convert_to_numpy(model(x, training=False))
    assert proba.shape == (2, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_lenet5_resizes_other_sizes_inside_the_model():
    model = lenet5(input_size=64, channels=1, num_classes=3)
    assert model.get_layer("resize_32").output.shape[1:3] == (32, 32)
    assert count_params(model) == count_params(lenet5(input_size=32, channels=1, num_classes=3))


def test_resnet_without_stem_pool_keeps_twice_the_resolution():
    pooled = resnet(depth=18, input_size=64, channels=1, num_classes=3)
    unpooled = resnet(depth=18, input_size=64, channels=1, num_classes=3, stem_pool=False)
    assert pooled.get_layer("stage4_block2_out").output.shape[1:3] == (2, 2)
    assert unpooled.get_layer("stage4_block2_out").output.shape[1:3] == (4, 4)
    assert count_params(pooled) == count_params(unpooled)


def test_lenet5_original_and_modern_options():
    original = lenet5(num_classes=3)
    modern = lenet5(num_classes=3, activation="relu", pooling="max")
    assert original.get_layer("c1").activation.__name__ == "tanh"
    assert isinstance(original.get_layer("s2"), keras.layers.AveragePooling2D)
    assert modern.get_layer("c1").activation.__name__ == "relu"
    assert isinstance(modern.get_layer("s2"), keras.layers.MaxPooling2D)


def test_alexnet_normalization_options():
    names = {n: [type(layer).__name__ for layer in alexnet(input_size=64, channels=1, num_classes=3,
                                                           normalization=n).layers]
             for n in ("lrn", "batchnorm", "none")}
    assert names["lrn"].count("LocalResponseNormalization") == 2
    assert names["batchnorm"].count("BatchNormalization") == 2
    assert "BatchNormalization" not in names["none"] and "LocalResponseNormalization" not in names["none"]


def test_local_response_normalization_matches_the_formula():
    x = np.random.default_rng(1).random((1, 2, 2, 7)).astype(np.float32) * 10
    layer = LocalResponseNormalization(depth=5, k=2.0, alpha=1e-2, beta=0.75)
    out = keras.ops.convert_to_numpy(layer(x))
    expected = np.empty_like(x)
    for c in range(7):
        window = x[..., max(0, c - 2): c + 3]
        expected[..., c] = x[..., c] / (2.0 + 1e-2 * (window**2).sum(axis=-1)) ** 0.75
    np.testing.assert_allclose(out, expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: resnet(depth=20), "depth must be 18, 34 or 50"),
        (lambda: resnet(depth=18, input_size=16, num_classes=3), "input_size must be an integer >= 32"),
        (lambda: lenet5(channels=2), "channels must be 1 or 3"),
        (lambda: lenet5(num_classes=1), "num_classes must be an integer >= 2"),
        (lambda: lenet5(activation="sigmoid"), "activation must be 'tanh' or 'relu'"),
        (lambda: alexnet(input_size=64, form="faithful"), "input_size must be an integer >= 195"),
        (lambda: alexnet(normalization="layer"), "normalization must be"),
        (lambda: build_model("vgg16", input_size=32, channels=1, num_classes=3), "model must be one of"),
        (lambda: build_model("lenet5", input_size=32, channels=1, num_classes=3, depth=3), "unknown option"),
    ],
)
def test_bad_options_raise_clear_errors(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_saved_models_load_in_safe_mode(tmp_path):
    model = alexnet(input_size=32, channels=1, num_classes=3, normalization="lrn")
    x = np.random.default_rng(2).random((2, 32, 32, 1), dtype=np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


def test_saliency_is_zero_where_the_model_does_not_look():
    inputs = keras.Input((8, 8, 1))
    centre = keras.layers.Cropping2D(3)(inputs)  # only the central 2x2 pixels reach the output
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(centre))
    model = keras.Model(inputs, outputs)
    maps = saliency(model, np.random.default_rng(3).random((8, 8, 1), dtype=np.float32), 1)
    assert maps.shape == (8, 8)
    assert maps.max() == pytest.approx(1.0)
    outside = np.ones((8, 8), bool)
    outside[3:5, 3:5] = False
    assert np.all(maps[outside] == 0) and np.all(maps[~outside] > 0)
    with pytest.raises(ConfigError, match="class_index"):
        saliency(model, np.zeros((8, 8, 1), np.float32), 2)


def test_models_module_uses_no_tensorflow_ops_outside_the_saliency_gradient():
    # The builders must run under the JAX and PyTorch backends: only keras.layers / keras.ops. The two
    # explanation maps (saliency, Grad-CAM) need the backend's autodiff, which one function names.
    tree = ast.parse(MODELS_PY.read_text(encoding="utf-8"))
    offenders = []
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.ClassDef)) and func.name != "_input_gradient":
            for node in ast.walk(func):
                if isinstance(node, ast.Name) and node.id in {"tf", "tensorflow", "jax"}:
                    offenders.append(func.name)
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not any("tensorflow" in ast.unparse(node) or "jax" in ast.unparse(node) for node in imports)
    assert offenders == []
