"""Indexes: exact results and exclusion for every kind, padding, empty batches, tuning."""

import numpy as np
import pytest

from tfrecall._backend import tf
from tfrecall.losses.lists import MIN_FLOAT
from tfrecall.serving.index import (
    INDEX_KINDS,
    build_index,
    drop_rows,
    top_k_padded,
)


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n, d, clusters, seed, noise=0.15):
    rng = np.random.default_rng(seed)
    centers = unit(rng.standard_normal((clusters, d)))
    return unit(centers[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, d)))


def numpy_top(queries, emb, k, exclude=()):
    """Reference: exact scores with excluded rows removed, best first (stable)."""
    scores = queries @ emb.T
    out_rows, out_scores = [], []
    for r in range(len(queries)):
        s = scores[r].copy()
        s[list(exclude[r]) if len(exclude) else []] = -np.inf
        order = np.argsort(-s, kind="stable")[:k]
        out_rows.append(order)
        out_scores.append(s[order])
    return np.array(out_rows), np.array(out_scores)


def test_drop_rows_and_top_k_padded_by_hand():
    rows = tf.constant([[4, 2, 7], [1, -1, 3]], tf.int32)
    scores = tf.constant([[0.9, 0.5, 0.1], [0.8, 0.0, 0.3]])
    exclude = tf.constant([[2, -1], [-1, -1]], tf.int32)
    r, s = drop_rows(rows, scores, exclude)
    # Row 0: item 2 excluded; row 1: the -1 candidate stays "none"; -1 padding excludes nothing.
    np.testing.assert_array_equal(r.numpy(), [[4, -1, 7], [1, -1, 3]])
    np.testing.assert_allclose(s.numpy(), [[0.9, MIN_FLOAT, 0.1], [0.8, MIN_FLOAT, 0.3]])
    r, s = top_k_padded(r, s, 4)  # C = 3 < k = 4: one padding slot per row
    np.testing.assert_array_equal(r.numpy(), [[4, 7, -1, -1], [1, 3, -1, -1]])
    np.testing.assert_allclose(s.numpy(), [[0.9, 0.1, MIN_FLOAT, MIN_FLOAT],
                                           [0.8, 0.3, MIN_FLOAT, MIN_FLOAT]])


def test_brute_force_exclusion_by_hand():
    emb = np.array([[1, 0], [0, 1], [0.6, 0.8], [-1, 0]], np.float32)
    index, report = build_index("brute_force", emb, k=2)
    q = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    # Scores: row 0 [1, 0, 0.6, -1]; row 1 [0, 1, 0.8, 0].
    rows, scores = index.search(q, 2)
    np.testing.assert_array_equal(rows.numpy(), [[0, 2], [1, 2]])
    rows, scores = index.search(q, 2, tf.constant([[0, -1], [1, 2]], tf.int32))
    # Row 0 without item 0: [2 (0.6), 1 (0)]; row 1 without 1 and 2: 0 and 3 tie at 0 ->
    # lower index first.
    np.testing.assert_array_equal(rows.numpy(), [[2, 1], [0, 3]])
    np.testing.assert_allclose(scores.numpy(), [[0.6, 0.0], [0.0, 0.0]], atol=1e-6)
    assert report.recall_at_10 == 1.0 and report.index_bytes == emb.nbytes


# exact_below=0 forces the approximate scheme even on a small catalogue; a large one
# gives the exact mode of each kind.
CASES = [("brute_force", 10**9), ("partitioned", 10**9), ("partitioned", 0),
         ("scann", 10**9), ("scann", 0)]


