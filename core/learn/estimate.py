"""How long training will take, before it starts: measured CPU speeds, scaled to the job.

The speeds are training images per second on a 2-core CPU (TensorFlow 2.21, batch 32-64, one
channel), end to end (validation and checkpoints included), measured for docs/MODELS.md and
/work/shared/NOTES.md on the walkthrough's single split of 64-px galaxies: AlexNet 652 x 40 images
in 190 s, ResNet-18 in 185 s; LeNet-5 in ~11 s under the tuned protocol (resized to 32 px inside the
model) and 667 x 30 in 14.2 s under the equal one (at the dataset's 64 px). Each model's speeds are
its registry entry's ``cpu_images_per_second``, by the side the network computes on
(core/learn/registry.py). A GPU is many times faster, so the estimate is an upper bound there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.errors import ConfigError
from core.learn.protocol import model_defaults
from core.learn.registry import NETWORK, model_entry

REFERENCE_SIDE = 64
"""The image side (pixels) of a speed given as a single number."""
UNKNOWN_IMAGES_PER_SECOND = 100.0
"""For a model with no measurement: the slower end of the measured ones."""


def computed_side(model: str, *, side: int, protocol: str = "equal") -> int:
    """The side of the images ``model`` computes on when trained on ``side``-px images under ``protocol``.

    A network with ``fixed_input`` (LeNet-5) resizes every input to its own ``input_size`` unless the
    protocol builds it with ``native_size`` (the equal protocol: every model sees the dataset's pixels);
    even then it enlarges a smaller input to its ``input_size``. Every other model computes on ``side``.

    >>> computed_side("lenet5", side=64, protocol="equal"), computed_side("lenet5", side=64, protocol="tuned")
    (64, 32)
    """
    entry = model_entry(model)
    if entry.kind != NETWORK or not entry.fixed_input:
        return side
    options = model_defaults(model, protocol=protocol).get("model_options", {})
    return max(side, entry.input_size) if options.get("native_size") else entry.input_size


def images_per_second(model: str, *, side: int, protocol: str = "equal") -> float:
    """Training images per second of ``model`` on a 2-core CPU for ``side``-px images under ``protocol``.

    The speed measured at the side the network computes on (:func:`computed_side`); between measured
    sides, the largest measured side below it, scaled by the ratio of areas (cost per image grows with
    its area); below every measured side, the smallest one's speed unscaled (fixed costs dominate there).
    """
    speeds = model_entry(model).cpu_images_per_second or {REFERENCE_SIDE: UNKNOWN_IMAGES_PER_SECOND}
    seen = computed_side(model, side=side, protocol=protocol)
    below = [s for s in speeds if s <= seen]
    measured = max(below) if below else min(speeds)
    return speeds[measured] * min(1.0, (measured / seen) ** 2)


def training_seconds(
    models: Sequence[str], *, n_train: int, side: int, epochs: Mapping[str, int], runs_per_model: int = 1,
    protocol: str = "equal",
) -> float:
    """Seconds a training job should take on a 2-core CPU: runs x epochs x images / measured speed
    (:func:`images_per_second`, which depends on the protocol). Early stopping can only make a run shorter.

    Parameters
    ----------
    models : sequence of str
        Model names (``lenet5``, ``alexnet``, ...).
    n_train : int
        Training images per run.
    side : int
        Image side in pixels.
    epochs : mapping
        The most epochs each model runs.
    runs_per_model : int
        Seeds x folds x repeats.
    protocol : str
        ``equal`` (every model at the dataset's side) or ``tuned`` (LeNet-5 at 32 px).

    Examples
    --------
    >>> round(training_seconds(["alexnet"], n_train=652, side=64, epochs={"alexnet": 40}))
    190
    """
    if n_train < 0 or side <= 0 or runs_per_model < 0:
        raise ConfigError(f"n_train, side and runs_per_model must be >= 0 (side > 0); got {n_train}, {side}, "
                          f"{runs_per_model}. Read them from the dataset's manifest.")
    return sum(runs_per_model * int(epochs.get(model, 40)) * n_train
               / images_per_second(model, side=side, protocol=protocol) for model in models)
