"""Exact search and recall: the yardstick of index tuning."""

import numpy as np
import pytest

from tfrecall.serving import tuning


def test_exact_top_k_by_hand():
    emb = np.array([[1, 0], [0, 1], [0.6, 0.8], [-1, 0]], np.float32)
    q = np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32)
    rows, scores = tuning.exact_top_k(q, emb, 2, chunk=2)  # two chunks: 2 + 1 queries
    # q0: [1, 0, 0.6, -1] -> 0, 2; q1: [0, 1, 0.8, 0] -> 1, 2;
    # q2: [0.6, 0.8, 1.0, -0.6] -> 2, 1.
    np.testing.assert_array_equal(rows, [[0, 2], [1, 2], [2, 1]])
    np.testing.assert_allclose(scores, [[1, 0.6], [1, 0.8], [1, 0.8]], atol=1e-6)
    assert tuning.exact_top_k(q, emb, 10)[0].shape == (3, 4)  # capped at n


def test_recall_counts_tied_items_as_hits():
    emb = np.array([[1, 0], [1, 0], [0, 1], [0.5, 0.5]], np.float32)  # items 0 and 1 tie
    q = np.array([[1, 0]], np.float32)
    _, exact = tuning.exact_top_k(q, emb, 2)  # [1, 1]
    # Either tied item is a correct answer; item 3 (0.5) is not.
    assert tuning.recall_at_k(np.array([[1, 0]]), q, emb, exact, 2) == 1.0
    assert tuning.recall_at_k(np.array([[1, 3]]), q, emb, exact, 2) == 0.5
    assert tuning.recall_at_k(np.array([[0, -1]]), q, emb, exact, 2) == 0.5  # -1 = nothing
    with pytest.raises(ValueError, match="fewer than k"):
        tuning.recall_at_k(np.array([[0]]), q, emb, exact, 2)


def test_sample_queries_falls_back_to_items_and_samples():
    emb = np.arange(20, dtype=np.float32).reshape(10, 2)
    q, source = tuning.sample_queries(None, emb, 4, seed=0)
    assert source == "item_embeddings" and q.shape == (4, 2)
    assert all(any((row == e).all() for e in emb) for row in q)  # rows of the catalogue
    users = np.ones((3, 2), np.float32)
    q, source = tuning.sample_queries(users, emb, 4)
    assert source == "user_queries" and q.shape == (3, 2)


def test_min_probes_covers_k_from_the_smallest_partitions_by_hand():
    sizes = np.array([4, 1, 10, 3])  # ascending 1, 3, 4, 10: running sums 1, 4, 8, 18
    assert tuning.min_probes(sizes, 1) == 1
    assert tuning.min_probes(sizes, 4) == 2
    assert tuning.min_probes(sizes, 5) == 3  # 1 + 3 < 5 <= 1 + 3 + 4
    assert tuning.min_probes(sizes, 9) == 4
    assert tuning.min_probes(sizes, 100) == 4  # k above the catalogue: every partition
    assert tuning.min_probes(np.array([0, 0, 2]), 1) == 3  # empty leaves count as none
