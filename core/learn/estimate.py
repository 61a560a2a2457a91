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

REFERENCE_SIDE = 64
"""The image side (pixels) the speeds below were measured at."""
CPU_IMAGES_PER_SECOND: dict[str, float] = {
    "lenet5": 2400.0,  # 652 x 40 images in ~11 s, epoch overheads included
    "alexnet": 137.0,  # 652 x 40 in 190 s
    "resnet18": 141.0,  # 652 x 40 in 185 s
    "resnet34": 75.0,  # about twice ResNet-18's work per image
    "resnet50": 45.0,  # keras.applications.ResNet50: ~17 images/s at 128 px, i.e. ~68 at 64 px, less overhead
}
"""Training images per second at :data:`REFERENCE_SIDE` px on a 2-core CPU, epoch overheads included."""
UNKNOWN_IMAGES_PER_SECOND = 100.0
"""For a model with no measurement: the slower end of the measured ones."""


def training_seconds(
    models: Sequence[str], *, n_train: int, side: int, epochs: Mapping[str, int], runs_per_model: int = 1,
) -> float:
    """Seconds a training job should take on a 2-core CPU: runs x epochs x images / measured speed.

    Cost per image grows with its area, so for images larger than :data:`REFERENCE_SIDE` the speeds
    scale by ``(REFERENCE_SIDE / side) ** 2``; smaller ones keep the measured speed (fixed costs
    dominate there), and so does LeNet-5, which the tuned protocol resizes to 32 px. Early stopping
    can only make a run shorter.

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
        speed = CPU_IMAGES_PER_SECOND.get(model, UNKNOWN_IMAGES_PER_SECOND)
        if model != "lenet5":
            speed *= min(1.0, (REFERENCE_SIDE / side) ** 2)
        total += runs_per_model * int(epochs.get(model, 40)) * n_train / speed
    return total
