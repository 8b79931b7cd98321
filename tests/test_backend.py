"""The Keras 2 guard, checked in fresh processes (it acts at import time)."""

import subprocess
import sys


def run(code, env):
    env = {k: v for k, v in env.items() if k != "TF_USE_LEGACY_KERAS"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)


def test_tfrecall_selects_keras_2_even_after_plain_tensorflow_import(subprocess_env):
    out = run("import tensorflow as tf, tfrecall, tensorflow_recommenders as tfrs, tf_keras\n"
              "assert tf.keras.layers.Dense is tf_keras.layers.Dense\nprint('keras2')",
              subprocess_env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "keras2" in out.stdout


def test_clear_error_when_keras_3_is_already_loaded(subprocess_env):
    out = run("import tensorflow as tf\ntf.keras.version()\nimport tfrecall", subprocess_env)
    assert out.returncode != 0
    assert "ImportError: tfrecall needs the Keras 2 API" in out.stderr
    assert "TF_USE_LEGACY_KERAS=1" in out.stderr
