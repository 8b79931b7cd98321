"""The one error type of bad input files, and the path type readers accept."""

from __future__ import annotations

import os
from typing import Optional, Union

PathLike = Union[str, os.PathLike]


class DataError(ValueError):
    """Bad input data; the message names the file, line and column where known.

    Attributes:
      path: the file (str) or None.
      line: 1-based line number (the header is line 1) or None.
      column: the column name or None.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Optional[PathLike] = None,
        line: Optional[int] = None,
        column: Optional[str] = None,
    ):
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        where = [p for p in (self.path, None if line is None else f"line {line}") if p]
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
