"""GPU check: is the NVIDIA GPU used, and how fast is ResNet-18 on it with and without mixed precision and XLA?

On a machine with a GPU it

1. checks that TensorFlow sees the GPU and that a training step's variables and ops land on it;
2. trains ResNet-18 at 64 px (1 channel, 3 classes, augmentation as in ``core.learn.training``) for a
   fixed number of steps in four variants: float32, ``--mixed-precision``, ``--xla``, both;
3. trains the float32 variant on the CPU alone (GPUs hidden), the baseline;
4. prints images/s of each variant and its ratio to the CPU figure.

Without a GPU it says so and prints the CPU figure only. Each variant runs in a fresh process,
since the mixed-precision policy is global and hiding the GPU must happen before TensorFlow starts.

Run: ``python benchmarks/gpu_check.py [--steps 30] [--batch 64]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"float32": (False, False), "mixed precision": (True, False), "XLA": (False, True),
            "mixed precision + XLA": (True, True)}


def measure(*, mixed_precision: bool, xla: bool, steps: int, batch: int, size: int) -> dict[str, object]:
    """Train ResNet-18 for ``steps`` timed steps (after warm-up) in this process; images/s and placement."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.path.insert(0, str(ROOT))
    import keras
    import numpy as np
    import tensorflow as tf

    from core.learn.models import build_model
    from core.learn.training import _optimizer, default_config, input_pipeline, training_model

    # Shift and zoom cannot be compiled with XLA: every variant goes without them, so all four train the same graph.
    config = default_config("resnet18", mixed_precision=mixed_precision, xla=xla, batch_size=batch, shift=0.0, zoom=0.0)
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    model = training_model(build_model("resnet18", input_size=size, channels=1, num_classes=3), config)
    model.compile(optimizer=_optimizer(config, steps_per_epoch=8), loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=xla)
    rng = np.random.default_rng(0)
    x = rng.random((batch * 8, size, size, 1), dtype=np.float32)
    y = rng.integers(0, 3, batch * 8)
    data = iter(input_pipeline(x, y, batch_size=batch, shuffle=True, seed=0).repeat())
    for _ in range(3):  # tracing and XLA compilation are not what is measured
        model.train_on_batch(*next(data))
    times = []
    for _ in range(steps):
        xb, yb = next(data)
        started = time.perf_counter()
        model.train_on_batch(xb, yb)
        times.append(time.perf_counter() - started)
    conv = next(layer for layer in model.layers[-1].layers if isinstance(layer, keras.layers.Conv2D))
    return {
        "img_per_s": batch / statistics.median(times),
        "variable_devices": sorted({v.value.device.split("/")[-1] for v in model.trainable_variables}),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "compute_dtype": conv.compute_dtype,
        # Keras turns jit_compile off (with a warning) when a layer cannot be compiled.
        "xla": bool(model.jit_compile),
    }


def _child(variant: str, *, cpu_only: bool, steps: int, batch: int, size: int) -> dict[str, object]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    if cpu_only:
        env["CUDA_VISIBLE_DEVICES"] = ""
    done = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--steps", str(steps), "--batch", str(batch), "--size", str(size)],
        env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{variant} ({'CPU' if cpu_only else 'GPU'}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per variant (default 30)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mixed, xla = VARIANTS[args.child]
        print(json.dumps(measure(mixed_precision=mixed, xla=xla, steps=args.steps, batch=args.batch, size=args.size)))
        return 0

    print(f"ResNet-18, {args.size}x{args.size}x1, batch {args.batch}, median of {args.steps} steps after warm-up")
    cpu = _child("float32", cpu_only=True, steps=args.steps, batch=args.batch, size=args.size)
    print(f"{'CPU, float32':<28}{cpu['img_per_s']:>10.1f} img/s   (baseline, {os.cpu_count()} cores)")
    probe = _child("float32", cpu_only=False, steps=1, batch=args.batch, size=args.size)
    if not probe["gpus"]:
        print("no GPU found: TensorFlow lists no GPU device (install tensorflow[and-cuda] and check nvidia-smi). "
              "Only the CPU figure above was measured.")
        return 0
    if not any("GPU" in d for d in probe["variable_devices"]):
        print(f"GPU found ({', '.join(probe['gpus'])}) but the model's variables are on {probe['variable_devices']}: "
              "the GPU is NOT used. Check the CUDA libraries (tensorflow[and-cuda]).")
        return 1
    print(f"GPU used: {', '.join(probe['gpus'])}; variables on {', '.join(probe['variable_devices'])}")
    for variant in VARIANTS:
        result = _child(variant, cpu_only=False, steps=args.steps, batch=args.batch, size=args.size)
        print(f"{'GPU, ' + variant:<28}{result['img_per_s']:>10.1f} img/s   {result['img_per_s'] / cpu['img_per_s']:>6.1f}x CPU"
              f"   compute dtype {result['compute_dtype']}, XLA {'on' if result['xla'] else 'OFF'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
