"""Id and list helpers shared by readers, samplers, baselines and metrics (numpy only).

One home for what several modules need: positions of ids in a catalogue, positive counts
per item, the sorted top k of score rows, request codes, and integer argument checks.
"""

from __future__ import annotations

import itertools
from typing import Optional, Tuple

import numpy as np

_CHUNK = 1 << 20  # ids per dict lookup pass: bounds the list temporary


def check_int(name: str, value, minimum: int, allow_none: bool = False) -> None:
    """ValueError ``"{name} must be an integer >= {minimum}, got {value!r}"`` unless
    ``value`` is an int (not a bool) >= ``minimum`` (or None, with ``allow_none``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def catalogue_index(catalogue: np.ndarray, ids: np.ndarray,
                    rows: Optional[np.ndarray] = None) -> np.ndarray:
    """int64 position of each id in ``catalogue`` (-1 if absent); ids compare as str.

    One dict of the catalogue, looked up in chunks: no sort and no fixed-width copy of
    ``ids`` (20M ids in about 2 s, with a temporary of one chunk).

    Args:
      catalogue: ``(N,)`` distinct str ids (a repeated id: its first position).
      ids: str ids of any shape.
      rows: optional integer positions (or a boolean mask) into 1-D ``ids``: the result is
        that of ``catalogue_index(catalogue, ids[rows])``, gathered a chunk at a time (a
        log column under a mask is not copied whole: 160 MB of pointers at 20M rows).

    Returns:
      int64 array of the shape of ``ids`` (of ``rows`` when given).
    """
    cat = np.asarray(catalogue, dtype=object).reshape(-1).astype(str).tolist()
    flat, shape = _flat_rows(ids, rows)
    out = np.full(len(flat), -1, np.int64)
    if not cat:
        return out.reshape(shape)
    where = dict(zip(reversed(cat), range(len(cat) - 1, -1, -1), strict=True))
    for start in range(0, len(flat), _CHUNK):
        part = flat[start:start + _CHUNK].tolist()
        out[start:start + len(part)] = np.fromiter(
            map(where.get, part, itertools.repeat(-1)), np.int64, len(part))
    miss = np.flatnonzero(out < 0)
    odd = miss[np.array([type(v) is not str for v in flat[miss].tolist()], bool)]
    if len(odd):  # a non-str id (5, b"x") matches its str form (numpy's: b"x" -> "x")
        out[odd] = [where.get(v, -1) for v in np.asarray(flat[odd]).astype(str).tolist()]
    return out.reshape(shape)


class _Rows:
    """``values[rows]`` of a 1-D array, materialised only a slice at a time."""

    def __init__(self, values: np.ndarray, rows: np.ndarray):
        self.values, self.rows = values, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> np.ndarray:
        return self.values[self.rows[key]]


def _flat_rows(ids, rows):
    """``(flat view, result shape)`` of ``ids`` or of ``ids[rows]`` (see `catalogue_index`)."""
    query = np.asarray(ids, dtype=object)
    if rows is None:
        return query.reshape(-1), query.shape
    if query.ndim != 1:
        raise ValueError(f"rows index a 1-D array of ids, got shape {query.shape}")
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != query.shape:
            raise ValueError(f"a boolean rows mask must have the ids' shape {query.shape}, "
                             f"got {rows.shape}")
        rows = np.flatnonzero(rows)
    elif rows.ndim != 1 or (len(rows) and not np.issubdtype(rows.dtype, np.integer)):
        raise ValueError(f"rows must be 1-D integer positions or a boolean mask, got "
                         f"{rows.dtype} {rows.shape}")
    return _Rows(query, rows), (len(rows),)


def vocab_codes(known: np.ndarray, values: np.ndarray,
                rows: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(vocab, code)``: ``vocab`` is ``known`` then the values absent from it (as str, by
    first appearance); int64 ``code`` (the shape of ``values``) holds each value's position
    in ``vocab`` (as str). Codes a column once, by hashing: no sort of the values.
    ``rows``: as in `catalogue_index` (the codes of ``values[rows]``, no copy of it).

    Example:
      >>> vocab_codes(np.array(["a", "b"], object), np.array(["b", "z", "a", "z"], object))
      (array(['a', 'b', 'z'], dtype=object), array([1, 2, 0, 2]))
    """
    known = np.asarray(known, dtype=object).reshape(-1)
    flat, shape = _flat_rows(values, rows)  # a mask becomes positions once, here
    code = catalogue_index(known, values, None if rows is None else flat.rows).reshape(-1)
    # The values missing from `known`, a chunk at a time (for 20M new ids one `astype(str)
    # .tolist()` of them all peaked at 1.5 GiB above the log); a chunk's ids not seen
    # before take the next codes, in order of appearance.
    where: dict = {}
    for start in range(0, len(flat), _CHUNK):
        miss = np.flatnonzero(code[start:start + _CHUNK] < 0)
        new = _str_list(np.asarray(flat[start:start + _CHUNK])[miss])
        for key in dict.fromkeys(new):
            if key not in where:
                where[key] = len(known) + len(where)
        code[start + miss] = np.fromiter(map(where.__getitem__, new), np.int64, len(new))
    extra = np.empty(len(where), dtype=object)
    extra[:] = list(where)
    return np.concatenate([known, extra]), code.reshape(shape)


def _str_list(values: np.ndarray) -> list:
    """``values`` (object) as a list of str, converting only what is not str already (as
    numpy's ``astype(str)`` does: 5 -> "5", b"x" -> "x")."""
    out = values.tolist()
    odd = [i for i, v in enumerate(out) if type(v) is not str]
    if odd:
        for i, v in zip(odd, values[odd].astype(str).tolist(), strict=True):
            out[i] = v
    return out


def positive_counts(train, catalogue: np.ndarray) -> np.ndarray:
    """``(N,)`` int64 number of training positives of each catalogue item (``train``: a
    `tfrecall.io.schema.RecallData`)."""
    inter = train.interactions
    idx = catalogue_index(catalogue, inter["item_id"], np.asarray(inter["positive"], bool))
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
    code = vocab_codes(np.zeros(0, object), np.asarray(values).reshape(-1))[1]
    # A row holds a new value where its code exceeds every earlier one.
    first = np.flatnonzero(np.diff(np.maximum.accumulate(code), prepend=-1) > 0)
    return first.astype(np.int64), code
