"""What every index shares: the search interface, its report, exclusion and padding.

`Index.search(queries, k, exclude_rows)` is the one interface the export calls; an
index implements `candidates` (its best C rows per query) and inherits exclusion and
padding. Excluding items: brute force masks their scores before `top_k`; the
approximate indexes fetch K + M candidates (M = excluded per row) and drop the
excluded ones, so K remain whenever the catalogue has K items that are not excluded.
A row that cannot be filled gets row -1 and score `MIN_FLOAT`.

Index modules (`index`, `scann_index`) import this one; it imports none of them.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

from tfrecall._backend import tf
from tfrecall.losses.lists import MIN_FLOAT

# Recall is measured and tuned at this cut-off (the export serves K >= it usually).
RECALL_AT = 10


@dataclasses.dataclass
class IndexReport:
    """What an index builder built and measured.

    Attributes:
      kind: the index kind.
      mode: "exact" or the approximate scheme ("tree_ah", "ivf").
      num_items, dim: catalogue size and embedding width.
      recall_at_10: recall@10 against exact search on the tuning queries (1.0 for
        an exact index, measured for approximate ones).
      target_recall: the recall the tuning aimed at.
      target_met: whether recall_at_10 >= target_recall.
      tuning_queries: how many queries the recall was measured on, and their source
        ("user_queries" or "item_embeddings").
      build_seconds: building and tuning time.
      tuning_seconds: the tuning part of it (exact search on the tuning queries and
        the recall measurements).
      index_bytes: bytes of the index's tensors (what the SavedModel stores for it).
      params: the chosen settings (leaves, leaves_to_search, nprobe, ...).
      tuning_curve: [(setting, recall@10)] in the order tried.
    """

    kind: str
    mode: str
    num_items: int
    dim: int
    recall_at_10: float
    target_recall: float
    target_met: bool
    tuning_queries: int
    tuning_query_source: str
    build_seconds: float
    index_bytes: int
    params: Dict[str, object] = dataclasses.field(default_factory=dict)
    tuning_seconds: float = 0.0
    tuning_curve: List[Tuple[object, float]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["recall_at_10"] = round(self.recall_at_10, 5)
        d["build_seconds"] = round(self.build_seconds, 3)
        d["tuning_seconds"] = round(self.tuning_seconds, 3)
        d["tuning_curve"] = [[s, round(r, 5)] for s, r in self.tuning_curve]
        return d


class Index(tf.Module):
    """Base: `search(queries, num_results, exclude_rows)` -> `(B, K)` rows and scores."""

    kind = "index"

    def candidates(self, queries: tf.Tensor, num_results: tf.Tensor):
        """`(B, C)` int32 rows (-1 = none) and float32 scores, best first, C <= num_results."""
        raise NotImplementedError

    def search(self, queries: tf.Tensor, k: int, exclude_rows: Optional[tf.Tensor] = None):
        """The best `k` items per query, excluded rows removed.

        Args:
          queries: `(B, D)` float32.
          k: results per query (Python int).
          exclude_rows: optional `(B, M)` int32 catalogue rows never returned, -1 = none.

        Returns:
          `(rows, scores)`: `(B, k)` int32 (-1 where fewer than k items qualify) and
          `(B, k)` float32 (`MIN_FLOAT` there), best first.
        """
        if exclude_rows is None:
            rows, scores = self.candidates(queries, tf.constant(k, tf.int32))
        else:
            extra = tf.shape(exclude_rows)[1]
            rows, scores = self.candidates(queries, k + extra)
            rows, scores = drop_rows(rows, scores, exclude_rows)
        return top_k_padded(rows, scores, k)


def drop_rows(rows: tf.Tensor, scores: tf.Tensor, exclude_rows: tf.Tensor):
    """Marks candidates listed in `exclude_rows` as none (-1, `MIN_FLOAT`).

    Args:
      rows: `(B, C)` int32 candidate rows, -1 = none.
      scores: `(B, C)` float32.
      exclude_rows: `(B, M)` int32, -1 = padding.
    """
    hit = tf.reduce_any(tf.equal(rows[:, :, None], exclude_rows[:, None, :]), axis=-1)
    gone = tf.logical_or(hit, rows < 0)
    return tf.where(gone, -1, rows), tf.where(gone, MIN_FLOAT, scores)


def top_k_padded(rows: tf.Tensor, scores: tf.Tensor, k: int):
    """The best `k` of `(B, C)` candidates; C < k is padded with (-1, `MIN_FLOAT`)."""
    pad = tf.maximum(0, k - tf.shape(rows)[1])
    rows = tf.pad(rows, [[0, 0], [0, pad]], constant_values=-1)
    scores = tf.pad(scores, [[0, 0], [0, pad]], constant_values=MIN_FLOAT)
    # top_k keeps equal scores in index order, so (-1, MIN_FLOAT) slots stay last.
    top, pos = tf.math.top_k(scores, k=k)
    rows = tf.gather(rows, pos, batch_dims=1)
    return tf.where(top > MIN_FLOAT, rows, -1), top


__all__ = ["RECALL_AT", "Index", "IndexReport", "drop_rows", "top_k_padded"]
