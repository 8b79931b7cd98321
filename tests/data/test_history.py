import numpy as np
import pytest

from tfrecall._backend import tf
from tfrecall.io.schema import RecallData
from tfrecall.sampling.history import drop_candidates_from_history, user_histories


def log():
    # u1: a (t=3), b (t=1), c (t=2, impression -> not a positive), a again (t=5); u2: d.
    return RecallData({
        "user_id": np.array(["u1", "u1", "u1", "u1", "u2"], object),
        "item_id": np.array(["a", "b", "c", "a", "d"], object),
        "timestamp": np.array([3, 1, 2, 5, 1], np.int64),
        "label": np.array([1, 1, 0, 1, 1], np.float32),
        "positive": np.array([True, True, False, True, True]),
    })


def test_histories_are_time_ordered_deduplicated_and_truncated():
    h = user_histories(log(), np.array(["u1", "u2", "new"], object))
    # u1 positives by time: b (1), a (3), a (5) -> "b|a"; u2 "d"; unknown user "".
    assert h.tolist() == ["b|a", "d", ""]
    assert user_histories(log(), np.array(["u1"], object), max_items=1).tolist() == ["a"]


def test_separator_inside_an_id_is_an_error():
    data = log()
    data.interactions["item_id"][0] = "x|y"
    with pytest.raises(ValueError, match="separator"):
        user_histories(data, np.array(["u1"], object))


def test_leave_one_out_removes_only_the_rows_own_candidates():
    x = {"user": {"history": tf.constant(["a|b|c", "b", "", "a|a"])},
         "items": {"item_id": tf.constant([["b", "z"], ["q", "r"], ["a", "b"], ["a", "c"]])}}
    out = drop_candidates_from_history(x)["user"]["history"].numpy().astype(str).tolist()
    assert out == ["a|c", "b", "", ""]


def _reference_histories(inter, user_ids, max_items):
    # The definition, one row at a time: positives by (time, row), each user's items in
    # order with a repeated item moved to its latest position, the last max_items kept.
    pairs = zip(inter["timestamp"], inter["positive"], strict=True)
    rows = sorted((t, r) for r, (t, p) in enumerate(pairs) if p)
    seqs = {}
    for _, r in rows:
        seq = seqs.setdefault(inter["user_id"][r], [])
        if inter["item_id"][r] in seq:
            seq.remove(inter["item_id"][r])
        seq.append(inter["item_id"][r])
    return ["|".join(seqs.get(u, [])[-max_items:]) for u in user_ids]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_histories_match_a_row_by_row_reference_on_a_random_log(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    inter = {
        "user_id": np.array([f"u{u}" for u in rng.integers(0, 60, n)], object),
        "item_id": np.array([f"i{i}" for i in rng.integers(0, 40, n)], object),
        "timestamp": rng.integers(0, 50, n).astype(np.int64),  # many ties: row order decides
        "label": np.ones(n, np.float32),
        "positive": rng.random(n) < 0.7,
    }
    user_ids = np.array([f"u{u}" for u in range(65)] + ["u3", "u0"], object)  # 5 new, 2 twice
    for max_items in (1, 7, 50):
        got = user_histories(RecallData(dict(inter)), user_ids, max_items).tolist()
        assert got == _reference_histories(inter, user_ids.tolist(), max_items)
