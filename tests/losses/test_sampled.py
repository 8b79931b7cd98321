"""Tests for tfrecall.losses.sampled: numpy references and a cross-check with TFRS."""

import math
import tempfile

import numpy as np
from absl.testing import parameterized

from tfrecall import losses
from tfrecall._backend import keras, tf
from tfrecall.losses import lists


def _softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _prepare(y, s, log_q=None, candidate_ids=None, positive_id=None):
    """numpy: s - log Q, and accidental hits (a non-positive with the positive's id) -> -1."""
    y = np.array(y, np.float64)
    s = np.array(s, np.float64) - (0.0 if log_q is None else np.asarray(log_q, np.float64))
    if candidate_ids is not None:
        y = np.where((np.asarray(candidate_ids) == positive_id) & (y <= 0), -1.0, y)
    return y, s


def ref_neg(y, s, **kwargs):
    y, s = _prepare(y, s, **kwargs)
    if not (y > 0).any():
        return None
    return sum(
        _softplus(-v) if t > 0 else _softplus(v) for t, v in zip(y, s, strict=True) if t >= 0
    )


def ref_sampled_softmax(y, s, **kwargs):
    y, s = _prepare(y, s, **kwargs)
    keep = y >= 0
    y, s = y[keep], s[keep]
    if not (y > 0).any():
        return None
    log_p = s - s.max() - np.log(np.exp(s - s.max()).sum())
    t = np.maximum(y, 0) / np.maximum(y, 0).sum()
    return float(-(t * log_p).sum())


def ref_batch(per_list, weights):
    pairs = [(w, v) for w, v in zip(weights, per_list, strict=True) if v is not None]
    den = sum(w for w, _ in pairs)
    return 0.0 if den == 0 else sum(w * v for w, v in pairs) / den


# Rows: positive first + 3 sampled negatives; row 1's last negative is padding, row 2
# lost its positive (padding), row 3 holds an accidental hit (candidate 5 == positive).
LABELS = np.array(
    [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, -1.0], [-1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]],
    np.float32,
)
LOGITS = np.array(
    [[2.0, 0.5, -1.0, 1.5], [0.3, 0.7, -0.2, 8.0], [1.0, 2.0, 3.0, 4.0], [0.4, 3.0, 0.1, -0.6]],
    np.float32,
)
CANDIDATES = np.array([[1, 2, 3, 4], [2, 1, 3, 4], [9, 8, 7, 6], [5, 5, 2, 8]], np.int64)
POSITIVES = CANDIDATES[:, 0]
LOG_Q = np.log(
    np.array(
        [
            [0.1, 0.3, 0.05, 0.2],
            [0.3, 0.1, 0.05, 0.2],
            [0.1, 0.1, 0.1, 0.1],
            [0.02, 0.02, 0.3, 0.4],
        ],
        np.float32,
    )
)
WEIGHTS = np.array([1.0, 2.0, 5.0, 0.5], np.float32)

FUNCTIONS = (
    ("neg", losses.NegativeSamplingLoss, ref_neg, False),
    ("nce", losses.NCELoss, ref_neg, True),
    ("sampled_softmax", losses.SampledSoftmaxLoss, ref_sampled_softmax, True),
)


class SampledTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.named_parameters(*FUNCTIONS)
    def test_class_matches_reference_on_corrected_logits(self, cls, ref, requires_log_q):
        self.assertEqual(cls.requires_log_q, requires_log_q)
        per_list = [ref(y, s) for y, s in zip(LABELS, LOGITS, strict=True)]
        self.assertIsNone(per_list[2])
        self.assertAllClose(
            cls()(LABELS, LOGITS, sample_weight=WEIGHTS), ref_batch(per_list, WEIGHTS), atol=1e-5
        )

    @parameterized.named_parameters(
        ("nce", losses.nce_loss, ref_neg),
        ("sampled_softmax", losses.sampled_softmax_loss, ref_sampled_softmax),
    )
    def test_functional_core_corrects_log_q_and_hits(self, fn, ref):
        expected = [
            ref(y, s, log_q=q, candidate_ids=c, positive_id=p)
            for y, s, q, c, p in zip(LABELS, LOGITS, LOG_Q, CANDIDATES, POSITIVES, strict=True)
        ]
        got = fn(LABELS, LOGITS, log_q=LOG_Q, candidate_ids=CANDIDATES, positive_ids=POSITIVES)
        self.assertAllClose(got, [0.0 if v is None else v for v in expected], atol=1e-5)
        # The model path: correct and mark hits first, then the class on the result.
        labels = lists.remove_accidental_hits(LABELS, CANDIDATES, POSITIVES)
        self.assertAllClose(fn(labels, lists.correct_log_q(LOGITS, LOG_Q)), got, atol=1e-6)
        # Without the correction the values differ (the test can tell them apart).
        self.assertNotAllClose(fn(LABELS, LOGITS), got, atol=1e-3)

    def test_accidental_hit_gets_no_probability(self):
        # Row: positive id 5, a "negative" that is item 5 again with a huge score.
        base = dict(log_q=None, candidate_ids=[[5, 5, 2]], positive_ids=[5])
        low = losses.sampled_softmax_loss([[1.0, 0.0, 0.0]], [[1.0, -50.0, 0.0]], **base)
        high = losses.sampled_softmax_loss([[1.0, 0.0, 0.0]], [[1.0, 50.0, 0.0]], **base)
        # Only the real negative counts: -log(e^1 / (e^1 + e^0)) = log(1 + e^-1) = 0.313262
        self.assertAllClose(low, [0.313262])
        self.assertAllClose(high, [0.313262])

    def test_hand_worked_neg(self):
        # labels [1, 0, 0], logits [0, 0, log 3]:
        # softplus(0) + softplus(0) + softplus(log 3) = log 2 + log 2 + log 4 = 2.772589
        self.assertAllClose(
            losses.negative_sampling_loss([[1.0, 0.0, 0.0]], [[0.0, 0.0, math.log(3.0)]]),
            [2.772589],
        )
        # NCE with Q = [1, 1, 3]: the third logit becomes log 3 - log 3 = 0 -> 3 log 2.
        self.assertAllClose(
            losses.nce_loss(
                [[1.0, 0.0, 0.0]], [[0.0, 0.0, math.log(3.0)]], log_q=[0.0, 0.0, math.log(3.0)]
            ),
            [3 * math.log(2.0)],
        )

    def test_ids_go_together(self):
        with self.assertRaisesRegex(ValueError, "candidate_ids and positive_ids"):
            losses.sampled_softmax_loss(LABELS, LOGITS, candidate_ids=CANDIDATES)

    @parameterized.named_parameters(*FUNCTIONS)
    def test_large_logits_padding_and_gradients(self, cls, ref, requires_log_q):
        del ref, requires_log_q
        labels = tf.constant([[1.0, 0.0, -1.0, 0.0], [-1.0, 0.0, 0.0, -1.0]])
        logits = tf.Variable([[-1e4, 1e4, float("nan"), 3.0], [1e4, 1e4, -1e4, 0.0]])
        with tf.GradientTape() as tape:
            value = cls()(labels, logits)
        grad = tape.gradient(value, logits).numpy()
        self.assertTrue(np.isfinite(value.numpy()))
        self.assertTrue(np.isfinite(grad).all())
        self.assertEqual(grad[0, 2], 0.0)
        self.assertAllEqual(grad[1], [0.0] * 4)  # row 2 has no positive
        self.assertEqual(float(cls()([[-1.0, 0.0]], [[1.0, 2.0]])), 0.0)

    @parameterized.named_parameters(
        ("nce", losses.nce_loss), ("sampled_softmax", losses.sampled_softmax_loss)
    )
    def test_gradient_matches_numeric(self, fn):
        labels = tf.constant(LABELS, tf.float64)
        x = tf.constant(LOGITS, tf.float64)
        log_q = tf.constant(LOG_Q, tf.float64)
        theoretical, numeric = tf.test.compute_gradient(
            lambda s: fn(labels, s, log_q=log_q, candidate_ids=CANDIDATES, positive_ids=POSITIVES),
            [x],
        )
        self.assertAllClose(theoretical, numeric, atol=1e-6)

    @parameterized.parameters(0, 1)
    def test_in_batch_matches_tfrs_retrieval(self, seed):
        # Imported here, after tfrecall._backend selected Keras 2 (TFRS refuses Keras 3).
        import tensorflow_recommenders as tfrs

        rng = np.random.default_rng(seed)
        batch = 6
        queries = rng.normal(size=(batch, 4)).astype(np.float32)
        candidates = rng.normal(size=(batch, 4)).astype(np.float32)
        ids = np.array([3, 7, 3, 9, 7, 1])  # two pairs of duplicates -> accidental hits
        probs = rng.uniform(0.01, 0.5, size=batch).astype(np.float32)
        weights = rng.uniform(0.5, 2.0, size=batch).astype(np.float32)

        task = tfrs.tasks.Retrieval(remove_accidental_hits=True)
        expected = task(
            queries,
            candidates,
            sample_weight=weights,
            candidate_sampling_probability=probs,
            candidate_ids=ids,
            compute_metrics=False,
            compute_batch_metrics=False,
        )
        logits = tf.matmul(queries, candidates, transpose_b=True)
        labels = tf.eye(batch)
        per_list = losses.sampled_softmax_loss(
            labels, logits, log_q=np.log(probs), candidate_ids=ids, positive_ids=ids
        )
        # TFRS' default loss is CategoricalCrossentropy with SUM reduction.
        self.assertAllClose(tf.reduce_sum(weights * per_list), expected, rtol=1e-5)
        # The model path (hits marked -1, logits corrected) through the Keras class:
        # sum reduction equals TFRS, and the default mean divides by sum(w).
        model_labels = lists.remove_accidental_hits(labels, ids, ids)
        model_logits = lists.correct_log_q(logits, np.log(probs))
        loss_sum = losses.SampledSoftmaxLoss(reduction="sum")
        self.assertAllClose(loss_sum(model_labels, model_logits, weights), expected, rtol=1e-5)
        self.assertAllClose(
            losses.SampledSoftmaxLoss()(model_labels, model_logits, weights),
            expected / weights.sum(),
            rtol=1e-5,
        )
        # The duplicates make a difference (so the hit removal is what matched).
        plain = losses.sampled_softmax_loss(labels, logits, log_q=np.log(probs))
        self.assertNotAllClose(tf.reduce_sum(weights * plain), expected, rtol=1e-3)

    def test_config_save_reload(self):
        compiled = {
            "neg": losses.NegativeSamplingLoss(),
            "nce": losses.NCELoss(name="my_nce"),
            "sampled_softmax": losses.SampledSoftmaxLoss(reduction="sum"),
        }
        for loss in compiled.values():
            restored = keras.losses.deserialize(keras.losses.serialize(loss))
            self.assertIsInstance(restored, type(loss))
            self.assertEqual(restored.get_config(), loss.get_config())
        keras.utils.set_random_seed(0)
        inputs = keras.Input((3,))
        outputs = {name: keras.layers.Dense(4, name=name)(inputs) for name in compiled}
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="sgd", loss=compiled, weighted_metrics=[])
        x = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
        targets = {name: LABELS for name in compiled}
        weights = {name: WEIGHTS for name in compiled}
        model.fit(x, targets, sample_weight=weights, batch_size=4, verbose=0)
        result = model.evaluate(
            x, targets, sample_weight=weights, batch_size=4, verbose=0, return_dict=True
        )
        scores = model.predict(x, verbose=0)
        per_list = [ref_neg(y, s) for y, s in zip(LABELS, scores["nce"], strict=True)]
        self.assertAllClose(result["nce_loss"], ref_batch(per_list, WEIGHTS), atol=1e-4)
        with tempfile.TemporaryDirectory() as tmp:
            model.save(f"{tmp}/model", save_format="tf")
            reloaded = keras.models.load_model(f"{tmp}/model")
        for name, loss in compiled.items():
            self.assertEqual(reloaded.loss[name].get_config(), loss.get_config())
            self.assertEqual(reloaded.loss[name].requires_log_q, loss.requires_log_q)
        again = reloaded.evaluate(
            x, targets, sample_weight=weights, batch_size=4, verbose=0, return_dict=True
        )
        self.assertAllClose(again, result, atol=1e-5)


if __name__ == "__main__":
    tf.test.main()
