"""The harness's guards: nothing to evaluate is an error, K is capped at what can be ranked."""

import numpy as np
import pytest

from tfrecall.evaluation.harness import cap_ks, check_evaluable, count_pairs, make_eval_set
from tfrecall.io.schema import RecallData


def _log(rows):
    users, items, pos = zip(*rows, strict=True)
    return RecallData({"user_id": np.asarray(users, object), "item_id": np.asarray(items, object),
                       "label": np.asarray(pos, np.float32), "positive": np.asarray(pos, bool)},
                      name="log")


USERS = np.array(["u1", "u2"], object)
CATALOGUE = np.array(["a", "b", "c"], object)


def test_pairs_are_test_positives_outside_the_training_items():
    train = _log([("u1", "a", 1), ("u2", "b", 1)])
    test = _log([("u1", "a", 1), ("u1", "c", 1), ("u2", "c", 0)])
    # u1: {a, c} less training {a} = 1 pair; u2's test row is an exposure.
    assert count_pairs(make_eval_set(train, test, USERS, CATALOGUE)) == 1
    # Without exclusion u1's a counts too.
    assert count_pairs(make_eval_set(train, test, USERS, CATALOGUE, exclude_train=False)) == 2


def test_training_pairs_are_int32_indices_of_the_training_positives():
    train = _log([("u2", "c", 1), ("u1", "a", 1), ("u1", "zz", 1), ("u2", "a", 0)])
    eval_set = make_eval_set(train, _log([("u1", "b", 1)]), USERS, CATALOGUE)
    # By hand: (u2, c) and (u1, a) in log order; "zz" is off the catalogue, (u2, a) an
    # exposure.
    assert eval_set.train_user_idx.dtype == np.int32 == eval_set.train_item_idx.dtype
    assert eval_set.train_user_idx.tolist() == [1, 0]
    assert eval_set.train_item_idx.tolist() == [2, 0]
    assert dict(eval_set.exclude) == {1: frozenset({2}), 0: frozenset({0})}


def test_nothing_to_evaluate_is_an_error_naming_the_split():
    train = _log([("u1", "a", 1)])
    test = _log([("u1", "a", 1), ("u2", "b", 0)])
    eval_set = make_eval_set(train, test, USERS, CATALOGUE)
    with pytest.raises(ValueError, match=r"^nothing to evaluate: .* outside that user's "
                                         r"training items \(2 test rows, 1 positive; 2 users, "
                                         r"3 items\)"):
        check_evaluable(eval_set, test)
    check_evaluable(make_eval_set(train, test, USERS, CATALOGUE, exclude_train=False), test,
                    exclude_train=False)  # u1's a is a target then


@pytest.mark.parametrize("ks, limit, want, note", [
    ((10, 50), 100, (10, 50), None),
    ((10, 50, 100), 50, (10, 50), "K [100] exceed the catalogue's 50 items: capped at K=50"),
    ((100, 10, 200), 30, (10, 30), "K [100, 200] exceed the catalogue's 30 items"),
])
def test_cap_ks(ks, limit, want, note):
    capped, text = cap_ks(ks, limit)
    assert capped == want
    assert (text is None) if note is None else (note in text)
    assert cap_ks((5, 20), 10, "the items the export returns")[1] == (
        "note: K [20] exceed the items the export returns (10): capped at K=10")
