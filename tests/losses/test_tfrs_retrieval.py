"""tfrecall losses inside `tfrs.tasks.Retrieval`: the same value as in tfrecall's own model.

Reference: `TwoTowerModel.evaluate` (in-batch negatives, accidental hits masked, log Q
subtracted) on one batch; the TFRS side scores the same towers' embeddings with the
task's own temperature, log Q correction and accidental-hit removal.
"""

import numpy as np
import tensorflow_recommenders as tfrs
from absl.testing import parameterized

from tfrecall import losses
from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.losses.lists import MIN_FLOAT
from tfrecall.losses.tfrs_retrieval import tfrs_labels
from tfrecall.models import TwoTowerModel
from tfrecall.sampling.frequency import FrequencyTable

USERS = np.array([f"u{i}" for i in range(12)], object)
ITEMS = np.array([f"i{j}" for j in range(7)], object)
B = 10
TEMPERATURE = 0.2

LOSSES = [
    ("softmax", losses.SoftmaxLoss),
    ("sampled_softmax", losses.SampledSoftmaxLoss),
    ("nce", losses.NCELoss),
    ("negative_sampling", losses.NegativeSamplingLoss),
    ("bpr", losses.BPRLoss),
    ("triplet_hinge", losses.TripletHingeLoss),
    ("list_net", losses.ListNetLoss),
    ("kl", losses.KLLoss),
    ("list_mle_top1", lambda **kw: losses.ListMLELoss(top_k=1, **kw)),  # no random ties
    ("pointwise_bce", losses.PointwiseBCELoss),
]


def make_model():
    keras.utils.set_random_seed(4)
    model = TwoTowerModel.from_specs(
        [FeatureSpec("user_id", "id", embedding_dim=8)],
        [FeatureSpec("item_id", "id", embedding_dim=8)],
        tower=TowerConfig(hidden_units=(16,), output_dim=8), temperature=TEMPERATURE,
        in_batch_negatives=True)
    model.adapt({"user_id": USERS}, {"item_id": ITEMS})
    return model


def batch(seed):
    """One in-batch batch: 7 items over 10 rows, so accidental hits are certain."""
    rng = np.random.default_rng(seed)
    items = rng.choice(ITEMS, B).astype(str)
    probs = rng.uniform(0.05, 0.5, B).astype(np.float32)  # <= 1: TFRS would clip above
    x = {"user": {"user_id": rng.choice(USERS, B).astype(str)},
         "items": {"item_id": items[:, None]},
         "log_q": np.log(probs)[:, None]}
    weights = rng.uniform(0.5, 2.0, B).astype(np.float32)
    return x, np.ones((B, 1), np.float32), weights, probs


def tfrs_loss(model, x, weights, probs, loss, **task_kwargs):
    """The TFRS task's loss on the model's towers (the `compute_loss` of a tfrs.Model)."""
    task = tfrs.tasks.Retrieval(loss=loss, temperature=TEMPERATURE, **task_kwargs)
    queries = model.user_tower(x["user"], training=False)
    candidates = model.item_tower({"item_id": x["items"]["item_id"][:, 0]}, training=False)
    return task(queries, candidates, sample_weight=weights,
                candidate_sampling_probability=probs, candidate_ids=x["items"]["item_id"][:, 0],
                compute_metrics=False, compute_batch_metrics=False)


