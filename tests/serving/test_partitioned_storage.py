"""The search options of the stock-TF indexes in their real mode (>= 20k items, above
`exact_below`): bfloat16 member storage with an exact re-score, the blocked exact search
of brute force. References are numpy searches."""

import numpy as np
import pytest

from tfrecall._backend import tf
from tfrecall.serving import partitioned as ivf
from tfrecall.serving.index import BruteForceIndex, PartitionedIndex

N_ITEMS, DIM = 24_011, 16  # 24,011 = 375 blocks of 64 + a tail of 11 rows


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def catalogue():
    """Zipf-sized isotropic topics, queries near their centres (benchmarks' "hard")."""
    rng = np.random.default_rng(5)
    centres = unit(rng.standard_normal((100, DIM)))
    p = 1.0 / np.arange(1, 101)
    p /= p.sum()
    items = unit(centres[rng.choice(100, N_ITEMS, p=p)] + 0.2 * rng.standard_normal((N_ITEMS, DIM)))
    queries = unit(centres[rng.choice(100, 300, p=p)] + 0.2 * rng.standard_normal((300, DIM)))
    return items, queries


@pytest.fixture(scope="module")
def layout(catalogue):
    return ivf.build_partitions(catalogue[0], seed=2)


def numpy_ivf(layout, queries, nprobe, c):
    """Scores of each query's best c members of its nprobe best partitions, best first."""
    out = []
    for q in queries:
        probe = np.argsort(-(layout.centroids @ q), kind="stable")[:nprobe]
        valid = layout.members[probe].ravel() >= 0
        s = layout.embeddings[probe].reshape(-1, len(q))[valid] @ q
        out.append(-np.sort(-s)[:c])
    return np.array(out)


def test_split_bfloat16_keeps_sixteen_mantissa_bits(catalogue):
    items = catalogue[0][:1000]
    hi, lo = ivf.split_bfloat16(items)
    assert hi.dtype == tf.bfloat16 and lo.dtype == tf.bfloat16
    x = hi.numpy().astype(np.float32)
    # hi alone is bfloat16's 8 significant bits (relative error <= 2^-8 per entry);
    # lo rounds the rest to 8 bits again, so hi + lo is within 2^-16.
    assert (np.abs(x - items) <= 2**-8 * np.abs(items)).all()
    assert (np.abs(x - items) > 2**-12 * np.abs(items)).mean() > 0.5  # hi alone is coarse
    assert (np.abs(x + lo.numpy().astype(np.float32) - items) <= 2**-16 * np.abs(items)).all()


@pytest.mark.parametrize("block_bytes", [None, 1])  # one block; one query a block
def test_bfloat16_storage_returns_the_exact_results_of_float32(catalogue, layout, monkeypatch,
                                                               block_bytes):
    items, queries = catalogue
    if block_bytes is not None:
        monkeypatch.setattr(ivf, "_BLOCK_BYTES", block_bytes)
    nprobe, c = 12, 20
    q = tf.constant(queries)
    rows32, scores32 = PartitionedIndex(layout, nprobe, "float32").candidates(q, tf.constant(c))
    rows16, scores16 = PartitionedIndex(layout, nprobe, "bfloat16").candidates(q, tf.constant(c))
    ref = numpy_ivf(layout, queries, nprobe, c)
    np.testing.assert_allclose(scores32.numpy(), ref, atol=1e-5)
    # The coarse bfloat16 pass only picks candidates; the re-score is exact, so the
    # results are the float32 ones (ids may differ among tied scores only).
    np.testing.assert_allclose(scores16.numpy(), ref, atol=1e-5)
    exact = np.einsum("bd,bcd->bc", queries, items[rows16.numpy()])
    np.testing.assert_allclose(scores16.numpy(), exact, atol=1e-5)
    assert (rows16.numpy() >= 0).all()


def test_bfloat16_storage_recall_against_exact_search(catalogue, layout):
    items, queries = catalogue
    scores = queries @ items.T
    kth = -np.partition(-scores, 9, axis=1)[:, 9:10]
    index = PartitionedIndex(layout, 40, "bfloat16")
    rows = index.search(tf.constant(queries), 10)[0].numpy()
    recall = (np.take_along_axis(scores, rows, axis=1) >= kth - 1e-5).mean()
    # Recall is the probe's alone (members scored exactly): the numpy curve's value.
    exact_top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    curve = ivf.probe_recall_curve(layout, queries, exact_top)
    assert abs(recall - curve[39]) < 0.005, (recall, curve[39])
    assert recall > 0.8  # 40 of about 400 leaves on these topics
    assert index.partition_embeddings.dtype == tf.bfloat16
    # hi + lo take the bytes of float32 members.
    assert (index.partition_embeddings.numpy().nbytes + index.partition_residuals.numpy().nbytes
            == layout.embeddings.nbytes)


