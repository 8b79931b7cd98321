"""Tests for tfrecall.losses.listwise against small independent numpy references."""

import itertools
import math
import tempfile

import numpy as np
from absl.testing import parameterized

from tfrecall import losses
from tfrecall._backend import keras, tf

# ---------------------------------------------------------------- numpy references


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def _lse(x):
    x = np.asarray(x, np.float64)
    return x.max() + np.log(np.exp(x - x.max()).sum())


def ref_softmax(y, s):
    """-sum t log softmax(s), t = y+ / sum y+; None when the list has no positive."""
    keep = y >= 0
    y, s = y[keep], s[keep]
    if not (y > 0).any():
        return None
    t = np.maximum(y, 0) / np.maximum(y, 0).sum()
    return -(t * _log_softmax(s)).sum()


def ref_kl(y, s, temperature=1.0):
    keep = y >= 0
    y, s = y[keep], s[keep]
    if not (y > 0).any():
        return None
    log_t = _log_softmax(y / temperature)
    return (np.exp(log_t) * (log_t - _log_softmax(s))).sum()


def ref_listnet(y, s):
    keep = y >= 0
    y, s = y[keep], s[keep]
    if not (y > 0).any():
        return None
    return -(np.exp(_log_softmax(y)) * _log_softmax(s)).sum()


def ref_list_mle_values(y, s, top_k=None):
    """The set of Plackett-Luce NLLs over every tie-breaking order; None if unscorable."""
    keep = y >= 0
    y, s = y[keep], s[keep]
    if len(set(y.tolist())) < 2:
        return None
    values = set()
    for order in itertools.permutations(range(len(y))):
        if any(y[order[i]] < y[order[i + 1]] for i in range(len(y) - 1)):
            continue  # not a descending-label order
        ss = s[list(order)]
        k = len(ss) if top_k is None else min(top_k, len(ss))
        values.add(round(sum(_lse(ss[i:]) - ss[i] for i in range(k)), 9))
    return sorted(values)


def ref_batch(per_list, weights=None):
    """Weighted mean over scorable lists (None entries); 0 when none scores."""
    weights = np.ones(len(per_list)) if weights is None else np.asarray(weights, np.float64)
    num = sum(w * v for w, v in zip(weights, per_list, strict=True) if v is not None)
    den = sum(w for w, v in zip(weights, per_list, strict=True) if v is not None)
    return 0.0 if den == 0 else num / den


# Rows: graded, single positive, padding in the middle, no positive, all padding.
LABELS = np.array(
    [
        [2.0, 0.0, 1.0, 0.0],
        [0.0, 1.0, 0.0, -1.0],
        [1.0, -1.0, 3.0, 0.0],
        [0.0, 0.0, -1.0, 0.0],
        [-1.0, -1.0, -1.0, -1.0],
    ],
    np.float32,
)
LOGITS = np.array(
    [
        [0.5, -1.0, 2.0, 0.3],
        [1.5, 0.2, -0.7, 9.0],
        [-0.4, 50.0, 1.1, 0.9],
        [0.1, 0.2, 0.3, 0.4],
        [1.0, 2.0, 3.0, 4.0],
    ],
    np.float32,
)
WEIGHTS = np.array([0.5, 2.0, 1.0, 3.0, 4.0], np.float32)

# (class, functional core, numpy reference, constructor kwargs)
CASES = (
    ("softmax", losses.SoftmaxLoss, losses.softmax_loss, ref_softmax, {}),
    ("kl", losses.KLLoss, losses.kl_loss, ref_kl, {}),
    (
        "kl_t2",
        losses.KLLoss,
        lambda y, s: losses.kl_loss(y, s, label_temperature=2.0),
        lambda y, s: ref_kl(y, s, 2.0),
        {"label_temperature": 2.0},
    ),
    ("listnet", losses.ListNetLoss, losses.listnet_loss, ref_listnet, {}),
)


class ListwiseTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.named_parameters(*CASES)
    def test_per_list_matches_reference(self, cls, fn, ref, kwargs):
        del cls, kwargs
        expected = [ref(y, s) for y, s in zip(LABELS, LOGITS, strict=True)]
        # Unscorable lists (no positive, all padding) come out as exactly 0.
        self.assertAllClose(
            fn(LABELS, LOGITS), [0.0 if e is None else e for e in expected], atol=1e-5
        )

    @parameterized.named_parameters(*CASES)
    def test_batch_mean_over_scorable_lists_with_weights(self, cls, fn, ref, kwargs):
        del fn
        per_list = [ref(y, s) for y, s in zip(LABELS, LOGITS, strict=True)]
        loss = cls(**kwargs)
        self.assertAllClose(loss(LABELS, LOGITS), ref_batch(per_list), atol=1e-5)
        self.assertAllClose(
            loss(LABELS, LOGITS, sample_weight=WEIGHTS), ref_batch(per_list, WEIGHTS), atol=1e-5
        )

    @parameterized.named_parameters(*CASES)
    def test_padding_takes_no_part(self, cls, fn, ref, kwargs):
        del fn, ref
        # The padded slot's logit changes neither the loss nor gets a gradient.
        labels = tf.constant([[1.0, -1.0, 0.0]])
        logits = tf.Variable([[0.3, 1e30, -0.2]])
        with tf.GradientTape() as tape:
            value = cls(**kwargs)(labels, logits)
        grad = tape.gradient(value, logits)
        self.assertAllClose(value, cls(**kwargs)([[1.0, 0.0]], [[0.3, -0.2]]))
        self.assertEqual(float(grad[0, 1]), 0.0)

    @parameterized.named_parameters(*CASES)
    def test_all_unscorable_batch_is_zero(self, cls, fn, ref, kwargs):
        del fn, ref
        labels = [[0.0, 0.0, -1.0], [-1.0, -1.0, -1.0]]
        logits = tf.Variable([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
        with tf.GradientTape() as tape:
            value = cls(**kwargs)(labels, logits, sample_weight=[1.0, 2.0])
        self.assertEqual(float(value), 0.0)
        self.assertAllEqual(tape.gradient(value, logits), tf.zeros([2, 3]))

    @parameterized.named_parameters(*CASES)
    def test_large_logits_finite(self, cls, fn, ref, kwargs):
        del ref
        labels = tf.constant([[2.0, 0.0, 1.0, -1.0], [0.0, 1.0, 0.0, 0.0]])
        logits = tf.Variable([[1e4, -1e4, 3.0, 1e4], [-1e4, -1e4, 1e4, 0.0]])
        with tf.GradientTape() as tape:
            value = cls(**kwargs)(labels, logits)
        self.assertTrue(np.isfinite(value.numpy()))
        self.assertTrue(np.isfinite(tape.gradient(value, logits).numpy()).all())
        # Row 2: -log softmax at 1e4 below the max is 2e4 (float64 reference).
        if fn is losses.softmax_loss:
            self.assertAllClose(fn(labels, logits)[1], 2e4, rtol=1e-6)

    @parameterized.named_parameters(*CASES)
    def test_gradient_matches_numeric(self, cls, fn, ref, kwargs):
        del cls, ref, kwargs
        labels = tf.constant([[2.0, 0.0, 1.0, -1.0], [0.0, 1.0, 0.0, 0.0]], tf.float64)
        x = tf.constant([[0.3, -0.5, 1.2, 0.7], [0.1, 0.4, -1.0, 2.0]], tf.float64)
        theoretical, numeric = tf.test.compute_gradient(lambda s: fn(labels, s), [x])
        self.assertAllClose(theoretical, numeric, atol=1e-6)

    @parameterized.named_parameters(*CASES)
    def test_config_round_trip(self, cls, fn, ref, kwargs):
        del fn, ref
        loss = cls(name="custom", reduction="sum", **kwargs)
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        self.assertIsInstance(restored, cls)
        self.assertEqual(restored.get_config(), loss.get_config())
        self.assertFalse(cls.requires_log_q)

    def test_one_positive_is_minus_log_p(self):
        # -log(e^2 / (e^2 + e^1 + e^0)) = log(1 + e^-1 + e^-2) = 0.40760596
        self.assertAllClose(losses.softmax_loss([[1.0, 0.0, 0.0]], [[2.0, 1.0, 0.0]]), [0.40760596])

    def test_kl_zero_when_scores_match_labels(self):
        # softmax(y / T) == softmax(s) when s = y / T + const.
        y = np.array([[3.0, 1.0, 0.0, -1.0]], np.float32)
        s = y / 2.0 + 7.0
        self.assertAllClose(losses.kl_loss(y, s, label_temperature=2.0), [0.0], atol=1e-6)

    def test_kl_rejects_bad_temperature(self):
        with self.assertRaisesRegex(ValueError, "label_temperature.*0"):
            losses.KLLoss(label_temperature=0.0)

    def test_bad_rank_names_argument(self):
        with self.assertRaisesRegex(ValueError, "labels must be"):
            losses.softmax_loss([1.0, 0.0], [[1.0, 0.0]])

    def test_reductions_none_and_sum(self):
        per_list = [ref_softmax(y, s) for y, s in zip(LABELS, LOGITS, strict=True)]
        none = [0.0 if v is None else w * v for v, w in zip(per_list, WEIGHTS, strict=True)]
        loss = losses.SoftmaxLoss(reduction="none")
        self.assertAllClose(loss(LABELS, LOGITS, sample_weight=WEIGHTS), none, atol=1e-5)
        loss = losses.SoftmaxLoss(reduction="sum")
        self.assertAllClose(loss(LABELS, LOGITS, sample_weight=WEIGHTS), sum(none), atol=1e-5)


class ListMLETest(tf.test.TestCase, parameterized.TestCase):
    def test_hand_worked_example(self):
        # labels [2, 5, 3, 1] order the items 1, 2, 0, 3 -> scores 1.1, 2.1, 0.7, 0.5.
        # lse(1.1, 2.1, 0.7, 0.5) = 2.1 + log(1 + .36788 + .24660 + .20190) = 2.69684
        # lse(2.1, 0.7, 0.5)      = 2.1 + log(1 + .24660 + .20190)          = 2.47052
        # lse(0.7, 0.5)           = 0.7 + log(1 + e^-0.2 = 1.81873)         = 1.29814
        # loss = (2.69684 - 1.1) + (2.47052 - 2.1) + (1.29814 - 0.7) + 0
        #      = 1.59684 + 0.37052 + 0.59814 = 2.56550
        expected = (
            (2.1 + math.log(1 + math.exp(-1) + math.exp(-1.4) + math.exp(-1.6)) - 1.1)
            + (2.1 + math.log(1 + math.exp(-1.4) + math.exp(-1.6)) - 2.1)
            + (0.7 + math.log(1 + math.exp(-0.2)) - 0.7)
        )
        self.assertAllClose(expected, 2.56550, atol=1e-5)
        labels, scores = [[2.0, 5.0, 3.0, 1.0]], [[0.7, 1.1, 2.1, 0.5]]
        self.assertAllClose(losses.list_mle_loss(labels, scores), [expected], atol=1e-5)
        self.assertAllClose(losses.ListMLELoss(seed=7)(labels, scores), expected, atol=1e-5)
        # top_k = 2: only the first two terms, 1.59684 + 0.37052.
        self.assertAllClose(
            losses.list_mle_loss(labels, scores, top_k=2), [1.59684 + 0.37052], atol=1e-4
        )

    def test_matches_reference_with_padding_and_unscorable_lists(self):
        labels = np.array(
            [
                [3.0, -1.0, 1.0, 0.0],
                [1.0, 1.0, -1.0, 1.0],
                [-1.0, 2.0, -1.0, -1.0],
                [2.0, 0.0, 4.0, 1.0],
            ],
            np.float32,
        )
        logits = np.array(
            [
                [0.2, 9.0, -0.3, 1.0],
                [1.0, 2.0, 3.0, 4.0],
                [0.5, 0.5, 0.5, 0.5],
                [-1.0, 0.5, 0.25, 2.0],
            ],
            np.float32,
        )
        # Rows 1 (all tied) and 2 (one valid item) have nothing to order.
        refs = [ref_list_mle_values(y, s) for y, s in zip(labels, logits, strict=True)]
        self.assertIsNone(refs[1])
        self.assertIsNone(refs[2])
        self.assertAllClose(
            losses.list_mle_loss(labels, logits), [refs[0][0], 0.0, 0.0, refs[3][0]], atol=1e-5
        )
        self.assertAllClose(
            losses.ListMLELoss()(labels, logits, sample_weight=[1.0, 5.0, 5.0, 3.0]),
            (refs[0][0] + 3 * refs[3][0]) / 4.0,
            atol=1e-5,
        )
        self.assertAllClose(
            losses.list_mle_loss(labels, logits, top_k=2)[3],
            ref_list_mle_values(labels[3], logits[3], top_k=2)[0],
            atol=1e-5,
        )

    @parameterized.parameters(0, 1, 2)
    def test_ties_are_broken_uniformly_at_random(self, seed):
        tf.random.set_seed(seed)
        y = np.array([2.0, 1.0, 1.0, 1.0, 0.0], np.float32)
        s = np.array([0.3, -1.0, 0.5, 2.0, 0.1], np.float32)
        values = ref_list_mle_values(y, s)
        self.assertLen(values, 6)  # 3! orders of the three tied items
        n = 3000
        out = losses.list_mle_loss(np.tile(y, (n, 1)), np.tile(s, (n, 1)), seed=seed).numpy()
        # Every per-list value is one of the tie-break values ...
        nearest = np.abs(out[:, None] - np.array(values)[None, :]).min(axis=1)
        self.assertLess(nearest.max(), 1e-4)
        # ... each order is drawn about 1/6 of the time (3000 draws: sd of a share is
        # 0.0068, so 0.05 is more than 7 sd), and the mean is the expectation.
        shares = [np.mean(np.abs(out - v) < 1e-4) for v in values]
        self.assertAllClose(shares, [1 / 6] * 6, atol=0.05)
        self.assertAllClose(out.mean(), np.mean(values), atol=0.05)

    def test_gradient_matches_numeric(self):
        labels = tf.constant([[2.0, 0.0, 1.0, -1.0, 3.0]], tf.float64)
        x = tf.constant([[0.3, -0.5, 1.2, 0.7, 0.1]], tf.float64)
        theoretical, numeric = tf.test.compute_gradient(
            lambda s: losses.list_mle_loss(labels, s), [x]
        )
        self.assertAllClose(theoretical, numeric, atol=1e-6)
        self.assertEqual(theoretical[0][0, 3], 0.0)  # the padded item

    def test_large_logits_finite(self):
        labels = tf.constant([[2.0, 0.0, 1.0, -1.0, 3.0]])
        logits = tf.Variable([[1e4, -1e4, 3.0, -1e4, -1e4]])
        with tf.GradientTape() as tape:
            value = losses.ListMLELoss()(labels, logits)
        # Order 4, 0, 2, 1: [lse - (-1e4)] = 2e4, then 0 + ~0 + 0 -> about 2e4.
        self.assertAllClose(value, 2e4, rtol=1e-6)
        self.assertTrue(np.isfinite(tape.gradient(value, logits).numpy()).all())

    def test_config_and_validation(self):
        loss = losses.ListMLELoss(top_k=3, seed=11)
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        self.assertIsInstance(restored, losses.ListMLELoss)
        self.assertEqual((restored.top_k, restored.seed), (3, 11))
        for bad in (0, -1, 1.5, True):
            with self.assertRaisesRegex(ValueError, "top_k"):
                losses.ListMLELoss(top_k=bad)


class ListwiseSaveTest(tf.test.TestCase):
    def test_fit_save_reload(self):
        # One multi-output model carries every listwise loss through fit, SavedModel
        # save and load_model; evaluate reports our reduction (not Keras') and the
        # reloaded model reports the same numbers.
        compiled = {
            "softmax": losses.SoftmaxLoss(),
            "kl": losses.KLLoss(label_temperature=2.0),
            "listnet": losses.ListNetLoss(),
            "listmle": losses.ListMLELoss(top_k=3, seed=1),
        }
        refs = {
            "softmax": ref_softmax,
            "kl": lambda y, s: ref_kl(y, s, 2.0),
            "listnet": ref_listnet,
        }
        keras.utils.set_random_seed(0)
        inputs = keras.Input((3,))
        outputs = {name: keras.layers.Dense(4, name=name)(inputs) for name in compiled}
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="sgd", loss=compiled, weighted_metrics=[])
        x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
        # No ties among valid labels, so ListMLE is deterministic.
        y = np.array(
            [
                [2.0, 0.0, 1.0, 3.0],
                [0.0, 0.0, -1.0, 0.0],
                [1.0, -1.0, 0.0, 2.0],
                [-1.0, -1.0, -1.0, -1.0],
                [0.0, 1.0, 2.0, 3.0],
            ],
            np.float32,
        )
        targets = {name: y for name in compiled}
        weights = {name: WEIGHTS for name in compiled}
        model.fit(x, targets, sample_weight=weights, batch_size=5, epochs=1, verbose=0)
        result = model.evaluate(
            x, targets, sample_weight=weights, batch_size=5, verbose=0, return_dict=True
        )
        scores = model.predict(x, verbose=0)
        for name, ref in refs.items():
            per_list = [ref(a, b) for a, b in zip(y, scores[name], strict=True)]
            expected = ref_batch(per_list, WEIGHTS)
            self.assertAllClose(result[f"{name}_loss"], expected, atol=1e-5)
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
