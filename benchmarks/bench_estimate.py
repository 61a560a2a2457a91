"""Training-step speed of each default model on 64-px images under each protocol: the figures behind
``cpu_images_per_second`` in core/learn/registry.py (read by core/learn/estimate.py).

The registry holds end-to-end speeds of real runs (epoch overheads included); this measures the CPU time
of the bare training step, interleaved in one process, so the *ratios* (LeNet-5 under the equal protocol,
at its native 64 px, against the tuned one, resized to 32 px inside the model) hold on a loaded machine.

Run: ``nice -n 19 python benchmarks/bench_estimate.py [--steps 6] [--rounds 3]`` (about a minute of CPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.bench_train import _compiled, train_step_seconds  # noqa: E402
from core.learn.models import build_model  # noqa: E402
from core.learn.protocol import model_defaults  # noqa: E402

CASES = (("lenet5", "equal"), ("lenet5", "tuned"), ("alexnet", "equal"), ("resnet18", "equal"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random((args.batch * 8, args.size, args.size, 1), dtype=np.float32)
    y = rng.integers(0, 3, len(x))
    models = {}
    for name, protocol in CASES:
        options = model_defaults(name, protocol=protocol).get("model_options", {})
        base = build_model(name, input_size=args.size, channels=1, num_classes=3, **options)
        models[name, protocol] = _compiled(base, name)
    seconds: dict[tuple[str, str], list[float]] = {case: [] for case in CASES}
    for _ in range(args.rounds):  # interleaved: a change in the machine's load hits every case alike
        for case, model in models.items():
            # CPU time, not wall time: under `nice -n 19` on a shared machine the wall time is mostly waiting
            # for a core, and it varies with the others' load.
            seconds[case] += train_step_seconds(model, x, y, batch=args.batch, steps=args.steps,
                                                clock=time.process_time)
    print(f"{args.size} px, batch {args.batch}, median of {args.rounds} x {args.steps} steps")
    for (name, protocol), times in seconds.items():
        print(f"{name:9s} {protocol:6s} {args.batch / statistics.median(times):8.0f} images per CPU-second "
              "(bare training step)")


if __name__ == "__main__":
    main()
