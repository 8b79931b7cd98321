"""Indexes over the item catalogue, as `tf.Module`s traced into the serving SavedModel.

Three kinds, one interface (`index_base.Index.search`):

- ``brute_force``: exact `matmul` over all items, top C selected by blocks
  (`partitioned.exact_search`); stock TensorFlow ops.
- ``partitioned``: an inverted file of small leaves (`tfrecall.serving.partitioned`);
  stock TensorFlow ops, sub-linear, `nprobe` tuned to a target recall, members in
  bfloat16 hi + lo halves (coarse pass, exact re-score) or float32.
- ``scann``: ScaNN (`tfrecall.serving.scann_index`); needs the ScaNN ops to load.

Every builder follows the catalogue: below `exact_below` items the index is exact
(matmul + top_k for the stock-ops kinds, ScaNN's brute-force scorer), above it the
approximate setting is tuned at build time against exact search on sample queries:
the cheapest setting whose recall@10 *lower confidence bound* over the tuning queries
(`tuning.lower_bound`, default confidence 0.99) reaches `target_recall`, so the
served recall on new queries from the same distribution lands above the target, not
on either side of it. What was built and measured comes back as an `IndexReport`
(written beside the model by the export).

Imports run one way: this module imports `index_base`, `partitioned`, `tuning` and
`scann_index` (which imports the ScaNN package only when an index is built or loaded).
"""

from __future__ import annotations

import time
from typing import Optional, Tuple

import numpy as np

from tfrecall._backend import tf
from tfrecall.losses.lists import MIN_FLOAT
from tfrecall.serving import partitioned as ivf
from tfrecall.serving import tuning
from tfrecall.serving.index_base import (
    RECALL_AT,
    Index,
    IndexReport,
    drop_rows,
    top_k_padded,
)
from tfrecall.serving.scann_index import build_scann

INDEX_KINDS = ("scann", "brute_force", "partitioned")
DEFAULT_CONFIDENCE = 0.99


