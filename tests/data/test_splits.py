"""Tests of the train/test splits."""

import numpy as np
import pytest

from tfrecall.data.splits import random_split, temporal_split
from tfrecall.io.schema import RecallData


def _data(n, timestamps=None, with_time=True):
    inter = {
        "user_id": np.asarray([f"u{k % 7}" for k in range(n)], dtype=object),
        # Unique item per row, so a row is recognised by its item id.
        "item_id": np.asarray([f"i{k}" for k in range(n)], dtype=object),
        "label": np.ones(n, np.float32),
        "positive": np.ones(n, bool),
    }
    if with_time:
        ts = np.arange(n) if timestamps is None else np.asarray(timestamps)
        inter["timestamp"] = ts.astype(np.int64)
    users = {"user_id": np.asarray([f"u{k}" for k in range(7)], dtype=object),
             "age": np.arange(7, dtype=np.float32)}
    return RecallData(inter, users=users, name="toy")


def _items(d):
    return d.interactions["item_id"].tolist()


@pytest.mark.parametrize("n, fraction, num_test", [(100, 0.2, 20), (10, 0.25, 2), (3, 0.5, 2)])
def test_random_split_sizes_and_disjointness(n, fraction, num_test):
    # round(10 * 0.25) = round(2.5) = 2 (banker's rounding); round(3 * 0.5) = round(1.5) = 2.
    train, test = random_split(_data(n), test_fraction=fraction, seed=42)
    assert test.num_interactions == num_test
    assert train.num_interactions == n - num_test
    assert set(_items(train)).isdisjoint(_items(test))
    assert sorted(_items(train) + _items(test)) == sorted(_items(_data(n)))
    # Rows keep their original order within each side.
    assert _items(train) == sorted(_items(train), key=lambda s: int(s[1:]))
    assert train.name == "toy/train" and test.name == "toy/test"
    # The feature tables stay whole on both sides.
    assert train.users["user_id"].tolist() == test.users["user_id"].tolist() == [
        f"u{k}" for k in range(7)]


def test_random_split_is_seeded():
    data = _data(200)
    a = _items(random_split(data, seed=42)[1])
    assert a == _items(random_split(data, seed=42)[1])
    assert a != _items(random_split(data, seed=43)[1])


def test_random_split_matches_numpy_permutation_protocol():
    # Reference: the first 20% of np.random.default_rng(42).permutation(n) are test rows.
    data = _data(50)
    expected = sorted(f"i{k}" for k in np.random.default_rng(42).permutation(50)[:10])
    assert sorted(_items(random_split(data, 0.2, seed=42)[1])) == expected


def test_temporal_split_cuts_at_a_global_time():
    train, test = temporal_split(_data(10), test_fraction=0.3)
    # Timestamps 0..9, 3 test rows: the cut is 7.
    assert _items(test) == ["i7", "i8", "i9"]
    assert _items(train) == [f"i{k}" for k in range(7)]


def test_temporal_split_sends_ties_at_the_cut_to_test():
    # n=10, 2 test rows wanted: the cut is the sorted timestamp at position 8, i.e. 4;
    # all three rows at time 4 go to test.
    ts = [4, 1, 2, 3, 4, 1, 2, 3, 3, 4]
    train, test = temporal_split(_data(10, ts), test_fraction=0.2)
    assert sorted(_items(test)) == ["i0", "i4", "i9"]
    assert train.interactions["timestamp"].max() < test.interactions["timestamp"].min()


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, "0.2", None, True])
def test_bad_fraction_raises(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        random_split(_data(10), test_fraction=fraction)
    with pytest.raises(ValueError, match="test_fraction"):
        temporal_split(_data(10), test_fraction=fraction)


def test_empty_side_raises():
    # round(3 * 0.1) = 0 test rows.
    with pytest.raises(ValueError, match="non-empty"):
        random_split(_data(3), test_fraction=0.1)
    with pytest.raises(ValueError, match="non-empty"):
        temporal_split(_data(3), test_fraction=0.1)
    # Every row at one time: the cut sends everything to test.
    with pytest.raises(ValueError, match="non-empty"):
        temporal_split(_data(5, [3, 3, 3, 3, 3]), test_fraction=0.2)


def test_temporal_split_needs_timestamps():
    with pytest.raises(ValueError, match="timestamp"):
        temporal_split(_data(10, with_time=False))


def _timed_log():
    from tfrecall.io.schema import RecallData

    # u1: positives at t=1, 3, 5 and an impression at t=9; u2: a single positive; u3: two.
    users = np.array(["u1", "u1", "u1", "u1", "u2", "u3", "u3"], object)
    items = np.array(["a", "b", "c", "d", "a", "b", "c"], object)
    ts = np.array([5, 1, 3, 9, 4, 7, 2], np.int64)
    positive = np.array([True, True, True, False, True, True, True])
    return RecallData({"user_id": users, "item_id": items, "timestamp": ts,
                       "label": positive.astype(np.float32), "positive": positive})


def test_leave_last_n_split_holds_out_each_users_latest_positives():
    from tfrecall.data.splits import leave_last_n_split

    train, test = leave_last_n_split(_timed_log(), n=1)
    # u1's latest positive is item a (t=5, row 0); u3's latest is b (t=7, row 5);
    # u2 has one positive only -> kept in train; the impression (t=9) stays in train.
    got = sorted(zip(test.interactions["user_id"], test.interactions["item_id"], strict=True))
    assert got == [("u1", "a"), ("u3", "b")]
    assert train.num_interactions == 5


def test_leave_last_n_split_n2_and_errors():
    from tfrecall.data.splits import leave_last_n_split

    train, test = leave_last_n_split(_timed_log(), n=2)
    # u1 holds out t=5 (a) and t=3 (c); u3 has only 2 positives -> all kept in train.
    assert sorted(test.interactions["item_id"].tolist()) == ["a", "c"]
    with pytest.raises(ValueError, match="n must be"):
        leave_last_n_split(_timed_log(), n=0)


def test_holdout_pairs_keeps_one_item_per_user_and_moves_whole_pairs():
    from tfrecall.data.splits import holdout_pairs

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(300), np.arange(300) % 12 + 1)
    items = rng.integers(0, 50, len(users))
    held = holdout_pairs(users, items, 0.3, seed=1)
    assert held.mean() == pytest.approx(0.3, abs=0.05)
    for u in range(300):
        kept = set(items[(users == u) & ~held].tolist())
        gone = set(items[(users == u) & held].tolist())
        assert kept  # every user keeps a training item
        assert not kept & gone  # a repeated item never sits on both sides
    np.testing.assert_array_equal(held, holdout_pairs(users, items, 0.3, seed=1))
    # One distinct item: always kept, however often it repeats.
    assert not holdout_pairs(np.zeros(5, int), np.ones(5, int), 0.9).any()


def test_validation_split_moves_positives_only():
    from tfrecall.data.splits import validation_split

    inter = {"user_id": np.array(["u1"] * 6 + ["u2"] * 2, object),
             "item_id": np.array(["a", "b", "c", "d", "e", "x", "a", "b"], object),
             "label": np.ones(8, np.float32),
             "positive": np.array([1, 1, 1, 1, 1, 0, 1, 1], bool)}
    fit, val = validation_split(RecallData(inter, name="d"), 0.5, seed=0)
    assert fit.name == "d/fit" and val.name == "d/validation"
    assert val.interactions["positive"].all()
    assert "x" in fit.interactions["item_id"].tolist()  # the exposure stays
    assert fit.num_interactions + val.num_interactions == 8
    assert set(fit.interactions["user_id"][fit.interactions["positive"]]) == {"u1", "u2"}
