"""Negative samplers over one catalogue, in TensorFlow, stateless and seeded.

Every sampler works on int64 item INDICES into one catalogue (``(N,)`` str ids); the
training pipeline turns indices into ids and features at the end. Random draws use
stateless ops with a ``(2,)`` int64 seed, so a batch's negatives are a pure function
of ``(seed, epoch key, batch number)``: deterministic, and fresh every epoch.

Sources (each emits its probability, so ``log Q(item)`` can correct the logits):

- `CategoricalSampler`: a fixed distribution over the catalogue, drawn by inverse CDF
  (``searchsorted``; O(log N) per draw). ``uniform``: ``Q = 1 / N``.
  ``popularity``: ``Q = count^alpha / sum count^alpha`` over the training positives
  (word2vec's unigram^0.75, Mikolov et al. NeurIPS 2013, sec. 2.2); items never
  positive are never drawn. ``mixture``: the average of several (an equal mix).
- `NegativePool` / `PoolSampler`: hard negatives, a candidate set per group (a
  request or a user) drawn uniformly: ``Q = 1 / |pool|``. Pools come from a ranker's
  ordering (`ranker_window_pool`, default ranks 100-500), from exposures without a
  click (`exposure_pool`), or from the model's own neighbours (`mine_hard_negatives`).
- `PositiveSet` and `NegativeMix`: per-row negatives, each slot hard with
  probability ``1 / (1 + easy_hard_ratio)`` and otherwise easy, resampled (up to
  ``rounds`` times) while equal to one of the row user's training positives; a slot
  still equal to one after that (a user who has nearly the whole catalogue) is
  returned with ``valid = False`` so the caller masks it (label -1).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np

from tfrecall._backend import tf
from tfrecall.ids import catalogue_index, top_k_rows
from tfrecall.io.schema import RecallData
from tfrecall.sampling.config import check_window

MIN_PROBABILITY_SCALE = 0.01
"""An item a sampler cannot draw (Q = 0) is given ``Q = 0.01 / N`` so log Q is finite."""


def split_seed(seed: tf.Tensor, num: int) -> tf.Tensor:
    """``(num, 2)`` independent stateless seeds derived from one ``(2,)`` seed."""
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num)


class CategoricalSampler:
    """Draws catalogue indices from a fixed distribution ``probs`` (inverse CDF).

    Args:
      probs: ``(N,)`` non-negative weights (normalized here); float64 is kept for the
        CDF so items of probability 1e-9 are still drawn correctly.
      name: what the distribution is, for messages (``"uniform"``, ...).

    Raises:
      ValueError: an empty catalogue, a negative/non-finite weight, or all zero.
    """

    def __init__(self, probs: np.ndarray, name: str = "categorical"):
        probs = np.asarray(probs, np.float64).reshape(-1)
        if len(probs) == 0:
            raise ValueError(f"{name} sampler: the catalogue is empty")
        if not np.all(np.isfinite(probs)) or np.any(probs < 0):
            raise ValueError(f"{name} sampler: weights must be finite and >= 0")
        if probs.sum() <= 0:
            raise ValueError(f"{name} sampler: every item has weight 0 (no item can be drawn)")
        self.name = name
        self.probs = probs / probs.sum()
        self.num_items = len(probs)
        cdf = np.cumsum(self.probs)
        cdf[-1] = 1.0
        self._cdf = tf.constant(cdf, tf.float64)
        floor = MIN_PROBABILITY_SCALE / self.num_items
        self._probs = tf.constant(np.maximum(self.probs, 0.0), tf.float64)
        self._floor = floor

    @classmethod
    def uniform(cls, num_items: int) -> "CategoricalSampler":
        """``Q(item) = 1 / N`` over the whole catalogue."""
        return cls(np.ones(int(num_items)), "uniform")

    @classmethod
    def popularity(cls, counts: np.ndarray, alpha: float = 0.75) -> "CategoricalSampler":
        """``Q(item) = count^alpha / sum count^alpha`` (0 for items with no count).

        Raises:
          ValueError: ``alpha < 0`` or every count 0.
        """
        if not alpha >= 0:
            raise ValueError(f"popularity_alpha must be >= 0, got {alpha!r}")
        counts = np.asarray(counts, np.float64)
        weights = np.where(counts > 0, np.power(counts, alpha), 0.0)
        return cls(weights, f"popularity^{alpha:g}")

    @classmethod
    def mixture(cls, samplers: Sequence["CategoricalSampler"]) -> "CategoricalSampler":
        """The equal-weight mixture: draw a source uniformly, then an item from it."""
        if len(samplers) == 1:
            return samplers[0]
        probs = np.mean([s.probs for s in samplers], axis=0)
        return cls(probs, "+".join(s.name for s in samplers))

    def sample(self, shape, seed: tf.Tensor) -> tf.Tensor:
        """int64 indices of the given shape, drawn i.i.d. (with replacement)."""
        u = tf.random.stateless_uniform(shape, seed, dtype=tf.float64)
        idx = tf.searchsorted(self._cdf, tf.reshape(u, [-1]), side="right", out_type=tf.int64)
        return tf.reshape(tf.minimum(idx, self.num_items - 1), shape)

    def prob(self, indices: tf.Tensor) -> tf.Tensor:
        """float64 ``Q`` of catalogue indices; ``0.01 / N`` where Q = 0 or index < 0."""
        indices = tf.convert_to_tensor(indices, tf.int64)
        p = tf.gather(self._probs, tf.maximum(indices, 0))
        p = tf.where(indices >= 0, p, tf.zeros_like(p))
        return tf.maximum(p, self._floor)


@dataclasses.dataclass(frozen=True)
class NegativePool:
    """Candidate negatives per group, in CSR form.

    Attributes:
      keys: ``(G,)`` object array, the group keys (request ids or user ids).
      key_kind: ``"request"`` or ``"user"``: which column of a row picks its group.
      offsets: ``(G + 1,)`` int64; group g owns ``items[offsets[g]:offsets[g+1]]``.
      items: ``(M,)`` int64 catalogue indices.
      source: a short description (``"ranker ranks 100-500"``, ...).
    """

    keys: np.ndarray
    key_kind: str
    offsets: np.ndarray
    items: np.ndarray
    source: str = "pool"

    def __post_init__(self):
        if self.key_kind not in ("request", "user"):
            raise ValueError(f"key_kind must be 'request' or 'user', got {self.key_kind!r}")
        if len(self.offsets) != len(self.keys) + 1:
            raise ValueError(f"offsets has {len(self.offsets)} entries, expected "
                             f"{len(self.keys) + 1} for {len(self.keys)} keys")

    @property
    def sizes(self) -> np.ndarray:
        """``(G,)`` int64 pool size of each group."""
        return np.diff(self.offsets)

    @classmethod
    def from_pairs(cls, keys: np.ndarray, items: np.ndarray, key_kind: str,
                   source: str = "pool") -> "NegativePool":
        """Groups (key, catalogue index) pairs; duplicates within a group are dropped."""
        keys = np.asarray(keys, dtype=object).astype(str)
        items = np.asarray(items, np.int64)
        keep = items >= 0
        keys, items = keys[keep], items[keep]
        uniq, code = np.unique(keys, return_inverse=True)
        code = code.reshape(-1).astype(np.int64)
        # One int64 key per pair: a 1-D unique is much faster than unique(axis=0).
        width = int(items.max()) + 1 if len(items) else 1
        pairs = np.unique(code * width + items)
        group, item = pairs // width, pairs % width
        counts = np.bincount(group, minlength=len(uniq)).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(uniq.astype(object), key_kind, offsets, item.astype(np.int64), source)

    def group_of(self, keys: np.ndarray) -> np.ndarray:
        """int64 group of each key (-1 where the pool has no such key or it is empty)."""
        group = catalogue_index(self.keys, keys)
        sizes = self.sizes
        if len(sizes) == 0:
            return group
        return np.where((group >= 0) & (sizes[np.maximum(group, 0)] > 0), group, -1)


class PoolSampler:
    """Uniform draws from a `NegativePool`'s group, vectorized over rows."""

    def __init__(self, pool: NegativePool):
        self.pool = pool
        dtype = tf.int32 if pool.items.size == 0 or pool.items.max() < 2**31 else tf.int64
        self._items = tf.constant(pool.items, dtype)
        self._offsets = tf.constant(pool.offsets, tf.int64)

    def sizes(self, groups: tf.Tensor) -> tf.Tensor:
        """int64 pool size of each group index (0 for -1)."""
        groups = tf.convert_to_tensor(groups, tf.int64)
        if len(self.pool.keys) == 0:
            return tf.zeros_like(groups)
        g = tf.maximum(groups, 0)
        size = tf.gather(self._offsets, g + 1) - tf.gather(self._offsets, g)
        return tf.where(groups >= 0, size, tf.zeros_like(size))

    def sample(self, groups: tf.Tensor, num: int, seed: tf.Tensor) -> tf.Tensor:
        """``(B, num)`` int64 catalogue indices from each row's group (-1 where empty)."""
        groups = tf.convert_to_tensor(groups, tf.int64)
        size = self.sizes(groups)[:, None]
        u = tf.random.stateless_uniform([tf.shape(groups)[0], num], seed, dtype=tf.float64)
        offset = tf.minimum(tf.cast(u * tf.cast(size, tf.float64), tf.int64),
                            tf.maximum(size - 1, 0))
        start = tf.gather(self._offsets, tf.maximum(groups, 0))[:, None]
        if self.pool.items.size == 0:
            return tf.fill(tf.shape(offset), tf.constant(-1, tf.int64))
        picked = tf.cast(tf.gather(self._items, start + offset), tf.int64)
        return tf.where(size > 0, picked, -tf.ones_like(picked))


