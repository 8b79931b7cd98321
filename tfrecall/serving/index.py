"""Indexes over the item catalogue, as `tf.Module`s traced into the serving SavedModel.

Three kinds, one interface (`Index.search`):

- ``brute_force``: exact `matmul` + `top_k` over all items; stock TensorFlow ops.
- ``partitioned``: an inverted file (`tfrecall.serving.partitioned`); stock
  TensorFlow ops, sub-linear, `nprobe` tuned to a target recall.
- ``scann``: ScaNN (`tfrecall.serving.scann_index`); needs the ScaNN ops to load.

Every builder follows the catalogue: below `exact_below` items the index is exact
(matmul + top_k for the stock-ops kinds, ScaNN's brute-force scorer), above it the
approximate setting is tuned at build time against exact search on sample queries
until recall@10 reaches `target_recall`. What was built and measured comes back as
an `IndexReport` (written beside the model by the export).

Excluding items (`exclude_rows`): brute force masks their scores before `top_k`; the
approximate indexes fetch K + M candidates (M = excluded per row) and drop the
excluded ones, so K remain whenever the catalogue has K items that are not excluded.
A row that cannot be filled gets row -1 and score `MIN_FLOAT`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from tfrecall._backend import tf
from tfrecall.losses.lists import MIN_FLOAT
from tfrecall.serving import partitioned as ivf
from tfrecall.serving import tuning

INDEX_KINDS = ("scann", "brute_force", "partitioned")
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


class BruteForceIndex(Index):
    """Exact search: `(B, D) x (n, D)^T` then `top_k`."""

    kind = "brute_force"

    def __init__(self, embeddings: np.ndarray):
        super().__init__(name="brute_force_index")
        self.embeddings = tf.Variable(np.asarray(embeddings, np.float32), trainable=False)

    def _scores(self, queries):
        return tf.matmul(queries, self.embeddings, transpose_b=True)  # (B, n)

    def candidates(self, queries, num_results):
        c = tf.minimum(tf.cast(num_results, tf.int32), tf.shape(self.embeddings)[0])
        top, rows = tf.math.top_k(self._scores(queries), k=c)
        return rows, top

    def search(self, queries, k, exclude_rows=None):
        if exclude_rows is None:
            return super().search(queries, k)
        # Masking the (B, n) scores is exact and cheaper than over-fetching here.
        scores = self._scores(queries)
        pos = tf.where(exclude_rows >= 0)  # (E, 2): (batch row, slot)
        idx = tf.stack([pos[:, 0], tf.cast(tf.gather_nd(exclude_rows, pos), tf.int64)], axis=1)
        scores = tf.tensor_scatter_nd_update(
            scores, idx, tf.fill([tf.shape(idx)[0]], tf.constant(MIN_FLOAT, tf.float32))
        )
        c = tf.minimum(k, tf.shape(scores)[1])
        top, rows = tf.math.top_k(scores, k=c)
        return top_k_padded(tf.where(top > MIN_FLOAT, rows, -1), top, k)


class PartitionedIndex(Index):
    """An inverted file searched with stock TensorFlow ops (see `partitioned`)."""

    kind = "partitioned"

    def __init__(self, layout: ivf.PartitionLayout, nprobe: int):
        super().__init__(name="partitioned_index")
        if not 1 <= nprobe <= layout.num_partitions:
            raise ValueError(f"nprobe must be in [1, {layout.num_partitions}], got {nprobe}")
        self.nprobe = int(nprobe)
        self.centroids = tf.Variable(layout.centroids, trainable=False)
        self.partition_embeddings = tf.Variable(layout.embeddings, trainable=False)
        self.partition_members = tf.Variable(layout.members, trainable=False)

    def candidates(self, queries, num_results):
        return ivf.partitioned_search(
            queries, self.centroids, self.partition_embeddings, self.partition_members,
            self.nprobe, num_results,
        )


def build_brute_force(embeddings: np.ndarray) -> Tuple[BruteForceIndex, IndexReport]:
    """The exact index (nothing to tune: recall 1)."""
    start = time.time()
    index = BruteForceIndex(embeddings)
    return index, IndexReport(
        kind="brute_force", mode="exact", num_items=len(embeddings), dim=embeddings.shape[1],
        recall_at_10=1.0, target_recall=1.0, target_met=True, tuning_queries=0,
        tuning_query_source="none", build_seconds=time.time() - start,
        index_bytes=int(embeddings.astype(np.float32).nbytes),
    )


def build_partitioned(
    embeddings: np.ndarray,
    k: int,
    queries: Optional[np.ndarray] = None,
    target_recall: float = 0.95,
    exact_below: int = 10_000,
    num_tuning_queries: int = 1000,
    seed: int = 0,
    num_clusters: Optional[int] = None,
) -> Tuple[PartitionedIndex, IndexReport]:
    """An inverted file whose `nprobe` is the smallest reaching `target_recall`.

    The recall curve over every `nprobe` comes from one ranking of the partitions
    (`partitioned.probe_recall_curve`); the chosen setting is then measured through
    the TensorFlow search itself, and raised if that falls short.

    Args:
      embeddings: `(n, D)` float32 item embeddings.
      k: results per query the export serves (`nprobe` covers at least k items).
      queries: `(Q, D)` tuning queries (None: sampled item embeddings).
      target_recall: recall@10 to reach.
      exact_below: catalogues smaller than this are searched exactly (brute force).
      num_tuning_queries: queries sampled for tuning.
      seed: k-means and sampling seed.
      num_clusters: k-means cells (default about sqrt(n)).
    """
    start = time.time()
    n = len(embeddings)
    if n < exact_below:
        # One partition holding everything would be exact too, but gathering the whole
        # catalogue per query is slower than the matmul of brute force.
        index, report = build_brute_force(embeddings)
        report.kind = "partitioned"
        report.target_recall = target_recall
        return index, report
    layout = ivf.build_partitions(embeddings, num_clusters=num_clusters, seed=seed)
    tuning_start = time.time()
    q, source = tuning.sample_queries(queries, embeddings, num_tuning_queries, seed)
    exact_rows, exact_scores = tuning.exact_top_k(q, embeddings, RECALL_AT)
    curve = ivf.probe_recall_curve(layout, q, exact_rows)
    # The nprobe smallest partitions must hold k items, so K results always come back.
    fill = np.sort((layout.members >= 0).sum(axis=1))
    min_probe = int(np.searchsorted(np.cumsum(fill), min(k, n))) + 1
    reach = np.nonzero(curve >= target_recall - 1e-12)[0]
    nprobe = int(reach[0]) + 1 if len(reach) else layout.num_partitions
    nprobe = min(max(nprobe, min_probe), layout.num_partitions)
    index = PartitionedIndex(layout, nprobe)
    tried = []
    while True:
        index.nprobe = nprobe  # read when a search is traced or run eagerly
        rows, _ = index.candidates(tf.constant(q), tf.constant(RECALL_AT))
        recall = tuning.recall_at_k(rows.numpy(), q, embeddings, exact_scores, RECALL_AT)
        tried.append((nprobe, recall))
        if recall >= target_recall or nprobe == layout.num_partitions:
            break
        nprobe = min(layout.num_partitions, nprobe + max(1, nprobe // 10))
    report = IndexReport(
        kind="partitioned", mode="ivf", num_items=n,
        dim=embeddings.shape[1], recall_at_10=recall, target_recall=target_recall,
        target_met=recall >= target_recall, tuning_queries=len(q), tuning_query_source=source,
        build_seconds=time.time() - start, tuning_seconds=time.time() - tuning_start,
        index_bytes=layout.nbytes,
        params={
            "num_partitions": layout.num_partitions, "capacity": layout.capacity,
            "nprobe": nprobe, "scanned_fraction": round(nprobe * layout.capacity / n, 5),
            "padded_rows": int(layout.members.size),
        },
        tuning_curve=[
            (f"nprobe={p}", float(curve[p - 1])) for p in _schedule(layout.num_partitions)
        ] + [(f"nprobe={p} (measured by search)", r) for p, r in tried],
    )
    return index, report


def _schedule(total: int) -> List[int]:
    """Settings reported/tried in a tuning curve: 0.2% .. 100% of `total`, ascending."""
    fractions = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1)
    return sorted({max(1, min(total, int(math.ceil(total * f)))) for f in fractions})


def build_index(
    kind: str,
    embeddings: np.ndarray,
    k: int,
    queries: Optional[np.ndarray] = None,
    target_recall: float = 0.95,
    exact_below: int = 10_000,
    seed: int = 0,
) -> Tuple[Index, IndexReport]:
    """Builds (and tunes) the index `kind` over `embeddings`.

    Args:
      kind: one of `INDEX_KINDS`.
      embeddings: `(n, D)` float32 item embeddings, row i = catalogue item i.
      k: results per query the export serves.
      queries: `(Q, D)` float32 sample user queries for tuning (None: item embeddings).
      target_recall: recall@10 the approximate indexes are tuned to (0 < t <= 1).
      exact_below: catalogues smaller than this are searched exactly.
      seed: seed of clustering and query sampling.

    Returns:
      `(index, report)`.

    Raises:
      ValueError: unknown kind, bad target, empty catalogue.
    """
    if kind not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {kind!r}")
    if not 0 < target_recall <= 1:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall!r}")
    embeddings = np.asarray(embeddings, np.float32)
    if embeddings.ndim != 2 or len(embeddings) == 0:
        raise ValueError(f"embeddings must be a non-empty (n, D) array, got {embeddings.shape}")
    if queries is not None and len(queries):  # checked here so exact builds fail fast too
        queries = tuning.sample_queries(queries, embeddings, len(queries))[0]
    else:
        queries = None
    common = dict(queries=queries, target_recall=target_recall, exact_below=exact_below, seed=seed)
    if kind == "brute_force":
        return build_brute_force(embeddings)
    if kind == "partitioned":
        return build_partitioned(embeddings, k, **common)
    from tfrecall.serving.scann_index import build_scann  # ScaNN ops load only if needed

    return build_scann(embeddings, k, **common)


__all__ = [
    "INDEX_KINDS",
    "BruteForceIndex",
    "Index",
    "IndexReport",
    "PartitionedIndex",
    "build_brute_force",
    "build_index",
    "build_partitioned",
    "drop_rows",
    "top_k_padded",
]