class TFRSRetrievalLossTest(tf.test.TestCase, parameterized.TestCase):

    def test_tfrs_masks_with_tfrecalls_constant(self):
        self.assertEqual(float(tfrs.tasks.retrieval.MIN_FLOAT), MIN_FLOAT)
        self.assertEqual(float(tfrs.layers.loss.MIN_FLOAT), MIN_FLOAT)

    # Seeds and reductions alternate over the losses (each loss reduces alike).
    @parameterized.named_parameters(*[(f"{n}_{i % 2}", cls, i % 2, ("auto", "sum")[i % 2])
                                      for i, (n, cls) in enumerate(LOSSES)])
    def test_same_value_as_in_tfrecalls_model(self, make_loss, seed, reduction):
        model = make_model()
        x, y, weights, probs = batch(seed)
        loss = make_loss(reduction=reduction)
        model.compile(optimizer="sgd", loss=loss)
        expected = model.test_on_batch(x, y, sample_weight=weights, return_dict=True)["loss"]
        got = tfrs_loss(model, x, weights, probs, losses.TFRSRetrievalLoss(loss),
                        remove_accidental_hits=True)
        self.assertAllClose(got, expected, rtol=1e-5, atol=1e-6)
        # The batch does hold accidental hits: without removing them the value moves.
        ignored = tfrs_loss(model, x, weights, probs, losses.TFRSRetrievalLoss(loss))
        self.assertNotAllClose(ignored, expected, rtol=1e-4)

    @parameterized.named_parameters(("bpr", losses.BPRLoss), ("list_net", losses.ListNetLoss),
                                    ("kl", losses.KLLoss))
    def test_unwrapped_loss_counts_tfrs_masked_slots(self, cls):
        # What the adapter is for: TFRS masks hits by logit, which softmax (and NEG's
        # softplus(MIN_FLOAT) = 0 term) ignore, but pair counts and soft targets do not.
        model = make_model()
        x, y, weights, probs = batch(0)
        model.compile(optimizer="sgd", loss=cls())
        expected = model.test_on_batch(x, y, sample_weight=weights, return_dict=True)["loss"]
        raw = tfrs_loss(model, x, weights, probs, cls(), remove_accidental_hits=True)
        self.assertNotAllClose(raw, expected, rtol=1e-3)

    def test_sum_reduction_is_tfrs_default_loss(self):
        model = make_model()
        x, _, weights, probs = batch(2)
        default = tfrs_loss(model, x, weights, probs, None, remove_accidental_hits=True)
        summed = tfrs_loss(model, x, weights, probs,
                           losses.TFRSRetrievalLoss(losses.SoftmaxLoss(reduction="sum")),
                           remove_accidental_hits=True)
        mean = tfrs_loss(model, x, weights, probs, losses.TFRSRetrievalLoss(losses.SoftmaxLoss()),
                         remove_accidental_hits=True)
        self.assertAllClose(summed, default, rtol=1e-5)
        self.assertAllClose(mean * weights.sum(), default, rtol=1e-5)

    def test_score_mask_slots_are_padding(self):
        # labels [[1, 0, 0]], logits [[2, 1, 3]], the third masked by TFRS' score_mask:
        # ListNet targets softmax([1, 0]) = [e/(e+1), 1/(e+1)] over the two valid slots,
        # log softmax([2, 1]) = [-log(1 + e^-1), -log(1 + e)].
        q = tf.constant([[1.0, 0.0, 0.0]])
        c = tf.constant([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
        task = tfrs.tasks.Retrieval(loss=losses.TFRSRetrievalLoss(losses.ListNetLoss()))
        got = task(q, c, score_mask=tf.constant([[True, True, False]]), compute_metrics=False)
        t = np.array([np.e, 1.0]) / (np.e + 1)
        expected = t[0] * np.log1p(np.exp(-1.0)) + t[1] * np.log1p(np.e)
        self.assertAllClose(got, expected, rtol=1e-6)
        self.assertAllEqual(tfrs_labels([[1.0, 0.0, 0.0]], [[2.0, MIN_FLOAT + 5.0, 1.0]]),
                            [[1.0, -1.0, 0.0]])

    def test_inside_a_tfrs_model_fit(self):
        # A tfrs.Model trains with the wrapped loss and FrequencyTable's log Q in its graph.
        model = make_model()
        x, _, weights, _ = batch(3)
        table = FrequencyTable(x["items"]["item_id"][:, 0])

        class Retrieval(tfrs.Model):
            def __init__(self):
                super().__init__()
                self.towers, self.table = model, table
                self.task = tfrs.tasks.Retrieval(
                    loss=losses.TFRSRetrievalLoss(losses.SampledSoftmaxLoss()),
                    temperature=TEMPERATURE, remove_accidental_hits=True)

            def compute_loss(self, features, training=False):
                ids = features["items"]["item_id"][:, 0]
                return self.task(
                    self.towers.user_tower(features["user"], training=training),
                    self.towers.item_tower({"item_id": ids}, training=training),
                    candidate_sampling_probability=self.table.sampling_probability(ids),
                    candidate_ids=ids, compute_metrics=False)

        tfrs_model = Retrieval()
        tfrs_model.compile(optimizer=keras.optimizers.SGD(0.5))
        data = tf.data.Dataset.from_tensors({"user": x["user"], "items": x["items"]})
        before = tfrs_model.evaluate(data, return_dict=True, verbose=0)["loss"]
        # The same value from tfrecall's model with log_q = log(exact share).
        shares = table.sampling_probability(x["items"]["item_id"][:, 0]).numpy()
        model.compile(optimizer="sgd", loss=losses.SampledSoftmaxLoss())
        x_q = dict(x, log_q=np.log(shares)[:, None])
        reference = model.test_on_batch(x_q, np.ones((B, 1), np.float32), return_dict=True)
        self.assertAllClose(before, reference["loss"], rtol=1e-5)
        tfrs_model.fit(data.repeat(5), verbose=0)
        self.assertLess(tfrs_model.evaluate(data, return_dict=True, verbose=0)["loss"], before)

    def test_config_round_trip(self):
        wrapped = losses.TFRSRetrievalLoss(losses.KLLoss(label_temperature=2.0, reduction="sum"))
        restored = keras.losses.deserialize(keras.losses.serialize(wrapped))
        self.assertIsInstance(restored, losses.TFRSRetrievalLoss)
        self.assertIsInstance(restored.loss, losses.KLLoss)
        self.assertEqual(restored.get_config(), wrapped.get_config())
        self.assertEqual(restored.loss.label_temperature, 2.0)
        self.assertEqual(restored.reduction, "sum")
        self.assertTrue(losses.TFRSRetrievalLoss(losses.NCELoss()).requires_log_q)

    def test_bad_loss_is_named(self):
        with self.assertRaisesRegex(ValueError, "loss must be a tfrecall loss"):
            losses.TFRSRetrievalLoss(keras.losses.CategoricalCrossentropy())


if __name__ == "__main__":
    tf.test.main()
