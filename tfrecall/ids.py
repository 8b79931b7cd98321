"""Id and list helpers shared by readers, samplers, baselines and metrics (numpy only).

One home for what several modules need: positions of ids in a catalogue, positive counts
per item, the sorted top k of score rows, request codes, and integer argument checks.
"""

from __future__ import annotations

import itertools
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
    """int64 position of each id in ``catalogue`` (-1 if absent); ids match as str.

    Args:
      catalogue: ``(N,)`` str ids (distinct; a repeated id maps to its first position).
      ids: str ids of any shape.

    Returns:
      int64 array of the shape of ``ids``.
    """
    query = np.asarray(ids, dtype=object)
    return index_codes(id_index(catalogue), query.reshape(-1)).reshape(query.shape)


def id_index(values: np.ndarray) -> dict:
    """``{str id: position of its first appearance in values}``."""
    index: dict = {}
    for position, value in enumerate(np.asarray(values, dtype=object).reshape(-1).tolist()):
        index.setdefault(value if isinstance(value, str) else str(value), position)
    return index


def vocabulary_codes(values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(vocab, code)``: the distinct str ids of ``(n,)`` values in order of first
    appearance, and each value's position in it (``vocab[code] == values`` as str).
    Dict-based, for the same reason as `index_codes`."""
    values = np.asarray(values)
    values = (values if values.dtype == object else values.astype(str)).astype(object)
    vocab = dict.fromkeys(values.tolist())  # C speed; first appearance order
    if any(not isinstance(v, str) for v in vocab):
        return vocabulary_codes(np.asarray([str(v) for v in values.tolist()], dtype=object))
    index = {v: i for i, v in enumerate(vocab)}
    return np.asarray(list(vocab), dtype=object), index_codes(index, values)


def index_codes(index: dict, values: np.ndarray) -> np.ndarray:
    """``(n,)`` int64 ``index[str(v)]`` for each of the ``(n,)`` values (-1 if absent).

    One dict lookup per value, without the fixed-width str copy and the string sort of
    ``np.unique``/``searchsorted`` (on a 20M-row log: 0.5 GB and about 10x the time):
    logs hold each distinct id as one shared str object (`tfrecall.io.chunks`), so a
    lookup is a pointer hash. Values that are not str (numbers) are looked up as str.
    """
    values = np.asarray(values, dtype=object).reshape(-1)
    out = np.fromiter(map(index.get, values, itertools.repeat(-1)), np.int64,
                      count=len(values))
    for at in np.flatnonzero(out < 0).tolist():
        value = values[at]
        if not isinstance(value, str):
            out[at] = index.get(str(value), -1)
    return out


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