class PositiveSet:
    """Membership test for (user code, catalogue index) pairs: the users' positives.

    Args:
      user_codes: ``(P,)`` int64 user code of each positive.
      items: ``(P,)`` int64 catalogue index of each positive (-1 rows are ignored).
      num_items: N, the catalogue size.
    """

    def __init__(self, user_codes: np.ndarray, items: np.ndarray, num_items: int):
        user_codes = np.asarray(user_codes, np.int64)
        items = np.asarray(items, np.int64)
        keep = items >= 0
        self.num_items = int(num_items)
        keys = np.unique(user_codes[keep] * self.num_items + items[keep])
        self.num_keys = len(keys)
        # A sentinel larger than any key keeps searchsorted in range.
        self._keys = tf.constant(np.append(keys, np.iinfo(np.int64).max), tf.int64)

    def contains(self, user_codes: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        """bool ``(B, K)``: is ``items[b, k]`` a positive of user ``user_codes[b]``?"""
        query = tf.cast(user_codes, tf.int64)[:, None] * self.num_items + tf.cast(items, tf.int64)
        flat = tf.reshape(query, [-1])
        at = tf.searchsorted(self._keys, flat, side="left", out_type=tf.int64)
        hit = tf.equal(tf.gather(self._keys, at), flat)
        return tf.logical_and(tf.reshape(hit, tf.shape(query)), items >= 0)


@dataclasses.dataclass
class NegativeDraw:
    """Per-row negatives from `NegativeMix.sample`.

    Attributes:
      items: ``(B, K)`` int64 catalogue indices.
      valid: ``(B, K)`` bool; False where every resampling round hit a user positive.
      expected_count: ``(B, K)`` float64 expected number of copies of the item among
        the row's K negatives, ``K * Q_mix(item)`` (its log is the slot's log Q).
      is_hard: ``(B, K)`` bool, the slot came from the hard pool.
    """

    items: tf.Tensor
    valid: tf.Tensor
    expected_count: tf.Tensor
    is_hard: tf.Tensor


class NegativeMix:
    """Per-row negatives: easy draws with a share of hard ones, user positives rejected.

    Each slot is hard with probability ``hard_fraction`` when the row's group has a
    non-empty pool (else easy: the counted fallback), so a slot's sampling
    distribution is ``Q_mix(j) = (1 - h) Q_easy(j) + h / |pool|`` (the hard term only
    for items of the pool; it is left out for easy-drawn slots, whose pool membership
    is not looked up).

    Args:
      easy: the easy distribution (uniform, popularity or their mixture).
      hard: optional `PoolSampler`.
      hard_fraction: ``h`` in [0, 1]; 1 / (1 + easy_hard_ratio).
      positives: optional `PositiveSet`; draws equal to the row user's positives are
        redrawn from the same source.
      rounds: resampling rounds before a slot is given up (``valid = False``).
    """

    def __init__(self, easy: CategoricalSampler, hard: Optional[PoolSampler] = None,
                 hard_fraction: float = 0.0, positives: Optional[PositiveSet] = None,
                 rounds: int = 32):
        if not 0.0 <= hard_fraction <= 1.0:
            raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction!r}")
        self.easy = easy
        self.hard = hard
        self.hard_fraction = float(hard_fraction) if hard is not None else 0.0
        self.positives = positives
        self.rounds = int(rounds)

    def _draw(self, groups, num, seed, is_hard=None):
        """Easy draws, with hard ones in the hard slots (chosen here when ``is_hard`` is None)."""
        s = split_seed(seed, 3)
        batch = tf.shape(groups)[0]
        easy = self.easy.sample([batch, num], s[0])
        if self.hard is None or self.hard_fraction == 0.0:
            return easy, tf.zeros([batch, num], tf.bool)
        hard = self.hard.sample(groups, num, s[1])
        if is_hard is None:
            coin = tf.random.stateless_uniform([batch, num], s[2], dtype=tf.float64)
            is_hard = tf.logical_and(coin < self.hard_fraction, hard >= 0)
        return tf.where(is_hard, hard, easy), is_hard

    def sample(self, num: int, user_codes: tf.Tensor, groups: tf.Tensor,
               seed: tf.Tensor) -> NegativeDraw:
        """``num`` negatives for each row.

        Args:
          num: K, negatives per row (>= 1).
          user_codes: ``(B,)`` int64 user code of each row (for rejection).
          groups: ``(B,)`` int64 pool group of each row (-1: none).
          seed: ``(2,)`` int64 stateless seed.

        Returns:
          A `NegativeDraw`.
        """
        groups = tf.convert_to_tensor(groups, tf.int64)
        user_codes = tf.cast(user_codes, tf.int64)  # int32 codes welcome
        seeds = split_seed(seed, self.rounds + 1)
        items, is_hard = self._draw(groups, num, seeds[0])
        if self.positives is not None:
            bad = self.positives.contains(user_codes, items)

            def cond(i, items, bad):
                return tf.logical_and(i <= self.rounds, tf.reduce_any(bad))

            def body(i, items, bad):
                # Only the colliding slots are redrawn (the work shrinks each round), each
                # from its own source: a hard slot from the row's pool.
                where = tf.where(bad)  # (n, 2)
                rows = where[:, 0]
                s = split_seed(tf.gather(seeds, i), 2)
                new = self.easy.sample(tf.shape(rows), s[0])
                if self.hard is not None and self.hard_fraction > 0.0:
                    hard = self.hard.sample(tf.gather(groups, rows), 1, s[1])[:, 0]
                    new = tf.where(tf.gather_nd(is_hard, where), hard, new)
                items = tf.tensor_scatter_nd_update(items, where, new)
                still = self.positives.contains(tf.gather(user_codes, rows), new[:, None])[:, 0]
                return i + 1, items, tf.tensor_scatter_nd_update(bad, where, still)

            _, items, bad = tf.while_loop(cond, body, [tf.constant(1), items, bad])
            valid = tf.logical_not(bad)
        else:
            valid = tf.ones_like(items, tf.bool)
        return NegativeDraw(items, valid, self.expected_count(items, groups, num, is_hard),
                            is_hard)

    def expected_count(self, items: tf.Tensor, groups: tf.Tensor, num: int,
                       is_hard: Optional[tf.Tensor] = None) -> tf.Tensor:
        """``num * Q_mix(item)`` per slot (``(B, K)`` float64); see the class docstring."""
        q = self.easy.prob(items)
        if self.hard is not None and self.hard_fraction > 0.0:
            size = tf.cast(self.hard.sizes(groups), tf.float64)[:, None]
            h = tf.where(size > 0, tf.constant(self.hard_fraction, tf.float64),
                         tf.constant(0.0, tf.float64))
            q = (1.0 - h) * q
            if is_hard is not None:
                q += tf.where(is_hard, h / tf.maximum(size, 1.0), tf.zeros_like(q))
            q = tf.maximum(q, MIN_PROBABILITY_SCALE / self.easy.num_items)
        return float(num) * q


