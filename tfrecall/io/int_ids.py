"""Id columns written as integers, parsed without a Python str per row.

Most large logs write their ids as decimal integers (MovieLens' userId and movieId, the
output of most warehouses). numpy's C parser reads such a column into int64 without a
Python object per row; each distinct id of a block then becomes one str (shared through
the reader's id cache) and the block's column one gather. Reading a 5M-row log that way
skips a str object and a dict lookup per id (BENCHMARKS.md, "Integer ids read as
integers").

numpy's parser also accepts what the csv path keeps as a different id: "007", "+7" and
"-0" are the integers 7, 7 and 0 but other strings than "7" and "0", and it accepts
whitespace that ``str.strip`` removes as well as unicode spaces. So a block takes this
path only where every value of the column is written exactly as Python writes the
integer (`canonical_int_ids`): any other spelling of an accepted integer is longer than
that (in bytes, too: the widths are counted in the block's UTF-8), so comparing each
field's width in the block with its canonical width is exact.
No library offers this (numpy's ``np.unique`` of the text would compare str objects one
by one, the cost avoided here), hence this module.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np


class IntIds:
    """A block's id column, every value a canonically written integer.

    Attributes:
      unique: ``(k,) int64`` the distinct values, ascending.
      inverse: ``(n,) intp`` each row's position in `unique`.
    """

    __slots__ = ("unique", "inverse")

    def __init__(self, unique: np.ndarray, inverse: np.ndarray):
        self.unique = unique
        self.inverse = inverse

    def __len__(self) -> int:
        return len(self.inverse)

    def strings(self, cache: dict) -> np.ndarray:
        """``(n,) object`` the ids as str, equal strings one object through `cache`.

        `cache` is the reader's str -> str cache; it also keeps each integer read this way
        -> its str (int keys: no str key equals them), so an id is written out once per
        file, not once per block.
        """
        values = self.unique.tolist()
        shared = np.empty(len(values), dtype=object)
        shared[:] = list(map(cache.get, values))
        for j in np.flatnonzero(np.equal(shared, None)).tolist():  # new ids
            name = str(values[j])
            shared[j] = cache[values[j]] = cache.setdefault(name, name)
        return shared[self.inverse]


def distinct(values: np.ndarray):
    """``(unique, inverse)`` of int64 `values`, as ``np.unique(values, return_inverse=True)``:
    by a table over the values' range where it is small (a block's ids usually are), which
    needs no sort, else by ``np.unique``."""
    if not len(values):
        return np.unique(values, return_inverse=True)
    low, high = int(values.min()), int(values.max())
    if high - low > 4 * len(values) + 4096:
        unique, inverse = np.unique(values, return_inverse=True)
        return unique, inverse.reshape(-1)
    offsets = values - low  # the span fits: no overflow
    seen = np.zeros(high - low + 1, bool)
    seen[offsets] = True
    present = np.flatnonzero(seen)
    position = np.zeros(len(seen), np.intp)
    position[present] = np.arange(len(present))
    return present + low, position[offsets]


_POWERS = 10 ** np.arange(1, 20, dtype=np.uint64)  # 10 .. 10^19 (uint64 holds 1.8e19)


def decimal_widths(values: np.ndarray) -> np.ndarray:
    """``len(str(v))`` of each int64 `v`, without making the strings."""
    values = np.asarray(values, np.int64)
    negative = values < 0
    magnitude = values.astype(np.uint64)
    magnitude[negative] = (~values[negative]).astype(np.uint64) + np.uint64(1)  # no overflow
    return np.searchsorted(_POWERS, magnitude, side="right") + 1 + negative


def field_widths(block: str, delimiter: str, rows: int, fields: int) -> Optional[np.ndarray]:
    """``(rows, fields)`` each field's width in bytes, or None if the block is not
    `rows` lines of `fields` fields split by one ASCII `delimiter` (no quoting)."""
    data = block.encode("utf-8")
    separator = delimiter.encode("utf-8")
    if len(separator) != 1 or separator in b"\r\n":
        return None
    raw = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero((raw == separator[0]) | (raw == 10))  # UTF-8 never reuses them
    if not data.endswith(b"\n"):
        ends = np.append(ends, len(raw))  # the file's last line without a line end
    if len(ends) != rows * fields:
        return None
    ends = ends.reshape(rows, fields)
    starts = np.empty_like(ends)
    starts[:, 1:] = ends[:, :-1] + 1
    starts[0, 0] = 0
    starts[1:, 0] = ends[:-1, -1] + 1
    widths = ends - starts
    if b"\r" in data:  # "\r\n" line ends (a plain block has no other CR): not the id's
        widths[:, -1] -= raw[ends[:, -1] - 1] == 13
    return widths


def canonical_int_ids(block: str, delimiter: str, parsed: np.ndarray,
                      fields: Sequence[int]) -> Optional[Dict[int, IntIds]]:
    """Field index -> `IntIds` for `fields` of numpy's parse of `block` (field ``j`` in
    ``parsed[f"f{j}"]``, int64), or None unless each value is written as ``str(value)``."""
    widths = field_widths(block, delimiter, len(parsed), len(parsed.dtype.names))
    if widths is None:
        return None
    out = {}
    for j in fields:
        unique, inverse = distinct(parsed[f"f{j}"])
        if not np.array_equal(decimal_widths(unique)[inverse], widths[:, j]):
            return None
        out[j] = IntIds(unique, inverse)
    return out
