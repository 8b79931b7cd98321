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

from tfrecall.ids import top_k_rows


def group_pairs(
    user_ids: np.ndarray, item_ids: np.ndarray, user_index: Mapping, item_index: Mapping
) -> Dict[int, set]:
    """Maps user index -> set of item indices (pairs with unknown ids: item -1)."""
    out: Dict[int, set] = {}
    for u, i in zip(user_ids.tolist(), item_ids.tolist(), strict=True):
        ui = user_index.get(u)
        if ui is None:
            continue
        out.setdefault(ui, set()).add(item_index.get(i, -1))
    return out


class PairSets(Mapping):
    """User index -> frozenset of item indices, held as sorted integer arrays.

    The read-only mapping `group_pairs` builds, in about 4 bytes per pair instead of
    about 60 for a dict of Python sets (a 25M-row log's training exclusions: 80 MB
    against 1.3 GB); each user's set is made when asked for. Duplicate pairs count once.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray):
        users = np.asarray(users, np.int64).reshape(-1)
        items = np.asarray(items, np.int64).reshape(-1)
        if len(users) != len(items):
            raise ValueError(f"{len(users)} users for {len(items)} items")
        lo = min(int(items.min()), 0) if len(items) else 0
        span = (int(items.max()) if len(items) else 0) - lo + 1
        top = int(np.abs(users).max()) if len(users) else 0
        if len(users) and users.min() >= 0 and top < (2 ** 63 - 1) // span - 1:
            # One int64 key per pair, sorted in place: a lexsort and its gathers held four
            # 20M-pair arrays at once (about 1.2 GiB on a 25M-row log's exclusions).
            key = users * span + (items - lo)
            del users, items
            key.sort()
            first = np.ones(len(key), bool)
            first[1:] = key[1:] != key[:-1]
            key = key[first]
            del first
            users, items = np.divmod(key, span)
            del key
            items += lo
        else:  # negative users, or a key that would overflow int64
            order = np.lexsort((items, users))
            users, items = users[order], items[order]
            first = np.ones(len(users), bool)
            first[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
            users, items = users[first], items[first]
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else \
            np.zeros(0, np.int64)
        self._users = users[starts]
        self._offsets = np.append(starts, len(items)).astype(np.int64)
        self._items = items.astype(np.int32 if len(items) and
                                   np.abs(items).max() < 2 ** 31 else np.int64)

    def __getitem__(self, user) -> frozenset:
        at = int(np.searchsorted(self._users, user))
        if at == len(self._users) or self._users[at] != user:
            raise KeyError(user)
        return frozenset(self._items[self._offsets[at]:self._offsets[at + 1]].tolist())

    def __iter__(self):
        return iter(self._users.tolist())

    def __len__(self) -> int:
        return len(self._users)


class _Accumulator:
    """Sums the per-user metric terms over ranked top lists (item index -1 = empty slot)."""

    def __init__(self, num_items, targets, exclude, ks, item_popularity):
        self.ks = sorted({int(k) for k in ks})
        if not self.ks or self.ks[0] < 1:
            raise ValueError(f"ks must be positive integers, got {list(ks)}")
        self.kmax = min(self.ks[-1], num_items)
        self.targets, self.exclude, self.pop = targets, exclude, item_popularity
        self.discounts = 1.0 / np.log2(np.arange(2, self.kmax + 2))
        self.sums = {name: {k: 0.0 for k in self.ks}
                     for name in ("hits", "ndcg", "hit_users", "user_recall", "pop")}
        self.shown = {k: np.zeros(num_items + 1, bool) for k in self.ks}  # last slot: -1
        self.mrr = 0.0
        self.num_pairs = 0
        self.num_users = 0

    def users(self) -> np.ndarray:
        """Users with at least one held-out pair left after exclusion."""
        return np.array(sorted(u for u, t in self.targets.items()
                               if t - self.exclude.get(u, set())), dtype=np.int64)

    def add(self, u: int, top: np.ndarray) -> None:
        top = np.asarray(top[: self.kmax], np.int64)
        if len(top) < self.kmax:
            top = np.concatenate([top, np.full(self.kmax - len(top), -1, np.int64)])
        truth = self.targets[u] - self.exclude.get(u, set())
        self.num_users += 1
        self.num_pairs += len(truth)
        is_hit = np.fromiter((i >= 0 and i in truth for i in top.tolist()), bool, count=self.kmax)
        first = np.flatnonzero(is_hit)
        self.mrr += 1.0 / (first[0] + 1) if len(first) else 0.0
        s = self.sums
        for k in self.ks:
            kk = min(k, self.kmax)
            n_hit = int(is_hit[:kk].sum())
            s["hits"][k] += n_hit
            s["hit_users"][k] += n_hit > 0
            s["user_recall"][k] += n_hit / len(truth)
            self.shown[k][top[:kk]] = True
            if self.pop is not None:
                shown = top[:kk][top[:kk] >= 0]
                s["pop"][k] += float(self.pop[shown].mean()) if len(shown) else 0.0
            ideal = self.discounts[: min(len(truth), kk)].sum()
            s["ndcg"][k] += float((self.discounts[:kk] * is_hit[:kk]).sum() / ideal)

    def result(self) -> Dict[str, float]:
        n, s = self.num_users, self.sums
        per_user = (lambda v: v / n) if n else (lambda v: 0.0)
        out: Dict[str, float] = {"num_pairs": float(self.num_pairs), "num_users": float(n)}
        for k in self.ks:
            out[f"recall@{k}"] = s["hits"][k] / self.num_pairs if self.num_pairs else 0.0
            out[f"user_recall@{k}"] = per_user(s["user_recall"][k])
            out[f"ndcg@{k}"] = per_user(s["ndcg"][k])
            out[f"hit_rate@{k}"] = per_user(s["hit_users"][k])
            out[f"coverage@{k}"] = float(self.shown[k][:-1].mean()) if n else 0.0
            if self.pop is not None:
                mean_pop = float(np.mean(self.pop))
                out[f"popularity_bias@{k}"] = per_user(s["pop"][k]) / mean_pop if mean_pop else 0.0
        out["mrr"] = per_user(self.mrr)
        return out


# A batch's scores, their writable copy, the negated copy and the int64 partition indices
# of `top_k_rows` take about 20 bytes per (user, item): a batch holds at most this many
# entries (about 160 MiB), so a 59k-item catalogue is scored 142 users at a time, not 512
# (the 25M-row log's evaluation peaks 310 MiB lower; BENCHMARKS.md). Catalogues of up to
# 16,384 items keep 512 users.
SCORE_ENTRIES = 1 << 23


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
      batch_size: users scored per `score_fn` call at most (bounds memory; fewer where
        the catalogue is large, `SCORE_ENTRIES`).
      item_popularity: optional `(num_items,)` training counts, for popularity_bias@K.

    Returns:
      {"recall@K", "user_recall@K", "ndcg@K", "hit_rate@K", "coverage@K",
      ["popularity_bias@K"] for each K, "mrr", "num_pairs", "num_users"}.
    """
    acc = _Accumulator(num_items, targets, exclude, ks, item_popularity)
    users, kmax = acc.users(), acc.kmax
    batch_size = max(1, min(batch_size, SCORE_ENTRIES // max(1, num_items)))
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = np.array(score_fn(batch), dtype=np.float32, copy=True)
        if scores.shape != (len(batch), num_items):
            expected = (len(batch), num_items)
            raise ValueError(f"score_fn returned {scores.shape}, expected {expected}")
        for row, u in enumerate(batch.tolist()):
            seen = exclude.get(u)
            if seen:
                scores[row, list(seen)] = -np.inf
        top = top_k_rows(scores, kmax)
        # Excluded items (-inf) can only reach the top when fewer than K items are left.
        top = np.where(np.isneginf(np.take_along_axis(scores, top, axis=1)), -1, top)
        for row, u in enumerate(batch.tolist()):
            acc.add(u, top[row])
    return acc.result()


def evaluate_top_lists(
    top_lists: Mapping[int, Sequence[int]],
    num_items: int,
    targets: Mapping[int, set],
    exclude: Mapping[int, set],
    ks: Sequence[int] = (10, 50, 100),
    item_popularity: Optional[np.ndarray] = None,
) -> Dict[str, float]:
    """Metrics of ranked lists already retrieved (e.g. by an exported ANN index).

    `top_lists` maps each user index to item indices, best first (-1 = unknown id).
    Excluded items are removed from a list before cutting it at K, and a list shorter
    than K simply has fewer hits. A user with targets but no list raises KeyError.
    """
    acc = _Accumulator(num_items, targets, exclude, ks, item_popularity)
    for u in acc.users().tolist():
        seen = exclude.get(u, set())
        ranked = [i for i in top_lists[u] if i not in seen]
        acc.add(u, np.asarray(ranked, np.int64))
    return acc.result()


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
