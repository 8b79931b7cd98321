"""Full-catalogue retrieval metrics: Recall@K and NDCG@K (and HitRate@K).

Every held-out (user, item) pair is ranked against the WHOLE catalogue, not a sampled
subset (sampled metrics are known to misorder models: Krichene & Rendle, KDD 2020).

Protocol (`exclude_train=True`, the default and what the pipelines print):
- each user's training positives are removed from that user's ranking (a recall
  system filters what the user already has);
- held-out pairs whose item the user already has in training are dropped from the
  targets (they cannot be retrieved once excluded), and duplicate pairs count once;
- Recall@K is per pair (micro): hits / held-out pairs, the convention of the
  MovieLens reference figures in ../shared/data/README.md; NDCG@K and HitRate@K are
  per user (macro): mean over users with at least one held-out pair. A held-out item
  missing from the catalogue counts as a miss.

Scoring is a batched exact (brute-force) matrix product; memory is bounded by
`batch_size x num_items` floats at a time.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Sequence

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
) -> Dict[str, float]:
    """Ranks the catalogue for every user with targets and scores the top K.

    Args:
      score_fn: maps an int array of user indices `(n,)` to scores `(n, num_items)`.
      num_items: catalogue size.
      targets: user index -> held-out item indices (-1 for items not in the catalogue).
      exclude: user index -> item indices removed from that user's ranking.
      ks: cut-offs.
      batch_size: users scored per `score_fn` call (bounds memory).

    Returns:
      {"recall@K", "ndcg@K", "hit_rate@K" for each K, "num_pairs", "num_users"}.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    users = np.array(sorted(u for u, t in targets.items() if t - exclude.get(u, set())))
    kmax = min(ks[-1], num_items)
    hits = {k: 0 for k in ks}
    ndcg = {k: 0.0 for k in ks}
    hit_users = {k: 0 for k in ks}
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
            for k in ks:
                kk = min(k, kmax)
                n_hit = int(is_hit[:kk].sum())
                hits[k] += n_hit
                hit_users[k] += n_hit > 0
                ideal = discounts[: min(len(truth), kk)].sum()
                ndcg[k] += float((discounts[:kk] * is_hit[:kk]).sum() / ideal)
    n_users = len(users)
    out: Dict[str, float] = {"num_pairs": float(num_pairs), "num_users": float(n_users)}
    for k in ks:
        out[f"recall@{k}"] = hits[k] / num_pairs if num_pairs else 0.0
        out[f"ndcg@{k}"] = ndcg[k] / n_users if n_users else 0.0
        out[f"hit_rate@{k}"] = hit_users[k] / n_users if n_users else 0.0
    return out


def evaluate_embeddings(
    user_embeddings: np.ndarray,
    item_embeddings: np.ndarray,
    targets: Mapping[int, set],
    exclude: Mapping[int, set],
    ks: Sequence[int] = (10, 50, 100),
    batch_size: int = 512,
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
    )
