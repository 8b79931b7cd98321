"""The long-tail world: an implicit play log with Zipf popularity and no features."""

import numpy as np
import pytest

from tfrecall.data.longtail import LongTailConfig, generate_longtail


@pytest.fixture(scope="module")
def world():
    return generate_longtail(LongTailConfig(num_users=400, num_items=3000, seed=3))


def test_shape_of_the_log(world):
    inter = world.data.interactions
    assert world.data.users is None and world.data.items is None  # ids only
    assert inter["positive"].all()
    # Repeat counts as labels: integers >= 1, some above 1.
    labels = inter["label"]
    assert (labels >= 1).all() and np.array_equal(labels, np.round(labels))
    assert (labels > 1).mean() > 0.3
    # Distinct items per user, at least min_items_per_user, about items_per_user.
    pairs = set(zip(inter["user_id"].tolist(), inter["item_id"].tolist(), strict=True))
    assert len(pairs) == len(labels)
    _, per_user = np.unique(inter["user_id"], return_counts=True)
    assert per_user.min() >= 5 and 35 < per_user.mean() < 65
    assert np.all(np.diff(inter["timestamp"]) >= 0)


def test_a_long_tail_of_items(world):
    _, counts = np.unique(world.data.interactions["item_id"], return_counts=True)
    counts = np.sort(counts)[::-1]
    # Zipf popularity: the top 1% of items take a large share; most items are rare.
    top = counts[: len(world.item_ids) // 100].sum() / counts.sum()
    assert top > 0.1
    assert (counts < 5).mean() > 0.4


def test_affinity_drives_the_choices_and_the_repeats(world):
    inter = world.data.interactions
    u = np.array([int(x[1:]) for x in inter["user_id"]])
    i = np.array([int(x[1:]) for x in inter["item_id"]])
    taken = np.sum(world.user_vectors[u] * world.item_vectors[i], axis=1)
    everything = world.user_vectors @ world.item_vectors.T
    assert taken.mean() > everything.mean() + 1.0  # chosen items are liked
    # More plays for better-liked items (repeat_affinity > 0).
    assert np.corrcoef(taken, np.log(inter["label"]))[0, 1] > 0.1


def test_seeded_and_validated():
    a = generate_longtail(LongTailConfig(num_users=50, num_items=300, seed=1))
    b = generate_longtail(LongTailConfig(num_users=50, num_items=300, seed=1))
    np.testing.assert_array_equal(a.data.interactions["item_id"], b.data.interactions["item_id"])
    with pytest.raises(ValueError, match="num_items"):
        LongTailConfig(num_items=0)
    with pytest.raises(ValueError, match="items_per_user"):
        LongTailConfig(items_per_user=2.0)
