"""How long training will take, before it starts: measured CPU speeds, scaled to the job.

The speeds are training images per second on a 2-core CPU (TensorFlow 2.21, batch 32-64, one
channel), measured for docs/MODELS.md and /work/shared/NOTES.md: the walkthrough's single split
(652 training galaxies of 64 px, 40 epochs) took 190 s for AlexNet and 185 s for ResNet-18;
LeNet-5 trains at ~9,800 images/s at 32 px, but the epoch's fixed costs (validation, checkpoint)
bring a 40-epoch run to ~11 s. A GPU is many times faster, so the estimate is an upper bound there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.errors import ConfigError
from core.learn.registry import model_entry

REFERENCE_SIDE = 64
"""The image side (pixels) the registry's speeds were measured at."""
# Each model's measured speed is its registry entry's ``cpu_images_per_second`` (core/learn/registry.py).
UNKNOWN_IMAGES_PER_SECOND = 100.0
"""For a model with no measurement: the slower end of the measured ones."""


def training_seconds(
    models: Sequence[str], *, n_train: int, side: int, epochs: Mapping[str, int], runs_per_model: int = 1,
) -> float:
    """Seconds a training job should take on a 2-core CPU: runs x epochs x images / measured speed.

    Cost per image grows with its area, so for images larger than :data:`REFERENCE_SIDE` the speeds
    scale by ``(REFERENCE_SIDE / side) ** 2``; smaller ones keep the measured speed (fixed costs
    dominate there), and so does a model that resizes every input to its own side (the registry's
    ``fixed_input``: LeNet-5, at 32 px under the tuned protocol). Early stopping can only make a run shorter.

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

    Examples
    --------
    >>> round(training_seconds(["alexnet"], n_train=652, side=64, epochs={"alexnet": 40}))
    190
    """
    if n_train < 0 or side <= 0 or runs_per_model < 0:
        raise ConfigError(f"n_train, side and runs_per_model must be >= 0 (side > 0); got {n_train}, {side}, "
                          f"{runs_per_model}. Read them from the dataset's manifest.")
    total = 0.0
    for model in models:
        entry = model_entry(model)
        speed = entry.cpu_images_per_second or UNKNOWN_IMAGES_PER_SECOND
        if not entry.fixed_input:
            speed *= min(1.0, (REFERENCE_SIDE / side) ** 2)
        total += runs_per_model * int(epochs.get(model, 40)) * n_train / speed
    return total
