"""Augmentation and loss of the fitted graph: what training adds in front of and behind the model.

A galaxy has no preferred orientation, so training sees each image under a random element of the
square's symmetry group (:class:`RandomDihedral`) plus small shifts and zoom, as layers in front
of the model, on the device. Only ``keras.layers`` / ``keras.ops``: any backend.
"""

from __future__ import annotations

from typing import Any

import keras

from core.learn.protocol import TrainConfig


@keras.saving.register_keras_serializable(package="galaxy_morph")
class RandomDihedral(keras.layers.Layer):
    """A random element of the square's symmetry group (8 rotations/reflections) per image.

    A random transpose followed by random horizontal and vertical flips covers all four 90°
    rotations and their mirror images. Active only in training; identity at inference.
    Requires square images.
    """

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training:
            return inputs
        ops = keras.ops
        batch = ops.shape(inputs)[0]

        def coin() -> Any:
            draw = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
            return ops.cast(draw < 0.5, inputs.dtype)

        transposed = ops.transpose(inputs, (0, 2, 1, 3))
        x = inputs + coin() * (transposed - inputs)
        x = x + coin() * (ops.flip(x, axis=1) - x)
        return x + coin() * (ops.flip(x, axis=2) - x)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


def augmentation(config: TrainConfig) -> list[keras.layers.Layer]:
    """The augmentation layers of ``config`` (empty when ``augment`` is off), seeded from its seed."""
    if not config.augment:
        return []
    seed = config.seed
    layers: list[keras.layers.Layer] = [RandomDihedral(seed=seed, name="aug_dihedral")]
    if config.shift > 0:
        layers.append(keras.layers.RandomTranslation(config.shift, config.shift, fill_mode="reflect", seed=seed + 1,
                                                     name="aug_shift"))
    if config.zoom > 0:
        layers.append(keras.layers.RandomZoom(config.zoom, fill_mode="reflect", seed=seed + 2, name="aug_zoom"))
    return layers


@keras.saving.register_keras_serializable(package="galaxy_morph")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels against smoothed one-hot targets.

    Keras's ``SparseCategoricalCrossentropy`` has no label smoothing; this one-hot encodes the
    labels first, so the data pipeline and the accuracy metric keep integer labels.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "sparse_smoothed_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ops = keras.ops
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        target = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(target, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def training_loss(config: TrainConfig) -> str | keras.losses.Loss:
    """The loss ``fit`` minimises: plain sparse cross-entropy, or its smoothed form."""
    if config.label_smoothing:
        return SparseSmoothedCrossentropy(config.label_smoothing)
    return "sparse_categorical_crossentropy"


def training_model(base: keras.Model, config: TrainConfig) -> keras.Model:
    """``base`` with the augmentation layers in front: the graph that is fitted (augmentation on device)."""
    inputs = keras.Input(base.input_shape[1:], name="image")
    x = inputs
    for layer in augmentation(config):
        x = layer(x)
    return keras.Model(inputs, base(x), name=f"train_{base.name}")