def ranker_window_pool(ranker_lists, catalogue: np.ndarray,
                       window: Tuple[int, int] = (100, 500)) -> NegativePool:
    """Hard negatives: the items a ranker placed at ranks ``[lo, hi)`` of each request.

    Ranks are 0-based positions in the ranker's order (best first), so (100, 500) is
    the 101st to 500th item: close enough to the head to be confusable, far enough
    not to be what the user wanted. A request whose list is shorter than ``lo`` gets
    an empty pool (the caller falls back and counts it).

    Args:
      ranker_lists: a `tfrecall.sampling.requests.RankerLists`.
      catalogue: ``(N,)`` catalogue ids; listed items outside it are skipped.
      window: ``(lo, hi)`` with ``0 <= lo < hi``.

    Returns:
      A `NegativePool` keyed by request.
    """
    lo, hi = check_window(window)
    items = ranker_lists.items[:, lo:hi]
    vocab_to_cat = catalogue_index(catalogue, ranker_lists.item_vocab)
    idx = np.where(items >= 0, vocab_to_cat[np.maximum(items, 0)], -1)
    # Request ids are unique and a ranked list has no repeats: the CSR is the mask.
    keep = idx >= 0
    offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int64)
    return NegativePool(np.asarray(ranker_lists.request_ids, dtype=object), "request", offsets,
                        idx[keep].astype(np.int64), f"ranker ranks {lo}-{hi}")


