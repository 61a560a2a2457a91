"""Training throughput: does the input pipeline keep up, and is our ResNet-50 as fast as Keras'?

Prints, for each model at the dataset's default size (64 px, 1 channel, batch 32):

- the training images/s of the model (augmentation included, as in :func:`core.learn.training.train`),
- the input pipeline's images/s alone (shuffle, batch, prefetch from memory),
- their ratio (goal: pipeline >= 3x the model, so the model never waits for data);

then our ResNet-50's training-step time against ``keras.applications.ResNet50(weights=None)`` at
the same input, measured interleaved in the same run (goal: ratio <= 1.15).

Run: ``python benchmarks/bench_train.py [--size 64] [--steps 8]``. Baselines are measured in the
same run, so the ratios hold on any machine; absolute numbers depend on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from core.learn.models import build_model  # noqa: E402
from core.learn.training import default_config, input_pipeline, training_model  # noqa: E402


def _compiled(base: keras.Model, model_name: str) -> keras.Model:
    config = default_config(model_name)
    model = training_model(base, config)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def train_step_seconds(model: keras.Model, x: np.ndarray, y: np.ndarray, *, batch: int, steps: int,
                       clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds of each of ``steps`` training steps after two warm-up steps (tracing excluded), by ``clock``
    (wall time; ``time.process_time`` gives the CPU time of every thread of this process)."""
    data = iter(input_pipeline(x, y, batch_size=batch, shuffle=True, seed=0).repeat())
    for _ in range(2):
        xb, yb = next(data)
        model.train_on_batch(xb, yb)
    times = []
    for _ in range(steps):
        xb, yb = next(data)
        started = clock()
        model.train_on_batch(xb, yb)
        times.append(clock() - started)
    return times


def pipeline_img_per_s(x: np.ndarray, y: np.ndarray, *, batch: int, batches: int = 200) -> float:
    """Images/s the input pipeline delivers with nothing consuming them."""
    data = iter(input_pipeline(x, y, batch_size=batch, shuffle=True, seed=0).repeat())
    next(data)
    started = time.perf_counter()
    for _ in range(batches):
        next(data)
    return batches * batch / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=["lenet5", "alexnet", "resnet18"])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.batch * 16
    x = rng.random((n, args.size, args.size, 1), dtype=np.float32)
    y = rng.integers(0, 3, n)

    print(f"input {args.size}x{args.size}x1, batch {args.batch}, {args.steps} timed steps, CPU cores {os.cpu_count()}")
    print(f"{'model':<10}{'train img/s':>14}{'pipeline img/s':>16}{'ratio':>8}  goal >= 3")
    failures = 0
    for name in args.models:
        model = _compiled(build_model(name, input_size=args.size, channels=1, num_classes=3), name)
        train_rate = args.batch / statistics.median(train_step_seconds(model, x, y, batch=args.batch,
                                                                       steps=args.steps))
        pipe_rate = pipeline_img_per_s(x, y, batch=args.batch)
        ratio = pipe_rate / train_rate
        failures += ratio < 3
        print(f"{name:<10}{train_rate:>14.1f}{pipe_rate:>16.0f}{ratio:>8.1f}  {'ok' if ratio >= 3 else 'MISSED'}")
        keras.backend.clear_session()

    ours = _compiled(build_model("resnet50", input_size=args.size, channels=1, num_classes=3), "resnet50")
    reference = keras.applications.ResNet50(weights=None, input_shape=(args.size, args.size, 1), classes=3)
    reference = _compiled(reference, "resnet50")
    ours_t, ref_t = [], []
    for round_ in range(4):  # interleaved, alternating who goes first, so background load hits both alike
        pair = [(ours, ours_t), (reference, ref_t)]
        for model, times in pair if round_ % 2 == 0 else pair[::-1]:
            times += train_step_seconds(model, x, y, batch=args.batch, steps=max(2, args.steps // 2))
    ratio = statistics.median(ours_t) / statistics.median(ref_t)
    failures += ratio > 1.15
    print(f"ResNet-50 step: ours {statistics.median(ours_t) * 1000:.0f} ms, keras.applications "
          f"{statistics.median(ref_t) * 1000:.0f} ms, ratio {ratio:.2f}  goal <= 1.15  "
          f"{'ok' if ratio <= 1.15 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
