"""Honest baselines in the same harness as the model: popularity, ItemCF and EASE.

Popularity ranks every item by its number of training positives (the same list for
every user, minus what the user already has). A recall model that cannot beat it has
learned nothing personal.

`ItemCF` is item-based collaborative filtering on the binary user x item matrix with
cosine item-item similarity truncated to each item's top-N neighbours (Sarwar et al.,
"Item-based collaborative filtering recommendation algorithms", WWW 2001; Deshpande &
Karypis, "Item-based top-N recommendation algorithms", TOIS 2004). It is sparse
throughout, in numpy only: no dense users x items or items x items matrix is built.

`EASE` (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019) is a
closed-form item-item ridge regression, the strongest simple baseline of the
reproducibility studies (Ferrari Dacrema et al., RecSys 2019). Its regularization is
chosen on a validation slice of the TRAINING pairs (`select_ease_l2`), never on the test
split.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from tfrecall.data.splits import holdout_pairs
from tfrecall.evaluation.metrics import evaluate_ranking, group_pairs
from tfrecall.ids import catalogue_index

# Similarities are ranked on a grid of 2^-40 (about 1e-12): closer values are ties.
_TIE_SCALE = float(2**40)

def popularity_scores(train_item_ids: np.ndarray, catalogue: np.ndarray) -> np.ndarray:
    """`(num_items,)` float32 training-positive counts per catalogue item."""
    idx = catalogue_index(catalogue, train_item_ids)
    return np.bincount(idx[idx >= 0], minlength=len(catalogue)).astype(np.float32)


def _check_count(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_indices(name: str, values, upper: int, upper_name: str) -> np.ndarray:
    """`values` as a 1-D int32 or int64 array in [0, upper) (int32 kept: no copy of a
    large log's pairs); errors name the argument and value."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer indices, got dtype {arr.dtype}")
    if arr.dtype != np.int32:
        arr = arr.astype(np.int64, copy=False)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0:
            raise ValueError(f"{name} must be >= 0, got {lo}")
        if hi >= upper:
            raise ValueError(f"{name} must be < {upper_name} = {upper}, got {hi}")
    return arr


def _segment_gather(indptr: np.ndarray, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Positions of the CSR entries of `rows`, concatenated, and each row's length.

    For rows r_0, r_1, ... returns `concat(arange(indptr[r], indptr[r + 1]))` without a
    Python loop (repeat the start offsets, add a running counter), plus `(len(rows),)`
    lengths so callers can `np.repeat` per-row values alongside.
    """
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    total = int(lengths.sum())
    # Entry k of row r sits at starts[r] + (k - offset of row r in the output).
    offsets = np.cumsum(lengths) - lengths
    positions = np.arange(total, dtype=np.int64) + np.repeat(starts - offsets, lengths)
    return positions, lengths


def _triples_before(item_indptr: np.ndarray, item_users: np.ndarray,
                    user_indptr: np.ndarray) -> np.ndarray:
    """``(num_items + 1,)`` int64: the (i, u, j) triples of the items before each item
    (item i contributes, for each of its users u, u's item count), read off one running
    sum at each item's end, 0 before the first entry."""
    running = np.cumsum(np.diff(user_indptr)[item_users])
    return np.where(item_indptr > 0, running[np.maximum(item_indptr - 1, 0)], 0)


def _count_keys(keys: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of `keys` (all in [0, size)) and how often each occurs.

    Dense counting (`bincount`, O(P + size)) when the key range is small next to the
    number of keys P, sort-based counting (`unique`, O(P log P), memory O(P)) otherwise;
    both give the same answer, the choice is only about speed and memory.
    """
    if size <= 2 * len(keys):
        counts = np.bincount(keys, minlength=size)
        distinct = np.flatnonzero(counts)
        return distinct, counts[distinct]
    return np.unique(keys, return_counts=True)


# Item scores of items EASE never saw in training: below every real score.
_UNSEEN_SCORE = np.float32(np.finfo(np.float32).min / 100)
DEFAULT_EASE_MAX_BYTES = 4 << 30  # memory budget of EASE's dense matrices (4 GiB)
DEFAULT_EASE_L2_GRID = tuple(float(10 ** (e / 2)) for e in range(2, 9))  # 10 .. 10^4


def _distinct_pairs(users: np.ndarray, items: np.ndarray, num_items: int):
    """Distinct (user, item) index pairs, sorted by (user, item)."""
    pairs = np.unique(users.astype(np.int64) * num_items + items)
    return pairs // num_items, pairs % num_items


class EASE:
    """EASE: closed-form item-item regression with a zero diagonal (Steck, WWW 2019).

    With X the binary `(users, items)` matrix of the training pairs and lambda the L2
    weight (Steck 2019, eq. 8):

        P = (X^T X + lambda I)^-1,   B = I - P diag(P)^-1   (so diag(B) = 0),
        score(u, .) = X_u B = X_u - (X_u P) / diag(P).

    Only items with a training pair get a column (the others score below every real
    score). Two exact ways to the same scores, whichever is smaller:

    - primal (items <= users): invert the `(n, n)` Gram matrix, O(n^3);
    - dual (users < items): by the Woodbury identity, X P = K^-1 X with
      K = X X^T + lambda I, and diag(P)_j = (1 - sum_u X_uj (K^-1 X)_uj) / lambda, so
      only the `(U, U)` matrix K is factored, O(U^3 + U^2 n). On a log with a few
      thousand users and tens of thousands of items this is what makes EASE tractable.

    Args:
      l2: lambda (> 0).
      max_bytes: memory budget of the dense matrices; `fit` raises `MemoryError`
        naming the estimate above it (`memory_bytes`).

    Example:
      >>> ease = EASE(l2=200.0).fit(train_users, train_items, num_users, num_items)
      >>> evaluate_ranking(ease.score, num_items, targets, exclude)
    """

    def __init__(self, l2: float = 200.0, max_bytes: int = DEFAULT_EASE_MAX_BYTES):
        if isinstance(l2, bool) or not isinstance(l2, (int, float, np.floating)) or not l2 > 0:
            raise ValueError(f"l2 must be a number > 0, got {l2!r}")
        self.l2 = float(l2)
        self.max_bytes = _check_count("max_bytes", max_bytes)
        self.num_users: Optional[int] = None
        self.num_items: Optional[int] = None

    @staticmethod
    def memory_bytes(num_active_users: int, num_active_items: int) -> int:
        """Peak bytes of the dense float64 matrices of the cheaper form."""
        u, n = int(num_active_users), int(num_active_items)
        return 8 * min(3 * n * n, 3 * u * u + 2 * u * n)

    def check_budget(self, num_active_users: int, num_active_items: int) -> None:
        """Raises `MemoryError` naming the estimate when it exceeds `max_bytes`."""
        need = self.memory_bytes(num_active_users, num_active_items)
        if need > self.max_bytes:
            raise MemoryError(
                f"EASE needs about {need / 2**30:.1f} GiB for {num_active_users} users x "
                f"{num_active_items} items, over its budget of "
                f"{self.max_bytes / 2**30:.1f} GiB (max_bytes)")

    def check_pairs_budget(self, user_idx: np.ndarray, item_idx: np.ndarray) -> None:
        """`check_budget` for training pairs, counted as `fit` counts them: the distinct
        users and items that have a pair (catalogue items never positive take no room)."""
        self.check_budget(len(np.unique(user_idx)), len(np.unique(item_idx)))

    def fit(self, user_idx: np.ndarray, item_idx: np.ndarray, num_users: int,
            num_items: int) -> "EASE":
        """Solves for the item-item weights from training pairs (repeats count once).

        Raises:
          ValueError: empty or out-of-range indices (as `ItemCF.fit`).
          MemoryError: the dense matrices would exceed `max_bytes`.
        """
        num_users = _check_count("num_users", num_users)
        num_items = _check_count("num_items", num_items)
        users = _check_indices("user_idx", user_idx, num_users, "num_users")
        items = _check_indices("item_idx", item_idx, num_items, "num_items")
        if len(users) != len(items):
            raise ValueError(f"user_idx and item_idx must have the same length, got "
                             f"{len(users)} and {len(items)}")
        if len(users) == 0:
            raise ValueError("EASE.fit needs at least one interaction, got empty user_idx")
        users, items = _distinct_pairs(users, items, num_items)
        active_items = np.unique(items)
        active_users = np.unique(users)
        self.check_budget(len(active_users), len(active_items))
        col = np.full(num_items, -1, np.int64)
        col[active_items] = np.arange(len(active_items))
        row = np.full(num_users, -1, np.int64)
        row[active_users] = np.arange(len(active_users))
        self._col, self._row, self._active_items = col, row, active_items
        n, u = len(active_items), len(active_users)
        self._dual = u < n
        self._user_indptr = np.zeros(u + 1, np.int64)
        np.cumsum(np.bincount(row[users], minlength=u), out=self._user_indptr[1:])
        self._user_cols = col[items]  # sorted by user: the rows of X in CSR form
        if self._dual:
            x = self._dense_rows(np.arange(u))
            k = x @ x.T
            k[np.diag_indices(u)] += self.l2
            self._xp = np.linalg.solve(k, x)  # K^-1 X = X P, (U, n)
            del k
            diag = (1.0 - np.einsum("uj,uj->j", x, self._xp)) / self.l2
        else:
            gram = np.zeros((n, n))
            for start in range(0, u, 2048):  # X^T X over row blocks: X is never dense whole
                x = self._dense_rows(np.arange(start, min(start + 2048, u)))
                gram += x.T @ x
            gram[np.diag_indices(n)] += self.l2
            self._p = np.linalg.inv(gram)
            del gram
            diag = np.diag(self._p).copy()
        self._inv_diag = 1.0 / diag
        self.num_users, self.num_items = num_users, num_items
        return self

    def _dense_rows(self, rows: np.ndarray) -> np.ndarray:
        """`(len(rows), n)` float64 binary rows of X for active-user rows."""
        pos, lengths = _segment_gather(self._user_indptr, rows)
        out = np.zeros((len(rows), len(self._active_items)))
        out[np.repeat(np.arange(len(rows)), lengths), self._user_cols[pos]] = 1.0
        return out

    def score(self, user_indices: np.ndarray) -> np.ndarray:
        """`(n, num_items)` float32 scores X_u B (the `evaluate_ranking` score_fn).

        Users without a training pair score 0 on every seen item; items without one
        score `finfo(float32).min / 100`.
        """
        if self.num_items is None:
            raise RuntimeError("EASE.score called before fit; call fit(...) first")
        users = _check_indices("user_indices", user_indices, self.num_users, "num_users")
        rows = self._row[users]
        known = rows >= 0
        active = np.zeros((len(users), len(self._active_items)))
        if known.any():
            x = self._dense_rows(rows[known])
            xp = self._xp[rows[known]] if self._dual else x @ self._p
            active[known] = x - xp * self._inv_diag
        out = np.full((len(users), self.num_items), _UNSEEN_SCORE, np.float32)
        out[:, self._active_items] = active
        return out


def select_ease_l2(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    num_users: int,
    num_items: int,
    grid: Sequence[float] = DEFAULT_EASE_L2_GRID,
    k: int = 100,
    fraction: float = 0.1,
    seed: int = 0,
    max_bytes: int = DEFAULT_EASE_MAX_BYTES,
) -> Tuple[float, Dict[float, float]]:
    """EASE's lambda by Recall@k on a per-user validation slice of the TRAINING pairs.

    The slice is `tfrecall.data.splits.holdout_pairs(fraction, seed)`; each lambda is fit
    on the rest and ranks the full catalogue for the slice's users, their remaining
    training items excluded (the test protocol of the harness).

    Returns:
      ``(best lambda, {lambda: validation recall@k})``; ties go to the larger lambda.
    """
    users = _check_indices("user_idx", user_idx, num_users, "num_users")
    items = _check_indices("item_idx", item_idx, num_items, "num_items")
    held = holdout_pairs(users, items, fraction, seed)
    index = {i: i for i in range(max(num_users, num_items))}
    targets = group_pairs(users[held], items[held], index, index)
    exclude = group_pairs(users[~held], items[~held], index, index)
    scores = {}
    for l2 in sorted(grid):
        ease = EASE(l2, max_bytes).fit(users[~held], items[~held], num_users, num_items)
        scores[l2] = evaluate_ranking(ease.score, num_items, targets, exclude, (k,))[
            f"recall@{k}"]
    best = max(sorted(scores, reverse=True), key=lambda l2: scores[l2])
    return best, scores


class ItemCF:
    """Item-based CF: cosine similarity on the binary interaction matrix, top-N neighbours.

    With X the binary `(num_users, num_items)` matrix (a duplicated (user, item) pair
    counts once), n_i = number of users of item i and c_ij = number of users of both i
    and j, the similarity is the cosine of the item columns (Sarwar et al. 2001, eq. 1 on
    binary vectors):

        sim(i, j) = c_ij / sqrt(n_i * n_j),   i != j   (sim(i, i) is not kept).

    Each item keeps its `num_neighbors` most similar items (similarities compared after
    rounding to multiples of 2^-40, ties broken by the lower item index); a user's
    score for item k sums the kept similarities of the user's items (Deshpande &
    Karypis 2004, sec. 4):

        score(u, k) = sum_{j in items(u)} sim_N(j, k),   sim_N(j, .) = j's top-N row.

    The user's own items get scores too; the evaluation excludes them.

    Complexity and memory (nnz = distinct training pairs, d_u = items of user u,
    P = sum_u d_u^2, the number of co-occurring (i, u, j) triples):
    - `fit` builds CSR arrays of X and X^T (O(nnz) memory), then walks the items in
      blocks. A block's co-occurrence counts come from expanding each (i, u) entry to
      u's items, so the whole fit touches P triples: O(P log P) time with sort-based
      counting (O(P) for dense blocks of popular items). Blocks are cut so that at most
      `max_block_pairs` triples are materialised at once (a single item with more is
      its own block; its triples are at most nnz), so the working memory is
      O(max(max_block_pairs, nnz)) int64s on top of the CSR arrays.
    - The model keeps `num_items * num_neighbors` (index int32, similarity float32)
      pairs at most: 100k items x 200 neighbours is about 160 MB.
    - `score(users)` touches sum over the users' items of their neighbour lists and
      returns the only dense array, `(len(users), num_items)` float32; its float64
      accumulation runs over row chunks of about `2**22` cells.

    Args:
      num_neighbors: neighbours kept per item (positive int), or None to keep all
        items with a non-zero similarity.
      max_block_pairs: co-occurrence triples materialised per block of items in `fit`
        (bounds fit memory; about 40 bytes each at the peak).

    Attributes (after `fit`):
      neighbor_indptr: `(num_items + 1,)` int64; item i's neighbours are
        `neighbor_items[neighbor_indptr[i]:neighbor_indptr[i + 1]]`, most similar first.
      neighbor_items: `(E,)` int32 neighbour item indices.
      neighbor_weights: `(E,)` float32 cosine similarities, aligned with `neighbor_items`.

    Example:
      >>> cf = ItemCF(num_neighbors=200).fit(train_users, train_items, num_users, num_items)
      >>> evaluate_ranking(cf.score, num_items, targets, exclude)
    """

    def __init__(self, num_neighbors: Optional[int] = 200, max_block_pairs: int = 1 << 23):
        if num_neighbors is not None:
            _check_count("num_neighbors", num_neighbors)
        self.num_neighbors = None if num_neighbors is None else int(num_neighbors)
        self.max_block_pairs = _check_count("max_block_pairs", max_block_pairs)
        self.num_users: Optional[int] = None
        self.num_items: Optional[int] = None

    # ---------------------------------------------------------------------------- fit
    def fit(
        self,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        num_users: int,
        num_items: int,
    ) -> "ItemCF":
        """Builds the top-N neighbour lists from training interactions.

        Args:
          user_idx: `(nnz,)` int user indices in [0, num_users).
          item_idx: `(nnz,)` int item indices in [0, num_items), aligned with `user_idx`.
            Repeated (user, item) pairs count once.
          num_users: number of users (rows of the interaction matrix).
          num_items: catalogue size (columns of the interaction matrix).

        Returns:
          self.

        Raises:
          ValueError: empty input, arrays of different lengths or not 1-D integer,
            indices negative or out of range, non-positive `num_users`/`num_items`.
        """
        num_users = _check_count("num_users", num_users)
        num_items = _check_count("num_items", num_items)
        users = _check_indices("user_idx", user_idx, num_users, "num_users")
        items = _check_indices("item_idx", item_idx, num_items, "num_items")
        if len(users) != len(items):
            raise ValueError(
                f"user_idx and item_idx must have the same length, got {len(users)} "
                f"and {len(items)}"
            )
        if len(users) == 0:
            raise ValueError("ItemCF.fit needs at least one interaction, got empty user_idx")

        # Distinct pairs sorted by (user, item): the rows of the user CSR. Sort + diff is
        # several times faster than np.unique's hash path (numpy 2.4) on millions of pairs.
        # The pairs' arrays are sorted in place and split into int32 halves without int64
        # temporaries (a 20M-pair fit's peak: +472 -> +370 MiB; BENCHMARKS.md).
        pairs = users.astype(np.int64)  # a new array either way: sorted in place below
        pairs *= num_items
        pairs += items
        pairs.sort()
        distinct = np.empty(len(pairs), bool)
        distinct[0] = True
        np.not_equal(pairs[1:], pairs[:-1], out=distinct[1:])
        pairs = pairs[distinct]
        del distinct
        users = np.empty(len(pairs), np.int32 if num_users <= 2**31 else np.int64)
        items = np.empty(len(pairs), np.int32)
        np.floor_divide(pairs, num_items, out=users, casting="unsafe")  # < num_users
        np.remainder(pairs, num_items, out=items, casting="unsafe")
        del pairs
        user_indptr = np.zeros(num_users + 1, np.int64)
        np.cumsum(np.bincount(users, minlength=num_users), out=user_indptr[1:])
        user_items = items
        # Item CSR (X^T): a stable sort by item keeps users ascending within an item.
        item_users = users[np.argsort(items, kind="stable")]
        item_count = np.bincount(items, minlength=num_items)
        item_indptr = np.zeros(num_items + 1, np.int64)
        np.cumsum(item_count, out=item_indptr[1:])
        del users, items

        cost_csum = _triples_before(item_indptr, item_users, user_indptr)
        item_count = item_count.astype(np.float64)  # n_i * n_j exact up to 2^53

        nbr_items, nbr_weights, nbr_counts = [], [], np.zeros(num_items, np.int64)
        start = 0
        while start < num_items:
            # Largest block [start, stop) whose triples fit the budget (at least 1 item).
            stop = int(np.searchsorted(cost_csum, cost_csum[start] + self.max_block_pairs,
                                       side="right")) - 1
            # At most 2^21 items per block keeps the (row << 41) sort key inside int64.
            stop = min(max(stop, start + 1), start + (1 << 21), num_items)
            cols, weights, counts = self._block_neighbors(
                start, stop, item_indptr, item_users, user_indptr, user_items, item_count
            )
            nbr_items.append(cols)
            nbr_weights.append(weights)
            nbr_counts[start:stop] = counts
            start = stop

        self.neighbor_indptr = np.zeros(num_items + 1, np.int64)
        np.cumsum(nbr_counts, out=self.neighbor_indptr[1:])
        self.neighbor_items = np.concatenate(nbr_items).astype(np.int32)
        self.neighbor_weights = np.concatenate(nbr_weights).astype(np.float32)
        self._user_indptr, self._user_items = user_indptr, user_items
        self.num_users, self.num_items = num_users, num_items
        return self

    def _block_neighbors(self, start, stop, item_indptr, item_users, user_indptr, user_items,
                         item_count):
        """Top-N neighbours of items [start, stop): (cols, weights, per-item counts)."""
        num_items = len(item_count)
        block = stop - start
        lo, hi = int(item_indptr[start]), int(item_indptr[stop])
        entry_item = np.repeat(np.arange(block, dtype=np.int64),
                               np.diff(item_indptr[start:stop + 1]))
        # Expand every (i, u) entry of the block to u's items j: one triple (i, u, j) each.
        positions, lengths = _segment_gather(user_indptr, item_users[lo:hi])
        keys = np.repeat(entry_item * num_items, lengths)
        keys += user_items[positions]
        del positions, lengths, entry_item
        distinct, cooc = _count_keys(keys, block * num_items)
        del keys
        rows, cols = distinct // num_items, distinct % num_items
        keep = cols != rows + start  # the diagonal c_ii = n_i is not a neighbour
        rows, cols, cooc = rows[keep], cols[keep], cooc[keep]
        # Cosine on binary columns: c_ij / sqrt(n_i n_j) (Sarwar et al. 2001, eq. 1).
        weights = cooc / np.sqrt(item_count[rows + start] * item_count[cols])
        # Entries are sorted by (row, col); a stable sort on (row, -weight) puts each row's
        # most similar first and keeps the lower column first among ties. Weights are
        # compared on a 2^-40 grid (`_TIE_SCALE`), so values equal up to float rounding
        # (1/sqrt(k) vs 3/sqrt(9k)) tie deterministically; one int64 key sorts about 2x
        # faster than np.lexsort((-weights, rows)).
        key = (rows << 41) - np.rint(weights * _TIE_SCALE).astype(np.int64)
        order = np.argsort(key, kind="stable")
        del key
        rows, cols, weights = rows[order], cols[order], weights[order]
        if self.num_neighbors is not None:
            row_start = np.searchsorted(rows, np.arange(block))
            keep = np.arange(len(rows)) - row_start[rows] < self.num_neighbors
            rows, cols, weights = rows[keep], cols[keep], weights[keep]
        counts = np.bincount(rows, minlength=block)
        return cols.astype(np.int32), weights.astype(np.float32), counts

    # -------------------------------------------------------------------------- score
    def similar_items(self, item: int) -> Tuple[np.ndarray, np.ndarray]:
        """Item `item`'s kept neighbours: `(k,)` int32 indices and `(k,)` float32 cosines."""
        self._check_fitted("similar_items")
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
            raise ValueError(f"item must be an int index, got {item!r}")
        if not 0 <= item < self.num_items:
            raise ValueError(f"item must be in [0, num_items = {self.num_items}), got {item}")
        lo, hi = self.neighbor_indptr[item], self.neighbor_indptr[item + 1]
        return self.neighbor_items[lo:hi], self.neighbor_weights[lo:hi]

    def score(self, user_indices: np.ndarray) -> np.ndarray:
        """Scores the whole catalogue for a batch of users (the `evaluate_ranking` score_fn).

        Args:
          user_indices: `(n,)` int user indices in [0, num_users).

        Returns:
          `(n, num_items)` float32: score(u, k) = sum over u's training items j of the
          kept similarity sim_N(j, k); 0 where no neighbour list of u's items has k.

        Raises:
          RuntimeError: called before `fit`.
          ValueError: indices not 1-D integer, negative or >= num_users.
        """
        self._check_fitted("score")
        users = _check_indices("user_indices", user_indices, self.num_users, "num_users")
        num_items = self.num_items
        out = np.empty((len(users), num_items), np.float32)
        # Accumulate in float64 over row chunks so the temporary stays about 32 MB.
        chunk = max(1, (1 << 22) // num_items)
        for r0 in range(0, len(users), chunk):
            batch = users[r0:r0 + chunk]
            # The batch's training items j, then every kept neighbour k of each j.
            pos, n_items = _segment_gather(self._user_indptr, batch)
            seen = self._user_items[pos].astype(np.int64)
            nbr_pos, n_nbrs = _segment_gather(self.neighbor_indptr, seen)
            row = np.repeat(np.repeat(np.arange(len(batch), dtype=np.int64), n_items), n_nbrs)
            keys = row * num_items + self.neighbor_items[nbr_pos]
            acc = np.bincount(keys, weights=self.neighbor_weights[nbr_pos],
                              minlength=len(batch) * num_items)
            out[r0:r0 + chunk] = acc.reshape(len(batch), num_items)
        return out

    def _check_fitted(self, method: str) -> None:
        if self.num_items is None:
            raise RuntimeError(f"ItemCF.{method} called before fit; call fit(...) first")
