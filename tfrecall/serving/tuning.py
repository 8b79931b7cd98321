"""Exact search and recall against it: the yardstick every index is tuned with.

Recall@k here counts a returned item as a hit when its exact score reaches the k-th
best exact score of the query (ScaNN's own tests compare distances, not ids, for the
same reason): with tied scores, which of the tied items an index returns is
arbitrary, and an id comparison would call a correct answer a miss.
"""

from __future__ import annotations

import math
import statistics
from typing import List, Optional, Tuple

import numpy as np

from tfrecall._backend import tf
from tfrecall.serving.partitioned import exact_blocks, exact_search

# Exact scores are float32 dot products; the same pair scored by two code paths (numpy
# BLAS, TensorFlow, ScaNN's reordering) can differ in the last bits.
SCORE_TOLERANCE = 1e-5


def exact_top_k(
    queries: np.ndarray, embeddings: np.ndarray, k: int, chunk: int = 64
) -> Tuple[np.ndarray, np.ndarray]:
    """Exact top-k by dot product, in query chunks so `(chunk, n)` scores fit in memory.

    Scored by `partitioned.exact_search` (matmul, then `top_k` over the best blocks),
    several times faster than numpy's `argpartition` or one `top_k` over all n at 1M
    items on 2 cores, which matters as tuning runs it on every export.

    Args:
      queries: `(Q, D)` float32.
      embeddings: `(n, D)` float32.
      k: results per query (capped at n).
      chunk: queries scored at once.

    Returns:
      `(rows, scores)`: `(Q, k)` int64 catalogue rows and `(Q, k)` float32 scores,
      best first.
    """
    k = min(int(k), len(embeddings))
    head, tail = (tf.constant(part) for part in exact_blocks(embeddings))
    rows_out = np.zeros((len(queries), k), np.int64)
    scores_out = np.zeros((len(queries), k), np.float32)
    for s in range(0, len(queries), chunk):
        q = tf.constant(np.asarray(queries[s : s + chunk], np.float32))
        rows, top = exact_search(q, head, tail, k)
        rows_out[s : s + chunk] = rows.numpy()
        scores_out[s : s + chunk] = top.numpy()
    return rows_out, scores_out


def recall_at_k(
    found: np.ndarray,
    queries: np.ndarray,
    embeddings: np.ndarray,
    exact_scores: np.ndarray,
    k: int = 10,
    per_query: bool = False,
):
    """Share of the first k found items whose exact score reaches the k-th exact score.

    Args:
      found: `(Q, >= k)` int catalogue rows returned by an index, best first; -1 = none.
      queries: `(Q, D)` float32 query embeddings.
      embeddings: `(n, D)` float32 catalogue embeddings.
      exact_scores: `(Q, >= k)` float32 exact top scores, best first (`exact_top_k`).
      k: the cut-off.

      per_query: return each query's recall `(Q,)` instead of the mean.

    Returns:
      Recall@k in [0, 1] (found items are re-scored exactly: an index's own scores
      may be approximate).
    """
    k = min(int(k), exact_scores.shape[1])
    if found.shape[1] < k:
        raise ValueError(f"recall_at_k: found has {found.shape[1]} columns, fewer than k={k}")
    rows = found[:, :k]
    valid = rows >= 0
    scores = np.einsum("qd,qkd->qk", queries, embeddings[np.maximum(rows, 0)])
    hits = valid & (scores >= exact_scores[:, k - 1 : k] - SCORE_TOLERANCE)
    if per_query:
        return hits.mean(axis=1)
    return float(hits.sum() / max(rows.size, 1))


def lower_bound(mean: float, std: float, num_queries: int, confidence: float) -> float:
    """One-sided normal lower confidence bound of a mean recall over tuning queries.

    `mean - z * std / sqrt(Q)`, z the `confidence` quantile of the standard normal
    (per-query recalls are bounded and Q is hundreds, so the normal approximation of
    their mean holds). Tuning stops where this bound, not the mean, reaches the
    target: stopping at the mean lands the served recall on either side of the
    target about half the time (issue 16).
    """
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
    z = statistics.NormalDist().inv_cdf(confidence)
    return float(mean - z * std / math.sqrt(max(num_queries, 1)))


def schedule(total: int) -> List[int]:
    """Settings reported/tried in a tuning curve: 0.2% .. 100% of `total`, ascending."""
    fractions = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1)
    return sorted({max(1, min(total, int(math.ceil(total * f)))) for f in fractions})


def min_probes(sizes: np.ndarray, k: int) -> int:
    """Fewest partitions that hold at least k items whichever ones a query probes.

    The smallest partitions first: probing this many of any partitions returns k items
    (or the whole catalogue when it holds fewer), so an index never pads a result row
    merely because the probed partitions were small.
    """
    fill = np.sort(np.asarray(sizes))
    need = min(int(k), int(fill.sum()))
    return min(int(np.searchsorted(np.cumsum(fill), need)) + 1, len(fill))


def probe_fill(sizes: np.ndarray) -> tf.Tensor:
    """`(P,)` int32 running sums of the partition sizes, smallest first: what
    `probes_needed` reads at search time."""
    return tf.constant(np.cumsum(np.sort(np.asarray(sizes, np.int64))).astype(np.int32))


def probes_needed(fill: tf.Tensor, num_results) -> tf.Tensor:
    """`min_probes` in-graph: the fewest partitions holding `num_results` items
    (capped at the catalogue) whichever ones a query probes; scalar int32."""
    c = tf.minimum(tf.cast(num_results, tf.int32), fill[-1])
    return tf.searchsorted(fill, tf.reshape(c, [1]))[0] + 1


def sample_queries(
    queries: Optional[np.ndarray],
    embeddings: np.ndarray,
    num_queries: int,
    seed: int = 0,
) -> Tuple[np.ndarray, str]:
    """The tuning queries: up to `num_queries` rows of `queries`, else of the catalogue.

    Real user queries are what the index will serve; when the caller has none, item
    embeddings stand in (they lie on the catalogue, so they are somewhat easier
    queries than users are: the tuned setting may fall a little short on real users).

    Returns:
      `(Q, D)` float32 queries and their source, "user_queries" or "item_embeddings".
    """
    rng = np.random.default_rng(seed)
    source = "user_queries"
    if queries is None or len(queries) == 0:
        queries, source = embeddings, "item_embeddings"
    queries = np.asarray(queries, np.float32)
    if queries.ndim != 2 or queries.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"tuning queries must be (Q, {embeddings.shape[1]}) like the item embeddings, "
            f"got shape {queries.shape}"
        )
    if len(queries) > num_queries:
        queries = queries[np.sort(rng.choice(len(queries), num_queries, replace=False))]
    return queries, source


__all__ = [
    "SCORE_TOLERANCE",
    "exact_top_k",
    "lower_bound",
    "recall_at_k",
    "sample_queries",
    "schedule",
]
