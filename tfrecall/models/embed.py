"""Embeddings of whole tables by a trained tower (evaluation, indexing, export)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from tfrecall._backend import tf


def embed_table(tower, table: Mapping[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """`(N, D)` float32 embeddings of a column table (one row per entity) by `tower`.

    Columns the tower needs but the table lacks are fed as missing ("" or NaN).
    """
    n = len(next(iter(table.values())))
    sig = tower.encoder.input_signature()
    out = []
    for start in range(0, n, batch_size):
        batch = {
            name: tf.constant(feature_column(table, name, spec.dtype,
                                             slice(start, min(start + batch_size, n)),
                                             min(batch_size, n - start)))
            for name, spec in sig.items()
        }
        out.append(tower(batch, training=False).numpy())
    return np.concatenate(out) if out else np.zeros((0, tower.output_dim), np.float32)


def embed_items(model, items: Mapping[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """`(N, D)` item-tower embeddings of the item table `items`."""
    return embed_table(model.item_tower, items, batch_size)


def embed_users(model, users: Mapping[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """`(N, D)` user-tower embeddings of the user table `users`."""
    return embed_table(model.user_tower, users, batch_size)


def feature_column(table: Mapping[str, np.ndarray], name: str, dtype: tf.DType, rows,
                   num_rows: int) -> np.ndarray:
    """Column ``name`` of ``table`` at ``rows`` (a slice or indices of ``num_rows`` rows) as
    ``dtype`` wants it: str, or float32; the missing value ("" or NaN) where the table
    lacks the column."""
    column = table.get(name)
    if column is not None:
        values = np.asarray(column)[rows]
    else:
        values = np.full(num_rows, "" if dtype == tf.string else np.nan, dtype=object)
    if dtype == tf.string:
        return np.asarray(values, dtype=object).astype(str).astype(object)
    return np.asarray(values, dtype=np.float32)
