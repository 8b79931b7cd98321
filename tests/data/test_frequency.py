"""Tests of the exact and streaming item-frequency estimates (log Q of in-batch negatives)."""

import numpy as np
import pytest

from tfrecall._backend import tf
from tfrecall.io.schema import RecallData
from tfrecall.sampling.frequency import (
    FrequencyTable,
    StreamingFrequencyEstimator,
    item_shares,
    positive_frequencies,
)


def _obj(values):
    return np.asarray(values, dtype=object)


def test_positive_frequencies_are_shares_of_the_positives():
    inter = {"user_id": _obj(["u"] * 5), "item_id": _obj(["a", "b", "a", "c", "a"]),
             "label": np.ones(5, np.float32), "positive": np.asarray([1, 1, 1, 0, 1], bool)}
    # Positives a, b, a, a: a 3/4, b 1/4, c (not positive) 0, zz unknown 0.
    np.testing.assert_allclose(positive_frequencies(RecallData(inter), _obj(["a", "b", "c", "zz"])),
                               [0.75, 0.25, 0.0, 0.0])
    # An id asked for twice reports its share twice.
    np.testing.assert_allclose(positive_frequencies(RecallData(inter), _obj(["b", "a", "b"])),
                               [0.25, 0.75, 0.25])
    none = dict(inter, positive=np.zeros(5, bool))
    with pytest.raises(ValueError, match="no positive"):
        positive_frequencies(RecallData(none), _obj(["a"]))


def test_update_follows_algorithm_2_by_hand():
    est = StreamingFrequencyEstimator(num_buckets=1 << 20, num_hashes=1, alpha=0.5,
                                      initial_gap=10.0)
    est.update(tf.constant(["a"]))  # t=1: B_a = .5 * 10 + .5 * (1 - 0) = 5.5
    np.testing.assert_allclose(est.expected_count(tf.constant(["a"])).numpy(), [1 / 5.5],
                               rtol=1e-6)
    est.update(tf.constant(["b", ""]))  # t=2: b only ("" is padding); a unchanged
    np.testing.assert_allclose(est.expected_count(tf.constant(["a"])).numpy(), [1 / 5.5],
                               rtol=1e-6)
    est.update(tf.constant([["a", "a"]]))  # t=3, a twice: c = 2, decay = .5^2 = .25,
    # B_a = .25 * 5.5 + .75 * (3 - 1) / 2 = 1.375 + .75 = 2.125
    np.testing.assert_allclose(est.log_q(tf.constant([["a"]])).numpy(), [[-np.log(2.125)]],
                               rtol=1e-6)
    # Never seen: 1 / initial_gap.
    np.testing.assert_allclose(est.expected_count(tf.constant("zz")).numpy(), 0.1, rtol=1e-6)
    assert int(est.step.numpy()) == 3


def test_collisions_only_raise_the_estimate_and_several_hashes_take_the_largest_gap():
    one = StreamingFrequencyEstimator(num_buckets=1, num_hashes=1, alpha=1.0)
    # One bucket: a and b are one stream, seen twice per step -> B = 1/2 (alpha = 1).
    for _ in range(3):
        one.update(tf.constant(["a", "b"]))
    np.testing.assert_allclose(one.expected_count(tf.constant(["a"])).numpy(), [2.0])
    # A second, collision-free array holds the true gap of 1; the max of gaps wins.
    est = StreamingFrequencyEstimator(num_buckets=1 << 20, num_hashes=2, alpha=1.0)
    est.gap.assign(tf.ones_like(est.gap))
    slots = est._slots(tf.constant(["a"])).numpy()[:, 0]
    est.gap.scatter_update(tf.IndexedSlices(tf.constant([0.5]), tf.constant([slots[0]])))
    np.testing.assert_allclose(est.expected_count(tf.constant(["a"])).numpy(), [1.0])


def _stream(est, update, probs, batch, steps, seed):
    rng = np.random.default_rng(seed)
    ids = np.asarray([f"item{k}" for k in range(len(probs))])
    for _ in range(steps):
        update(tf.constant(ids[rng.choice(len(probs), batch, p=probs)]))
    return est.expected_count(tf.constant(ids)).numpy()


