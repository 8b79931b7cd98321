"""Full-catalogue retrieval metrics: Recall@K and NDCG@K (and HitRate@K).

Every held-out (user, item) pair is ranked against the WHOLE catalogue, not a sampled
subset (sampled metrics are known to misorder models: Krichene & Rendle, KDD 2020).

Protocol (`exclude_train=True`, the default and what the pipelines print):
- each user's training positives are removed from that user's ranking (a recall
  system filters what the user already has);
- held-out pairs whose item the user already has in training are dropped from the
  targets (they cannot be retrieved once excluded), and duplicate pairs count once;
- ``recall@K`` is per pair (micro): hits / held-out pairs, the convention of the
  MovieLens reference figures in ../shared/data/README.md. ``user_recall@K``,
  ``ndcg@K``, ``hit_rate@K`` and ``mrr`` are per user (macro): means over users with
  at least one held-out pair. A held-out item missing from the catalogue is a miss.
- ``mrr`` is the reciprocal rank of a user's first held-out item within the top
  max(K) (0 beyond it).
- ``coverage@K``: the share of the catalogue that appears in at least one user's
  top K (a recall stage that shows everyone the same items covers little).
- ``popularity_bias@K`` (when item popularity is given): the mean training
  popularity of the recommended items divided by the catalogue's mean popularity;
  1 means no skew, popularity-ranking scores far above 1.

Scoring is a batched exact (brute-force) matrix product; memory is bounded by
`batch_size x num_items` floats at a time.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Sequence

import numpy as np


def _index(ids: np.ndarray) -> Dict[str, int]:
    return {v: i for i, v in enumerate(ids.tolist())}


def group_pairs(
    user_ids: np.ndarray, item_ids: np.ndarray, user_index: Mapping, item_index: Mapping
) -> Dict[int, set]:
    """Maps user index -> set of item indices (pairs with unknown ids: item -1)."""
    out: Dict[int, set] = {}
    for u, i in zip(user_ids.tolist(), item_ids.tolist()):
        ui = user_index.get(u)
        if ui is None:
            continue
        out.setdefault(ui, set()).add(item_index.get(i, -1))
    return out


def evaluate_ranking(
    score_fn: Callable[[np.ndarray], np.ndarray],
    num_items: int,
    targets: Mapping[int, set],
    exclude: Mapping[int, set],
    ks: Sequence[int] = (10, 50, 100),
    batch_size: int = 512,
    item_popularity: Optional[np.ndarray] = None,
) -> Dict[str, float]:
    """Ranks the catalogue for every user with targets and scores the top K.

    Args:
      score_fn: maps an int array of user indices `(n,)` to scores `(n, num_items)`.
      num_items: catalogue size.
      targets: user index -> held-out item indices (-1 for items not in the catalogue).
      exclude: user index -> item indices removed from that user's ranking.
      ks: cut-offs.
      batch_size: users scored per `score_fn` call (bounds memory).
      item_popularity: optional `(num_items,)` training counts, for popularity_bias@K.

    Returns:
      {"recall@K", "user_recall@K", "ndcg@K", "hit_rate@K", "coverage@K",
      ["popularity_bias@K"] for each K, "mrr", "num_pairs", "num_users"}.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    users = np.array(sorted(u for u, t in targets.items() if t - exclude.get(u, set())))
    kmax = min(ks[-1], num_items)
    hits = {k: 0 for k in ks}
    ndcg = {k: 0.0 for k in ks}
    hit_users = {k: 0 for k in ks}
    user_recall = {k: 0.0 for k in ks}
    shown = {k: np.zeros(num_items, bool) for k in ks}
    pop_sum = {k: 0.0 for k in ks}
    mrr = 0.0
    num_pairs = 0
    discounts = 1.0 / np.log2(np.arange(2, kmax + 2))
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = np.array(score_fn(batch), dtype=np.float32, copy=True)
        if scores.shape != (len(batch), num_items):
            raise ValueError(f"score_fn returned {scores.shape}, expected {(len(batch), num_items)}")
        for row, u in enumerate(batch.tolist()):
            seen = exclude.get(u)
            if seen:
                scores[row, list(seen)] = -np.inf
        # argpartition then sort the K best: O(I + K log K) per user instead of a full sort.
        top = np.argpartition(-scores, kmax - 1, axis=1)[:, :kmax]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        for row, u in enumerate(batch.tolist()):
            truth = targets[u] - exclude.get(u, set())
            num_pairs += len(truth)
            is_hit = np.fromiter((i in truth for i in top[row].tolist()), bool, count=kmax)
            first = np.flatnonzero(is_hit)
            mrr += 1.0 / (first[0] + 1) if len(first) else 0.0
            for k in ks:
                kk = min(k, kmax)
                n_hit = int(is_hit[:kk].sum())
                hits[k] += n_hit
                hit_users[k] += n_hit > 0
                user_recall[k] += n_hit / len(truth)
                shown[k][top[row, :kk]] = True
                if item_popularity is not None:
                    pop_sum[k] += float(item_popularity[top[row, :kk]].mean())
                ideal = discounts[: min(len(truth), kk)].sum()
                ndcg[k] += float((discounts[:kk] * is_hit[:kk]).sum() / ideal)
    n_users = len(users)
    per_user = (lambda v: v / n_users) if n_users else (lambda v: 0.0)
    out: Dict[str, float] = {"num_pairs": float(num_pairs), "num_users": float(n_users)}
    for k in ks:
        out[f"recall@{k}"] = hits[k] / num_pairs if num_pairs else 0.0
        out[f"user_recall@{k}"] = per_user(user_recall[k])
        out[f"ndcg@{k}"] = per_user(ndcg[k])
        out[f"hit_rate@{k}"] = per_user(hit_users[k])
        out[f"coverage@{k}"] = float(shown[k].mean()) if n_users else 0.0
        if item_popularity is not None:
            mean_pop = float(np.mean(item_popularity))
            out[f"popularity_bias@{k}"] = per_user(pop_sum[k]) / mean_pop if mean_pop else 0.0
    out["mrr"] = per_user(mrr)
    return out


def evaluate_embeddings(
    user_embeddings: np.ndarray,
    item_embeddings: np.ndarray,
    targets: Mapping[int, set],
    exclude: Mapping[int, set],
    ks: Sequence[int] = (10, 50, 100),
    batch_size: int = 512,
    item_popularity: Optional[np.ndarray] = None,
) -> Dict[str, float]:
    """`evaluate_ranking` with scores = user_embeddings @ item_embeddings.T (exact)."""
    user_embeddings = np.asarray(user_embeddings, np.float32)
    item_embeddings = np.asarray(item_embeddings, np.float32)
    return evaluate_ranking(
        lambda users: user_embeddings[users] @ item_embeddings.T,
        len(item_embeddings),
        targets,
        exclude,
        ks,
        batch_size,
        item_popularity,
    )
