"""tfrecall: two-tower recall (candidate retrieval) on TensorFlow / Keras 2.

Importing tfrecall selects Keras 2 (`TF_USE_LEGACY_KERAS=1`) before TensorFlow loads,
and raises ImportError if TensorFlow was already imported with Keras 3.
"""

from tfrecall import _backend  # noqa: F401  (must run before anything imports TF)

__version__ = "0.1.0"
