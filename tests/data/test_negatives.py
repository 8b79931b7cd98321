"""Tests of the negative samplers: distributions, log Q, pools, rejection, mining."""

import numpy as np
import pytest

from tfrecall import ids
from tfrecall._backend import tf
from tfrecall.ids import catalogue_index, positive_counts
from tfrecall.io.schema import RecallData
from tfrecall.sampling import negatives as neg
from tfrecall.sampling.config import check_window
from tfrecall.sampling.requests import RankerLists


def _obj(values):
    return np.asarray(values, dtype=object)


def _seed(a, b=0):
    return tf.constant([a, b], tf.int64)


def test_catalogue_index_is_position_or_minus_one():
    cat = _obj(["b", "a", "c"])
    np.testing.assert_array_equal(catalogue_index(cat, _obj([["a", "zz"], ["c", "b"]])),
                                  [[1, -1], [2, 0]])
    np.testing.assert_array_equal(catalogue_index(_obj([]), _obj(["a"])), [-1])


def test_catalogue_index_compares_as_str_in_chunks(monkeypatch):
    monkeypatch.setattr(ids, "_CHUNK", 2)  # several lookup passes
    cat = _obj(["5", "x", "a", "a", np.str_("1.5")])
    query = _obj([5, b"x", "a", 1.5, "zz", np.str_("x"), None])
    # numpy's str forms (b"x" -> "x"); a repeated catalogue id gives its first position.
    np.testing.assert_array_equal(catalogue_index(cat, query), [0, 1, 2, 4, -1, 1, -1])
    np.testing.assert_array_equal(catalogue_index(cat, np.array([[5], [7]])), [[0], [-1]])
    assert catalogue_index(cat, "a").shape == ()


def test_vocab_codes_extend_the_known_ids_by_first_appearance():
    vocab, code = ids.vocab_codes(_obj(["a", "b"]), _obj([["z", "b"], ["y", "z"]]))
    assert vocab.tolist() == ["a", "b", "z", "y"] and vocab.dtype == object
    np.testing.assert_array_equal(code, [[2, 1], [3, 2]])
    first, code = ids.first_appearance_codes(_obj(["r2", "r1", "r2", 3, "3", "r0"]))
    np.testing.assert_array_equal(first, [0, 1, 3, 5])
    np.testing.assert_array_equal(code, [0, 1, 0, 2, 2, 3])


def test_vocab_codes_across_chunks_and_non_str_ids(monkeypatch):
    monkeypatch.setattr(ids, "_CHUNK", 2)  # new ids first seen in different chunks
    values = _obj(["q", 5, "a", "5", b"x", "q", "x", 7.0, "a"])
    vocab, code = ids.vocab_codes(_obj(["a"]), values)
    # As str: 5 -> "5", b"x" -> "x" (numpy's astype(str)), 7.0 -> "7.0".
    assert vocab.tolist() == ["a", "q", "5", "x", "7.0"]
    np.testing.assert_array_equal(code, [1, 2, 0, 2, 3, 1, 3, 4, 0])


def test_rows_give_the_codes_of_the_selected_ids_without_copying_them(monkeypatch):
    monkeypatch.setattr(ids, "_CHUNK", 2)  # a gather per chunk
    values = _obj(["q", 5, "a", "5", b"x", "q", "x", 7.0, "a"])
    cat = _obj(["a", "x", "5"])
    mask = np.asarray([1, 0, 1, 1, 1, 0, 0, 1, 1], bool)
    for rows, picked in ((mask, [0, 2, 3, 4, 7, 8]), (np.asarray([8, 0, 4, 4]), [8, 0, 4, 4]),
                         (np.zeros(0, np.int64), [])):
        # By hand, on the ids themselves: a 0, x 1, 5 2 (5 and "5" alike, b"x" is "x").
        by_hand = {"a": 0, "x": 1, "5": 2, 5: 2, b"x": 1}
        expect = [by_hand.get(values[r], -1) for r in picked]
        np.testing.assert_array_equal(catalogue_index(cat, values, rows), expect)
        vocab, code = ids.vocab_codes(cat, values, rows)
        ref_vocab, ref_code = ids.vocab_codes(cat, values[picked])
        assert vocab.tolist() == ref_vocab.tolist()
        np.testing.assert_array_equal(code, ref_code)
    with pytest.raises(ValueError, match="boolean rows mask"):
        catalogue_index(cat, values, mask[:3])
    with pytest.raises(ValueError, match="1-D array of ids"):
        catalogue_index(cat, values.reshape(3, 3), [0])
    with pytest.raises(ValueError, match="integer positions"):
        catalogue_index(cat, values, np.asarray([0.5]))