@pytest.mark.parametrize("kind,exact_below", CASES)
def test_exclusion_never_returns_excluded_items(kind, exact_below):
    emb = clustered(3000, 16, 30, seed=1)
    rng = np.random.default_rng(2)
    queries = unit(rng.standard_normal((40, 16)))
    k = 10
    index, report = build_index(kind, emb, k, queries=queries, exact_below=exact_below,
                                target_recall=0.9)
    # Exclude each query's exact top 5 plus 3 random items, padded with -1.
    top = numpy_top(queries, emb, 5)[0]
    exclude = np.full((40, 9), -1, np.int32)
    exclude[:, :5] = top
    exclude[:, 5:8] = rng.integers(0, 3000, (40, 3))
    rows, scores = index.search(tf.constant(queries), k, tf.constant(exclude))
    rows, scores = rows.numpy(), scores.numpy()
    assert rows.shape == (40, k) and (rows >= 0).all()
    for r in range(40):
        assert not set(rows[r]) & set(exclude[r][exclude[r] >= 0].tolist())
        assert len(set(rows[r])) == k
    # Returned scores are the exact dot products of the returned items, best first.
    exact = np.einsum("qd,qkd->qk", queries, emb[rows])
    np.testing.assert_allclose(scores, exact, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    ref_rows, ref_scores = numpy_top(queries, emb, k, [e[e >= 0] for e in exclude])
    if report.mode == "exact":
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    else:  # approximate: most of the true top-10 among the non-excluded items
        hits = (exact >= ref_scores[:, -1:] - 1e-5).mean()
        assert hits >= 0.8, hits


@pytest.mark.parametrize("kind,exact_below", CASES)
def test_too_few_eligible_items_are_padded_and_empty_batch_is_empty(kind, exact_below):
    emb = clustered(300, 8, 5, seed=3)
    index, report = build_index(kind, emb, k=5, exact_below=exact_below, target_recall=0.5)
    q = tf.constant(unit(np.random.default_rng(4).standard_normal((2, 8))))
    # Row 0 excludes 297 of the 300 items: only items 0, 1, 2 remain, then padding.
    exclude = np.full((2, 297), -1, np.int32)
    exclude[0] = np.arange(3, 300)
    rows, scores = index.search(q, 5, tf.constant(exclude))
    kept, kept_scores = rows.numpy()[0], scores.numpy()[0]
    found = kept[kept >= 0]
    assert set(found.tolist()) <= {0, 1, 2} and (kept[len(found):] == -1).all()
    np.testing.assert_allclose(kept_scores[len(found):], MIN_FLOAT)
    # Every mode finds all three: k + 297 exclusions need every partition / leaf, which
    # the approximate kinds then search (their floor rises with the exclusion list).
    assert sorted(found.tolist()) == [0, 1, 2]
    assert (rows.numpy()[1] >= 0).all()
    empty_rows, empty_scores = index.search(tf.zeros([0, 8]), 5)
    assert empty_rows.shape == (0, 5) and empty_scores.shape == (0, 5)
    ex_rows, _ = index.search(tf.zeros([0, 8]), 5, tf.zeros([0, 3], tf.int32))
    assert ex_rows.shape == (0, 5)


def ivf_reference_recall(layout, queries, emb, nprobe, exact_kth):
    """numpy IVF, per query: probe the nprobe best centroids, score members exactly."""
    out = []
    for q, kth in zip(queries, exact_kth, strict=True):
        probe = np.argsort(-(layout.centroids @ q), kind="stable")[:nprobe]
        members = layout.members[probe].ravel()
        members = members[members >= 0]
        s = np.sort(emb[members] @ q)[::-1][:10]
        out.append(int((s >= kth - 1e-5).sum()) / 10)
    return np.array(out)


def lower_bound_99(per_query):
    # One-sided 99% normal bound of the mean: z = 2.3263 (standard normal table).
    return per_query.mean() - 2.3263 * per_query.std() / np.sqrt(len(per_query))


def test_partitioned_tuning_picks_the_smallest_nprobe_reaching_the_target():
    emb = clustered(20000, 16, 200, seed=5, noise=0.25)
    rng = np.random.default_rng(6)
    queries = clustered(300, 16, 200, seed=5, noise=0.3)[rng.permutation(300)]
    index, report = build_index("partitioned", emb, k=10, queries=queries, exact_below=0,
                                target_recall=0.9)
    assert report.mode == "ivf" and report.target_met
    # 141 k-means cells (round(sqrt(20000))) cut into leaves of at most 64 items.
    assert report.params["capacity"] == 64
    assert report.params["num_partitions"] >= int(np.ceil(20000 / 64))
    nprobe = report.params["nprobe"]
    assert 1 < nprobe < report.params["num_partitions"] // 2  # sub-linear
    exact = np.sort(queries @ emb.T, axis=1)[:, ::-1][:, :10]
    layout = _layout_of(index)
    at = ivf_reference_recall(layout, queries, emb, nprobe, exact[:, -1])
    below = ivf_reference_recall(layout, queries, emb, nprobe - 1, exact[:, -1])
    # The smallest nprobe whose 99% lower confidence bound reaches the target: the
    # mean itself then clears the target with a margin.
    assert lower_bound_99(at) >= 0.9 > lower_bound_99(below)
    assert at.mean() > 0.9
    assert abs(report.recall_at_10 - at.mean()) < 1e-9
    assert abs(report.params["recall_lower_bound"] - lower_bound_99(at)) < 1e-4


def test_partitioned_search_past_the_probed_partitions_probes_them_all():
    """Excluding each query's exact top nprobe x capacity items (more than its probed
    partitions can hold): the search probes every partition and stays exact."""
    emb = clustered(20000, 16, 200, seed=5, noise=0.25)
    queries = clustered(40, 16, 200, seed=6, noise=0.3)
    index, report = build_index("partitioned", emb, k=10, queries=queries, exact_below=0,
                                target_recall=0.5)
    assert report.mode == "ivf"
    width = report.params["nprobe"] * report.params["capacity"]
    assert width < 20000 // 4
    exclude = numpy_top(queries, emb, width)[0].astype(np.int32)
    rows, scores = index.search(tf.constant(queries), 10, tf.constant(exclude))
    ref_rows, ref_scores = numpy_top(queries, emb, 10, exclude)
    assert (rows.numpy() >= 0).all()
    np.testing.assert_allclose(scores.numpy(), ref_scores, atol=1e-5)
    # Without exclusions the same index probes only nprobe partitions (approximate).
    rows, _ = index.search(tf.constant(queries), 10)
    assert (rows.numpy() >= 0).all()


def _layout_of(index):
    from tfrecall.serving.partitioned import PartitionLayout

    return PartitionLayout(index.centroids.numpy(), index.partition_members.numpy(),
                           index.partition_embeddings.numpy())


def test_scann_tuning_reaches_the_target_on_fresh_queries():
    emb = clustered(20000, 16, 200, seed=7, noise=0.2)
    queries = clustered(600, 16, 200, seed=7, noise=0.25)
    index, report = build_index("scann", emb, k=10, queries=queries[:300], exact_below=0,
                                target_recall=0.95)
    assert report.mode == "tree_ah" and report.target_met and report.recall_at_10 >= 0.95
    assert report.params["num_leaves"] == 141  # round(sqrt(20000))
    assert report.params["leaves_to_search"] < 141
    rows, _ = index.search(tf.constant(queries[300:]), 10)
    exact = np.sort(queries[300:] @ emb.T, axis=1)[:, ::-1][:, 9:10]
    got = np.einsum("qd,qkd->qk", queries[300:], emb[rows.numpy()])
    assert (got >= exact - 1e-5).mean() >= 0.93  # unseen queries, tuned at 0.95


def test_build_index_rejects_bad_arguments():
    emb = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match="index must be one of"):
        build_index("faiss", emb, 2)
    with pytest.raises(ValueError, match="target_recall"):
        build_index("partitioned", emb, 2, target_recall=1.5)
    with pytest.raises(ValueError, match="non-empty"):
        build_index("brute_force", np.zeros((0, 2), np.float32), 2)
    with pytest.raises(ValueError, match=r"tuning queries must be \(Q, 2\)"):
        build_index("partitioned", emb, 2, queries=np.ones((3, 5), np.float32))
    assert set(INDEX_KINDS) == {"scann", "brute_force", "partitioned"}
