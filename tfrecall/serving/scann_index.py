"""The ScaNN index: a partition tree, anisotropic hashing and exact re-ordering, tuned.

ScaNN (Guo et al., "Accelerating Large-Scale Inference with Anisotropic Vector
Quantization", ICML 2020) scores the items of the `leaves_to_search` partitions
nearest the query with 4-bit anisotropic product codes, then re-scores the best
`reorder` of them exactly. Catalogues below `exact_below` items use its exact
brute-force scorer instead.

Both knobs are fixed at build time by tuning: for the first re-ordering depth that
works, the smallest `leaves_to_search` whose recall@10 against exact search reaches
the target with a margin (its lower confidence bound over the tuning queries,
`tuning.lower_bound`; a coarse ascending schedule, then bisection). They are passed
to the search op at every call, so the exported SavedModel serves exactly what was
measured. `leaves_to_search` never drops below the fewest leaves that hold k items
whichever a query lands in (`tuning.min_probes` over the tree's leaf sizes), as the
partitioned index's `nprobe`: otherwise a query near a small leaf gets a padded row.
At search time the floor rises with the exclusion list (k plus its width), so a user
whose long history is excluded still gets k items.

Determinism: ScaNN's training is not deterministic, and no builder option makes it
so: the same data and seed gave 40, 37 and 38 leaves searched over three 1M-item
builds (issue 16), and even on one training thread (`set_n_training_threads(1)`)
two builds of 20k items serialize different partitioner and quantizer tensors. What
the tuning does guarantee is its stopping rule: whatever tree a build gets, the
settings chosen are the cheapest whose recall lower bound reaches the target on the
tuning queries (tested over repeated builds), so the served recall stays above the
target while `leaves_to_search` may differ by a few leaves between builds.

In the SavedModel the searcher lives as `searcher.serialize_to_module()` (a
`tf.Module` of plain tensors) and is re-created with `searcher_from_module` inside
the traced function; a searcher built outside and captured fails at save with
"references an 'untracked' resource". Loading needs `import scann` first (it
registers the `Scann>...` ops), and TF Serving needs its ScaNN-enabled build.
"""

from __future__ import annotations

import math
import time
from typing import Optional, Tuple

import numpy as np

from tfrecall._backend import tf
from tfrecall.losses.lists import MIN_FLOAT
from tfrecall.serving import tuning
from tfrecall.serving.index_base import RECALL_AT, Index, IndexReport


def import_scann_ops():
    """`scann.scann_ops.py.scann_ops`, with an install hint when ScaNN is missing."""
    try:
        from scann.scann_ops.py import scann_ops
    except ImportError as e:  # pragma: no cover - scann is a hard dependency of setup.py
        raise ImportError(
            "index='scann' needs the scann package (pip install 'scann~=1.4.2'); "
            "or export with index='partitioned' or 'brute_force' (stock TensorFlow ops)"
        ) from e
    return scann_ops


class ScannIndex(Index):
    """A serialized ScaNN searcher plus the search settings chosen by tuning.

    Args:
      state: `searcher.serialize_to_module()`.
      num_items: catalogue size n.
      leaves_to_search: partitions searched per query (None: exact scorer).
      reorder: candidates re-scored exactly (None: exact scorer).
      leaf_sizes: `(L,)` items per leaf of the tree (None: exact scorer). A search
        for C results (k plus the width of the exclusion list) reads at least the
        fewest leaves that hold C items wherever the query lands, so excluded items
        never leave a row short merely because the searched leaves were small.
    """

    kind = "scann"

    def __init__(self, state, num_items: int, leaves_to_search: Optional[int] = None,
                 reorder: Optional[int] = None, leaf_sizes: Optional[np.ndarray] = None):
        super().__init__(name="scann_index")
        self.state = state
        self.num_items = int(num_items)
        self.leaves_to_search = leaves_to_search
        self.reorder = reorder
        self.leaf_fill = None if leaf_sizes is None else tuning.probe_fill(leaf_sizes)

    def candidates(self, queries, num_results):
        scann_ops = import_scann_ops()
        searcher = scann_ops.searcher_from_module(self.state)
        c = tf.minimum(tf.cast(num_results, tf.int32), self.num_items)
        pre = -1 if self.reorder is None else tf.maximum(c, self.reorder)
        leaves = -1 if self.leaves_to_search is None else self.leaves_to_search
        if self.leaves_to_search is not None and self.leaf_fill is not None:
            leaves = tf.maximum(leaves, tuning.probes_needed(self.leaf_fill, c))

        def search():
            rows, scores = searcher.search_batched(
                queries, final_num_neighbors=c, pre_reorder_num_neighbors=pre,
                leaves_to_search=leaves,
            )
            return tf.cast(rows, tf.int32), scores

        def empty():
            return tf.zeros([0, c], tf.int32), tf.zeros([0, c], tf.float32)

        # The ScaNN op fails on an empty batch instead of returning one.
        rows, scores = tf.cond(tf.shape(queries)[0] > 0, search, empty)
        # When the searched leaves hold fewer than c items, ScaNN pads a row with
        # item 0 and score NaN.
        none = tf.math.is_nan(scores)
        return tf.where(none, -1, rows), tf.where(none, MIN_FLOAT, scores)


def _recall(index: ScannIndex, q, embeddings, exact_scores, confidence: float):
    """`(recall@10, its lower confidence bound)` of `index` on the tuning queries."""
    rows, _ = index.candidates(tf.constant(q), tf.constant(RECALL_AT))
    per_query = tuning.recall_at_k(rows.numpy(), q, embeddings, exact_scores, RECALL_AT,
                                   per_query=True)
    mean = float(per_query.mean())
    return mean, tuning.lower_bound(mean, float(per_query.std()), len(q), confidence)