def test_positive_counts_over_the_catalogue():
    inter = {"user_id": _obj(["u", "u", "v", "v", "w"]), "item_id": _obj(["a", "b", "a", "q", "b"]),
             "label": np.ones(5, np.float32), "positive": np.asarray([1, 1, 1, 1, 0], bool)}
    # a: 2 positives, b: 1 (the w row is not positive), c: 0; q is off-catalogue.
    np.testing.assert_array_equal(positive_counts(RecallData(inter), _obj(["a", "b", "c"])),
                                  [2, 1, 0])


def test_uniform_log_q_is_minus_log_n_and_draws_cover_the_catalogue():
    n = 7
    sampler = neg.CategoricalSampler.uniform(n)
    idx = tf.range(n, dtype=tf.int64)
    np.testing.assert_allclose(np.log(sampler.prob(idx).numpy()), -np.log(7.0) * np.ones(n))
    draws = sampler.sample([70000], _seed(1)).numpy()
    freq = np.bincount(draws, minlength=n) / len(draws)
    # Binomial std of each share: sqrt(p (1 - p) / 70000) ~ 0.0013; 5 sigma.
    np.testing.assert_allclose(freq, np.full(n, 1 / 7), atol=0.0065)


def test_popularity_log_q_and_draw_frequencies_follow_count_to_the_alpha():
    counts = np.asarray([1, 4, 0, 9, 16])
    sampler = neg.CategoricalSampler.popularity(counts, alpha=0.5)
    # count^0.5 = 1, 2, 0, 3, 4; sum 10 -> Q = .1, .2, 0, .3, .4.
    expected = np.asarray([0.1, 0.2, 0.0, 0.3, 0.4])
    q = sampler.prob(tf.constant([0, 1, 3, 4], tf.int64)).numpy()
    np.testing.assert_allclose(np.log(q), np.log(expected[[0, 1, 3, 4]]), rtol=1e-12)
    draws = sampler.sample([100000], _seed(2)).numpy()
    freq = np.bincount(draws, minlength=5) / len(draws)
    assert freq[2] == 0.0  # an item never positive is never drawn
    np.testing.assert_allclose(freq, expected, atol=0.008)  # 5 sigma at p = .4: 0.0077


def test_popularity_default_alpha_is_three_quarters():
    counts = np.asarray([1, 16])
    q = neg.CategoricalSampler.popularity(counts).probs
    # 1^.75 = 1, 16^.75 = 8 -> 1/9, 8/9.
    np.testing.assert_allclose(q, [1 / 9, 8 / 9])


def test_mixture_is_the_average_and_unknown_index_gets_the_floor():
    mix = neg.CategoricalSampler.mixture([neg.CategoricalSampler.uniform(4),
                                          neg.CategoricalSampler([0, 0, 1, 3])])
    np.testing.assert_allclose(mix.probs, [0.125, 0.125, 0.25, 0.5])  # (1/4 + p) / 2
    # -1 (an id outside the catalogue) and Q = 0 items get 0.01 / N (finite log Q).
    only = neg.CategoricalSampler([0.0, 1.0])
    np.testing.assert_allclose(only.prob(tf.constant([-1, 0, 1], tf.int64)).numpy(),
                               [0.005, 0.005, 1.0])


@pytest.mark.parametrize("probs, match", [([], "empty"), ([0.0, 0.0], "weight 0"),
                                          ([1.0, -1.0], ">= 0"), ([np.nan], "finite")])
def test_categorical_bad_weights(probs, match):
    with pytest.raises(ValueError, match=match):
        neg.CategoricalSampler(np.asarray(probs, np.float64))


def _pool():
    # Groups: "r1" -> {0, 2, 4}, "r2" -> {}, "r3" -> {5}.
    return neg.NegativePool(_obj(["r1", "r2", "r3"]), "request", np.asarray([0, 3, 3, 4]),
                            np.asarray([0, 2, 4, 5]))


