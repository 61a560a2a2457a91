"""The models and their explanations are Keras 3 code: the same weights give the same answers under JAX.

The suite runs on TensorFlow; this file builds each architecture, saves its weights, and has a
subprocess with ``KERAS_BACKEND=jax`` rebuild it, load them and compute the probabilities, the
gradient saliency and Grad-CAM of the same images, which must match TensorFlow's.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from core.learn.models import build_model, grad_cam, saliency

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("lenet5", "alexnet", "resnet18")

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")

EXPLAIN = """
import sys
import numpy as np
import keras
from core.learn.models import build_model, grad_cam, saliency

assert keras.backend.backend() == "jax", keras.backend.backend()
folder = sys.argv[1]
x = np.load(f"{folder}/x.npy")
for name in sys.argv[2:]:
    model = build_model(name, input_size=64, channels=1, num_classes=3)
    model.load_weights(f"{folder}/{name}.weights.h5")
    np.savez(f"{folder}/{name}-jax.npz", probabilities=keras.ops.convert_to_numpy(model(x, training=False)),
             saliency=saliency(model, x, 1), grad_cam=np.stack([grad_cam(model, x, c) for c in range(3)]))
"""


def _answers(model: keras.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    return {"probabilities": keras.ops.convert_to_numpy(model(x, training=False)),
            "saliency": saliency(model, x, 1), "grad_cam": np.stack([grad_cam(model, x, c) for c in range(3)])}


def test_models_saliency_and_grad_cam_agree_under_jax(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((3, 64, 64, 1), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = {}
    for name in MODELS:
        keras.utils.set_random_seed(0)
        model = build_model(name, input_size=64, channels=1, num_classes=3)
        model.save_weights(tmp_path / f"{name}.weights.h5")
        expected[name] = _answers(model, x)

    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", EXPLAIN, str(tmp_path), *MODELS], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    for name in MODELS:
        got = np.load(tmp_path / f"{name}-jax.npz")
        np.testing.assert_allclose(got["probabilities"], expected[name]["probabilities"], atol=1e-5, err_msg=name)
        for kind, shape in (("saliency", (3, 64, 64)), ("grad_cam", (3, 3, 64, 64))):
            assert got[kind].shape == shape and 0 <= got[kind].min() and got[kind].max() <= 1, (name, kind)
            # Untrained weights may leave a class no positive evidence (an all-zero map); not every class.
            assert expected[name][kind].max() > 0, (name, kind)
            np.testing.assert_allclose(got[kind], expected[name][kind], atol=2e-3, err_msg=f"{name} {kind}")
