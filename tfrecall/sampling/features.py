"""One side's feature table as tensors, looked up by id inside a ``tf.data`` map.

`FeatureStore` backs every sample builder: ``x["user"]`` and ``x["items"]`` are
gathered from it with vectorized ``tf.gather`` (no per-example Python). Str columns
become ``tf.string``, numeric ones ``tf.float32`` (NaN = missing).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from tfrecall._backend import tf
from tfrecall.ids import catalogue_index, vocab_codes
from tfrecall.io.schema import Table


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
        self._known = np.zeros(0, dtype=object)
        if table is not None:
            if key not in table:
                raise ValueError(f"FeatureStore: key column {key!r} not in table columns "
                                 f"{sorted(table)}")
            known = _str_list(table[key], key)
            if len(set(known)) != len(known):
                raise ValueError(f"FeatureStore: {key} values are not unique")
            self._known = np.asarray(known, dtype=object)
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

    @property
    def missing_row(self) -> int:
        """The row whose features are the missing values (unknown ids gather it)."""
        return len(self._known)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """int64 table row of each id (numpy, any shape), `missing_row` for unknown ids.

        With the rows computed once, `lookup_rows` skips the string hashing of `lookup`
        inside the input pipeline.
        """
        at = catalogue_index(self._known, np.asarray(ids, dtype=object))
        return np.where(at >= 0, at, self.missing_row).astype(np.int64)

    def lookup_rows(self, rows: tf.Tensor, ids: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Features by precomputed `rows` (shape S, from `rows`); ``ids`` (shape S) is the key.

        Returns:
          The same ``{name: tensor of shape S}`` as ``lookup(ids)``.
        """
        out = {self._key: tf.convert_to_tensor(ids, tf.string)}
        for name, col in self._columns.items():
            out[name] = tf.gather(col, rows)
        return out


class FeatureRows:
    """Ids of one side held once, with their `FeatureStore` rows, gathered by index.

    The rows are computed once in numpy, so the input pipeline gathers features without
    hashing a string per example. With ``code`` (an int per example, int32 where it
    fits), an index is an example: example -> code -> id and feature row, so a large log
    costs one small int per example, not a string and a row (`coded` builds it).

    Args:
      store: the side's `FeatureStore`.
      ids: ``(V,)`` str ids (distinct, with ``code``).
      code: optional ``(R,)`` int position in ``ids`` of each example.
    """

    def __init__(self, store: FeatureStore, ids: np.ndarray, code: Optional[np.ndarray] = None):
        ids = np.asarray(ids, dtype=object)
        self.store = store
        self.ids = tf.constant(ids.astype(str))
        self.rows = tf.constant(store.rows(ids))
        self.code = None if code is None else tf.constant(
            code, tf.int32 if len(ids) < 2 ** 31 else tf.int64)

    @classmethod
    def coded(cls, store: FeatureStore, ids: np.ndarray) -> "FeatureRows":
        """Per-example ``ids`` (any shape), each distinct id looked up once
        (`tfrecall.ids.vocab_codes` against the store's ids)."""
        return cls(store, *vocab_codes(store.ids, ids))

    def ids_rows(self, at: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """``(str ids, store rows)`` of the indices ``at`` (any shape)."""
        if self.code is not None:
            at = tf.gather(self.code, at)
        return tf.gather(self.ids, at), tf.gather(self.rows, at)

    def features(self, at: tf.Tensor) -> Dict[str, tf.Tensor]:
        """``store.lookup`` of the ids at ``at``, by their precomputed rows."""
        ids, rows = self.ids_rows(at)
        return self.store.lookup_rows(rows, ids)


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
