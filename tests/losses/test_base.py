"""Tests for tfrecall.losses.base: the mean-over-scorable-lists reduction."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from absl.testing import parameterized

from tfrecall import losses
from tfrecall._backend import keras, tf
from tfrecall.losses import base

REPO = Path(__file__).resolve().parents[2]


class ReduceListsTest(tf.test.TestCase, parameterized.TestCase):
    def test_weighted_mean_over_scorable(self):
        per_list = tf.constant([1.0, float("inf"), 3.0, 5.0])
        scorable = tf.constant([True, False, True, True])
        weights = tf.constant([1.0, 100.0, 2.0, 0.5])
        # (1*1 + 2*3 + 0.5*5) / (1 + 2 + 0.5) = 9.5 / 3.5 = 2.7142857; the unscorable
        # list's inf and weight 100 take no part.
        self.assertAllClose(base.reduce_lists(per_list, scorable, weights), 9.5 / 3.5)
        self.assertAllClose(base.reduce_lists(per_list, scorable), 9.0 / 3.0)
        self.assertAllClose(base.reduce_lists(per_list, scorable, weights, "sum"), 9.5)
        self.assertAllClose(
            base.reduce_lists(per_list, scorable, weights, "none"), [1.0, 0.0, 6.0, 2.5]
        )
        self.assertAllClose(
            base.reduce_lists(per_list, scorable, weights, "sum_over_batch_size"), 9.5 / 3.5
        )

    @parameterized.named_parameters(
        ("scalar", 2.0), ("vector", [2.0, 2.0, 2.0]), ("column", [[2.0], [2.0], [2.0]])
    )
    def test_weight_shapes(self, weights):
        # A scalar, (B,) or (B, 1) weight; uniform weights leave the mean (1+2+6)/3 as is.
        per_list = tf.constant([1.0, 2.0, 6.0])
        scorable = tf.constant([True, True, True])
        self.assertAllClose(base.reduce_lists(per_list, scorable, weights), 3.0)
        self.assertAllClose(base.reduce_lists(per_list, scorable, weights, "sum"), 18.0)

    def test_nothing_scorable_is_zero(self):
        per_list = tf.constant([float("nan"), 4.0])
        scorable = tf.constant([False, False])
        self.assertEqual(float(base.reduce_lists(per_list, scorable)), 0.0)
        # Zero total weight on the scorable lists is also 0, not NaN.
        value = base.reduce_lists(tf.constant([1.0, 4.0]), tf.constant([True, True]), [0.0, 0.0])
        self.assertEqual(float(value), 0.0)

    def test_per_item_weights_are_rejected(self):
        with self.assertRaisesRegex(ValueError, "sample_weight"):
            losses.SoftmaxLoss()([[1.0, 0.0]], [[1.0, 2.0]], sample_weight=[[1.0, 1.0]])

    def test_half_precision_is_computed_in_float32(self):
        # float16 cannot hold MIN_FLOAT; the loss upcasts instead of producing NaN.
        value = losses.SoftmaxLoss()(
            tf.constant([[1.0, 0.0, -1.0]]), tf.constant([[2.0, 1.0, 0.0]], tf.float16)
        )
        self.assertEqual(value.dtype, tf.float32)
        self.assertAllClose(value, np.log1p(np.exp(-1.0)))  # -log(e^2 / (e^2 + e^1))

    def test_call_returns_per_list_values(self):
        loss = losses.SoftmaxLoss()
        self.assertAllClose(
            loss.call(tf.constant([[1.0, 0.0], [0.0, 0.0]]), tf.constant([[0.0, 0.0], [1.0, 2.0]])),
            [np.log(2.0), 0.0],
        )

    def test_requires_log_q_flags(self):
        flagged = {
            name
            for name in losses.__all__
            if isinstance(getattr(losses, name), type)
            and issubclass(getattr(losses, name), base.ListLoss)
            and getattr(losses, name).requires_log_q
        }
        self.assertEqual(flagged, {"NCELoss", "SampledSoftmaxLoss"})

    def test_every_loss_is_registered(self):
        for name in losses.__all__:
            cls = getattr(losses, name)
            if (
                isinstance(cls, type)
                and issubclass(cls, base.ListLoss)
                and cls is not base.ListLoss
            ):
                self.assertIs(keras.saving.get_registered_object(f"tfrecall>{name}"), cls, msg=name)


_DISTRIBUTED = textwrap.dedent(
    """
    import numpy as np
    import tfrecall.losses as losses
    from tfrecall._backend import keras, tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = rng.integers(0, 3, size=(8, 4)).astype("float32")
    y[:4] = 0.0          # replica 1's lists: only one scorable ...
    y[0, 0] = 1.0
    y[5, 3] = -1.0       # ... replica 2's: four
    w = rng.uniform(0.5, 2.0, size=8).astype("float32")
    init = rng.normal(size=(3, 4)).astype("float32")

    def build():
        inputs = keras.Input((3,))
        dense = keras.layers.Dense(
            4, use_bias=False, kernel_initializer=keras.initializers.Constant(init))
        model = keras.Model(inputs, dense(inputs))
        model.compile(optimizer=keras.optimizers.SGD(1.0), loss=losses.SoftmaxLoss(),
                      weighted_metrics=[])
        return model

    def run(model):
        value = model.evaluate(x, y, sample_weight=w, batch_size=8, verbose=0)
        model.fit(x, y, sample_weight=w, batch_size=8, epochs=1, verbose=0, shuffle=False)
        return value, model.get_weights()[0]

    single = run(build())
    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        mirrored = build()
    double = run(mirrored)
    print("VALUES", single[0], double[0])
    print("STEP", float(np.abs(single[1] - init).max()), float(np.abs(single[1] - double[1]).max()))
    """
)


class DistributedTest(tf.test.TestCase):
    def test_mirrored_two_replicas_match_one_device(self):
        # Two replicas whose halves hold 1 and 4 scorable lists: a per-replica mean
        # would weigh replica 1's single list like replica 2's four. With the global
        # denominator, evaluate and one SGD step match the single-device run.
        env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
        done = subprocess.run(
            [sys.executable, "-c", _DISTRIBUTED],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=str(REPO),
        )
        self.assertEqual(done.returncode, 0, msg=done.stderr[-3000:])
        lines = {
            line.split()[0]: line.split()[1:]
            for line in done.stdout.splitlines()
            if line.startswith(("VALUES", "STEP"))
        }
        single, double = map(float, lines["VALUES"])
        moved, gap = map(float, lines["STEP"])
        self.assertAllClose(single, double, atol=1e-5)
        self.assertGreater(moved, 1e-2)  # the step did move the weights ...
        self.assertLess(gap, 1e-5)  # ... and moved them the same on both setups


if __name__ == "__main__":
    tf.test.main()


def test_jit_compiled_loss_equals_the_eager_one_and_round_trips():
    import numpy as np

    from tfrecall._backend import keras, tf
    from tfrecall.losses import BPRLoss, SoftmaxLoss

    rng = np.random.default_rng(0)
    labels = tf.constant(rng.integers(-1, 3, size=(6, 5)).astype(np.float32))
    logits = tf.constant(rng.normal(size=(6, 5)).astype(np.float32))
    for cls in (SoftmaxLoss, BPRLoss):
        plain, fused = cls(), cls(jit_compile=True)
        np.testing.assert_allclose(fused(labels, logits).numpy(), plain(labels, logits).numpy(),
                                   rtol=1e-5)
        clone = keras.losses.deserialize(keras.losses.serialize(fused))
        assert clone.jit_compile is True