def test_pool_from_pairs_groups_and_dedups():
    pool = neg.NegativePool.from_pairs(_obj(["x", "y", "x", "x", "y"]),
                                       np.asarray([3, 1, 3, 0, -1]), "user")
    assert pool.keys.tolist() == ["x", "y"]
    assert pool.sizes.tolist() == [2, 1]
    assert sorted(pool.items[:2].tolist()) == [0, 3] and pool.items[2] == 1
    np.testing.assert_array_equal(pool.group_of(_obj(["y", "zz", "x"])), [1, -1, 0])


def test_pool_sampler_draws_uniformly_inside_the_rows_group():
    sampler = neg.PoolSampler(_pool())
    groups = tf.constant([0, 1, 2, -1], tf.int64)
    np.testing.assert_array_equal(sampler.sizes(groups).numpy(), [3, 0, 1, 0])
    draws = sampler.sample(groups, 30000, _seed(3)).numpy()
    assert set(draws[0]) == {0, 2, 4}
    np.testing.assert_allclose(np.bincount(draws[0], minlength=5)[[0, 2, 4]] / 30000, 1 / 3,
                               atol=0.015)
    assert set(draws[1]) == {-1} and set(draws[3]) == {-1}  # empty / no group
    assert set(draws[2]) == {5}


def test_positive_set_membership():
    # user 0: items 1, 3; user 1: item 0; a -1 item is ignored.
    ps = neg.PositiveSet(np.asarray([0, 0, 1, 1]), np.asarray([1, 3, 0, -1]), num_items=4)
    got = ps.contains(tf.constant([0, 1], tf.int64), tf.constant([[0, 1, 3, -1], [0, 1, 2, 3]],
                                                                   tf.int64))
    np.testing.assert_array_equal(got.numpy(), [[False, True, True, False],
                                                [True, False, False, False]])


def test_mix_rejects_user_positives_and_masks_what_cannot_be_avoided():
    n = 6
    # user 0 has items 0..3, user 1 has all 6 (no valid negative exists).
    codes = np.asarray([0] * 4 + [1] * 6)
    items = np.asarray([0, 1, 2, 3] + list(range(6)))
    mix = neg.NegativeMix(neg.CategoricalSampler.uniform(n),
                          positives=neg.PositiveSet(codes, items, n))
    draw = mix.sample(50, tf.constant([0, 1], tf.int64), tf.constant([-1, -1], tf.int64), _seed(4))
    got, valid = draw.items.numpy(), draw.valid.numpy()
    assert set(got[0]) <= {4, 5} and valid[0].all()
    assert not valid[1].any()  # every slot of user 1 is masked
    # Uniform over N: k * Q = 50 / 6 per slot.
    np.testing.assert_allclose(draw.expected_count.numpy(), np.full((2, 50), 50 / 6))


def test_mix_hard_share_and_expected_counts():
    n = 10
    mix = neg.NegativeMix(neg.CategoricalSampler.uniform(n), neg.PoolSampler(_pool()),
                          hard_fraction=0.25)
    groups = tf.constant([0] * 200 + [1] * 200, tf.int64)
    draw = mix.sample(20, tf.zeros([400], tf.int64), groups, _seed(5))
    is_hard = draw.is_hard.numpy()
    assert abs(is_hard[:200].mean() - 0.25) < 0.03  # 4000 slots: std 0.007
    assert not is_hard[200:].any()  # group 1's pool is empty: the easy fallback
    assert set(draw.items.numpy()[:200][is_hard[:200]]) <= {0, 2, 4}
    counts = draw.expected_count.numpy()
    # Group 0, hard slot: 20 * (0.75 / 10 + 0.25 / 3) = 3.1667; easy slot: 20 * 0.075 = 1.5.
    np.testing.assert_allclose(counts[:200][is_hard[:200]], 20 * (0.075 + 0.25 / 3))
    np.testing.assert_allclose(counts[:200][~is_hard[:200]], 1.5)
    np.testing.assert_allclose(counts[200:], 20 * 0.1)  # no pool: plain uniform


