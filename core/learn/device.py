"""Which device training runs on, asked without loading TensorFlow where the answer is plain.

Importing TensorFlow takes seconds, and the Training page only wants a label. Without an NVIDIA
driver no backend can train on a GPU, so the answer is the CPU and the processor's name from
``/proc/cpuinfo``; with one, the backend is asked which GPUs it sees.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def nvidia_driver_present() -> bool:
    """Whether this machine has an NVIDIA driver with a GPU (``/proc`` entry or ``nvidia-smi``)."""
    try:
        if NVIDIA_GPUS.is_dir() and any(NVIDIA_GPUS.iterdir()):
            return True
    except OSError:
        pass
    return shutil.which("nvidia-smi") is not None


def cpu_name() -> str:
    """``"CPU (<processor>, <n> cores)"``, or ``"CPU"`` where the processor has no name to read."""
    processor = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            processor = next((ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")), "")
    except OSError:
        pass
    return f"CPU ({processor}, {os.cpu_count()} cores)" if processor else "CPU"


def device_name() -> str:
    """The accelerator training runs on: GPU names (TensorFlow backend), else :func:`cpu_name`."""
    if not nvidia_driver_present():
        return cpu_name()
    import keras  # noqa: PLC0415 - only where a GPU may be there to find

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return ", ".join(tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus)
    return cpu_name()
