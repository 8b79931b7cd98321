"""Tests for tfrecall.losses.pointwise against a numpy sigmoid cross-entropy."""

import math
import tempfile

import numpy as np
from absl.testing import parameterized

from tfrecall import losses
from tfrecall._backend import keras, tf


def ref_bce(y, s, positive_weight=1.0, negative_weight=1.0):
    """Mean over valid items of the class-weighted BCE; None for an all-padding list."""
    terms = []
    for label, score in zip(y, s, strict=True):
        if label < 0:
            continue
        p = 1.0 / (1.0 + math.exp(-float(score)))
        if label > 0:
            terms.append(-positive_weight * math.log(p))
        else:
            terms.append(-negative_weight * math.log(1.0 - p))
    return float(np.mean(terms)) if terms else None


def ref_batch(per_list, weights):
    pairs = [(w, v) for w, v in zip(weights, per_list, strict=True) if v is not None]
    den = sum(w for w, _ in pairs)
    return 0.0 if den == 0 else sum(w * v for w, v in pairs) / den


# Rows: graded, negatives only (still scored), padding, all padding.
LABELS = np.array(
    [[2.0, 0.0, 1.0], [0.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, -1.0, -1.0]], np.float32
)
LOGITS = np.array(
    [[0.5, -1.0, 2.0], [1.5, 0.2, -0.7], [30.0, -0.4, 1.1], [1.0, 2.0, 3.0]], np.float32
)
WEIGHTS = np.array([0.5, 2.0, 1.0, 4.0], np.float32)


class PointwiseBCETest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters((1.0, 1.0), (3.0, 0.5))
    def test_matches_reference(self, pos, neg):
        per_list = [ref_bce(y, s, pos, neg) for y, s in zip(LABELS, LOGITS, strict=True)]
        self.assertIsNone(per_list[3])
        self.assertAllClose(
            losses.pointwise_bce_loss(LABELS, LOGITS, positive_weight=pos, negative_weight=neg),
            [0.0 if v is None else v for v in per_list],
            atol=1e-5,
        )
        loss = losses.PointwiseBCELoss(positive_weight=pos, negative_weight=neg)
        self.assertAllClose(
            loss(LABELS, LOGITS, sample_weight=WEIGHTS), ref_batch(per_list, WEIGHTS), atol=1e-5
        )

    def test_hand_worked(self):
        # labels [1, 0], logits [0, 0]: each term is log 2 = 0.693147; mean 0.693147.
        # positive_weight 3: (3 log 2 + log 2) / 2 = 2 log 2 = 1.386294.
        self.assertAllClose(losses.pointwise_bce_loss([[1.0, 0.0]], [[0.0, 0.0]]), [0.693147])
        self.assertAllClose(
            losses.pointwise_bce_loss([[1.0, 0.0]], [[0.0, 0.0]], positive_weight=3.0),
            [1.386294],
        )

    def test_padding_and_empty_batch(self):
        logits = tf.Variable([[0.3, float("inf"), -0.2], [1.0, 2.0, 3.0]])
        labels = tf.constant([[1.0, -1.0, 0.0], [-1.0, -1.0, -1.0]])
        with tf.GradientTape() as tape:
            value = losses.PointwiseBCELoss()(labels, logits)
        grad = tape.gradient(value, logits)
        self.assertAllClose(value, ref_bce([1.0, 0.0], [0.3, -0.2]))
        self.assertEqual(float(grad[0, 1]), 0.0)
        self.assertAllEqual(grad[1], [0.0, 0.0, 0.0])
        self.assertEqual(float(losses.PointwiseBCELoss()([[-1.0]], [[2.0]])), 0.0)

    def test_large_logits_and_gradient(self):
        labels = tf.constant([[1.0, 0.0, 1.0, 0.0]])
        logits = tf.Variable([[-1e4, 1e4, 1e4, -1e4]])
        with tf.GradientTape() as tape:
            value = losses.PointwiseBCELoss()(labels, logits)
        # Two wrong items at 1e4 each, two right at ~0: mean (1e4 + 1e4) / 4 = 5000.
        self.assertAllClose(value, 5000.0, rtol=1e-6)
        self.assertTrue(np.isfinite(tape.gradient(value, logits).numpy()).all())
        y = tf.constant([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]], tf.float64)
        x = tf.constant([[0.3, -0.5, 1.2], [0.1, 0.4, -1.0]], tf.float64)
        theoretical, numeric = tf.test.compute_gradient(
            lambda s: losses.pointwise_bce_loss(y, s, positive_weight=2.0), [x]
        )
        self.assertAllClose(theoretical, numeric, atol=1e-6)

    def test_config_save_reload(self):
        loss = losses.PointwiseBCELoss(positive_weight=4.0, negative_weight=0.5, name="bce")
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        self.assertIsInstance(restored, losses.PointwiseBCELoss)
        self.assertEqual(restored.get_config(), loss.get_config())
        self.assertFalse(losses.PointwiseBCELoss.requires_log_q)
        keras.utils.set_random_seed(0)
        inputs = keras.Input((2,))
        model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
        model.compile(optimizer="sgd", loss=loss, weighted_metrics=[])
        x = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)
        model.fit(x, LABELS, sample_weight=WEIGHTS, batch_size=4, verbose=0)
        value = model.evaluate(x, LABELS, sample_weight=WEIGHTS, batch_size=4, verbose=0)
        scores = model.predict(x, verbose=0)
        per_list = [ref_bce(y, s, 4.0, 0.5) for y, s in zip(LABELS, scores, strict=True)]
        self.assertAllClose(value, ref_batch(per_list, WEIGHTS), atol=1e-5)
        with tempfile.TemporaryDirectory() as tmp:
            model.save(f"{tmp}/model", save_format="tf")
            reloaded = keras.models.load_model(f"{tmp}/model")
        self.assertEqual(reloaded.loss.get_config(), loss.get_config())
        again = reloaded.evaluate(x, LABELS, sample_weight=WEIGHTS, batch_size=4, verbose=0)
        self.assertAllClose(again, value, atol=1e-6)

    def test_validation(self):
        with self.assertRaisesRegex(ValueError, "negative_weight"):
            losses.PointwiseBCELoss(negative_weight=-1.0)


if __name__ == "__main__":
    tf.test.main()
