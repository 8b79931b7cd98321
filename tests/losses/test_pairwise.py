"""Tests for tfrecall.losses.pairwise against a pure-numpy pair enumeration."""

import math
import tempfile

import numpy as np
from absl.testing import parameterized

from tfrecall import losses
from tfrecall._backend import keras, tf

# ---------------------------------------------------------------- numpy references


def _softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def ref_pairwise(y, s, pair_loss):
    """Mean of pair_loss(s_i - s_j) over valid pairs with y_i > y_j; None without pairs."""
    values = [
        pair_loss(float(s[i]) - float(s[j]))
        for i in range(len(y))
        for j in range(len(y))
        if y[i] >= 0 and y[j] >= 0 and y[i] > y[j]
    ]
    return float(np.mean(values)) if values else None


def hinge(margin):
    return lambda d: max(0.0, margin - d)


def logistic(sigma):
    return lambda d: _softplus(-sigma * d)


def ref_batch(per_list, weights=None):
    weights = np.ones(len(per_list)) if weights is None else np.asarray(weights, np.float64)
    pairs = [(w, v) for w, v in zip(weights, per_list, strict=True) if v is not None]
    den = sum(w for w, _ in pairs)
    return 0.0 if den == 0 else sum(w * v for w, v in pairs) / den


# Rows: graded with ties, padding, all tied (no pair), one valid item, all padding.
LABELS = np.array(
    [
        [2.0, 0.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 1.0],
        [1.0, 1.0, 1.0, -1.0],
        [-1.0, 3.0, -1.0, -1.0],
        [-1.0, -1.0, -1.0, -1.0],
    ],
    np.float32,
)
LOGITS = np.array(
    [
        [0.5, -1.0, 2.0, 0.3],
        [1.5, 0.2, 40.0, -0.7],
        [0.1, 0.2, 0.3, 0.4],
        [1.0, 2.0, 3.0, 4.0],
        [1.0, 2.0, 3.0, 4.0],
    ],
    np.float32,
)
WEIGHTS = np.array([0.5, 2.0, 1.0, 3.0, 4.0], np.float32)

CASES = (
    ("hinge", losses.TripletHingeLoss, {}, losses.triplet_hinge_loss, hinge(1.0)),
    (
        "hinge_m03",
        losses.TripletHingeLoss,
        {"margin": 0.3},
        lambda y, s: losses.triplet_hinge_loss(y, s, margin=0.3),
        hinge(0.3),
    ),
    ("logistic", losses.TripletLogisticLoss, {}, losses.triplet_logistic_loss, logistic(1.0)),
    (
        "logistic_s2",
        losses.TripletLogisticLoss,
        {"sigma": 2.0},
        lambda y, s: losses.triplet_logistic_loss(y, s, sigma=2.0),
        logistic(2.0),
    ),
    ("bpr", losses.BPRLoss, {}, losses.bpr_loss, logistic(1.0)),
)


class PairwiseTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.named_parameters(*CASES)
    def test_matches_reference(self, cls, kwargs, fn, pair_loss):
        per_list = [ref_pairwise(y, s, pair_loss) for y, s in zip(LABELS, LOGITS, strict=True)]
        self.assertEqual([v is None for v in per_list], [False, False, True, True, True])
        self.assertAllClose(
            fn(LABELS, LOGITS), [0.0 if v is None else v for v in per_list], atol=1e-5
        )
        loss = cls(**kwargs)
        self.assertAllClose(loss(LABELS, LOGITS), ref_batch(per_list), atol=1e-5)
        self.assertAllClose(
            loss(LABELS, LOGITS, sample_weight=WEIGHTS), ref_batch(per_list, WEIGHTS), atol=1e-5
        )

    @parameterized.named_parameters(*CASES)
    def test_padding_takes_no_part(self, cls, kwargs, fn, pair_loss):
        del fn, pair_loss
        labels = tf.constant([[1.0, -1.0, 0.0, 0.0]])
        logits = tf.Variable([[0.3, float("nan"), -0.2, 0.6]])
        with tf.GradientTape() as tape:
            value = cls(**kwargs)(labels, logits)
        grad = tape.gradient(value, logits)
        self.assertAllClose(value, cls(**kwargs)([[1.0, 0.0, 0.0]], [[0.3, -0.2, 0.6]]))
        self.assertEqual(float(grad[0, 1]), 0.0)

    @parameterized.named_parameters(*CASES)
    def test_no_pair_batch_is_zero(self, cls, kwargs, fn, pair_loss):
        del fn, pair_loss
        logits = tf.Variable([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
        with tf.GradientTape() as tape:
            value = cls(**kwargs)([[2.0, 2.0, -1.0], [-1.0, 1.0, -1.0]], logits)
        self.assertEqual(float(value), 0.0)
        self.assertAllEqual(tape.gradient(value, logits), tf.zeros([2, 3]))

    @parameterized.named_parameters(*CASES)
    def test_large_logits_finite(self, cls, kwargs, fn, pair_loss):
        labels = tf.constant([[2.0, 0.0, 1.0, -1.0]])
        logits = tf.Variable([[-1e4, 1e4, 3.0, 1e4]])
        with tf.GradientTape() as tape:
            value = cls(**kwargs)(labels, logits)
        self.assertTrue(np.isfinite(value.numpy()))
        self.assertTrue(np.isfinite(tape.gradient(value, logits).numpy()).all())
        expected = ref_pairwise(labels.numpy()[0], logits.numpy()[0], pair_loss)
        self.assertAllClose(fn(labels, logits), [expected], rtol=1e-6)

    @parameterized.named_parameters(*CASES)
    def test_gradient_matches_numeric(self, cls, kwargs, fn, pair_loss):
        del cls, kwargs, pair_loss
        # Pair gaps stay away from the hinge's kinks at d = margin (1.0 and 0.3).
        labels = tf.constant([[2.0, 0.0, 1.0, -1.0], [0.0, 1.0, 0.0, 0.0]], tf.float64)
        x = tf.constant([[0.3, -0.5, 1.2, 0.7], [0.1, 0.45, -1.0, 2.0]], tf.float64)
        theoretical, numeric = tf.test.compute_gradient(lambda s: fn(labels, s), [x])
        self.assertAllClose(theoretical, numeric, atol=1e-6)

    @parameterized.named_parameters(*CASES)
    def test_config_round_trip(self, cls, kwargs, fn, pair_loss):
        del fn, pair_loss
        loss = cls(name="custom", reduction="sum", **kwargs)
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        self.assertIsInstance(restored, cls)
        self.assertEqual(restored.get_config(), loss.get_config())
        self.assertFalse(cls.requires_log_q)

    def test_hand_worked_bpr(self):
        # labels [1, 0, 0]: pairs (0,1), (0,2) with gaps 2 - 1 = 1 and 2 - 0 = 2.
        # -log sigmoid(1) = 0.31326, -log sigmoid(2) = 0.12693; mean = 0.22009
        self.assertAllClose(
            losses.bpr_loss([[1.0, 0.0, 0.0]], [[2.0, 1.0, 0.0]]), [0.22009], atol=1e-5
        )
        # hinge, margin 1: max(0, 1 - 1) = 0, max(0, 1 - 2) = 0 -> 0; margin 1.5: (0.5 + 0) / 2
        self.assertAllClose(
            losses.triplet_hinge_loss([[1.0, 0.0, 0.0]], [[2.0, 1.0, 0.0]], margin=1.5), [0.25]
        )

    def test_validation(self):
        with self.assertRaisesRegex(ValueError, "margin"):
            losses.TripletHingeLoss(margin=-1.0)
        with self.assertRaisesRegex(ValueError, "sigma"):
            losses.TripletLogisticLoss(sigma=0.0)


class PairwiseSaveTest(tf.test.TestCase):
    def test_fit_save_reload(self):
        compiled = {
            "hinge": losses.TripletHingeLoss(margin=0.5),
            "logistic": losses.TripletLogisticLoss(sigma=2.0),
            "bpr": losses.BPRLoss(),
        }
        pair_losses = {"hinge": hinge(0.5), "logistic": logistic(2.0), "bpr": logistic(1.0)}
        keras.utils.set_random_seed(0)
        inputs = keras.Input((3,))
        outputs = {name: keras.layers.Dense(4, name=name)(inputs) for name in compiled}
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="sgd", loss=compiled, weighted_metrics=[])
        x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
        targets = {name: LABELS for name in compiled}
        weights = {name: WEIGHTS for name in compiled}
        model.fit(x, targets, sample_weight=weights, batch_size=5, epochs=1, verbose=0)
        result = model.evaluate(
            x, targets, sample_weight=weights, batch_size=5, verbose=0, return_dict=True
        )
        scores = model.predict(x, verbose=0)
        for name, pair_loss in pair_losses.items():
            per_list = [
                ref_pairwise(y, s, pair_loss) for y, s in zip(LABELS, scores[name], strict=True)
            ]
            self.assertAllClose(result[f"{name}_loss"], ref_batch(per_list, WEIGHTS), atol=1e-5)
        with tempfile.TemporaryDirectory() as tmp:
            model.save(f"{tmp}/model", save_format="tf")
            reloaded = keras.models.load_model(f"{tmp}/model")
        for name, loss in compiled.items():
            self.assertIsInstance(reloaded.loss[name], type(loss))
            self.assertEqual(reloaded.loss[name].get_config(), loss.get_config())
        again = reloaded.evaluate(
            x, targets, sample_weight=weights, batch_size=5, verbose=0, return_dict=True
        )
        self.assertAllClose(again, result, atol=1e-6)


if __name__ == "__main__":
    tf.test.main()