def exposure_pool(train: RecallData, catalogue: np.ndarray, by: str = "request") -> NegativePool:
    """Hard negatives: items exposed to the user (rows without ``positive``) per request or user.

    Args:
      train: the training log.
      catalogue: ``(N,)`` catalogue ids.
      by: ``"request"`` (needs a ``request_id`` column) or ``"user"``.

    Returns:
      A `NegativePool` keyed by ``by``.

    Raises:
      ValueError: ``by`` unknown, or "request" without a ``request_id`` column.
    """
    inter = train.interactions
    if by not in ("request", "user"):
        raise ValueError(f"by must be 'request' or 'user', got {by!r}")
    column = "request_id" if by == "request" else "user_id"
    if column not in inter:
        raise ValueError(f"exposure_pool(by={by!r}) needs a {column!r} column in {train.name!r}")
    shown = ~np.asarray(inter["positive"], bool)
    return NegativePool.from_pairs(
        np.asarray(inter[column], dtype=object)[shown],
        catalogue_index(catalogue, np.asarray(inter["item_id"], dtype=object)[shown]),
        by, f"exposed, not clicked (per {by})")


def mine_hard_negatives(
    user_embeddings: np.ndarray,
    item_embeddings: np.ndarray,
    user_ids: np.ndarray,
    catalogue: np.ndarray,
    window: Tuple[int, int] = (100, 500),
    exclude: Optional[RecallData] = None,
    batch_size: int = 1024,
) -> NegativePool:
    """Hard negatives from the current model: each user's items at score ranks ``[lo, hi)``.

    Between epochs, embed every user and item with the model being trained, call this,
    and rebuild the training dataset with ``hard_negatives=`` the returned pool (see
    ``docs/negatives.md``). Exact brute force in blocks of users (``U x N`` dot
    products); for catalogues of millions build a ScaNN index over ``item_embeddings``
    and query ``hi`` neighbours instead.

    Args:
      user_embeddings: ``(U, D)`` float, row u for ``user_ids[u]``.
      item_embeddings: ``(N, D)`` float, row i for ``catalogue[i]``.
      user_ids: ``(U,)`` str ids.
      catalogue: ``(N,)`` str ids.
      window: ``(lo, hi)`` 0-based score ranks kept (best first).
      exclude: optional training data whose positives are removed from each user's
        candidates (they are not negatives).
      batch_size: users scored per block.

    Returns:
      A `NegativePool` keyed by user.

    Raises:
      ValueError: mismatched shapes or a bad window.
    """
    lo, hi = check_window(window)
    users = np.asarray(user_embeddings, np.float32)
    items = np.asarray(item_embeddings, np.float32)
    if users.ndim != 2 or items.ndim != 2 or users.shape[1] != items.shape[1]:
        raise ValueError(f"user_embeddings {users.shape} and item_embeddings {items.shape} "
                         "must be (U, D) and (N, D) with the same D")
    if len(users) != len(user_ids) or len(items) != len(catalogue):
        raise ValueError(f"{len(users)} user embeddings for {len(user_ids)} user_ids, "
                         f"{len(items)} item embeddings for {len(catalogue)} catalogue ids")
    hi = min(hi, len(items))
    keys, picked = [], []
    for start in range(0, len(users), batch_size):
        scores = users[start:start + batch_size] @ items.T
        window_items = top_k_rows(scores, hi)[:, lo:hi]
        keys.append(np.repeat(np.asarray(user_ids[start:start + batch_size], object),
                              window_items.shape[1]))
        picked.append(window_items.reshape(-1))
    keys = np.concatenate(keys) if keys else np.zeros(0, object)
    picked = np.concatenate(picked) if picked else np.zeros(0, np.int64)
    if exclude is not None:
        inter = exclude.interactions
        mask = np.asarray(inter["positive"], bool)
        user_code = catalogue_index(user_ids, np.asarray(inter["user_id"], object)[mask])
        item_code = catalogue_index(catalogue, np.asarray(inter["item_id"], object)[mask])
        ok = (user_code >= 0) & (item_code >= 0)
        n = len(catalogue)
        taken = np.unique(user_code[ok] * n + item_code[ok])
        mined = catalogue_index(user_ids, keys) * n + picked
        keep = ~np.isin(mined, taken)
        keys, picked = keys[keep], picked[keep]
    return NegativePool.from_pairs(keys, picked, "user", f"model neighbours {lo}-{hi}")