def build_scann(
    embeddings: np.ndarray,
    k: int,
    queries: Optional[np.ndarray] = None,
    target_recall: float = 0.95,
    exact_below: int = 10_000,
    seed: int = 0,
    num_tuning_queries: int = 1000,
    num_leaves: Optional[int] = None,
    reorder: Optional[int] = None,
    training_sample_size: int = 250_000,
    confidence: float = 0.99,
) -> Tuple[ScannIndex, IndexReport]:
    """Builds a ScaNN searcher over `embeddings` (dot product) and tunes it.

    Args:
      embeddings: `(n, D)` float32 item embeddings.
      k: results per query the export serves (re-ordering covers at least k).
      queries: `(Q, D)` tuning queries (None: sampled item embeddings).
      target_recall: recall@10 to reach.
      exact_below: smaller catalogues use the exact scorer.
      seed: query-sampling seed (ScaNN's own training is not deterministic: the
        tuned settings may differ slightly between builds; see the module doc).
      num_tuning_queries: queries sampled for tuning.
      num_leaves: partitions (default about sqrt(n)).
      reorder: first re-ordering depth tried (default max(200, 2k)); doubled up to
        twice when even searching every leaf misses the target.
      training_sample_size: items the partitioner trains on.
      confidence: of the lower bound on recall that must reach the target.

    Returns:
      `(index, report)`.
    """
    scann_ops = import_scann_ops()
    start = time.time()
    n, dim = embeddings.shape
    q, source = tuning.sample_queries(queries, embeddings, num_tuning_queries, seed)
    _, exact_scores = tuning.exact_top_k(q, embeddings, RECALL_AT)
    exact_seconds = time.time() - start
    db = tf.constant(embeddings, tf.float32)
    builder = scann_ops.builder(db, min(k, n), "dot_product")
    if n < exact_below:
        index = ScannIndex(builder.score_brute_force().build().serialize_to_module(), n)
        recall, _ = _recall(index, q, embeddings, exact_scores, confidence)
        return index, _report("exact", index, n, dim, recall, target_recall, q, source, start,
                              {}, [], exact_seconds)

    leaves = int(num_leaves or max(2, round(math.sqrt(n))))
    first_reorder = int(reorder or max(200, 2 * k))
    searcher = (
        builder.tree(num_leaves=leaves, num_leaves_to_search=max(1, leaves // 10),
                     training_sample_size=min(n, training_sample_size))
        .score_ah(2, anisotropic_quantization_threshold=0.2)
        .reorder(first_reorder)
        .build()
    )
    state = searcher.serialize_to_module()
    # ScaNN returns fewer than k rows when the searched leaves hold fewer items (a small
    # leaf near the query): search at least enough leaves that any of them hold k (and
    # at search time, k plus the exclusions: `ScannIndex.candidates`).
    sizes = np.bincount(state.datapoint_to_token.numpy().ravel(), minlength=leaves)
    min_leaves = tuning.min_probes(sizes, k)
    index = ScannIndex(state, n, leaf_sizes=sizes)
    tuning_start = time.time()
    curve = []

    def measure(search_leaves, depth):
        index.leaves_to_search, index.reorder = search_leaves, depth
        r = _recall(index, q, embeddings, exact_scores, confidence)
        curve.append((f"leaves={search_leaves},reorder={depth}", r[0]))
        return r

    best = None
    for depth in (first_reorder, 2 * first_reorder, 4 * first_reorder):
        lo, hi = min_leaves - 1, None  # bound(lo) < target <= bound(hi)
        for s in sorted({max(s, min_leaves) for s in tuning.schedule(leaves)}):
            r = measure(s, depth)
            if r[1] >= target_recall:
                hi = (s, r)
                break
            lo = s
        if hi is None:
            if best is None or r[1] > best[2][1]:
                best = (leaves, depth, r)
            continue
        while hi[0] - lo > 1:  # bisect to the smallest setting (recall rises with it)
            mid = (lo + hi[0]) // 2
            r = measure(mid, depth)
            if r[1] >= target_recall:
                hi = (mid, r)
            else:
                lo = mid
        best = (hi[0], depth, hi[1])
        break
    index.leaves_to_search, index.reorder, (recall, low) = best
    params = {"num_leaves": leaves, "leaves_to_search": index.leaves_to_search,
              "min_leaves_to_search": min_leaves,
              "reorder": index.reorder, "ah_dims_per_block": 2,
              "anisotropic_quantization_threshold": 0.2,
              "recall_lower_bound": round(low, 5), "confidence": confidence, "seed": seed,
              "deterministic": False}
    return index, _report("tree_ah", index, n, dim, recall, target_recall, q, source, start,
                          params, curve, exact_seconds + time.time() - tuning_start)


def _report(mode, index, n, dim, recall, target, q, source, start, params, curve, tuning_s):
    state_bytes = 0
    for v in index.state.variables:
        a = np.asarray(v.numpy())
        state_bytes += sum(len(x) for x in a.ravel()) if a.dtype == object else a.nbytes
    return IndexReport(
        kind="scann", mode=mode, num_items=n, dim=dim, recall_at_10=recall,
        target_recall=target, target_met=params.get("recall_lower_bound", recall) >= target,
        tuning_queries=len(q),
        tuning_query_source=source, build_seconds=time.time() - start,
        index_bytes=int(state_bytes), params=params, tuning_curve=curve, tuning_seconds=tuning_s,
    )


__all__ = ["ScannIndex", "build_scann", "import_scann_ops"]
