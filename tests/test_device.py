"""The device label: the CPU's name without loading TensorFlow where no NVIDIA driver is installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.learn.device import cpu_name, device_name, nvidia_driver_present

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(nvidia_driver_present(), reason="this machine has an NVIDIA driver: the backend is asked")
def test_without_a_gpu_the_label_needs_no_tensorflow() -> None:
    code = ("import json, sys; from core.learn.device import device_name; label = device_name(); "
            "print(json.dumps([label, 'tensorflow' in sys.modules, 'keras' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    label, tensorflow, keras = json.loads(done.stdout)
    assert label == cpu_name() and label.startswith("CPU")
    assert not tensorflow and not keras  # the Training page's first visit paid ~3 s for this import


def test_the_label_is_what_the_backend_would_say() -> None:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    assert (device_name() == cpu_name()) == (not gpus)
