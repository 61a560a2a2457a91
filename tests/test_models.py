"""Architectures: parameter counts of the faithful forms against the papers, shapes, options, saliency."""

from __future__ import annotations

import ast
from pathlib import Path

import keras
import numpy as np
import pytest

from core.errors import ConfigError
from core.learn.registry import network_names
from core.learn.models import (
    LocalResponseNormalization,
    PaddedIdentityShortcut,
    alexnet,
    build_model,
    count_params,
    lenet5,
    resnet,
    saliency,
)

MODELS_PY = Path(__file__).resolve().parents[1] / "core" / "learn" / "models.py"


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


@pytest.mark.parametrize("name", network_names())
@pytest.mark.parametrize(("size", "channels"), [(32, 1), (64, 3)])
def test_every_model_maps_images_to_class_probabilities(name, size, channels):
    model = build_model(name, input_size=size, channels=channels, num_classes=3)
    x = np.random.default_rng(0).random((2, size, size, channels), dtype=np.float32)
    proba = keras.ops.convert_to_numpy(model(x, training=False))
    assert proba.shape == (2, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def _layer_table(model):
    """``(layer name, kind, the layer it reads from)`` of a chain-shaped model, input excluded."""
    rows = []
    for layer in model.layers[1:]:
        inbound = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation.name
        rows.append((layer.name, type(layer).__name__, inbound))
    return rows


@pytest.mark.parametrize(("size", "form"), [(227, "faithful"), (64, "scaled")])
def test_alexnet_follows_the_papers_layer_table_with_dropout_after_fc6_and_fc7(size, form):
    # Krizhevsky et al. 2012, section 3.5 and figure 2 (as Caffe's bvlc_alexnet writes it):
    # conv1 -> norm1 -> pool1 -> conv2 -> norm2 -> pool2 -> conv3 -> conv4 -> conv5 -> pool5
    # -> fc6 -> drop6 -> fc7 -> drop7 -> fc8 (softmax). Dropout acts on the outputs of fc6 and fc7.
    model = alexnet(input_size=size, channels=3, num_classes=1000, form=form)
    assert _layer_table(model) == [
        ("conv1", "Conv2D", "image"), ("conv1_lrn", "LocalResponseNormalization", "conv1"),
        ("pool1", "MaxPooling2D", "conv1_lrn"),
        ("conv2", "Conv2D", "pool1"), ("conv2_lrn", "LocalResponseNormalization", "conv2"),
        ("pool2", "MaxPooling2D", "conv2_lrn"),
        ("conv3", "Conv2D", "pool2"), ("conv4", "Conv2D", "conv3"), ("conv5", "Conv2D", "conv4"),
        ("pool5", "MaxPooling2D", "conv5"), ("flatten", "Flatten", "pool5"),
        ("fc6", "Dense", "flatten"), ("drop6", "Dropout", "fc6"),
        ("fc7", "Dense", "drop6"), ("drop7", "Dropout", "fc7"),
        ("predictions", "Dense", "drop7"),
    ]
    assert [model.get_layer(n).rate for n in ("drop6", "drop7")] == [0.5, 0.5]
    units = 4096 if form == "faithful" else 1024
    assert [model.get_layer(n).units for n in ("fc6", "fc7")] == [units, units]
    filters = [(model.get_layer(f"conv{i}").filters, model.get_layer(f"conv{i}").kernel_size) for i in range(1, 6)]
    first = (11, 11) if form == "faithful" else (5, 5)
    assert filters == [(96, first), (256, (5, 5)), (384, (3, 3)), (384, (3, 3)), (256, (3, 3))]


def test_alexnet_drops_fc7s_output_in_training_only():
    # With dropout after fc7, the classifier sees a different fc7 output on every training call.
    model = alexnet(input_size=32, channels=1, num_classes=3, normalization="none", dropout=0.5)
    features = keras.Model(model.input, model.get_layer("drop7").output)
    x = np.random.default_rng(4).random((4, 32, 32, 1), dtype=np.float32)
    fc7 = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer("fc7").output)(x))
    dropped = keras.ops.convert_to_numpy(features(x, training=True))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(features(x, training=False)), fc7, rtol=1e-6)
    zeroed = (dropped == 0) & (fc7 != 0)
    assert 0.3 < zeroed.sum() / max((fc7 != 0).sum(), 1) < 0.7


@pytest.mark.parametrize(("depth", "expected"), [(20, 269_722), (32, 464_154), (56, 853_018)])
def test_small_image_resnet_matches_the_papers_table(depth, expected):
    # He et al. 2016, section 4.2 and table 6: 6n + 2 layers, 3x3 stem of 16 filters, no max-pool,
    # stages of 16/32/64 filters on 32/16/8-px maps, option-A shortcuts: 0.27 M, 0.46 M, 0.85 M parameters.
    # Count for n blocks per stage: stem 3*3*3*16 + BN 32; stage 1: 2n 3x3 16->16 convs + BN; stage 2:
    # one 16->32 and 2n-1 32->32 convs + BN; stage 3 likewise at 64; the 64 -> 10 softmax (650).
    model = resnet(depth=depth, input_size=32, channels=3, num_classes=10)
    assert count_params(model, trainable_only=True) == expected
    assert round(expected / 1e6, 2) == {20: 0.27, 32: 0.46, 56: 0.85}[depth]
    n = (depth - 2) // 6
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) + 1 == depth  # every weighted layer but the output is a 3x3 convolution: no projections
    assert {c.kernel_size for c in convs} == {(3, 3)}
    assert (convs[0].filters, convs[0].strides) == (16, (1, 1))
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers)
    assert [model.get_layer(f"stage{s}_block{n}_out").output.shape[1:] for s in (1, 2, 3)] == [
        (32, 32, 16), (16, 16, 32), (8, 8, 64)]


def test_small_image_resnet_keeps_64_px_galaxies_at_16_px_in_its_last_stage():
    small = build_model("resnet20", input_size=64, channels=3, num_classes=3)
    imagenet = build_model("resnet18", input_size=64, channels=3, num_classes=3)
    assert small.get_layer("stage3_block3_out").output.shape[1:3] == (16, 16)
    assert imagenet.get_layer("stage4_block2_out").output.shape[1:3] == (2, 2)
    assert count_params(small, trainable_only=True) < count_params(imagenet, trainable_only=True) / 40


def test_padded_identity_shortcut_subsamples_and_pads_with_zeros():
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    out = keras.ops.convert_to_numpy(PaddedIdentityShortcut(7, 2)(x))
    assert out.shape == (2, 2, 2, 7)
    np.testing.assert_array_equal(out[..., 2:5], x[:, ::2, ::2, :])
    assert not out[..., :2].any() and not out[..., 5:].any()


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
        (lambda: resnet(depth=21), "depth must be 18, 34 or 50 .* or one of 20, 32"),
        (lambda: resnet(depth=20, input_size=32, num_classes=3, stem_pool=True), "stem_pool must be None or False"),
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


@pytest.mark.parametrize("name", ["alexnet", "resnet20"])
def test_saved_models_load_in_safe_mode(tmp_path, name):
    options = {"normalization": "lrn"} if name == "alexnet" else {}
    model = build_model(name, input_size=32, channels=1, num_classes=3, **options)
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
