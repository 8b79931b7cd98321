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
        """``(n,) object`` the ids as str, equal strings one object through `cache`."""
        names = list(map(str, self.unique.tolist()))
        shared = np.empty(len(names), dtype=object)
        shared[:] = list(map(cache.setdefault, names, names))
        return shared[self.inverse]


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
        unique, inverse = np.unique(parsed[f"f{j}"], return_inverse=True)
        canonical = np.fromiter(map(len, map(str, unique.tolist())), np.int64, len(unique))
        if not np.array_equal(canonical[inverse], widths[:, j]):
            return None
        out[j] = IntIds(unique, inverse.reshape(-1))
    return out
