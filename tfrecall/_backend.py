"""The one place that imports TensorFlow and Keras 2 for the package.

TFRS 0.7.7 refuses Keras 3, and Keras 2 (`tf_keras`) is selected through the
`TF_USE_LEGACY_KERAS` environment variable, which TensorFlow reads when `tf.keras`
is first resolved. Every tfrecall module imports `tf` and `keras` from here, so the
variable is set before TensorFlow is imported by us, and a process that already
imported TensorFlow with Keras 3 gets a clear ImportError instead of layers from two
Keras versions mixed in one model.
"""

from __future__ import annotations

import os
import sys

_already_imported = "tensorflow" in sys.modules
os.environ["TF_USE_LEGACY_KERAS"] = "1"
# TensorFlow's C++ INFO lines (CUDA probing, oneDNN notices) drown the pipeline's own
# output; a user who wants them sets the variable before importing tfrecall.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402


def _keras_major_version() -> str:
    version_fn = getattr(tf.keras, "version", None)
    return version_fn() if version_fn else "2"


if _keras_major_version().startswith("3"):
    raise ImportError(
        "tfrecall needs the Keras 2 API (tf_keras), but TensorFlow was already imported "
        f"with Keras {_keras_major_version()} in this process. Import tfrecall before "
        "tensorflow, or set the environment variable TF_USE_LEGACY_KERAS=1 before "
        "TensorFlow is first imported (e.g. `TF_USE_LEGACY_KERAS=1 python ...`)."
        + (" TensorFlow was imported before tfrecall." if _already_imported else "")
    )

import tf_keras as keras  # noqa: E402


def register(cls):
    """Registers `cls` as "tfrecall>Name" for Keras (de)serialization."""
    return keras.saving.register_keras_serializable(package="tfrecall")(cls)

__all__ = ["keras", "register", "tf"]
