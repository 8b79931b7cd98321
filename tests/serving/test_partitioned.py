"""The stock-TF partitioned index: layout invariants, search vs a numpy IVF, recall curve."""

import numpy as np
import pytest

from tfrecall._backend import tf
from tfrecall.serving import partitioned as ivf


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = unit(rng.standard_normal((12, 8)))
    # Unbalanced clusters (one holds half the items) so some cells must be split.
    which = np.where(rng.random(2000) < 0.5, 0, rng.integers(1, 12, 2000))
    emb = unit(centers[which] + 0.2 * rng.standard_normal((2000, 8)))
    queries = unit(centers[rng.integers(0, 12, 50)] + 0.3 * rng.standard_normal((50, 8)))
    return emb, queries


def test_layout_holds_every_item_once_within_capacity(data):
    emb, _ = data
    layout = ivf.build_partitions(emb, num_clusters=10, capacity=150, seed=1)
    members = layout.members[layout.members >= 0]
    np.testing.assert_array_equal(np.sort(members), np.arange(2000))
    assert layout.capacity == 150
    # 2000 items in pieces of <= 150: at least ceil(2000 / 150) = 14 partitions, and
    # more than the 10 cells since the big cluster's cell is split.
    assert layout.num_partitions >= 14
    # Padding rows are zero; member rows hold their item's embedding.
    p, s = np.nonzero(layout.members >= 0)
    np.testing.assert_array_equal(layout.embeddings[p, s], emb[layout.members[p, s]])
    assert not layout.embeddings[layout.members < 0].any()
    # Each centroid is the unit mean direction of its own members.
    for j in range(layout.num_partitions):
        rows = layout.members[j][layout.members[j] >= 0]
        np.testing.assert_allclose(layout.centroids[j], unit(emb[rows].sum(0, keepdims=True))[0],
                                   atol=1e-5)


def test_kmeans_is_seeded():
    x = unit(np.random.default_rng(2).standard_normal((500, 4)))
    a = ivf.spherical_kmeans(x, 7, seed=3)
    b = ivf.spherical_kmeans(x, 7, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="empty"):
        ivf.spherical_kmeans(np.zeros((0, 4), np.float32), 3)


def numpy_ivf(layout, q, nprobe, c):
    """Reference: probe the nprobe best centroids, score members, best c (stable order)."""
    probe = np.argsort(-(layout.centroids @ q), kind="stable")[:nprobe]
    members = layout.members[probe].ravel()
    members = members[members >= 0]
    s = layout.embeddings[probe].reshape(-1, q.shape[0])[layout.members[probe].ravel() >= 0] @ q
    order = np.argsort(-s, kind="stable")[:c]
    return members[order], s[order]


@pytest.mark.parametrize("block_bytes", [None, 1])  # default: one block; 1: one query a block
def test_search_matches_a_numpy_ivf(data, monkeypatch, block_bytes):
    emb, queries = data
    if block_bytes is not None:
        monkeypatch.setattr(ivf, "_BLOCK_BYTES", block_bytes)
    layout = ivf.build_partitions(emb, num_clusters=10, capacity=150, seed=1)
    rows, scores = ivf.partitioned_search(
        tf.constant(queries), tf.constant(layout.centroids), tf.constant(layout.embeddings),
        tf.constant(layout.members), 3, tf.constant(20),
    )
    for r, q in enumerate(queries):
        ref_rows, ref_scores = numpy_ivf(layout, q, 3, 20)
        np.testing.assert_allclose(scores.numpy()[r], ref_scores, atol=1e-5)
        # Ids may differ only among tied scores.
        np.testing.assert_allclose(emb[rows.numpy()[r]] @ q, ref_scores, atol=1e-5)


def test_search_caps_results_at_the_probed_capacity(data):
    emb, queries = data
    layout = ivf.build_partitions(emb, num_clusters=10, capacity=150, seed=1)
    rows, scores = ivf.partitioned_search(
        tf.constant(queries[:2]), tf.constant(layout.centroids), tf.constant(layout.embeddings),
        tf.constant(layout.members), 1, tf.constant(10_000),
    )
    assert rows.shape == (2, 150)  # one partition probed: at most its 150 slots