class BruteForceIndex(Index):
    """Exact search: `(B, D) x (n, D)^T`, best C selected by blocks (`partitioned.exact_search`).

    The catalogue is held as `head` (whole blocks of `partitioned.EXACT_BLOCK` rows)
    and `tail` (the rest), so the scores of `head` split into blocks without a copy.
    """

    kind = "brute_force"

    def __init__(self, embeddings: np.ndarray):
        super().__init__(name="brute_force_index")
        head, tail = ivf.exact_blocks(embeddings)
        self.head = tf.Variable(head, trainable=False)
        self.tail = tf.Variable(tail, trainable=False)

    def _scores(self, queries):
        return tf.concat([tf.matmul(queries, self.head, transpose_b=True),
                          tf.matmul(queries, self.tail, transpose_b=True)], axis=1)  # (B, n)

    def candidates(self, queries, num_results):
        return ivf.exact_search(queries, self.head, self.tail, num_results)

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
    """An inverted file searched with stock TensorFlow ops (see `partitioned`).

    Args:
      layout: the partitions.
      nprobe: partitions probed per query.
      storage: "bfloat16" (default): members held as bfloat16 hi/lo halves
        (`partitioned.split_bfloat16`, the bytes of float32), scored coarsely from hi,
        the best candidates re-scored exactly; "float32": scored exactly in one pass.

    A search for more results than the `nprobe` smallest partitions hold (k plus a long
    exclusion list) probes every partition instead, so excluded items never leave a
    row short merely because the probed partitions ran out (`tuning.min_probes`).
    """

    kind = "partitioned"

    def __init__(self, layout: ivf.PartitionLayout, nprobe: int, storage: str = "bfloat16"):
        super().__init__(name="partitioned_index")
        if not 1 <= nprobe <= layout.num_partitions:
            raise ValueError(f"nprobe must be in [1, {layout.num_partitions}], got {nprobe}")
        self.nprobe = int(nprobe)
        self.storage = ivf.check_storage(storage)
        self.centroids = tf.Variable(layout.centroids, trainable=False)
        self.partition_members = tf.Variable(layout.members, trainable=False)
        self.partition_residuals = None
        if storage == "float32":
            self.partition_embeddings = tf.Variable(layout.embeddings, trainable=False)
        else:
            hi, lo = ivf.split_bfloat16(layout.embeddings)
            self.partition_embeddings = tf.Variable(hi, trainable=False)
            self.partition_residuals = tf.Variable(lo, trainable=False)
        self.partition_fill = tuning.probe_fill((layout.members >= 0).sum(axis=1))

    def candidates(self, queries, num_results):
        def probing(nprobe):
            return lambda: ivf.partitioned_search(
                queries, self.centroids, self.partition_embeddings, self.partition_members,
                nprobe, num_results, residuals=self.partition_residuals)

        every = int(self.partition_fill.shape[0])
        if self.nprobe == every:
            return probing(every)()
        need = tuning.probes_needed(self.partition_fill, num_results)
        return tf.cond(need > self.nprobe, probing(every), probing(self.nprobe))


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
    capacity: int = ivf.DEFAULT_CAPACITY,
    confidence: float = DEFAULT_CONFIDENCE,
    storage: str = "bfloat16",
) -> Tuple[Index, IndexReport]:
    """An inverted file whose `nprobe` is the smallest reaching `target_recall` with margin.

    The recall curve over every `nprobe`, with its spread over the tuning queries,
    comes from one ranking of the partitions (`partitioned.probe_recall_curve`); the
    chosen setting is the smallest whose lower confidence bound reaches the target.
    It is then measured through the TensorFlow search itself, and raised if that
    bound falls short. Everything is seeded numpy or deterministic TF: the same
    data and seed give the same index.

    Args:
      embeddings: `(n, D)` float32 item embeddings.
      k: results per query the export serves (`nprobe` covers at least k items).
      queries: `(Q, D)` tuning queries (None: sampled item embeddings).
      target_recall: recall@10 to reach.
      exact_below: catalogues smaller than this are searched exactly (brute force).
      num_tuning_queries: queries sampled for tuning.
      seed: k-means and sampling seed.
      num_clusters: k-means cells (default about sqrt(n)).
      capacity: items per leaf S.
      confidence: of the lower bound on recall that must reach the target.
      storage: member storage, "bfloat16" or "float32" (`PartitionedIndex`).
    """
    ivf.check_storage(storage)  # before the build's minutes
    start = time.time()
    n = len(embeddings)
    if n < exact_below:
        # One partition holding everything would be exact too, but gathering the whole
        # catalogue per query is slower than the matmul of brute force.
        index, report = build_brute_force(embeddings)
        report.kind = "partitioned"
        report.target_recall = target_recall
        return index, report
    layout = ivf.build_partitions(embeddings, num_clusters=num_clusters, capacity=capacity,
                                  seed=seed)
    tuning_start = time.time()
    q, source = tuning.sample_queries(queries, embeddings, num_tuning_queries, seed)
    exact_rows, exact_scores = tuning.exact_top_k(q, embeddings, RECALL_AT)
    curve, spread = ivf.probe_recall_curve(layout, q, exact_rows, with_std=True)
    bound = np.array([tuning.lower_bound(m, sd, len(q), confidence)
                      for m, sd in zip(curve, spread, strict=True)])
    # The nprobe smallest partitions must hold k items, so K results always come back.
    min_probe = tuning.min_probes((layout.members >= 0).sum(axis=1), k)
    reach = np.nonzero(bound >= target_recall - 1e-12)[0]
    nprobe = int(reach[0]) + 1 if len(reach) else layout.num_partitions
    nprobe = min(max(nprobe, min_probe), layout.num_partitions)
    index = PartitionedIndex(layout, nprobe, storage)
    tried = []
    while True:
        index.nprobe = nprobe  # read when a search is traced or run eagerly
        rows, _ = index.candidates(tf.constant(q), tf.constant(RECALL_AT))
        per_query = tuning.recall_at_k(rows.numpy(), q, embeddings, exact_scores, RECALL_AT,
                                       per_query=True)
        recall = float(per_query.mean())
        low = tuning.lower_bound(recall, float(per_query.std()), len(q), confidence)
        tried.append((nprobe, recall))
        if low >= target_recall or nprobe == layout.num_partitions:
            break
        nprobe = min(layout.num_partitions, nprobe + max(1, nprobe // 20))
    members = int((layout.members >= 0).sum())
    report = IndexReport(
        kind="partitioned", mode="ivf", num_items=n,
        dim=embeddings.shape[1], recall_at_10=recall, target_recall=target_recall,
        target_met=low >= target_recall, tuning_queries=len(q), tuning_query_source=source,
        build_seconds=time.time() - start, tuning_seconds=time.time() - tuning_start,
        index_bytes=layout.nbytes,
        params={
            "num_partitions": layout.num_partitions, "capacity": layout.capacity,
            "nprobe": nprobe, "storage": storage,
            "scanned_fraction": round(nprobe * layout.capacity / n, 5),
            "padded_rows": int(layout.members.size), "padding": round(layout.members.size
                                                                      / members, 4),
            "recall_lower_bound": round(low, 5), "confidence": confidence, "seed": seed,
            "deterministic": True,
        },
        tuning_curve=[
            (f"nprobe={p}", float(curve[p - 1])) for p in tuning.schedule(layout.num_partitions)
        ] + [(f"nprobe={p} (measured by search)", r) for p, r in tried],
    )
    return index, report


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
      target_recall: recall@10 the approximate indexes are tuned to (0 < t <= 1): the
        lower 0.99 confidence bound of their recall over the tuning queries reaches it.
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
