"""Id and list helpers shared by readers, samplers, baselines and metrics (numpy only).

One home for what several modules need: positions of ids in a catalogue, positive counts
per item, the sorted top k of score rows, request codes, and integer argument checks.
"""

from __future__ import annotations

import itertools
from typing import Tuple

import numpy as np

_CHUNK = 1 << 20  # ids per dict lookup pass: bounds the list temporary


def check_int(name: str, value, minimum: int, allow_none: bool = False) -> None:
    """ValueError ``"{name} must be an integer >= {minimum}, got {value!r}"`` unless
    ``value`` is an int (not a bool) >= ``minimum`` (or None, with ``allow_none``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def catalogue_index(catalogue: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """int64 position of each id in ``catalogue`` (-1 if absent); ids compare as str.

    One dict of the catalogue, looked up in chunks: no sort and no fixed-width copy of
    ``ids`` (20M ids in about 2 s, with a temporary of one chunk).

    Args:
      catalogue: ``(N,)`` distinct str ids (a repeated id: its first position).
      ids: str ids of any shape.

    Returns:
      int64 array of the shape of ``ids``.
    """
    cat = np.asarray(catalogue, dtype=object).reshape(-1).astype(str).tolist()
    query = np.asarray(ids, dtype=object)
    flat = query.reshape(-1)
    out = np.full(len(flat), -1, np.int64)
    if not cat:
        return out.reshape(query.shape)
    where = dict(zip(reversed(cat), range(len(cat) - 1, -1, -1), strict=True))
    for start in range(0, len(flat), _CHUNK):
        part = flat[start:start + _CHUNK].tolist()
        out[start:start + len(part)] = np.fromiter(
            map(where.get, part, itertools.repeat(-1)), np.int64, len(part))
    miss = np.flatnonzero(out < 0)
    odd = miss[np.array([type(v) is not str for v in flat[miss].tolist()], bool)]
    if len(odd):  # a non-str id (5, b"x") matches its str form (numpy's: b"x" -> "x")
        out[odd] = [where.get(v, -1) for v in flat[odd].astype(str).tolist()]
    return out.reshape(query.shape)


def vocab_codes(known: np.ndarray, values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(vocab, code)``: ``vocab`` is ``known`` then the values absent from it (as str, by
    first appearance); int64 ``code`` (the shape of ``values``) holds each value's position
    in ``vocab`` (as str). Codes a column once, by hashing: no sort of the values.

    Example:
      >>> vocab_codes(np.array(["a", "b"], object), np.array(["b", "z", "a", "z"], object))
      (array(['a', 'b', 'z'], dtype=object), array([1, 2, 0, 2]))
    """
    known = np.asarray(known, dtype=object).reshape(-1)
    values = np.asarray(values, dtype=object)
    flat = values.reshape(-1)
    code = catalogue_index(known, flat)
    # The values missing from `known`, a chunk at a time (for 20M new ids one `astype(str)
    # .tolist()` of them all peaked at 1.5 GiB above the log); a chunk's ids not seen
    # before take the next codes, in order of appearance.
    where: dict = {}
    for start in range(0, len(flat), _CHUNK):
        miss = np.flatnonzero(code[start:start + _CHUNK] < 0)
        new = _str_list(flat[start:start + _CHUNK][miss])
        for key in dict.fromkeys(new):
            if key not in where:
                where[key] = len(known) + len(where)
        code[start + miss] = np.fromiter(map(where.__getitem__, new), np.int64, len(new))
    extra = np.empty(len(where), dtype=object)
    extra[:] = list(where)
    return np.concatenate([known, extra]), code.reshape(values.shape)


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
    code = vocab_codes(np.zeros(0, object), np.asarray(values).reshape(-1))[1]
    # A row holds a new value where its code exceeds every earlier one.
    first = np.flatnonzero(np.diff(np.maximum.accumulate(code), prepend=-1) > 0)
    return first.astype(np.int64), code