def test_probe_recall_curve_matches_searching_at_each_nprobe(data):
    emb, queries = data
    layout = ivf.build_partitions(emb, num_clusters=10, capacity=150, seed=1)
    exact = np.argsort(-(queries @ emb.T), axis=1, kind="stable")[:, :10]
    kth = np.sort(queries @ emb.T, axis=1)[:, ::-1][:, 9]
    curve = ivf.probe_recall_curve(layout, queries, exact)
    assert curve.shape == (layout.num_partitions,) and curve[-1] == 1.0
    assert (np.diff(curve) >= 0).all()
    for nprobe in (1, 2, 4, 8):
        found = [numpy_ivf(layout, q, nprobe, 10)[1] for q in queries]
        recall = np.mean([(np.pad(f, (0, 10 - len(f)), constant_values=-9) >= t - 1e-6).mean()
                          for f, t in zip(found, kth, strict=True)])
        assert abs(curve[nprobe - 1] - recall) < 1e-9, nprobe


def test_leaves_are_balanced_and_padding_is_low(data):
    emb, _ = data
    layout = ivf.build_partitions(emb, num_clusters=10, capacity=64, seed=1)
    fill = (layout.members >= 0).sum(axis=1)
    assert fill.max() <= 64
    # A cell of m items becomes ceil(m / 64) leaves of near-equal size: with 10 cells,
    # at most 10 leaves hold fewer than half of 64 items, and the padded tensor
    # holds under 1.25x the items (2000 items -> at most 2500 slots).
    assert (fill < 32).sum() <= 10
    assert layout.members.size <= 1.25 * len(emb)
    again = ivf.build_partitions(emb, num_clusters=10, capacity=64, seed=1)
    np.testing.assert_array_equal(layout.members, again.members)  # deterministic per seed


@pytest.mark.parametrize("c", [1, 7, 50, 200])
def test_top_k_by_block_equals_a_flat_top_k(c):
    rng = np.random.default_rng(c)
    # Rounded values make ties: compare values, and check each position holds its value.
    scores = np.round(rng.standard_normal((3, 20, 10)), 1).astype(np.float32)
    top, pos = ivf.top_k_by_block(tf.constant(scores), tf.constant(c))
    flat = scores.reshape(3, -1)
    np.testing.assert_allclose(top.numpy(), -np.sort(-flat, axis=1)[:, :c])
    np.testing.assert_allclose(np.take_along_axis(flat, pos.numpy(), axis=1), top.numpy())
    assert all(len(set(p)) == c for p in pos.numpy().tolist())


def test_probe_recall_spread_matches_per_query_recalls(data):
    emb, queries = data
    layout = ivf.build_partitions(emb, num_clusters=10, capacity=64, seed=1)
    exact = np.argsort(-(queries @ emb.T), axis=1, kind="stable")[:, :10]
    kth = np.sort(queries @ emb.T, axis=1)[:, ::-1][:, 9]
    mean, std = ivf.probe_recall_curve(layout, queries, exact, with_std=True)
    for nprobe in (1, 3, 9):
        per_query = np.array([
            (np.pad(numpy_ivf(layout, q, nprobe, 10)[1], (0, 10), constant_values=-9)[:10]
             >= t - 1e-6).mean()
            for q, t in zip(queries, kth, strict=True)
        ])
        assert abs(mean[nprobe - 1] - per_query.mean()) < 1e-9
        assert abs(std[nprobe - 1] - per_query.std()) < 1e-9


def test_single_query_search_matches_a_numpy_ivf(data):
    emb, queries = data
    layout = ivf.build_partitions(emb, num_clusters=10, capacity=64, seed=1)
    args = [tf.constant(layout.centroids), tf.constant(layout.embeddings),
            tf.constant(layout.members)]
    for q in queries[:5]:
        rows, scores = ivf.partitioned_search(tf.constant(q[None]), *args, 4, tf.constant(30))
        ref_rows, ref_scores = numpy_ivf(layout, q, 4, 30)
        np.testing.assert_allclose(scores.numpy()[0], ref_scores, atol=1e-5)
        np.testing.assert_allclose(emb[rows.numpy()[0]] @ q, ref_scores, atol=1e-5)