def test_converges_to_the_true_expected_count_on_a_known_stream():
    probs = np.arange(1, 41, dtype=np.float64) ** -0.8
    probs /= probs.sum()
    batch = 64
    est = StreamingFrequencyEstimator(num_buckets=1 << 16, alpha=0.02)
    got = _stream(est, tf.function(est.update), probs, batch, 2500, seed=0)
    rel = got / (batch * probs) - 1.0
    # A moving average over ~1/alpha = 50 exponential gaps has about 10% noise per
    # item; over 40 items the mean relative error is unbiased and the typical one small.
    assert abs(rel.mean()) < 0.05, rel
    assert np.median(np.abs(rel)) < 0.12, rel
    # And log Q orders the items as their true frequencies do (Spearman-like check).
    assert np.corrcoef(np.log(got), np.log(probs))[0, 1] > 0.97


def test_usable_inside_a_sequential_tf_data_map():
    est = StreamingFrequencyEstimator(num_buckets=1 << 16, num_hashes=1, alpha=1.0)

    def add_log_q(ids):
        est.update(ids)
        return ids, est.log_q(ids)

    ds = tf.data.Dataset.from_tensor_slices(tf.constant([["a", "b"], ["a", "a"]])).map(add_log_q)
    out = [lq.numpy() for _, lq in ds]
    # alpha = 1: B is the last gap. Step 1: a, b first seen, gap = 1 - 0 = 1 -> count 1.
    # Step 2: a twice, gap (2 - 1) / 2 = .5 -> count 2.
    np.testing.assert_allclose(out[0], [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out[1], [np.log(2.0)] * 2, rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [({"num_buckets": 0}, "num_buckets"),
                                           ({"num_hashes": 1.5}, "num_hashes"),
                                           ({"alpha": 0.0}, "alpha"),
                                           ({"initial_gap": -1.0}, "initial_gap")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StreamingFrequencyEstimator(**kwargs)


def test_frequency_table_looks_up_exact_shares_in_a_graph():
    # Positives a, b, a, a, Am\u00e9lie: a 3/5, b 1/5, Am\u00e9lie 1/5, c never -> 0.
    table = FrequencyTable(["a", "b", "a", "a", "Am\u00e9lie"])
    ids = tf.constant([["a", "c"], ["Am\u00e9lie", "b"]])
    np.testing.assert_allclose(tf.function(table.sampling_probability)(ids).numpy(),
                               [[0.6, 0.0], [0.2, 0.2]], rtol=1e-6)
    np.testing.assert_allclose(table.log_q(tf.constant(["a"])).numpy(), [np.log(0.6)],
                               rtol=1e-6)
    ints = FrequencyTable(np.array([7, 7, 3, 7]))  # integer ids stay integers: 7 3/4, 3 1/4
    np.testing.assert_allclose(ints.sampling_probability(tf.constant([3, 7, 5])).numpy(),
                               [0.25, 0.75, 0.0])
    ids, shares = item_shares(np.array(["b", "a", "b"]))
    assert ids.tolist() == ["a", "b"] and np.allclose(shares, [1 / 3, 2 / 3])
    with pytest.raises(ValueError, match="positive_ids is empty"):
        FrequencyTable([])


def test_streaming_sampling_probability_is_the_per_draw_share():
    est = StreamingFrequencyEstimator(num_buckets=1 << 16, num_hashes=1, alpha=1.0)
    est.update(tf.constant(["a", "a", "a", "b"]))  # alpha = 1: a counted 3, b 1 per step
    # q = expected count / batch: a 3/4, b 1/4 (TFRS' candidate_sampling_probability).
    np.testing.assert_allclose(
        est.sampling_probability(tf.constant(["a", "b"]), batch_size=4).numpy(), [0.75, 0.25],
        rtol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        est.sampling_probability(tf.constant(["a"]), batch_size=0)