@pytest.mark.parametrize("c", [1, 10, 100, 700])
def test_exact_search_equals_a_flat_top_k(catalogue, c):
    items, queries = catalogue
    index = BruteForceIndex(items)
    assert index.head.shape[0] == 24_000 and index.tail.shape[0] == 11
    rows, top = index.candidates(tf.constant(queries[:50]), tf.constant(c))
    scores = queries[:50] @ items.T
    np.testing.assert_allclose(top.numpy(), -np.sort(-scores, axis=1)[:, :c], atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(scores, rows.numpy(), axis=1), top.numpy(),
                               atol=1e-5)
    assert all(len(set(r)) == c for r in rows.numpy().tolist())


def test_exact_search_finds_items_of_the_tail_and_small_catalogues(catalogue):
    items, _ = catalogue
    # A query equal to a tail item (row 24,005) finds it first.
    q = items[24_005][None]
    rows, _ = BruteForceIndex(items).candidates(tf.constant(q), tf.constant(3))
    assert rows.numpy()[0, 0] == 24_005
    small = items[:40]  # no whole block: the tail alone
    rows, top = BruteForceIndex(small).candidates(tf.constant(q), tf.constant(50))
    np.testing.assert_allclose(top.numpy()[0], -np.sort(-(small @ q[0])), atol=1e-6)
    with pytest.raises(ValueError, match="whole blocks"):
        ivf.exact_search(tf.constant(q), tf.constant(items[:100]), tf.constant(items[:0]), 3)


def test_storage_is_checked(layout):
    with pytest.raises(ValueError, match="storage"):
        PartitionedIndex(layout, 3, "int8")
    with pytest.raises(ValueError, match="residuals"):
        ivf.partitioned_search(tf.zeros([1, DIM]), tf.constant(layout.centroids),
                               tf.constant(layout.embeddings), tf.constant(layout.members), 2,
                               tf.constant(5), residuals=tf.zeros([1], tf.bfloat16))


@pytest.mark.parametrize("storage", ["bfloat16", "float32"])
@pytest.mark.parametrize("blocked", [False, True])
def test_dense_scoring_returns_the_results_of_a_numpy_ivf(catalogue, layout, monkeypatch,
                                                          storage, blocked):
    items, queries = catalogue
    nprobe, c = 40, 50
    q = tf.constant(queries)
    # Forced off, then on (the dense path reads the same scores off a full matmul).
    monkeypatch.setattr(ivf, "DENSE_RATIO", float("inf"))
    index = PartitionedIndex(layout, nprobe, storage)
    _, gathered = index.candidates(q, tf.constant(c))
    monkeypatch.setattr(ivf, "DENSE_RATIO", 0.0)
    monkeypatch.setattr(ivf, "DENSE_MIN_BATCH", 1)
    if blocked:
        # Blocks of at most 128 queries: 300 queries run as 3 equal blocks of 100.
        per_query = layout.members.size * (2 if storage == "bfloat16" else 4)
        monkeypatch.setattr(ivf, "_DENSE_BYTES", 128 * per_query)
    calls = []
    dense = ivf._dense_probed_scores
    monkeypatch.setattr(ivf, "_dense_probed_scores", lambda *a: calls.append(1) or dense(*a))
    rows, scores = index.candidates(q, tf.constant(c))
    assert calls
    ref = numpy_ivf(layout, queries, nprobe, c)
    np.testing.assert_allclose(scores.numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(gathered.numpy(), ref, atol=1e-5)
    assert (rows.numpy() >= 0).all()
    np.testing.assert_allclose(np.einsum("bd,bcd->bc", queries, items[rows.numpy()]),
                               scores.numpy(), atol=1e-5)
    assert all(len(set(r)) == c for r in rows.numpy().tolist())


def test_dense_scoring_is_taken_for_wide_probes_of_large_batches(catalogue, layout, monkeypatch):
    items, queries = catalogue
    calls = []
    dense = ivf._dense_probed_scores
    monkeypatch.setattr(ivf, "_dense_probed_scores", lambda *a: calls.append(1) or dense(*a))
    wide = int(np.ceil(ivf.DENSE_RATIO * layout.num_partitions / DIM))
    assert ivf.DENSE_MIN_BATCH <= len(queries)
    index = PartitionedIndex(layout, wide, "bfloat16")
    index.candidates(tf.constant(queries[: ivf.DENSE_MIN_BATCH - 1]), tf.constant(10))
    assert not calls  # small batch: gathered
    PartitionedIndex(layout, wide - 1, "bfloat16").candidates(tf.constant(queries),
                                                             tf.constant(10))
    assert not calls  # narrow probe: gathered
    rows = index.search(tf.constant(queries), 10)[0].numpy()
    assert calls
    # Recall is still the probe's alone: the numpy curve's value at nprobe.
    scores = queries @ items.T
    kth = -np.partition(-scores, 9, axis=1)[:, 9:10]
    recall = (np.take_along_axis(scores, rows, axis=1) >= kth - 1e-5).mean()
    exact_top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    curve = ivf.probe_recall_curve(layout, queries, exact_top)
    assert abs(recall - curve[wide - 1]) < 0.005, (recall, curve[wide - 1])
