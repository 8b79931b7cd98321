"""Id and list helpers shared by readers, samplers, baselines and metrics (numpy only).

One home for what several modules need: positions of ids in a catalogue, positive counts
per item, the sorted top k of score rows, request codes, and integer argument checks.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np


def check_int(name: str, value, minimum: int, allow_none: bool = False) -> None:
    """ValueError ``"{name} must be an integer >= {minimum}, got {value!r}"`` unless
    ``value`` is an int (not a bool) >= ``minimum`` (or None, with ``allow_none``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def catalogue_index(catalogue: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """int64 position of each id in ``catalogue`` (-1 if absent); vectorized.

    Args:
      catalogue: ``(N,)`` distinct str ids.
      ids: str ids of any shape.

    Returns:
      int64 array of the shape of ``ids``.
    """
    cat = np.asarray(catalogue, dtype=object).astype(str)
    query = np.asarray(ids, dtype=object)
    flat = query.reshape(-1).astype(str)
    if len(cat) == 0:
        return np.full(query.shape, -1, np.int64)
    order = np.argsort(cat, kind="stable")
    at = np.minimum(np.searchsorted(cat[order], flat), len(cat) - 1)
    found = cat[order][at] == flat
    return np.where(found, order[at], -1).astype(np.int64).reshape(query.shape)


def positive_counts(train, catalogue: np.ndarray) -> np.ndarray:
    """``(N,)`` int64 number of training positives of each catalogue item (``train``: a
    `tfrecall.io.schema.RecallData`)."""
    inter = train.interactions
    pos = np.asarray(inter["item_id"], dtype=object)[np.asarray(inter["positive"], bool)]
    idx = catalogue_index(catalogue, pos)
    return np.bincount(idx[idx >= 0], minlength=len(catalogue)).astype(np.int64)


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """``(R, min(k, N))`` column indices of each row's k largest scores, best first.

    argpartition, then a stable sort of the k selected: O(N + k log k) per row instead
    of a full sort; ties keep column order where the selection is the whole row.
    """
    num = scores.shape[1]
    if k < num:
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        top = np.tile(np.arange(num), (len(scores), 1))
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def first_appearance_codes(values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(first, code)``: ``code[i]`` numbers the distinct value of ``values[i]`` (as str)
    by first appearance (0, 1, ...); ``first[c]`` is the row where code ``c`` first
    appears (increasing). Requests renumbered so that lists follow the log."""
    _, first, inverse = np.unique(np.asarray(values).astype(str), return_index=True,
                                  return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(first), np.int64)
    rank[order] = np.arange(len(first))
    return first[order].astype(np.int64), rank[inverse.reshape(-1)]
