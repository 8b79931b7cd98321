"""A partitioned (IVF) index from stock TensorFlow ops: k-means cells, leaves, exact scoring.

Layout (built in numpy, seeded): spherical k-means splits the catalogue into about
sqrt(n) cells (Jegou et al., "Product quantization for nearest neighbor search",
TPAMI 2011, sec. IV-A: the inverted file), and each cell is cut into *leaves* of at
most `capacity` (default 64) items of near-equal size by recursive median bisection,
so that every leaf pads to one tensor `(P, S, D)` with an id tensor `(P, S)` (-1 =
padding) at about 1.05x the catalogue's size. Each leaf is probed through the mean
direction of its own members. Small leaves are what make hard catalogues cheap: a
query near the centre of a large, isotropic topic has its best items scattered over
every big cell of that topic, and fine leaves let the probe pick the parts of those
cells that hold them (on `benchmarks/serving.py --catalogue=hard`, 1M items, the
slots scanned for recall@10 0.95 fell from 5% to 2.4%).

Search (TensorFlow only, so stock TF Serving runs it): score the query against the
`P` leaf centroids, take the best `nprobe`, gather their `(nprobe, S, D)` members,
score them, mask the padding and take the best C with `top_k_by_block` (a `top_k`
over the best C blocks only). Members are stored (default) as two bfloat16 halves
hi + lo of the float32 values (`split_bfloat16`: the bytes of float32, 16 mantissa
bits): the gather and the matmul read hi only (half the bytes of float32), the best
max(2C, 64) candidates are then re-scored in float32 from hi + lo, so the results are
the exact ones of the probed leaves (ScaNN's reorder step, with a coarse pass that
loses no candidate in practice: bfloat16 rounding moves a score by about 1e-3, and
on the hard catalogue every exact top 10 lies in the bfloat16 top 20). On this
project's machine (2 cores of a Xeon with AVX512-BF16/AMX, TF 2.20's oneDNN) a batch
of 256 at 1M items, nprobe 425, took 141 ms with bfloat16 vs 216 ms with float32
members, a single query about the same (1.7 ms); `storage="float32"` keeps one exact
pass. Queries run in blocks whose gathered members stay under a memory budget, so a
large request batch never materializes `(B, nprobe, S, D)` at once. When the probe is
wide (nprobe D >= `DENSE_RATIO` P) and the batch large (>= `DENSE_MIN_BATCH`), gathering
nprobe S D member values per query costs more memory traffic than scoring a block of
queries against the whole catalogue by one dense matmul (P S scores a query) and
gathering each query's probed scores from it (`_dense_probed_scores`): the same
scores, read from the catalogue once per block of queries (hard catalogue, batch 256,
nprobe 425: 113 ms vs 126 ms a batch). Each block's dense scores take up to
`_DENSE_BYTES` (256 MiB) while it runs.

`exact_search` is the exact counterpart (the brute-force index and the tuning's
yardstick): one matmul over the catalogue, then `top_k_by_block` over blocks of 64
rows instead of one `top_k` over all n scores (2x faster for a batch of 256 at 1M).

What was tried and dropped (see `docs/serving.md`): on an earlier AVX2 machine
(AMD EPYC, no bfloat16 instructions), int8 / bfloat16 storage cast to float32 before
the matmul (the cast cost as much as the gather saved); a partition-major batch
search (pairs sorted by leaf, each leaf read once per group of queries: TF's batched
matmul of many small blocks ran slower than the query-major gather); a bias column
masking padding inside the matmul; probing by the raw mean or by the mean plus a
multiple of the leaf's spread instead of its unit mean direction (1M hard catalogue:
373-384 leaves for mean recall 0.95 against 374, no gain).

Recall is a function of `nprobe` alone, and it can be read off without searching:
the exact top-10 of a query is found by the index exactly when the partitions
holding those items are among the `nprobe` best-scored ones (the members are
scored exactly), so one ranking of the partitions per query gives the whole
recall curve (`probe_recall_curve`), with its spread over queries for the
confidence bound of the tuning.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np

from tfrecall._backend import tf
from tfrecall.losses.lists import MIN_FLOAT

# Items per partition: small leaves make the probe fine-grained; much smaller and the
# partition centroids (scored per query) cost as much as the members.
DEFAULT_CAPACITY = 64

# Gathered members per block of queries, in bytes: a few L2-cache-unfriendly MB is
# fine, hundreds of MB per request is not.
_BLOCK_BYTES = 16 * 2**20

# Member storage: float32 scored exactly, or bfloat16 hi/lo halves (`split_bfloat16`)
# scored coarsely from hi, then re-scored exactly.
STORAGES = ("float32", "bfloat16")

# The bfloat16 pass keeps at least this many candidates per query for the re-score.
# Its scores are rounded to 8 mantissa bits (about 0.004 near 1), so close items
# tie; on the hard catalogue of `benchmarks/serving.py` (1M items) the exact top 10
# of every query was inside the coarse top 20 over the whole catalogue.
REORDER_MIN = 64

# Rows per block of the exact search's selection (`exact_search`).
EXACT_BLOCK = 64

# Scores per block of the partitioned search's selection (about sqrt(nprobe S / C)
# for the C of 100-200 and the nprobe S of tens of thousands the hard catalogue needs).
_SELECT_BLOCK = 16

# Wide probes of large batches score members by one dense matmul of a block of queries
# against the whole catalogue, then gather each query's probed scores from it
# (`_dense_probed_scores`), when nprobe * D >= DENSE_RATIO * P (the member values a
# query gathers, nprobe S D, outweigh the scores it gets from the dense matmul, P S)
# and the batch has at least DENSE_MIN_BATCH queries (a block must be large for the
# read of the catalogue to pay). Crossovers measured on the hard catalogue (1M items,
# P = 16,094, batch 256: gather = dense at nprobe about 350, ratio 1.4; nprobe 425:
# dense 113 ms vs gather 126 ms a batch; batch 128: equal; batch 64: dense 16% slower).
DENSE_RATIO = 1.4
DENSE_MIN_BATCH = 128

# Scores per dense block of queries, in bytes (the block's `(g, P S)` matmul output:
# 128 queries at 1M items in bfloat16). Larger blocks read the catalogue less often.
_DENSE_BYTES = 256 * 2**20



def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _assign(x: np.ndarray, centroids: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """`(n,)` int64: the centroid of largest dot product for each row, in chunks."""
    return np.concatenate(
        [np.argmax(x[s : s + chunk] @ centroids.T, axis=1) for s in range(0, len(x), chunk)]
    ) if len(x) else np.zeros(0, np.int64)


def spherical_kmeans(
    x: np.ndarray,
    num_clusters: int,
    iterations: int = 10,
    sample_size: Optional[int] = None,
    seed: int = 0,
) -> np.ndarray:
    """Unit centroids maximizing the summed dot product of rows with their centroid.

    Spherical k-means (Dhillon & Modha, Machine Learning 2001): assign each row to the
    centroid of largest dot product, then set each centroid to the normalized sum of
    its rows. Dot-product assignment matches how queries probe the index. Empty
    clusters restart from a random row.

    Args:
      x: `(n, D)` float32 rows.
      num_clusters: centroids to learn (capped at n).
      iterations: Lloyd iterations.
      sample_size: train on this many rows drawn without replacement (None: all).
      seed: the generator seed (initial centroids, sample, restarts).

    Returns:
      `(C, D)` float32 unit centroids, C = min(num_clusters, n).
    """
    if len(x) == 0:
        raise ValueError("spherical_kmeans: x is empty")
    rng = np.random.default_rng(seed)
    if sample_size is not None and sample_size < len(x):
        x = x[rng.choice(len(x), sample_size, replace=False)]
    c = min(int(num_clusters), len(x))
    centroids = _unit_rows(x[rng.choice(len(x), c, replace=False)].astype(np.float32))
    for _ in range(iterations):
        assign = _assign(x, centroids)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, x)
        empty = np.bincount(assign, minlength=c) == 0
        sums[empty] = x[rng.choice(len(x), int(empty.sum()))]
        centroids = _unit_rows(sums).astype(np.float32)
    return centroids


@dataclasses.dataclass(frozen=True)
class PartitionLayout:
    """The padded partitions of a catalogue.

    Attributes:
      centroids: `(P, D)` float32, the unit mean direction of each partition.
      members: `(P, S)` int32 catalogue rows, -1 for padding.
      embeddings: `(P, S, D)` float32 member embeddings, zeros at padding.
    """

    centroids: np.ndarray
    members: np.ndarray
    embeddings: np.ndarray

    @property
    def num_partitions(self) -> int:
        return int(self.members.shape[0])

    @property
    def capacity(self) -> int:
        return int(self.members.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.centroids.nbytes + self.members.nbytes + self.embeddings.nbytes)

    def partition_of(self, num_items: int) -> np.ndarray:
        """`(num_items,)` int64: the partition holding each catalogue row."""
        out = np.full(num_items, -1, np.int64)
        p, s = np.nonzero(self.members >= 0)
        out[self.members[p, s]] = p
        return out


def build_partitions(
    embeddings: np.ndarray,
    num_clusters: Optional[int] = None,
    capacity: int = DEFAULT_CAPACITY,
    iterations: int = 10,
    sample_size: int = 131_072,
    seed: int = 0,
) -> PartitionLayout:
    """Clusters the catalogue and packs it into small, nearly full padded partitions.

    Two levels: spherical k-means makes about sqrt(n) cells, then each cell is cut
    into ceil(size / capacity) leaves of near-equal size by recursive bisection at
    the median of its residuals' principal direction (`_bisect`). Small leaves make
    the probe finer (on the hard catalogue of `benchmarks/serving.py`, 1M items:
    leaves of 64 need 2.8% of the slots for recall@10 0.95, leaves of 1000 need 5%),
    and balanced cuts keep the padding low (about 1.15x n slots where cutting k-means
    pieces to capacity padded to 1.55x).

    Args:
      embeddings: `(n, D)` float32 item embeddings.
      num_clusters: k-means cells (default round(sqrt(n))).
      capacity: most items per partition S.
      iterations: k-means iterations.
      sample_size: k-means trains on at most this many items (then assigns all).
      seed: k-means seed (the bisection is deterministic).

    Returns:
      A `PartitionLayout` holding every item exactly once.
    """
    n = len(embeddings)
    if n == 0:
        raise ValueError("build_partitions: the catalogue is empty")
    x = np.asarray(embeddings, np.float32)
    cells = max(1, int(round(math.sqrt(n)))) if num_clusters is None else int(num_clusters)
    if cells < 1:
        raise ValueError(f"num_clusters must be >= 1, got {num_clusters}")
    cap = int(capacity)
    if cap < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    centroids = spherical_kmeans(x, cells, iterations, sample_size, seed)
    assign = _assign(x, centroids)
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(len(centroids) + 1))
    groups = []
    for c in range(len(centroids)):
        rows = order[bounds[c] : bounds[c + 1]]
        if len(rows):
            groups.extend(_bisect(x, rows, cap))
    members = np.full((len(groups), cap), -1, np.int32)
    for p, rows in enumerate(groups):
        members[p, : len(rows)] = rows
    packed = np.where((members >= 0)[..., None], x[np.maximum(members, 0)], 0.0).astype(np.float32)
    # Probing by a partition's own mean direction, not its parent cell's, lets the
    # leaves of a cell be told apart.
    cents = _unit_rows(packed.sum(axis=1)).astype(np.float32)
    return PartitionLayout(cents, members, packed)


def _bisect(x: np.ndarray, rows: np.ndarray, cap: int) -> list:
    """Rows of one cell as ceil(len / cap) leaves of near-equal size, each <= cap.

    Splits at the quantile of the projections on the residuals' principal direction
    that gives each side its share of leaves (a balanced 2-means along the axis of
    largest spread), then recurses. Sizes: m items into L leaves puts round(m L1 / L)
    <= L1 * cap on the left, so no leaf exceeds cap and none is much emptier than
    m / L.
    """
    leaves = -(-len(rows) // cap)
    if leaves <= 1:
        return [rows]
    sub = x[rows]
    centred = sub - sub.mean(axis=0)
    # Power iteration from the row of largest residual: deterministic, and a few
    # steps are enough to order points along the spread (the cut needs no precision).
    v = centred[np.argmax(np.einsum("nd,nd->n", centred, centred))]
    for _ in range(6):
        v = centred.T @ (centred @ v)
        v /= max(float(np.linalg.norm(v)), 1e-12)
    order = np.argsort(centred @ v, kind="stable")
    left = leaves // 2
    m_left = int(round(len(rows) * left / leaves))
    return _bisect(x, rows[order[:m_left]], cap) + _bisect(x, rows[order[m_left:]], cap)


def probe_recall_curve(
    layout: PartitionLayout, queries: np.ndarray, exact_top: np.ndarray,
    with_std: bool = False,
):
    """Recall of the exact top items as a function of the number of probed partitions.

    Args:
      layout: the partitions.
      queries: `(Q, D)` float32 query embeddings.
      exact_top: `(Q, T)` int catalogue rows of each query's exact top T.
      with_std: also return the standard deviation over queries of the per-query
        recall at each p (for a confidence bound on the mean).

    Returns:
      `(P,)` float64: entry p-1 is the share of exact top items found when the best p
      partitions are probed (members are scored exactly, so an item is found iff
      its partition is probed); with `with_std`, `(curve, std)`.
    """
    num_p = layout.num_partitions
    q_n, t = exact_top.shape
    part = layout.partition_of(int(layout.members.max()) + 1)[exact_top]  # (Q, T)
    counts = np.zeros(num_p + 1, np.int64)
    squares = np.zeros(num_p + 1, np.int64)
    for s in range(0, len(queries), 128):
        scores = queries[s : s + 128] @ layout.centroids.T  # (q, P)
        p = part[s : s + 128]
        # Rank of each target item's partition among the query's partitions, ties
        # broken towards the lower index as tf.math.top_k does; 0 = probed first.
        target = np.take_along_axis(scores, p, axis=1)[:, :, None]  # (q, T, 1)
        rank = (scores[:, None, :] > target).sum(-1) + (
            (scores[:, None, :] == target) & (np.arange(num_p) < p[:, :, None])
        ).sum(-1)
        counts += np.bincount(rank.ravel(), minlength=num_p + 1)
        # hits_q(p) steps from j - 1 to j at the j-th smallest rank, so hits_q(p)^2
        # steps by j^2 - (j - 1)^2 = 2j - 1 there: a difference array of squares.
        steps = np.broadcast_to(2 * np.arange(1, t + 1) - 1, rank.shape)
        squares += np.bincount(np.sort(rank, axis=1).ravel(), weights=steps.ravel(),
                               minlength=num_p + 1).astype(np.int64)
    mean = np.cumsum(counts)[:num_p] / max(exact_top.size, 1)
    if not with_std:
        return mean
    second = np.cumsum(squares)[:num_p] / max(q_n, 1) / max(t, 1) ** 2
    return mean, np.sqrt(np.maximum(second - mean**2, 0.0))


def split_bfloat16(x: np.ndarray) -> Tuple[tf.Tensor, tf.Tensor]:
    """`(hi, lo)` bfloat16 tensors with hi + lo = x to about 2^-17 relative (16 mantissa bits).

    hi = bfloat16(x) is what the coarse pass scores; lo = bfloat16(x - hi) restores the
    lower bits for the exact re-score. Together they take the bytes of float32 x.
    """
    x = tf.constant(np.asarray(x, np.float32))
    hi = tf.cast(x, tf.bfloat16)
    return hi, tf.cast(x - tf.cast(hi, tf.float32), tf.bfloat16)


def partitioned_search(
    queries: tf.Tensor,
    centroids: tf.Tensor,
    embeddings: tf.Tensor,
    members: tf.Tensor,
    nprobe: int,
    num_results: tf.Tensor,
    residuals: Optional[tf.Tensor] = None,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """Top items of each query from its `nprobe` best partitions, scored exactly.

    Each query's partitions are gathered and scored by one batched matmul, in blocks
    of queries whose gathered members stay under `_BLOCK_BYTES` (or, for wide probes of
    large batches, read off a dense matmul of the batch against every member,
    `_dense_probed_scores`: the same scores); the best results
    come from `top_k_by_block`. With bfloat16 `embeddings` (the `hi` half of
    `split_bfloat16`) that pass is coarse: it keeps the best max(2C, `REORDER_MIN`)
    candidates, which are re-scored in float32 from `embeddings + residuals` (ScaNN's
    reorder step) before the best C are taken.

    Args:
      queries: `(B, D)` float32.
      centroids: `(P, D)` float32 partition directions.
      embeddings: `(P, S, D)` float32 padded members, or bfloat16 `hi`.
      members: `(P, S)` int32 catalogue rows, -1 = padding.
      nprobe: partitions probed per query (Python int, 1 <= nprobe <= P).
      num_results: scalar int32 C, results per query (capped at nprobe * S).
      residuals: `(P, S, D)` bfloat16 `lo`, required with bfloat16 `embeddings`.

    Returns:
      `(rows, scores)`: `(B, C')` int32 catalogue rows (-1 where the probed partitions
      hold fewer than C items) and `(B, C')` float32 dot products, best first,
      C' = min(C, nprobe * S).
    """
    if (embeddings.dtype == tf.bfloat16) != (residuals is not None):
        raise ValueError("partitioned_search: residuals go with bfloat16 embeddings only, "
                         f"got {embeddings.dtype.name} embeddings, residuals given: "
                         f"{residuals is not None}")
    cap = embeddings.shape[1]
    c = tf.minimum(tf.cast(num_results, tf.int32), nprobe * cap)
    _, probe = tf.math.top_k(tf.matmul(queries, centroids, transpose_b=True), k=nprobe)
    if nprobe * embeddings.shape[-1] >= DENSE_RATIO * embeddings.shape[0]:
        scores = tf.cond(tf.shape(queries)[0] >= DENSE_MIN_BATCH,
                         lambda: _dense_probed_scores(queries, embeddings, probe),
                         lambda: _probed_scores(queries, embeddings, probe))
    else:
        scores = _probed_scores(queries, embeddings, probe)
    # scores: (B, nprobe, S) float32.
    # Padding scores MIN_FLOAT. (Folding this into the matmul with a bias column,
    # D + 1 = 65, measured 7% slower in batches and 25% for single queries: the odd
    # width costs the matmul more than the select it saves.)
    scores = tf.where(tf.gather(members, probe) >= 0, scores, MIN_FLOAT)
    # Selection blocks of about sqrt(nprobe * S / C) scores keep both `top_k` inputs
    # of `top_k_by_block` small (the flattened positions are the same).
    select = _SELECT_BLOCK if cap % _SELECT_BLOCK == 0 else cap
    scores = tf.reshape(scores, [-1, nprobe * cap // select, select])
    if residuals is None:
        top, pos = top_k_by_block(scores, c)
    else:
        r = tf.minimum(tf.maximum(2 * c, REORDER_MIN), nprobe * cap)
        coarse, pos = top_k_by_block(scores, r)
        at = tf.stack([tf.gather(probe, pos // cap, batch_dims=1), pos % cap], axis=-1)
        exact = (tf.cast(tf.gather_nd(embeddings, at), tf.float32)
                 + tf.cast(tf.gather_nd(residuals, at), tf.float32))  # (B, r, D)
        rescored = tf.where(coarse > MIN_FLOAT, tf.matmul(exact, queries[:, :, None])[..., 0],
                            MIN_FLOAT)
        top, best = tf.math.top_k(rescored, k=c)
        pos = tf.gather(pos, best, batch_dims=1)
    leaf = tf.gather(probe, pos // cap, batch_dims=1)
    rows = tf.gather_nd(members, tf.stack([leaf, pos % cap], axis=-1))
    return tf.where(top > MIN_FLOAT, rows, -1), top


def top_k_by_block(scores: tf.Tensor, c: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """`top_k` of `(B, T, S)` scores flattened to `(B, T * S)`, over the best c blocks only.

    The best c values lie in the c blocks of highest maximum (a block outside them
    has a maximum below c other blocks' maxima, hence below c distinct values), so
    this is exact up to ties. It pays because TF's `top_k` costs about 15 ns per
    input value on 2 cores while a max over contiguous S-wide blocks costs under
    1 ns: on (256, 370, 64) scores with c = 100 it cuts the `top_k` input 2.4x, and
    more for smaller c.

    Args:
      scores: `(B, T, S)` float32.
      c: scalar int32, c <= T * S.

    Returns:
      `(values, positions)`, each `(B, c)`, best first; positions index the
      flattened `T * S` axis.
    """
    t, s = scores.shape[1], scores.shape[2]
    blocks = tf.minimum(c, t)
    _, best = tf.math.top_k(tf.reduce_max(scores, axis=-1), k=blocks)  # (B, blocks)
    kept = tf.reshape(tf.gather(scores, best, batch_dims=1), [-1, blocks * s])
    top, pos = tf.math.top_k(kept, k=c)
    return top, tf.gather(best, pos // s, batch_dims=1) * s + pos % s


def exact_blocks(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """`(head, tail)` float32 views of catalogue rows `x` in the layout `exact_search`
    takes: head the whole `EXACT_BLOCK`-row blocks, tail the last n mod `EXACT_BLOCK`."""
    x = np.asarray(x, np.float32)
    full = len(x) // EXACT_BLOCK * EXACT_BLOCK
    return x[:full], x[full:]


def check_storage(storage: str) -> str:
    """`storage` if it is one of `STORAGES`, else a ValueError naming the choices."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    return storage


def exact_search(queries: tf.Tensor, head: tf.Tensor, tail: tf.Tensor, num_results
                 ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Exact top C of every query over the rows of `head` then `tail`, selected by blocks.

    One `top_k` over all n scores costs about 15 ns per score on 2 cores, more than
    the matmul: scoring `head` (a whole number of `EXACT_BLOCK`-row blocks) and
    selecting with `top_k_by_block` reads each score once for the block maxima and
    sorts only C blocks' worth, the same results (exact up to ties). `tail` holds
    the last n mod `EXACT_BLOCK` rows, merged as they are (kept apart so the scores
    of `head` reshape into blocks without a copy).

    Args:
      queries: `(B, D)` float32.
      head: `(nb * EXACT_BLOCK, D)` float32, the first rows of the catalogue.
      tail: `(t, D)` float32, the remaining rows, t < `EXACT_BLOCK` (may be 0).
      num_results: scalar int C, capped at n.

    Returns:
      `(rows, scores)`: `(B, C')` int32 catalogue rows and float32 scores, best first,
      C' = min(C, n).
    """
    b = tf.shape(queries)[0]
    nb, t = head.shape[0] // EXACT_BLOCK, tail.shape[0]
    if head.shape[0] != nb * EXACT_BLOCK or t >= EXACT_BLOCK:
        raise ValueError(f"exact_search: head must hold whole blocks of {EXACT_BLOCK} rows "
                         f"and tail fewer, got {head.shape[0]} and {t}")
    c = tf.minimum(tf.cast(num_results, tf.int32), nb * EXACT_BLOCK + t)
    if nb == 0:
        top, rows = tf.math.top_k(tf.matmul(queries, tail, transpose_b=True), k=c)
        return rows, top
    scores = tf.reshape(tf.matmul(queries, head, transpose_b=True), [b, nb, EXACT_BLOCK])
    top, rows = top_k_by_block(scores, tf.minimum(c, nb * EXACT_BLOCK))
    top = tf.concat([top, tf.matmul(queries, tail, transpose_b=True)], axis=1)
    rows = tf.concat([rows, tf.broadcast_to(tf.range(nb * EXACT_BLOCK, nb * EXACT_BLOCK + t),
                                            [b, t])], axis=1)
    top, pos = tf.math.top_k(top, k=c)
    return tf.gather(rows, pos, batch_dims=1), top


def _probed_scores(queries, embeddings, probe):
    """`(B, nprobe, S)` scores of each query against its own probed partitions."""
    d = embeddings.shape[-1]
    nprobe, cap = probe.shape[1], embeddings.shape[1]
    block = max(1, _BLOCK_BYTES // max(1, nprobe * cap * d * embeddings.dtype.size))

    def search_block(qb, pb):
        emb = tf.reshape(tf.gather(embeddings, pb), [-1, nprobe * cap, d])
        scores = tf.matmul(emb, tf.cast(qb, embeddings.dtype)[:, :, None])
        return tf.reshape(tf.cast(scores, tf.float32), [-1, nprobe, cap])

    return _by_blocks(search_block, queries, probe, block, (cap, d), parallel_iterations=2)


def _dense_probed_scores(queries, embeddings, probe):
    """`_probed_scores` read off one dense matmul of each block of queries against every member.

    Each block of g queries (its `(g, P S)` scores under `_DENSE_BYTES`; a batch over
    that runs in equal blocks, one at a time) is multiplied with the whole `(P S, D)`
    catalogue, and each query's probed partitions are gathered from its score row:
    the catalogue is read once per block instead of nprobe S D values once per query.
    (Small blocks lose: each reads the whole catalogue. At 1M items a block of 128
    queries took 26 ms of matmul, and a batch of 64 queries took 16% longer dense
    than gathered.)
    """
    num_p, cap, d = embeddings.shape
    flat = tf.reshape(embeddings, [num_p * cap, d])
    block = max(1, _DENSE_BYTES // (num_p * cap * embeddings.dtype.size))

    def search_block(qb, pb):
        scores = tf.matmul(tf.cast(qb, embeddings.dtype), flat, transpose_b=True)
        scores = tf.gather(tf.reshape(scores, [-1, num_p, cap]), pb, batch_dims=1)
        return tf.cast(scores, tf.float32)

    # One block at a time: a dense block's matmul already uses every core.
    return _by_blocks(search_block, queries, probe, block, (cap, d), parallel_iterations=1)


def _by_blocks(search_block, queries, probe, block, shape, parallel_iterations):
    """`(B, nprobe, S)` float32 `search_block(queries, probe)`, in blocks of <= `block` queries.

    A batch of at most `block` queries is one call; a larger one runs through `map_fn`
    (a few ms of loop machinery) in equal blocks, so a batch just over `block` pads
    little. `shape` is `(S, D)`.
    """
    (cap, d), nprobe = shape, probe.shape[1]

    def blocked():
        b = tf.shape(queries)[0]
        blocks = (b + block - 1) // block
        size = (b + blocks - 1) // blocks
        pad = blocks * size - b
        q = tf.reshape(tf.pad(queries, [[0, pad], [0, 0]]), [blocks, size, d])
        pr = tf.reshape(tf.pad(probe, [[0, pad], [0, 0]]), [blocks, size, nprobe])
        out = tf.map_fn(lambda a: search_block(*a), (q, pr), fn_output_signature=tf.float32,
                        parallel_iterations=parallel_iterations)
        return tf.reshape(out, [-1, nprobe, cap])[:b]

    return tf.cond(tf.shape(queries)[0] <= block, lambda: search_block(queries, probe), blocked)


__all__ = [
    "DEFAULT_CAPACITY",
    "EXACT_BLOCK",
    "PartitionLayout",
    "REORDER_MIN",
    "STORAGES",
    "build_partitions",
    "check_storage",
    "exact_blocks",
    "exact_search",
    "partitioned_search",
    "top_k_by_block",
    "probe_recall_curve",
    "spherical_kmeans",
    "split_bfloat16",
]
