"""Tests of ContinuousFeature and BucketizedEmbedding: hand z-scores, NaN handling, quantiles."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tfrecall._backend import keras, tf
from tfrecall.features.continuous import (
    EPSILON,
    MAX_ABS_Z,
    BucketizedEmbedding,
    ContinuousFeature,
)

NAN = float("nan")
INF = float("inf")


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


class TestContinuousFeature:
    def test_huge_finite_values_are_clipped_not_overflowed(self):
        layer = ContinuousFeature(mean=30.0, variance=100.0)
        # z of 1e30 is 1e29 and of 3e38 (float32 max) / 10 would be inf: both clip to
        # MAX_ABS_Z, whose square (1e8) is far from overflowing float32.
        out = layer(tf.constant([1e30, -3e38, 3e38, 50.0])).numpy()
        np.testing.assert_allclose(out[:, 0], [MAX_ABS_Z, -MAX_ABS_Z, MAX_ABS_Z, 2.0],
                                   rtol=1e-6)
        np.testing.assert_array_equal(out[:, 1], [0, 0, 0, 0])  # finite: not missing

    def test_a_huge_value_keeps_a_unit_user_vector(self):
        # Issue 13: age 1e30 at serving gave an all-zero user vector (every score 0).
        from tfrecall.config import FeatureSpec, TowerConfig
        from tfrecall.models import TwoTowerModel

        model = TwoTowerModel.from_specs(
            [FeatureSpec("age", "continuous")], [FeatureSpec("item_id", "id")],
            tower=TowerConfig(hidden_units=(16,), output_dim=8))
        model.adapt({"age": np.array([20.0, 40.0], np.float32)},
                    {"item_id": np.array(["a", "b"], object)})
        vectors = model.user_tower({"age": tf.constant([1e20, 1e30, 3e38, 45.0])}).numpy()
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
        # Beyond the clip every huge value is the same input, so the same vector.
        np.testing.assert_allclose(vectors[1], vectors[2], rtol=1e-5)

    def test_z_scores_by_hand(self):
        layer = ContinuousFeature(mean=1.0, variance=4.0)
        out = layer(tf.constant([[3.0, -1.0], [1.0, 7.0]])).numpy()
        s = math.sqrt(4.0 + EPSILON)
        # z = (x - 1) / 2: 3 -> 1, -1 -> -1, 1 -> 0, 7 -> 3; nothing missing.
        expected = [[[2 / s, 0.0], [-2 / s, 0.0]], [[0.0, 0.0], [6 / s, 0.0]]]
        np.testing.assert_allclose(out, expected, rtol=1e-6)

    def test_adapt_uses_finite_values_only(self):
        layer = ContinuousFeature()
        layer.adapt(np.array([1.0, 2.0, 3.0, NAN, INF, -INF], np.float32))
        # finite 1, 2, 3: mean 2, population variance (1 + 0 + 1) / 3 = 2/3
        assert layer.mean == pytest.approx(2.0)
        assert layer.variance == pytest.approx(2.0 / 3.0)

    def test_log1p_on_negative_values(self):
        layer = ContinuousFeature(log1p=True)
        e1 = math.e - 1.0
        # t = sign(x) log1p(|x|): e-1 -> 1, -(e-1) -> -1; mean 0, variance 1
        layer.adapt(np.array([e1, -e1]))
        assert layer.mean == pytest.approx(0.0, abs=1e-12)
        assert layer.variance == pytest.approx(1.0)
        out = layer(tf.constant([-e1, 0.0, math.e**2 - 1.0])).numpy()
        np.testing.assert_allclose(out[:, 0], [-1.0, 0.0, 2.0], rtol=1e-5, atol=1e-6)

    def test_constant_column_variance_treated_as_one(self):
        layer = ContinuousFeature()
        layer.adapt(np.array([5.0, 5.0, 5.0]))
        out = layer(tf.constant([5.0, 7.0])).numpy()
        # variance 0 -> 1: z = x - 5
        np.testing.assert_allclose(out[:, 0], [0.0, 2.0], rtol=1e-6)

    def test_nan_and_inf_get_learned_default_and_missing_flag(self):
        layer = ContinuousFeature(mean=0.0, variance=1.0)
        layer(tf.constant([0.0]))
        layer.default.assign(0.7)
        out = layer(tf.constant([NAN, INF, -INF, 2.0])).numpy()
        np.testing.assert_allclose(out, [[0.7, 1.0], [0.7, 1.0], [0.7, 1.0], [2.0, 0.0]], rtol=1e-6)

    def test_gradients_are_finite_with_nan_inputs(self):
        # log1p: the derivative of log1p(|x|) at NaN is NaN, so a NaN that reached it
        # would poison the gradient even in the branch tf.where does not select.
        layer = ContinuousFeature(mean=1.0, variance=3.0, log1p=True)
        x = tf.constant([2.0, NAN, INF, 4.0])
        layer(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x)[:, 0])
        g_default, g_x = tape.gradient(loss, [layer.default, x])
        # d loss / d default = number of missing values = 2
        assert float(g_default) == pytest.approx(2.0)
        # d z / d x = 1 / (1 + |x|) / sqrt(3 + eps) for finite x; 0 where missing
        s = 1.0 / math.sqrt(3.0 + EPSILON)
        np.testing.assert_allclose(g_x.numpy(), [s / 3, 0.0, 0.0, s / 5], rtol=1e-6)

    def test_integer_input_and_shape(self):
        layer = ContinuousFeature(mean=0.0, variance=1.0)
        out = layer(tf.constant([[1, 2, 3]], tf.int64))
        assert out.shape == (1, 3, 2)

    def test_errors(self):
        with pytest.raises(ValueError, match="'price' has no mean"):
            ContinuousFeature(name="price")(tf.constant([1.0]))
        with pytest.raises(ValueError, match="no finite value"):
            ContinuousFeature().adapt(np.array([NAN, INF]))
        with pytest.raises(ValueError, match="both mean and variance"):
            ContinuousFeature(mean=1.0)
        with pytest.raises(ValueError, match="variance"):
            ContinuousFeature(mean=1.0, variance=-1.0)
        with pytest.raises(TypeError, match="float or integer"):
            ContinuousFeature(mean=0.0, variance=1.0)(tf.constant(["1"]))

    def test_config_round_trip(self):
        layer = ContinuousFeature(log1p=True, name="price")
        layer.adapt(np.array([1.0, 10.0, 100.0]))
        x = tf.constant([3.0, NAN, -2.0])
        layer(x)
        layer.default.assign(-0.3)
        clone = ContinuousFeature.from_config(json.loads(json.dumps(layer.get_config())))
        clone(x)
        clone.set_weights(layer.get_weights())
        np.testing.assert_array_equal(clone(x).numpy(), layer(x).numpy())


class TestBucketizedEmbedding:
    def test_boundaries_by_hand_with_ties_merged(self):
        layer = BucketizedEmbedding(2, num_buckets=4)
        layer.adapt(np.array([1.0, 1.0, 1.0, 1.0, 2.0, 3.0, NAN, INF]))
        # finite sorted 1,1,1,1,2,3 (n=6); linear quantile at q: position 5q
        # q=.25 -> 1.25 -> 1; q=.5 -> 2.5 -> 1; q=.75 -> 3.75 -> 1 + .75 * (2 - 1) = 1.75
        assert layer.boundaries == [1.0, 1.75]
        assert layer.nan_bucket == 3

    def test_boundaries_match_numpy_quantiles(self):
        rng = np.random.default_rng(0)
        values = rng.lognormal(size=500).astype(np.float32)
        values[::50] = np.nan
        layer = BucketizedEmbedding(3, num_buckets=5)
        layer.adapt(values)
        finite = values[np.isfinite(values)].astype(np.float64)
        reference = np.quantile(finite, [0.2, 0.4, 0.6, 0.8]).astype(np.float32)
        np.testing.assert_array_equal(np.float32(layer.boundaries), reference)

    def test_buckets_and_nan_bucket_rows(self):
        layer = BucketizedEmbedding(3, boundaries=[0.0, 1.0, 2.5])
        x = np.array([[-4.0, 0.0, 0.5], [1.0, 2.5, 9.0], [NAN, INF, -INF]], np.float32)
        out = layer(tf.constant(x)).numpy()
        # b <= x goes right: -4->0, 0->1, .5->1, 1->2, 2.5->3, 9->3; NaN/inf -> 4
        rows = np.array([[0, 1, 1], [2, 3, 3], [4, 4, 4]])
        np.testing.assert_array_equal(out, layer.embeddings.numpy()[rows])
        assert layer.embeddings.shape == (5, 3)

    def test_log1p_boundaries_live_in_log_space(self):
        layer = BucketizedEmbedding(2, num_buckets=2, log1p=True)
        layer.adapt(np.array([0.0, math.e - 1.0, math.e**2 - 1.0]))
        # t = 0, 1, 2 -> median 1
        assert layer.boundaries == pytest.approx([1.0])
        buckets = layer.bucketize(tf.constant([0.5, 2.0, -100.0])).numpy()
        np.testing.assert_array_equal(buckets, [0, 1, 0])  # log1p(2) = 1.10 >= 1

    def test_errors(self):
        with pytest.raises(ValueError, match="'age' has no boundaries"):
            BucketizedEmbedding(2, name="age")(tf.constant([1.0]))
        with pytest.raises(ValueError, match="strictly increasing"):
            BucketizedEmbedding(2, boundaries=[1.0, 1.0])
        with pytest.raises(ValueError, match="num_buckets"):
            BucketizedEmbedding(2, num_buckets=1)

    def test_config_round_trip(self):
        layer = BucketizedEmbedding(4, num_buckets=3, log1p=True, name="age")
        layer.adapt(np.arange(30, dtype=np.float32))
        x = tf.constant([[0.0, 5.0], [NAN, 29.0]])
        expected = layer(x).numpy()
        clone = BucketizedEmbedding.from_config(json.loads(json.dumps(layer.get_config())))
        assert clone.boundaries == layer.boundaries
        clone(x)
        clone.set_weights(layer.get_weights())
        np.testing.assert_array_equal(clone(x).numpy(), expected)