def test_mix_is_deterministic_in_its_seed():
    mix = neg.NegativeMix(neg.CategoricalSampler.uniform(1000))
    args = (8, tf.zeros([4], tf.int64), tf.fill([4], tf.constant(-1, tf.int64)))
    a = mix.sample(*args, _seed(7, 1)).items.numpy()
    b = mix.sample(*args, _seed(7, 1)).items.numpy()
    c = mix.sample(*args, _seed(7, 2)).items.numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_ranker_window_pool_takes_ranks_lo_to_hi():
    rl = RankerLists(_obj(["r1", "r2"]), _obj(["u1", "u2"]), _obj(["a", "b", "c", "d", "zz"]),
                     np.asarray([[0, 1, 2, 3, 4], [3, 2, -1, -1, -1]], np.int32),
                     np.asarray([[5, 4, 3, 2, 1], [2, 1, np.nan, np.nan, np.nan]], np.float32))
    catalogue = _obj(["d", "c", "b", "a"])  # zz is not in it
    pool = neg.ranker_window_pool(rl, catalogue, window=(1, 5))
    # r1 ranks 1..4: b, c, d, zz (dropped) -> catalogue 2, 1, 0; r2 rank 1: c -> 1.
    assert pool.keys.tolist() == ["r1", "r2"] and pool.key_kind == "request"
    assert pool.items[pool.offsets[0]:pool.offsets[1]].tolist() == [2, 1, 0]
    assert pool.items[pool.offsets[1]:pool.offsets[2]].tolist() == [1]
    assert neg.ranker_window_pool(rl, catalogue, window=(2, 4)).sizes.tolist() == [2, 0]


def test_exposure_pool_keeps_shown_but_not_clicked_items():
    inter = {"user_id": _obj(["u", "u", "u", "v"]), "item_id": _obj(["a", "b", "c", "a"]),
             "label": np.ones(4, np.float32), "positive": np.asarray([1, 0, 0, 0], bool),
             "request_id": _obj(["r1", "r1", "r2", "r3"])}
    data = RecallData(inter)
    cat = _obj(["a", "b", "c"])
    by_request = neg.exposure_pool(data, cat, "request")
    assert by_request.keys.tolist() == ["r1", "r2", "r3"]
    assert by_request.items.tolist() == [1, 2, 0]
    by_user = neg.exposure_pool(data, cat, "user")
    assert by_user.keys.tolist() == ["u", "v"] and by_user.sizes.tolist() == [2, 1]
    with pytest.raises(ValueError, match="by must be"):
        neg.exposure_pool(data, cat, "session")


def test_mine_hard_negatives_takes_the_model_ranks_and_skips_positives():
    users = np.asarray([[1.0, 0.0], [0.0, 1.0]], np.float32)
    # Scores for user u: item k scores 10 - k (best first: i0, i1, ...); user v: k.
    items = np.stack([10.0 - np.arange(6), np.arange(6.0)], axis=1).astype(np.float32)
    catalogue = _obj([f"i{k}" for k in range(6)])
    pool = neg.mine_hard_negatives(users, items, _obj(["u", "v"]), catalogue, window=(1, 4))
    # u: ranks 1..3 = i1, i2, i3; v (best i5): i4, i3, i2.
    assert pool.key_kind == "user" and pool.keys.tolist() == ["u", "v"]
    assert sorted(pool.items[:3].tolist()) == [1, 2, 3]
    assert sorted(pool.items[3:].tolist()) == [2, 3, 4]
    inter = {"user_id": _obj(["u", "v"]), "item_id": _obj(["i2", "i4"]),
             "label": np.ones(2, np.float32), "positive": np.ones(2, bool)}
    pool = neg.mine_hard_negatives(users, items, _obj(["u", "v"]), catalogue, window=(1, 4),
                                   exclude=RecallData(inter))
    assert sorted(pool.items[:2].tolist()) == [1, 3] and sorted(pool.items[2:].tolist()) == [2, 3]
    with pytest.raises(ValueError, match="same D"):
        neg.mine_hard_negatives(users, items[:, :1], _obj(["u", "v"]), catalogue)


@pytest.mark.parametrize("window", [(5, 5), (-1, 3), "100", (1, 2, 3)])
def test_bad_window(window):
    with pytest.raises(ValueError, match="hard_negative_window"):
        check_window(window)
