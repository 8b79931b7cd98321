"""tf.data builders that turn a training log into `model.fit` batches.

Every builder returns a `tf.data.Dataset` of ``(x, y)`` batches:

- ``x["user"]``: ``{name: (B,) tensor}``, every column of the user table (``user_id``
  included; just ``user_id`` when there is no table).
- ``x["items"]``: ``{name: (B, L) tensor}``, every column of the item table
  (``item_id`` included).
- ``y``: ``(B, L)`` float32 labels; ``label < 0`` is padding (item id ``""``).

Str columns become ``tf.string``, numeric ones ``tf.float32`` (NaN = missing).

Only rows with ``positive == True`` are positives. Every builder works on one int64
row index per example: the index is shuffled (``tf.data`` shuffle with ``seed``, a
new order each pass when the caller adds ``.repeat()``), batched, then one map
gathers ids and labels and looks the features up with `FeatureStore` (vectorized
``tf.gather``, no per-example Python). Sampled negatives are drawn once per call with
numpy (seeded); ``.repeat()`` reuses them, so for fresh negatives every epoch build
the dataset again with ``seed + epoch``.

Builders:

- `in_batch_dataset`: one row per positive, ``L = 1``, labels 1; the model scores
  each user against every item of the batch (in-batch negatives).
- `pointwise_dataset`: each positive plus ``num_negatives`` uniform negatives as
  separate rows, ``L = 1``, labels 1 / 0.
- `pairwise_dataset`: ``L = 2``, (positive, uniform negative), labels ``[1, 0]``.
- `listwise_dataset`: ``"sampled"`` lists (positive first, then uniform negatives,
  labels ``[1, 0, ...]``) or ``"graded"`` lists (one per ``request_id`` with the
  logged graded labels, see `graded_lists`).

Uniform negatives are drawn with replacement from the catalogue and never equal one
of the same user's training positives (rejection resampling, vectorized).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from tfrecall._backend import tf
from tfrecall.data.schema import RecallData, Table

_LOG = logging.getLogger(__name__)
_RESAMPLE_ROUNDS = 32  # vectorized rejection rounds before the exact per-user fallback


class FeatureStore:
    """One side's feature table as tensors, looked up by id inside ``dataset.map``.

    Args:
      table: the user or item table (``key`` plus feature columns), or None: then the
        features are the id alone.
      key: the id column (``"user_id"`` or ``"item_id"``).
      ids: optional extra ids the store should list in `ids` (e.g. items only in the
        log); ids absent from ``table`` get the missing values anyway, so this never
        changes what `lookup` returns.

    Raises:
      ValueError: ``key`` not in ``table``, duplicate keys, a column of another length,
        a str column holding a non-str value, or a column of unsupported dtype.

    Example:
      >>> store = FeatureStore({"item_id": np.array(["a", "b"], dtype=object),
      ...                       "price": np.array([1.0, 2.0], np.float32)}, "item_id")
      >>> store.lookup(tf.constant([["b", "zz"]]))["price"]  # [[2.0, nan]]
    """

    def __init__(self, table: Optional[Table], key: str, ids: Optional[np.ndarray] = None):
        self._key = key
        self._columns: Dict[str, tf.Tensor] = {}
        self._dtypes: Dict[str, tf.DType] = {key: tf.string}
        self._table = None
        known = []
        if table is not None:
            if key not in table:
                raise ValueError(f"FeatureStore: key column {key!r} not in table columns "
                                 f"{sorted(table)}")
            known = _str_list(table[key], key)
            if len(set(known)) != len(known):
                raise ValueError(f"FeatureStore: {key} values are not unique")
            n = len(known)
            for name, col in table.items():
                if name == key:
                    continue
                if len(col) != n:
                    raise ValueError(f"FeatureStore: column {name!r} has {len(col)} rows, "
                                     f"{key} has {n}")
                # One extra last row holds the missing value; unknown ids gather it.
                self._columns[name], self._dtypes[name] = _column_tensor(name, col)
            if n:
                self._table = tf.lookup.StaticHashTable(
                    tf.lookup.KeyValueTensorInitializer(
                        tf.constant(known, tf.string), tf.range(n, dtype=tf.int64)
                    ),
                    default_value=tf.constant(n, tf.int64),
                )
        extra = [] if ids is None else _str_list(np.asarray(ids, dtype=object).reshape(-1), key)
        self._ids = np.asarray(list(dict.fromkeys(known + extra)), dtype=object)

    @property
    def key(self) -> str:
        return self._key

    @property
    def ids(self) -> np.ndarray:
        """Object array of every known id: the table's, then the extra ``ids``."""
        return self._ids

    @property
    def feature_names(self) -> Tuple[str, ...]:
        """The key first, then the table's feature columns in table order."""
        return tuple(self._dtypes)

    @property
    def dtypes(self) -> Dict[str, tf.DType]:
        """``{feature name: tf.string | tf.float32}``."""
        return dict(self._dtypes)

    def lookup(self, ids: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Features of ``ids``.

        Args:
          ids: tf.string ids of any shape S.

        Returns:
          ``{name: tensor of shape S}``; ``key`` holds ``ids`` themselves, unknown ids
          get "" (str) or NaN (float32) features.
        """
        ids = tf.convert_to_tensor(ids, tf.string)
        out = {self._key: ids}
        if self._columns:
            rows = self._table.lookup(ids) if self._table is not None else tf.zeros_like(
                ids, dtype=tf.int64
            )
            for name, col in self._columns.items():
                out[name] = tf.gather(col, rows)
        return out


def _str_list(values: np.ndarray, name: str) -> list:
    values = list(np.asarray(values).tolist())
    for v in values:
        if not isinstance(v, str):
            raise ValueError(f"column {name!r} must hold str values, found {v!r}")
    return values


def _column_tensor(name: str, col: np.ndarray) -> Tuple[tf.Tensor, tf.DType]:
    col = np.asarray(col)
    if col.dtype == object or col.dtype.kind == "U":
        return tf.constant(_str_list(col, name) + [""], tf.string), tf.string
    if col.dtype.kind in "biuf":
        values = np.append(col.astype(np.float32), np.float32(np.nan))
        return tf.constant(values, tf.float32), tf.float32
    raise ValueError(f"FeatureStore: column {name!r} has unsupported dtype {col.dtype}; "
                     "use float32 numbers or str")


@dataclasses.dataclass(frozen=True)
class GradedLists:
    """One list per logged request (see `graded_lists`).

    Attributes:
      user_ids: ``(R,)`` object array, the request's user.
      item_ids: ``(R, L)`` object array, ``""`` in padded slots.
      labels: ``(R, L)`` float32 logged graded labels, -1 in padded slots.
      request_ids: ``(R,)`` object array.
      num_dropped_requests: requests left out because they had no positive row.
      num_truncated_requests: kept requests that had more than L rows.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    labels: np.ndarray
    request_ids: np.ndarray
    num_dropped_requests: int
    num_truncated_requests: int


def graded_lists(data: RecallData, list_size: int) -> GradedLists:
    """Groups the log by ``request_id`` into padded lists with the logged labels.

    Lists are in order of each request's first row; slots keep the logged row order.
    A request with more than ``list_size`` rows keeps its positives first, then the
    highest labels, then the earliest rows (so truncation never loses a positive
    while a non-positive is kept). Requests without a positive row are dropped and
    counted.

    Args:
      data: the training data; its interactions need ``request_id``.
      list_size: L, the list length (>= 1).

    Returns:
      A `GradedLists`.

    Raises:
      ValueError: no ``request_id`` column, a request with rows of several users,
        no request with a positive, or a bad ``list_size``.
    """
    _check_int("list_size", list_size, 1)
    inter = data.interactions
    if "request_id" not in inter:
        raise ValueError(f"listwise mode 'graded' needs a 'request_id' column in the "
                         f"interactions of {data.name!r}; columns are {sorted(inter)}")
    n = data.num_interactions
    req_str = np.asarray(inter["request_id"]).astype(str)
    _, first, inverse = np.unique(req_str, return_index=True, return_inverse=True)
    # Renumber requests by first appearance so lists follow the log.
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    req = rank[inverse.reshape(-1)]
    num_req = len(first)

    _, user_code = np.unique(np.asarray(inter["user_id"]).astype(str), return_inverse=True)
    user_code = user_code.reshape(-1)
    umin = np.full(num_req, np.iinfo(np.int64).max)
    umax = np.full(num_req, -1)
    np.minimum.at(umin, req, user_code)
    np.maximum.at(umax, req, user_code)
    first = np.sort(first)  # request (by first appearance) -> its first row
    if np.any(umin != umax):
        bad = first[np.flatnonzero(umin != umax)[0]]
        raise ValueError(f"request {inter['request_id'][bad]!r} of {data.name!r} has rows "
                         "of several users")

    positive = np.asarray(inter["positive"], bool)
    label = np.asarray(inter["label"], np.float32)
    row = np.arange(n)
    # Priority inside a request: positives, then higher label, then earlier rows.
    order = np.lexsort((row, -label, ~positive, req))
    priority = _rank_within(req[order], num_req)
    keep = np.zeros(n, bool)
    keep[order[priority < list_size]] = True
    counts = np.bincount(req, minlength=num_req)
    has_pos = np.bincount(req, weights=positive, minlength=num_req) > 0
    if not has_pos.any():
        raise ValueError(f"{data.name!r}: no request has a positive row; graded lists need one")

    new_id = np.cumsum(has_pos) - 1  # request -> list index (valid where has_pos)
    rows = np.flatnonzero(keep & has_pos[req])
    rows = rows[np.argsort(req[rows], kind="stable")]  # by request, log order inside
    slot = _rank_within(req[rows], num_req)
    num_lists = int(has_pos.sum())
    item_ids = np.full((num_lists, list_size), "", dtype=object)
    labels = np.full((num_lists, list_size), -1.0, dtype=np.float32)
    item_ids[new_id[req[rows]], slot] = np.asarray(inter["item_id"])[rows]
    labels[new_id[req[rows]], slot] = label[rows]
    list_rows = first[has_pos]
    dropped = int(num_req - num_lists)
    if dropped:
        _LOG.info("graded_lists(%s): dropped %d of %d requests with no positive",
                  data.name, dropped, num_req)
    return GradedLists(
        user_ids=np.asarray(inter["user_id"])[list_rows],
        item_ids=item_ids,
        labels=labels,
        request_ids=np.asarray(inter["request_id"])[list_rows],
        num_dropped_requests=dropped,
        num_truncated_requests=int(np.sum(has_pos & (counts > list_size))),
    )


def _rank_within(groups: np.ndarray, num_groups: int) -> np.ndarray:
    """Position of each element inside its run, for an array sorted by group."""
    counts = np.bincount(groups, minlength=num_groups)
    starts = np.cumsum(counts) - counts
    return np.arange(len(groups)) - starts[groups]


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _positives(data: RecallData) -> Tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(data.interactions["positive"], bool)
    if not mask.any():
        raise ValueError(f"{data.name!r} has no positive interactions "
                         f"(of {data.num_interactions} rows) to build samples from")
    return (np.asarray(data.interactions["user_id"], dtype=object)[mask],
            np.asarray(data.interactions["item_id"], dtype=object)[mask])


def sample_negatives(
    data: RecallData,
    users: np.ndarray,
    num_negatives: int,
    catalogue: np.ndarray,
    seed: int,
) -> np.ndarray:
    """Uniform negatives per row that are never one of the row user's positives in `data`.

    Args:
      data: the training data whose ``positive`` rows define each user's positives.
      users: ``(N,)`` object array of the user of each row.
      num_negatives: K, negatives per row (drawn with replacement).
      catalogue: 1-D array of candidate item ids (duplicates are ignored).
      seed: numpy seed.

    Returns:
      ``(N, K)`` object array of item ids.

    Raises:
      ValueError: an empty catalogue, one with fewer than K items, or a user whose
        positives cover the whole catalogue.
    """
    _check_int("num_negatives", num_negatives, 1)
    cat = np.asarray(list(dict.fromkeys(_str_list(np.asarray(catalogue).reshape(-1),
                                                  "catalogue"))), dtype=object)
    if len(cat) < num_negatives or len(cat) == 0:
        raise ValueError(f"catalogue has {len(cat)} distinct items, fewer than the "
                         f"num_negatives={num_negatives} requested per positive")
    pos_users, pos_items = _positives(data)
    num_cat = len(cat)
    # Codes by sorted position: vectorized id -> code maps for users and items.
    user_vocab = np.unique(np.concatenate([pos_users, np.asarray(users, object)]).astype(str))
    pos_u = np.searchsorted(user_vocab, pos_users.astype(str))
    row_u = np.searchsorted(user_vocab, np.asarray(users, object).astype(str))
    cat_str = cat.astype(str)
    cat_order = np.argsort(cat_str)
    at = np.minimum(np.searchsorted(cat_str[cat_order], pos_items.astype(str)), num_cat - 1)
    found = cat_str[cat_order][at] == pos_items.astype(str)
    pos_keys = np.unique(pos_u[found] * num_cat + cat_order[at[found]])

    per_user = np.bincount(pos_keys // num_cat, minlength=len(user_vocab))
    full = np.flatnonzero(per_user[np.unique(row_u)] >= num_cat)
    if len(full):
        who = str(user_vocab[np.unique(row_u)[full[0]]])
        raise ValueError(f"user {who!r} has every one of the {num_cat} catalogue items as a "
                         "positive; no negative can be sampled for it (use a larger catalogue)")

    rng = np.random.default_rng(seed)
    neg = rng.integers(0, num_cat, size=(len(row_u), num_negatives))
    bad = np.isin(row_u[:, None] * num_cat + neg, pos_keys)
    for _ in range(_RESAMPLE_ROUNDS):
        if not bad.any():
            break
        neg[bad] = rng.integers(0, num_cat, size=int(bad.sum()))
        bad[bad] = np.isin(row_u[np.nonzero(bad)[0]] * num_cat + neg[bad], pos_keys)
    # Users whose positives cover most of the catalogue: draw from the exact complement.
    for r, c in zip(*np.nonzero(bad), strict=True):
        taken = pos_keys[pos_keys // num_cat == row_u[r]] % num_cat
        neg[r, c] = rng.choice(np.setdiff1d(np.arange(num_cat), taken))
    return cat[neg]


def _dataset(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    labels: np.ndarray,
    user_store: FeatureStore,
    item_store: FeatureStore,
    batch_size: int,
    seed: int,
    shuffle: bool,
    drop_remainder: bool,
) -> tf.data.Dataset:
    """Index dataset -> shuffle -> batch -> one vectorized map to ``(x, y)``."""
    _check_int("batch_size", batch_size, 1)
    users_t = tf.constant(np.asarray(user_ids, dtype=object), tf.string)  # (N,)
    items_t = tf.constant(np.asarray(item_ids, dtype=object), tf.string)  # (N, L)
    labels_t = tf.constant(labels, tf.float32)  # (N, L)
    n = len(user_ids)
    ds = tf.data.Dataset.range(n)
    if shuffle:
        # Shuffling int64 indices (not strings) keeps a full-size buffer cheap.
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def to_batch(idx):
        x = {
            "user": user_store.lookup(tf.gather(users_t, idx)),
            "items": item_store.lookup(tf.gather(items_t, idx)),
        }
        return x, tf.gather(labels_t, idx)

    return ds.map(to_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def in_batch_dataset(
    train: RecallData,
    user_store: FeatureStore,
    item_store: FeatureStore,
    batch_size: int,
    *,
    seed: int = 0,
    shuffle: bool = True,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """One row per positive: items ``(B, 1)``, y ``(B, 1)`` ones.

    The model scores every user of the batch against every item of the batch, so the
    other rows' items are the negatives. A user with several positives gives several
    rows; users without positives are absent.

    Args:
      train: training data.
      user_store: user features (`FeatureStore` keyed by ``user_id``).
      item_store: item features (keyed by ``item_id``).
      batch_size: B.
      seed: shuffle seed.
      shuffle: shuffle rows (a new order each pass over the dataset).
      drop_remainder: drop the last, smaller batch.

    Returns:
      A dataset of ``(x, y)``; see the module docstring for ``x``.

    Raises:
      ValueError: no positive rows, or a bad ``batch_size``.
    """
    users, items = _positives(train)
    labels = np.ones((len(users), 1), np.float32)
    return _dataset(users, items[:, None], labels, user_store, item_store, batch_size, seed,
                    shuffle, drop_remainder)


def pointwise_dataset(
    train: RecallData,
    user_store: FeatureStore,
    item_store: FeatureStore,
    batch_size: int,
    *,
    num_negatives: int = 3,
    catalogue: Optional[Sequence[str]] = None,
    seed: int = 0,
    shuffle: bool = True,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Each positive and ``num_negatives`` uniform negatives as separate rows.

    Items ``(B, 1)``, y ``(B, 1)`` in {0, 1}. Unshuffled, the rows run positive, its
    negatives, next positive, ...

    Args:
      train, user_store, item_store, batch_size, seed, shuffle, drop_remainder: as in
        `in_batch_dataset`.
      num_negatives: negatives per positive (>= 1).
      catalogue: ids to sample negatives from; None: ``train.item_catalogue()``.

    Returns:
      A dataset of ``(x, y)`` with ``P * (1 + num_negatives)`` rows per pass.

    Raises:
      ValueError: see `in_batch_dataset` and `sample_negatives`.
    """
    users, items = _positives(train)
    neg = _negatives(train, users, num_negatives, catalogue, seed)
    k = 1 + num_negatives
    all_items = np.concatenate([items[:, None], neg], axis=1).reshape(-1, 1)
    labels = np.tile(np.asarray([1.0] + [0.0] * num_negatives, np.float32), len(users))
    return _dataset(np.repeat(users, k), all_items, labels[:, None], user_store, item_store,
                    batch_size, seed, shuffle, drop_remainder)


def pairwise_dataset(
    train: RecallData,
    user_store: FeatureStore,
    item_store: FeatureStore,
    batch_size: int,
    *,
    catalogue: Optional[Sequence[str]] = None,
    seed: int = 0,
    shuffle: bool = True,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """(positive, uniform negative) pairs: items ``(B, 2)``, y ``[[1, 0], ...]``.

    Args: as in `pointwise_dataset`.

    Returns:
      A dataset of ``(x, y)`` with one row per positive.
    """
    users, items = _positives(train)
    neg = _negatives(train, users, 1, catalogue, seed)
    labels = np.tile(np.asarray([[1.0, 0.0]], np.float32), (len(users), 1))
    return _dataset(users, np.concatenate([items[:, None], neg], axis=1), labels, user_store,
                    item_store, batch_size, seed, shuffle, drop_remainder)


def listwise_dataset(
    train: RecallData,
    user_store: FeatureStore,
    item_store: FeatureStore,
    batch_size: int,
    *,
    list_size: int,
    mode: str = "sampled",
    catalogue: Optional[Sequence[str]] = None,
    seed: int = 0,
    shuffle: bool = True,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Lists of ``list_size`` candidates: items ``(B, L)``, y ``(B, L)``.

    - ``"sampled"``: one list per positive, the positive first and ``L - 1`` uniform
      negatives, labels ``[1, 0, ..., 0]``.
    - ``"graded"``: one list per ``request_id`` with the logged graded labels
      (order 5, cart 4, click 3, impression 1 with the default event labels), padded
      with label -1 and item id ``""``; requests without a positive are dropped (their
      count is logged; `graded_lists` returns it).

    Args:
      list_size: L (>= 2 for "sampled", >= 1 for "graded").
      mode: "sampled" or "graded".
      catalogue: negatives' ids for "sampled"; None: ``train.item_catalogue()``.
      train, user_store, item_store, batch_size, seed, shuffle, drop_remainder: as in
        `in_batch_dataset`.

    Returns:
      A dataset of ``(x, y)``.

    Raises:
      ValueError: an unknown mode, a bad ``list_size``, "graded" without
        ``request_id``, or the errors of `sample_negatives`.
    """
    if mode == "sampled":
        _check_int("list_size", list_size, 2)
        users, items = _positives(train)
        neg = _negatives(train, users, list_size - 1, catalogue, seed)
        labels = np.zeros((len(users), list_size), np.float32)
        labels[:, 0] = 1.0
        all_items = np.concatenate([items[:, None], neg], axis=1)
    elif mode == "graded":
        lists = graded_lists(train, list_size)
        users, all_items, labels = lists.user_ids, lists.item_ids, lists.labels
    else:
        raise ValueError(f"mode must be 'sampled' or 'graded', got {mode!r}")
    return _dataset(users, all_items, labels, user_store, item_store, batch_size, seed,
                    shuffle, drop_remainder)


def _negatives(train, users, num, catalogue, seed) -> np.ndarray:
    if catalogue is None:
        catalogue = train.item_catalogue()
    return sample_negatives(train, users, num, np.asarray(catalogue, dtype=object), seed)
