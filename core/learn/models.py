"""The architectures compared by the tool, as uncompiled Keras 3 models.

Every builder takes the input side, the number of channels (1 or 3) and the class count, and
returns a Functional ``keras.Model`` built only from ``keras.layers`` and ``keras.ops``, so the
same code runs under the TensorFlow, JAX and PyTorch backends. The output layer is a float32
softmax so that mixed-precision training keeps a stable loss.

Inputs are float32 images in [0, 1] (the dataset contract); any resizing the architecture needs
lives inside the model, so prediction repeats it automatically.

Each builder here has one entry in :mod:`core.learn.registry` (name, label, paper, recipes), which
:func:`build_model` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
from keras import layers

from core.errors import ConfigError, shorten
from core import runs
from core.learn.registry import import_builders, model_entry


def _check_common(input_size: int, channels: int, num_classes: int, *, min_size: int) -> None:
    if not isinstance(input_size, int) or input_size < min_size:
        raise ConfigError(
            f"input_size must be an integer >= {min_size}; got {input_size!r}. Build the dataset at a larger size."
        )
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3; got {channels!r}. Use grey (1) or RGB (3) images.")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2; got {num_classes!r}. A scheme needs two classes.")


def _classifier(x: Any, num_classes: int) -> Any:
    # float32 output keeps softmax and the loss stable under a mixed_float16 policy.
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)


# --------------------------------------------------------------------------------------------- LeNet-5


def lenet5(
    *,
    input_size: int = 32,
    channels: int = 1,
    num_classes: int = 10,
    activation: str = "tanh",
    pooling: str = "average",
    native_size: bool = False,
) -> keras.Model:
    """LeNet-5 after LeCun, Bottou, Bengio & Haffner (1998), "Gradient-based learning applied to document recognition".

    C1 6@5×5, S2 2×2 pool, C3 16@5×5, S4 2×2 pool, C5 120@5×5, F6 84, softmax output.

    Deviations from the paper: S2/S4 are plain pooling layers without trainable coefficients;
    C3 is fully connected to S2 (the paper's sparse connection table was an artefact of 1998
    compute); the RBF output is a softmax; inputs of any side are resized to 32×32 by a
    bilinear, antialiased ``Resizing`` layer inside the model (so a 64-px dataset is seen at
    32 px, the size the architecture was designed for). With 10 classes this is the classic
    61,706-parameter Keras form.

    Parameters
    ----------
    input_size, channels, num_classes : int
        Side of the square input images, 1 or 3 channels, number of classes.
    activation : {"tanh", "relu"}
        "tanh" is the original; "relu" the modern option.
    pooling : {"average", "max"}
        "average" is the original subsampling; "max" the modern option.
    native_size : bool
        Keep the input's own side instead of resizing to 32 px (the equal training protocol,
        where every model sees the same pixels); C5 then sees more than 1×1 and F6 grows. An
        input smaller than 32 px is still enlarged to 32: the three 5×5 convolutions need it.
    """
    _check_common(input_size, channels, num_classes, min_size=8)
    if activation not in ("tanh", "relu"):
        raise ConfigError(f"activation must be 'tanh' or 'relu'; got {activation!r}. Use 'tanh' for the original.")
    if pooling not in ("average", "max"):
        raise ConfigError(f"pooling must be 'average' or 'max'; got {pooling!r}. Use 'average' for the original.")
    pool = layers.AveragePooling2D if pooling == "average" else layers.MaxPooling2D
    inputs = keras.Input((input_size, input_size, channels), name="image")
    x = inputs
    if input_size != 32 and (not native_size or input_size < 32):
        x = layers.Resizing(32, 32, interpolation="bilinear", antialias=True, name="resize_32")(x)
    x = layers.Conv2D(6, 5, activation=activation, name="c1")(x)
    x = pool(2, name="s2")(x)
    x = layers.Conv2D(16, 5, activation=activation, name="c3")(x)
    x = pool(2, name="s4")(x)
    x = layers.Conv2D(120, 5, activation=activation, name="c5")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(84, activation=activation, name="f6")(x)
    return keras.Model(inputs, _classifier(x, num_classes), name="lenet5")


# --------------------------------------------------------------------------------------------- AlexNet


@keras.saving.register_keras_serializable(package="galaxy_morph")
class LocalResponseNormalization(layers.Layer):
    """Krizhevsky et al.'s local response normalisation across channels, in ``keras.ops`` only.

    ``b_i = a_i / (k + alpha * sum_{j in window(i)} a_j**2) ** beta`` with a window of ``depth``
    neighbouring channels (the paper: depth 5, k 2, alpha 1e-4, beta 0.75).
    """

    def __init__(self, depth: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75, **kwargs: Any):
        super().__init__(**kwargs)
        self.depth, self.k, self.alpha, self.beta = depth, k, alpha, beta

    def call(self, inputs: Any) -> Any:
        ops = keras.ops
        half = self.depth // 2
        squared = ops.square(inputs)
        padded = ops.pad(squared, [[0, 0], [0, 0], [0, 0], [half, half]])
        channels = ops.shape(inputs)[-1]
        window = sum(padded[..., i : i + channels] for i in range(self.depth))
        return inputs / ops.power(self.k + self.alpha * window, self.beta)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "depth": self.depth, "k": self.k, "alpha": self.alpha, "beta": self.beta}


def alexnet(
    *,
    input_size: int = 227,
    channels: int = 3,
    num_classes: int = 1000,
    form: str = "auto",
    normalization: str = "lrn",
    dense_units: int | None = None,
    dropout: float = 0.5,
    bn_momentum: float = 0.9,
) -> keras.Model:
    """AlexNet after Krizhevsky, Sutskever & Hinton (2012), "ImageNet classification with deep CNNs".

    Five convolutions (96@11×11 stride 4, 256@5×5, 384@3×3, 384@3×3, 256@3×3), 3×3/2 max-pools
    after the first, second and fifth, two dense layers (fc6, fc7) each followed by dropout,
    softmax output.

    ``form="faithful"`` (227-px input) keeps the paper's two-GPU grouping (C2, C4, C5 in two
    groups): 60,965,224 parameters at 1000 classes, the paper's "60 million".
    ``form="scaled"`` is for 32–128-px inputs: C1 is 96@5×5 stride 2 (an 11×11/4 filter would
    leave a 64-px galaxy 14 px wide after one layer), every convolution is "same"-padded and
    ungrouped, and the dense layers default to 1024 units, not 4096, because the flattened map is
    ~9× smaller. ``form="auto"`` picks faithful at 227 px and scaled otherwise.

    Parameters
    ----------
    normalization : {"lrn", "batchnorm", "none"}
        After C1 and C2: the paper's local response normalisation, batch normalisation (trains
        faster and more reliably on small datasets), or nothing.
    dense_units : int or None
        Width of the two dense layers; ``None`` means 4096 (faithful) or 1024 (scaled).
    dropout : float
        Dropout rate on the outputs of fc6 and fc7 (the paper: 0.5).
    bn_momentum : float
        Momentum of the batch-norm moving statistics; 0.9 suits the few steps per epoch of a
        small dataset (Keras' 0.99 leaves validation at chance for many epochs).
    """
    if form == "auto":
        form = "faithful" if input_size == 227 else "scaled"
    if form not in ("faithful", "scaled"):
        raise ConfigError(f"form must be 'auto', 'faithful' or 'scaled'; got {form!r}. Use 'auto'.")
    _check_common(input_size, channels, num_classes, min_size=195 if form == "faithful" else 32)
    if normalization not in ("lrn", "batchnorm", "none"):
        raise ConfigError(
            f"normalization must be 'lrn', 'batchnorm' or 'none'; got {normalization!r}. Use 'batchnorm' to train fast."
        )
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1); got {dropout!r}. The paper uses 0.5.")
    faithful = form == "faithful"
    units = dense_units or (4096 if faithful else 1024)
    groups = 2 if faithful else 1
    padding = "valid" if faithful else "same"

    def norm(x: Any, name: str) -> Any:
        if normalization == "lrn":
            return LocalResponseNormalization(name=f"{name}_lrn")(x)
        if normalization == "batchnorm":
            return layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
        return x

    inputs = keras.Input((input_size, input_size, channels), name="image")
    if faithful:
        x = layers.Conv2D(96, 11, strides=4, padding="valid", activation="relu", name="conv1")(inputs)
    else:
        x = layers.Conv2D(96, 5, strides=2, padding="same", activation="relu", name="conv1")(inputs)
    x = norm(x, "conv1")
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = layers.Conv2D(256, 5, padding="same", groups=groups, activation="relu", name="conv2")(x)
    x = norm(x, "conv2")
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(384, 3, padding="same", groups=groups, activation="relu", name="conv4")(x)
    x = layers.Conv2D(256, 3, padding="same", groups=groups, activation="relu", name="conv5")(x)
    x = layers.MaxPooling2D(3, strides=2, padding=padding, name="pool5")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in (6, 7):
        # The paper drops the *outputs* of fc6 and fc7 ("we use dropout in the first two
        # fully-connected layers"; Caffe's reference net: fc6 -> relu6 -> drop6, fc7 -> relu7 -> drop7).
        x = layers.Dense(units, activation="relu", name=f"fc{i}")(x)
        x = layers.Dropout(dropout, name=f"drop{i}")(x)
    return keras.Model(inputs, _classifier(x, num_classes), name=f"alexnet_{form}")


# --------------------------------------------------------------------------------------------- ResNet

_RESNET_LAYOUTS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}


def _conv_bn(x: Any, filters: int, kernel: int, *, strides: int, momentum: float, name: str, relu: bool) -> Any:
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=momentum, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def _shortcut(x: Any, filters: int, *, strides: int, momentum: float, name: str) -> Any:
    if strides == 1 and x.shape[-1] == filters:
        return x
    # Projection shortcut ("option B" of the paper) wherever the shape changes.
    return _conv_bn(x, filters, 1, strides=strides, momentum=momentum, name=f"{name}_proj", relu=False)


def _basic_block(x: Any, filters: int, *, strides: int, momentum: float, name: str) -> Any:
    shortcut = _shortcut(x, filters, strides=strides, momentum=momentum, name=name)
    y = _conv_bn(x, filters, 3, strides=strides, momentum=momentum, name=f"{name}_a", relu=True)
    y = _conv_bn(y, filters, 3, strides=1, momentum=momentum, name=f"{name}_b", relu=False)
    return layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def _bottleneck_block(x: Any, filters: int, *, strides: int, momentum: float, name: str) -> Any:
    shortcut = _shortcut(x, 4 * filters, strides=strides, momentum=momentum, name=name)
    # Stride on the first 1×1 convolution, as in the paper (v1): "v1.5" strides the 3×3 instead,
    # which costs ~10 % more compute for the same parameters.
    y = _conv_bn(x, filters, 1, strides=strides, momentum=momentum, name=f"{name}_a", relu=True)
    y = _conv_bn(y, filters, 3, strides=1, momentum=momentum, name=f"{name}_b", relu=True)
    y = _conv_bn(y, 4 * filters, 1, strides=1, momentum=momentum, name=f"{name}_c", relu=False)
    return layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


@keras.saving.register_keras_serializable(package="galaxy_morph")
class PaddedIdentityShortcut(layers.Layer):
    """He et al.'s parameter-free shortcut ("option A"): subsample by ``strides``, zero-pad the new channels.

    Where a small-image ResNet stage halves the map and doubles the filters, the identity is taken
    at every other pixel and the extra channels are zeros, so the shortcut adds no parameter.
    """

    def __init__(self, filters: int, strides: int = 2, **kwargs: Any):
        super().__init__(**kwargs)
        self.filters, self.strides = int(filters), int(strides)

    def call(self, inputs: Any) -> Any:
        x = inputs[:, :: self.strides, :: self.strides, :]
        extra = self.filters - int(inputs.shape[-1])
        return keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

    def compute_output_shape(self, input_shape: Any) -> Any:
        side = [None if s is None else -(-s // self.strides) for s in input_shape[1:3]]
        return (input_shape[0], *side, self.filters)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


def _small_basic_block(x: Any, filters: int, *, strides: int, momentum: float, name: str) -> Any:
    shortcut = x if strides == 1 and x.shape[-1] == filters else PaddedIdentityShortcut(
        filters, strides, name=f"{name}_pad")(x)
    y = _conv_bn(x, filters, 3, strides=strides, momentum=momentum, name=f"{name}_a", relu=True)
    y = _conv_bn(y, filters, 3, strides=1, momentum=momentum, name=f"{name}_b", relu=False)
    return layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


SMALL_RESNET_DEPTHS = (20, 32, 44, 56, 110)
"""The depths ``6n + 2`` of He et al.'s small-image ResNets (2016, section 4.2, table 6)."""


def resnet(
    *,
    depth: int = 18,
    input_size: int = 224,
    channels: int = 3,
    num_classes: int = 1000,
    bn_momentum: float = 0.9,
    stem_pool: bool | None = None,
) -> keras.Model:
    """ResNet after He, Zhang, Ren & Sun (2016), "Deep residual learning for image recognition".

    Two forms, chosen by ``depth``:

    - **ImageNet form** (18, 34, 50; the paper's table 1): 7×7/2 stem with 3×3/2 max-pool, four
      stages of basic (18, 34) or bottleneck (50) blocks at 64/128/256/512 filters, projection
      shortcuts where the shape changes ("option B"). Trainable parameters equal the reference
      counts: 11,689,512 (ResNet-18) and 25,557,032 (ResNet-50) at 1000 classes. Works from
      32 px, but a 64-px image is 16×16 entering stage 1 and 2×2 leaving it.
    - **Small-image form** (20, 32, 44, 56, 110 = 6n + 2; the paper's section 4.2, for 32-px
      CIFAR images): a 3×3 stem of 16 filters, no max-pool, three stages of ``n`` basic blocks
      at 16/32/64 filters (maps at the input side, 1/2 and 1/4 of it), parameter-free
      zero-padded identity shortcuts ("option A", :class:`PaddedIdentityShortcut`), global
      average pooling. 0.27 M parameters (ResNet-20), 0.46 M (32), 0.85 M (56), as the paper
      lists: a network sized for a few thousand small images, where ResNet-18 has 11 M.

    Both end in global average pooling and a softmax. Convolutions have no bias (batch norm
    follows each). Deviations: batch-norm momentum 0.9 by default (see ``bn_momentum``); the
    small-image form keeps its maps at the input side (64 px here, 32 in the paper); optionally
    no stem max-pool in the ImageNet form (``stem_pool``).

    Parameters
    ----------
    depth : {18, 34, 50, 20, 32, 44, 56, 110}
    bn_momentum : float
        Momentum of the batch-norm moving statistics; 0.9 suits small datasets with few steps
        per epoch (Keras' default 0.99 needs hundreds of steps before validation is usable).
    stem_pool : bool or None
        ImageNet form only: the paper's 3×3/2 max-pool after the stem (None: on). ``False``
        keeps twice the resolution in every stage at about 4× the compute. The small-image
        form has no stem pool.
    """
    if depth not in _RESNET_LAYOUTS and depth not in SMALL_RESNET_DEPTHS:
        raise ConfigError(
            f"depth must be 18, 34 or 50 (ImageNet form) or one of {', '.join(map(str, SMALL_RESNET_DEPTHS))} "
            f"(small-image form); got {depth!r}. Use 20 for small images and datasets."
        )
    _check_common(input_size, channels, num_classes, min_size=8 if depth in SMALL_RESNET_DEPTHS else 32)
    if not 0.0 < bn_momentum < 1.0:
        raise ConfigError(f"bn_momentum must be in (0, 1); got {bn_momentum!r}. Use 0.9 for small datasets.")
    inputs = keras.Input((input_size, input_size, channels), name="image")
    if depth in SMALL_RESNET_DEPTHS:
        if stem_pool:
            raise ConfigError(f"stem_pool must be None or False for ResNet-{depth}; got {stem_pool!r}. "
                              "The small-image form has no stem pool.")
        x = _conv_bn(inputs, 16, 3, strides=1, momentum=bn_momentum, name="stem", relu=True)
        for stage, filters in enumerate((16, 32, 64), start=1):
            for i in range((depth - 2) // 6):
                strides = 2 if (i == 0 and stage > 1) else 1
                x = _small_basic_block(x, filters, strides=strides, momentum=bn_momentum,
                                       name=f"stage{stage}_block{i + 1}")
    else:
        kind, repeats = _RESNET_LAYOUTS[depth]
        block = _basic_block if kind == "basic" else _bottleneck_block
        x = _conv_bn(inputs, 64, 7, strides=2, momentum=bn_momentum, name="stem", relu=True)
        if stem_pool is None or stem_pool:
            x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
        for stage, (filters, count) in enumerate(zip((64, 128, 256, 512), repeats), start=1):
            for i in range(count):
                strides = 2 if (i == 0 and stage > 1) else 1
                x = block(x, filters, strides=strides, momentum=bn_momentum, name=f"stage{stage}_block{i + 1}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, _classifier(x, num_classes), name=f"resnet{depth}")


# --------------------------------------------------------------------------------------------- by name


def build_model(
    name: str, *, input_size: int, channels: int, num_classes: int, **options: Any
) -> keras.Model:
    """Build the registered network ``name`` (:mod:`core.learn.registry`); ``options`` go to its builder.

    Raises
    ------
    ConfigError
        If the name is not a registered network (the message names the registered ones) or an option
        is not accepted by that builder.
    """
    return model_entry(name).build(input_size=input_size, channels=channels, num_classes=num_classes, **options)


def load_keras_model(path: Path, *, damaged: Any) -> Any:
    """:func:`core.runs.check_model_archive`, then ``keras.saving.load_model(path, safe_mode=True)``; whatever
    Keras raises on a damaged archive becomes ``damaged(path, reason)``."""
    import_builders()  # each architecture's module registers its custom layers for deserialisation

    runs.check_model_archive(path, damaged=damaged)
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises anything (KeyError, TypeError, OSError...) on bad input
        raise damaged(path, f"it cannot be loaded as a Keras model ({type(exc).__name__}: {shorten(exc)})") from exc


def load_run_model(run: runs.Run) -> keras.Model:
    """The trained inference model of ``run``, loaded with ``safe_mode=True`` (:func:`load_keras_model`).

    Raises
    ------
    RunNotFoundError
        If the run has no ``model.keras`` (yet).
    RunDamagedError
        If ``model.keras`` is not a regular file, exceeds a size cap or cannot be loaded.
    """
    path = run.path / "model.keras"
    if not path.exists():
        raise runs.RunNotFoundError(f"run {run.id} has no model.keras (status {run.status}). Finish or resume it first.")
    return load_keras_model(path, damaged=runs.damaged_file)


def count_params(model: keras.Model, *, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only the trainable ones, as papers usually count them)."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(int(keras.ops.size(w)) for w in weights))


def _image_batch(model: keras.Model, x: Any, class_index: int) -> tuple[Any, bool]:
    """``x`` as a float32 batch (one image gets a batch axis) and whether it was one image;
    checks that ``class_index`` is one of the model's classes."""
    import numpy as np  # noqa: PLC0415

    images = np.asarray(x, dtype=np.float32)
    single = images.ndim == 3
    n_classes = int(model.output_shape[-1])
    if not 0 <= class_index < n_classes:
        raise ConfigError(f"class_index must be in [0, {n_classes}); got {class_index!r}.")
    return (images[None] if single else images), single


def _input_gradient(function: Any, inputs: Any) -> Any:
    """``d sum(function(inputs)) / d inputs`` as a NumPy array, with the backend's own autodiff.

    Summing over the batch gives each image its own gradient: in inference mode no layer mixes
    the images of a batch. Keras 3 has no backend-neutral gradient, so this is the one place that
    names a backend: TensorFlow's ``GradientTape`` or ``jax.grad``.
    """
    import numpy as np  # noqa: PLC0415

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415

        tensor = tf.convert_to_tensor(inputs)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            total = tf.reduce_sum(function(tensor))
        return tape.gradient(total, tensor).numpy()
    if backend == "jax":
        import jax  # noqa: PLC0415

        return np.asarray(jax.grad(lambda tensor: jax.numpy.sum(function(tensor)))(jax.numpy.asarray(inputs)))
    raise ConfigError(f"saliency and Grad-CAM need the TensorFlow or JAX backend; got {backend!r}. "
                      "Set KERAS_BACKEND=tensorflow or jax.")


def saliency(model: keras.Model, x: Any, class_index: int) -> Any:
    """Gradient saliency (Simonyan et al. 2014): ``|d p_class / d image|``, max over channels, scaled to [0, 1].

    Parameters
    ----------
    model : keras.Model
        A classifier taking ``(N, S, S, C)`` images.
    x : array, shape (S, S, C) or (N, S, S, C)
        Image(s) as the model sees them (float32 in [0, 1]).
    class_index : int
        The class whose probability is explained.

    Returns
    -------
    numpy.ndarray, shape (S, S) or (N, S, S)
        Where the class probability is most sensitive to the pixels.

    Raises
    ------
    ConfigError
        If ``class_index`` is out of range, or the backend is neither TensorFlow nor JAX
        (gradients need the backend's autodiff).
    """
    import numpy as np  # noqa: PLC0415

    images, single = _image_batch(model, x, class_index)
    grads = np.abs(_input_gradient(lambda batch: model(batch, training=False)[:, class_index], images)).max(axis=-1)
    peak = grads.reshape(len(grads), -1).max(axis=1).reshape(-1, 1, 1)
    maps = np.divide(grads, peak, out=np.zeros_like(grads), where=peak > 0)
    return maps[0] if single else maps


def grad_cam(model: keras.Model, x: Any, class_index: int, *, layer: str | None = None) -> Any:
    """Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for a class lies, scaled to [0, 1].

    The feature maps ``A_k`` of a late convolutional layer are weighted by the spatial mean of
    ``d score_class / d A_k`` and summed; the ReLU of that map is resized to the input. Where
    gradient saliency (:func:`saliency`) shows single sensitive pixels, Grad-CAM shows the
    regions the last convolutions used, at that layer's (coarser) resolution.

    Parameters
    ----------
    model : keras.Model
        A functional classifier taking ``(N, S, S, C)`` images.
    x : array, shape (S, S, C) or (N, S, S, C)
    class_index : int
    layer : str or None
        The layer whose maps are used; default: the last layer with a spatial output larger
        than 1×1 (``s4`` in LeNet-5, ``pool5`` in the scaled AlexNet, the last ResNet stage).

    Returns
    -------
    numpy.ndarray, shape (S, S) or (N, S, S)

    Raises
    ------
    ConfigError
        If ``class_index`` or ``layer`` is not in the model, or the backend is neither TensorFlow nor JAX.
    """
    import numpy as np  # noqa: PLC0415

    images, single = _image_batch(model, x, class_index)
    spatial = [lay for lay in model.layers[1:] if len(lay.output.shape) == 4 and (lay.output.shape[1] or 0) > 1]
    names = [lay.name for lay in spatial]
    if layer is not None and layer not in names:
        raise ConfigError(f"layer must be one of the model's spatial layers {names}; got {layer!r}.")
    if not spatial:
        raise ConfigError(f"model {model.name} has no layer with a spatial output; Grad-CAM needs a convolutional net.")
    chosen = model.get_layer(layer) if layer is not None else spatial[-1]
    features = keras.ops.convert_to_numpy(keras.Model(model.input, chosen.output)(images, training=False))
    head = keras.Model(chosen.output, model.output)
    grads = _input_gradient(lambda maps: head(maps, training=False)[:, class_index], features)
    ops = keras.ops
    weights = ops.mean(grads, axis=(1, 2), keepdims=True)
    cam = ops.relu(ops.sum(weights * features, axis=-1, keepdims=True))
    cam = ops.convert_to_numpy(ops.image.resize(cam, images.shape[1:3], interpolation="bilinear"))[..., 0]
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    maps = np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)
    return maps[0] if single else maps
