"""Mixed negative sampling: one softmax over in-batch, per-row and shared negatives."""

import numpy as np
import pytest

from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.io.schema import RecallData
from tfrecall.losses import SoftmaxLoss
from tfrecall.models import TwoTowerModel
from tfrecall.models.mixed import mixed_logits_and_labels, mixed_negatives_logits
from tfrecall.sampling.config import SamplingConfig
from tfrecall.sampling.dataset import TrainingSamples
from tfrecall.sampling.features import FeatureStore


def _c(values):
    return tf.constant(np.asarray(values, np.float32))


def test_blocks_log_q_and_accidental_hits_by_hand():
    logits, labels = mixed_negatives_logits(
        _c([[1, 0], [0, 1]]), _c([[1, 0], [0, 1]]), tf.constant(["a", "b"]),
        row_embeddings=_c([[[0, 1]], [[1, 1]]]), row_ids=tf.constant([["b"], ["b"]]),
        shared_embeddings=_c([[2, 0], [0, 3]]), shared_ids=tf.constant(["a", "c"]),
        log_q=_c([[0.1, 0.3], [0.2, 0.4]]), shared_log_q=_c([0.5, 0.6]), temperature=0.5)
    # In-batch: u.p / .5 = 2 I, minus the column's positive log Q (.1, .2):
    #   [[1.9, -.2], [-.1, 1.8]].
    # Row: u0.(0,1) = 0 -> 0 - .3 = -.3; u1.(1,1) = 1 -> 2 - .4 = 1.6.
    # Shared: u.s / .5 = [[4, 0], [0, 6]] minus (.5, .6) -> [[3.5, -.6], [-.5, 5.4]].
    np.testing.assert_allclose(logits.numpy(), [[1.9, -0.2, -0.3, 3.5, -0.6],
                                                [-0.1, 1.8, 1.6, -0.5, 5.4]], rtol=1e-6)
    # Row 1's own negative is "b", its positive: masked. Row 0's shared "a": masked.
    np.testing.assert_array_equal(labels.numpy(), [[1, 0, 0, -1, 0], [0, 1, -1, 0, 0]])


def test_same_item_twice_in_the_batch_is_masked_off_the_diagonal():
    _, labels = mixed_negatives_logits(_c([[1, 0], [0, 1], [1, 1]]),
                                       _c([[1, 0], [0, 1], [1, 1]]), tf.constant(["a", "a", "b"]))
    np.testing.assert_array_equal(labels.numpy(), [[1, -1, 0], [-1, 1, 0], [0, 0, 1]])


def test_row_labels_minus_one_stay_masked_and_no_ids_means_no_masking():
    logits, labels = mixed_negatives_logits(
        _c([[1, 0]]), _c([[1, 0]]), row_embeddings=_c([[[1, 0], [0, 1]]]),
        row_labels=_c([[0, -1]]), shared_embeddings=_c([[1, 0]]))
    # Without ids nothing is recognised as an accidental hit (even the identical
    # shared item); the sampler's -1 is kept.
    np.testing.assert_array_equal(labels.numpy(), [[1, 0, -1, 0]])
    np.testing.assert_allclose(logits.numpy(), [[1, 1, 0, 1]])
    with pytest.raises(ValueError, match="temperature"):
        mixed_negatives_logits(_c([[1, 0]]), _c([[1, 0]]), temperature=0.0)


def test_a_masked_hit_gets_no_softmax_mass():
    # Row 0's shared negative is its own positive with a huge logit: masked, so the loss
    # is the softmax over the two in-batch columns only (scores 2 and 0):
    # -log(e^2 / (e^2 + e^0)) = 0.1269.
    logits, labels = mixed_negatives_logits(
        _c([[1, 0], [0, 1]]), _c([[1, 0], [0, 1]]), tf.constant(["a", "b"]),
        shared_embeddings=_c([[50, 0]]), shared_ids=tf.constant(["a"]), temperature=0.5)
    loss = SoftmaxLoss(reduction="none")(labels[:1], logits[:1]).numpy()
    np.testing.assert_allclose(loss, [-np.log(np.e**2 / (np.e**2 + 1.0))], rtol=1e-5)


USERS = {"user_id": np.array(["u1", "u2", "u3"], object)}
ITEMS = {"item_id": np.array(list("abcdef"), object)}


class _Mixed(TwoTowerModel):
    """What TwoTowerModel.logits_and_labels does once the lead wires mixed negatives in."""

    def logits_and_labels(self, x, y, training=None):
        return mixed_logits_and_labels(self, x, y, training)


def _model(cls):
    keras.utils.set_random_seed(2)
    model = cls.from_specs([FeatureSpec("user_id", "id", embedding_dim=4)],
                           [FeatureSpec("item_id", "id", embedding_dim=4)],
                           tower=TowerConfig(hidden_units=(), output_dim=4),
                           in_batch_negatives=True)
    model.adapt(USERS, ITEMS)
    return model


def _data():
    inter = {"user_id": np.array(["u1", "u2", "u3", "u1"], object),
             "item_id": np.array(["a", "b", "a", "c"], object),
             "label": np.ones(4, np.float32), "positive": np.ones(4, bool)}
    return RecallData(inter, USERS, ITEMS)


def test_plain_in_batch_batches_match_the_models_own_logits():
    model = _model(TwoTowerModel)
    data = _data()
    samples = TrainingSamples(data, ITEMS["item_id"], FeatureStore(None, "user_id"),
                              FeatureStore(None, "item_id"), SamplingConfig(shuffle=False), 4)
    x, y = next(iter(samples.dataset))
    want = model.logits_and_labels(x, y)
    got = mixed_logits_and_labels(model, x, y)
    np.testing.assert_allclose(got[0].numpy(), want[0].numpy(), rtol=1e-5)
    np.testing.assert_array_equal(got[1].numpy(), want[1].numpy())


def test_fit_on_mixed_batches():
    model = _model(_Mixed)
    data = _data()
    samples = TrainingSamples(data, ITEMS["item_id"], FeatureStore(None, "user_id"),
                              FeatureStore(None, "item_id"),
                              SamplingConfig(negatives=("in_batch", "uniform", "hard"),
                                             num_negatives=3, easy_hard_ratio=1.0), 4)
    x, y = next(iter(samples.dataset))
    logits, labels = model.logits_and_labels(x, y)
    h = x["items"]["item_id"].shape[1] - 1
    assert logits.shape == (4, 4 + h + 3) and labels.shape == logits.shape
    # Rows 0 and 2 share item a off the diagonal: some in-batch column is masked.
    assert (labels.numpy()[:, :4] == -1).sum() >= 2
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=SoftmaxLoss())
    history = model.fit(samples.dataset, epochs=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
