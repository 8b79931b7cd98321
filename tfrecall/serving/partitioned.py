"""A partitioned (IVF) index from stock TensorFlow ops: k-means cells, probe, exact re-scoring.

Layout (built in numpy, seeded): spherical k-means splits the catalogue into about
sqrt(n) cells (Jegou et al., "Product quantization for nearest neighbor search",
TPAMI 2011, sec. IV-A: the inverted file). Cells are cut into *partitions* of at most
`capacity` items so that every partition pads to one tensor `(P, S, D)` with an id
tensor `(P, S)` (-1 = padding): popular topics make some cells many times the mean
size, and padding every cell to the largest would multiply the index's memory. An
oversized cell is split by a small k-means of its own (then cut in order if a piece
is still too big), and each partition is probed through the mean direction of its
own members.

Search (TensorFlow only, so stock TF Serving runs it): score the query against the
`P` partition centroids, take the best `nprobe`, gather their `(nprobe, S, D)`
members, score them exactly, mask the padding and `top_k`. Queries run in blocks
whose gathered members stay under a memory budget, so a large request batch never
materializes `(B, nprobe, S, D)` at once.

Recall is a function of `nprobe` alone, and it can be read off without searching:
the exact top-10 of a query is found by the index exactly when the partitions
holding those items are among the `nprobe` best-scored ones (the members are
re-scored exactly), so one ranking of the partitions per query gives the whole
recall curve (`probe_recall_curve`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np

from tfrecall._backend import tf
from tfrecall.losses.lists import MIN_FLOAT

# Gathered members per block of queries, in bytes: a few L2-cache-unfriendly MB is
# fine, hundreds of MB per request is not.
_BLOCK_BYTES = 16 * 2**20


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
    capacity: Optional[int] = None,
    iterations: int = 10,
    sample_size: int = 131_072,
    seed: int = 0,
) -> PartitionLayout:
    """Clusters the catalogue and packs it into equal-capacity padded partitions.

    Args:
      embeddings: `(n, D)` float32 item embeddings.
      num_clusters: k-means cells (default round(sqrt(n))).
      capacity: most items per partition S (default ceil(n / num_clusters), the mean
        cell size: larger cells are split, so the padded tensor stays near n rows).
      iterations: k-means iterations.
      sample_size: k-means trains on at most this many items (then assigns all).
      seed: k-means seed.

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
    centroids = spherical_kmeans(x, cells, iterations, sample_size, seed)
    cap = int(math.ceil(n / len(centroids))) if capacity is None else int(capacity)
    if cap < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    assign = _assign(x, centroids)
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(len(centroids) + 1))
    groups = []
    for c in range(len(centroids)):
        rows = order[bounds[c] : bounds[c + 1]]
        if len(rows) > cap:
            groups.extend(_split(x, rows, cap, seed + c + 1))
        elif len(rows):
            groups.append(rows)
    members = np.full((len(groups), cap), -1, np.int32)
    for p, rows in enumerate(groups):
        members[p, : len(rows)] = rows
    packed = np.where((members >= 0)[..., None], x[np.maximum(members, 0)], 0.0).astype(np.float32)
    # Probing by a partition's own mean direction, not its parent cell's, lets the
    # pieces of a split cell be told apart.
    cents = _unit_rows(packed.sum(axis=1)).astype(np.float32)
    return PartitionLayout(cents, members, packed)


def _split(x: np.ndarray, rows: np.ndarray, cap: int, seed: int) -> list:
    """Rows of one oversized cell as pieces of at most `cap` rows (k-means, then cut)."""
    parts = int(math.ceil(len(rows) / cap))
    sub = spherical_kmeans(x[rows], parts, iterations=5, seed=seed)
    assign = _assign(x[rows], sub)
    out = []
    for c in range(len(sub)):
        piece = rows[assign == c]
        out.extend(piece[s : s + cap] for s in range(0, len(piece), cap))
    return [p for p in out if len(p)]


def probe_recall_curve(
    layout: PartitionLayout, queries: np.ndarray, exact_top: np.ndarray
) -> np.ndarray:
    """Recall of the exact top items as a function of the number of probed partitions.

    Args:
      layout: the partitions.
      queries: `(Q, D)` float32 query embeddings.
      exact_top: `(Q, T)` int catalogue rows of each query's exact top T.

    Returns:
      `(P,)` float64: entry p-1 is the share of exact top items found when the best p
      partitions are probed (members are re-scored exactly, so an item is found iff
      its partition is probed).
    """
    num_p = layout.num_partitions
    part = layout.partition_of(int(layout.members.max()) + 1)[exact_top]  # (Q, T)
    counts = np.zeros(num_p, np.int64)
    for s in range(0, len(queries), 128):
        scores = queries[s : s + 128] @ layout.centroids.T  # (q, P)
        p = part[s : s + 128]
        # Rank of each target item's partition among the query's partitions, ties
        # broken towards the lower index as tf.math.top_k does; 0 = probed first.
        target = np.take_along_axis(scores, p, axis=1)[:, :, None]  # (q, T, 1)
        rank = (scores[:, None, :] > target).sum(-1) + (
            (scores[:, None, :] == target) & (np.arange(num_p) < p[:, :, None])
        ).sum(-1)
        counts += np.bincount(rank.ravel(), minlength=num_p)
    return np.cumsum(counts) / max(exact_top.size, 1)


def partitioned_search(
    queries: tf.Tensor,
    centroids: tf.Tensor,
    embeddings: tf.Tensor,
    members: tf.Tensor,
    nprobe: int,
    num_results: tf.Tensor,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """Top items of each query from its `nprobe` best partitions, scored exactly.

    Args:
      queries: `(B, D)` float32.
      centroids: `(P, D)` float32 partition directions.
      embeddings: `(P, S, D)` float32 padded members.
      members: `(P, S)` int32 catalogue rows, -1 = padding.
      nprobe: partitions probed per query (Python int, 1 <= nprobe <= P).
      num_results: scalar int32 C, results per query (capped at nprobe * S).

    Returns:
      `(rows, scores)`: `(B, C')` int32 catalogue rows (-1 where the probed partitions
      hold fewer than C items) and `(B, C')` float32 dot products, best first,
      C' = min(C, nprobe * S).
    """
    d = embeddings.shape[-1]
    cap = embeddings.shape[1]
    width = nprobe * cap
    c = tf.minimum(tf.cast(num_results, tf.int32), width)
    _, probe = tf.math.top_k(tf.matmul(queries, centroids, transpose_b=True), k=nprobe)
    block = max(1, _BLOCK_BYTES // max(1, width * d * 4))

    def search_block(qb, pb):
        # qb (b, D), pb (b, nprobe) -> rows and scores (b, c).
        emb = tf.reshape(tf.gather(embeddings, pb), [-1, width, d])
        ids = tf.reshape(tf.gather(members, pb), [-1, width])
        scores = tf.squeeze(tf.matmul(emb, qb[:, :, None]), -1)  # (b, width)
        scores = tf.where(ids >= 0, scores, MIN_FLOAT)
        top, pos = tf.math.top_k(scores, k=c)
        return tf.gather(ids, pos, batch_dims=1), top

    def blocked():
        # map_fn costs a few ms of loop machinery, so only batches too large for one
        # block go through it.
        b = tf.shape(queries)[0]
        blocks = (b + block - 1) // block
        pad = blocks * block - b
        q = tf.reshape(tf.pad(queries, [[0, pad], [0, 0]]), [blocks, block, d])
        pr = tf.reshape(tf.pad(probe, [[0, pad], [0, 0]]), [blocks, block, nprobe])
        rows, scores = tf.map_fn(
            lambda args: search_block(*args), (q, pr),
            fn_output_signature=(tf.int32, tf.float32), parallel_iterations=2,
        )
        return tf.reshape(rows, [-1, c])[:b], tf.reshape(scores, [-1, c])[:b]

    rows, scores = tf.cond(
        tf.shape(queries)[0] <= block, lambda: search_block(queries, probe), blocked
    )
    return rows, scores


__all__ = [
    "PartitionLayout",
    "build_partitions",
    "partitioned_search",
    "probe_recall_curve",
    "spherical_kmeans",
]
