"""Delimited files read in chunks: rows -> column chunks with their line numbers, and
column converters (ids, strings, floats, timestamps) that raise `DataError` naming the
file, line and column of the first bad value. Readers of every log format build on these."""

from __future__ import annotations

import contextlib
import csv
import datetime
import gc
import math
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from tfrecall.io.errors import DataError, PathLike

CHUNK_ROWS = 1 << 20  # rows converted at a time: bounds the memory of the raw strings

# --------------------------------------------------------------------------------------
# Low-level reading: rows -> column chunks with their line numbers.
# --------------------------------------------------------------------------------------


class Chunk:
    """Up to `chunk_rows` rows of a delimited file, stored column-wise.

    Attributes:
      path: the file.
      columns: column name -> tuple of raw str values.
      lines: ``(n,) int64`` the 1-based line on which each row starts.
    """

    def __init__(self, path: PathLike, columns: Dict[str, tuple], lines: np.ndarray):
        self.path = path
        self.columns = columns
        self.lines = lines

    def __len__(self) -> int:
        return len(self.lines)

    def error(self, index: int, column: Optional[str], message: str) -> DataError:
        return DataError(message, path=self.path, line=int(self.lines[index]), column=column)


def _row_source(f, path: PathLike, delimiter: str, quoting: int) -> Iterator[Tuple[int, list]]:
    """Yields ``(start line, fields)``; blank lines come out as empty lists."""
    if len(delimiter) == 1:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting, strict=True)
        previous = 0
        try:
            for row in reader:
                # A quoted field may span lines; report the line the record starts on.
                yield previous + 1, row
                previous = reader.line_num
        except csv.Error as e:
            raise DataError(f"malformed CSV ({e})", path=path, line=reader.line_num) from None
    else:
        # The csv module takes one-character delimiters only (MovieLens 1M uses "::").
        for number, text in enumerate(f, 1):
            text = text.rstrip("\r\n")
            yield number, (text.split(delimiter) if text else [])


def first_undecodable_line(path: PathLike, encoding: str) -> int:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError:
                return number
    return 1


def read_chunks(
    path: PathLike,
    *,
    delimiter: str = ",",
    encoding: str = "utf-8-sig",
    names: Optional[Sequence[str]] = None,
    quoting: int = csv.QUOTE_MINIMAL,
    chunk_rows: Optional[int] = CHUNK_ROWS,
) -> Iterator[Chunk]:
    """Reads a delimited text file into column chunks, checking its shape.

    Args:
      path: the file.
      delimiter: the field separator; several characters are split literally
        (no quoting).
      encoding: text encoding; the default "utf-8-sig" drops a UTF-8 byte order mark.
      names: the column names of a file without a header row (MovieLens classic);
        None reads them from the first line.
      quoting: a `csv` quoting constant (QUOTE_NONE for files with stray quotes).
      chunk_rows: rows per chunk (None: everything in one chunk).

    Yields:
      `Chunk`s in file order; at least one.

    Raises:
      DataError: no such file, an empty file, a header without data rows, an empty
        or repeated column name, a row with the wrong number of fields, malformed
        quoting, or bytes that are not valid in `encoding`.
    """
    if not os.path.isfile(path):
        raise DataError("no such file", path=path)
    try:
        with open(path, newline="", encoding=encoding) as f:
            yield from _chunks_of(f, path, delimiter, names, quoting, chunk_rows)
    except UnicodeDecodeError as e:
        raise DataError(
            f"not valid {encoding} text ({e.reason}); save the file as UTF-8",
            path=path,
            line=first_undecodable_line(path, encoding),
        ) from None


def _chunks_of(f, path, delimiter, names, quoting, chunk_rows) -> Iterator[Chunk]:
    rows_in = _row_source(f, path, delimiter, quoting)
    if names is None:
        header = next((row for _, row in rows_in if row), None)
        if header is None:
            raise DataError("the file is empty; expected a header row", path=path, line=1)
        header = [name.strip() for name in header]
        check_header(header, path)
    else:
        header = list(names)
    yielded = False
    while True:
        with _gc_paused():
            rows, lines = _read_block(rows_in, path, header, delimiter, chunk_rows)
            chunk = _to_chunk(path, header, rows, lines) if rows else None
            del rows
        if chunk is None:
            break
        yield chunk
        yielded = True
    if not yielded:
        raise DataError("the file has a header but no data rows", path=path, line=1)


@contextlib.contextmanager
def _gc_paused():
    """Pauses the cyclic garbage collector.

    Reading creates millions of small lists and tuples, none of them cyclic; each
    batch of allocations triggers a collection that walks every live container, which
    doubles the reading time (measured: 1M rows x 6 columns, 7 s -> 4 s).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_block(rows_in, path, header, delimiter, chunk_rows) -> Tuple[List[list], List[int]]:
    """Up to `chunk_rows` non-blank rows (all if None) and the line each starts on."""
    width = len(header)
    rows: List[list] = []
    lines: List[int] = []
    for line, row in rows_in:
        if len(row) != width:
            if not row:
                continue  # a blank line, e.g. at the end of the file
            raise DataError(
                f"expected {width} fields ({delimiter.join(header)}) but found {len(row)}",
                path=path,
                line=line,
            )
        rows.append(row)
        lines.append(line)
        if chunk_rows is not None and len(rows) >= chunk_rows:
            break
    return rows, lines


def check_header(header: List[str], path: PathLike) -> None:
    seen = set()
    for position, name in enumerate(header, 1):
        if not name:
            raise DataError(f"header field {position} is empty; every column needs a name",
                            path=path, line=1)
        if name in seen:
            raise DataError("column name appears twice in the header", path=path, line=1,
                            column=name)
        seen.add(name)


def _to_chunk(path, header, rows, lines) -> Chunk:
    values = list(zip(*rows, strict=True))  # rows were checked to have len(header) fields
    return Chunk(path, dict(zip(header, values, strict=True)), np.asarray(lines, dtype=np.int64))


def require_columns(chunk: Chunk, required: Sequence[str], what: str = "") -> None:
    """Raises DataError (line 1) naming the first missing column and those present."""
    for name in required:
        if name not in chunk.columns:
            raise DataError(
                f"missing required column{what}; the header has {list(chunk.columns)}",
                path=chunk.path,
                line=1,
                column=name,
            )


# --------------------------------------------------------------------------------------
# Column conversions (vectorized with numpy; a slow loop only to locate an error).
# --------------------------------------------------------------------------------------


def to_ids(chunk: Chunk, column: str, cache: Optional[dict] = None) -> np.ndarray:
    """``(n,) object`` stripped, non-empty str ids; `cache` shares equal strings."""
    cache = {} if cache is None else cache
    ids = [cache.setdefault(v, v) for v in map(str.strip, chunk.columns[column])]
    if "" in cache:
        raise chunk.error(ids.index(""), column, "empty id; every row needs one")
    return object_array(ids)


def to_strings(chunk: Chunk, column: str, cache: Optional[dict] = None) -> np.ndarray:
    """``(n,) object`` stripped str values ("" = missing)."""
    cache = {} if cache is None else cache
    return object_array([cache.setdefault(v, v) for v in map(str.strip, chunk.columns[column])])


def object_array(values: list) -> np.ndarray:
    """``(n,) object`` array of the given str values (never a 2-D or fixed-width array)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def to_floats(chunk: Chunk, column: str, *, missing_ok: bool = False) -> np.ndarray:
    """``(n,) float64`` parsed numbers.

    Args:
      chunk: the rows.
      column: the column to parse.
      missing_ok: empty values (and a literal "nan") become NaN instead of an error.

    Raises:
      DataError: an unparseable value, inf, or (unless `missing_ok`) an empty value or
        NaN, naming the first offending line.
    """
    raw = chunk.columns[column]
    try:
        values = np.asarray(raw, dtype=np.float64)
    except ValueError:
        values = None
    if values is None:
        # Slow path: find the first bad value to report it, or fill empties with NaN.
        parsed = []
        for index, text in enumerate(raw):
            text = text.strip()
            if not text:
                if not missing_ok:
                    raise chunk.error(index, column, "empty value; a number is required")
                parsed.append(math.nan)
                continue
            try:
                parsed.append(float(text))
            except ValueError:
                raise chunk.error(index, column, f"cannot parse {text!r} as a number") from None
        values = np.asarray(parsed, dtype=np.float64)
    bad = np.isinf(values) if missing_ok else ~np.isfinite(values)
    if bad.any():
        index = int(np.argmax(bad))
        raise chunk.error(index, column, f"{raw[index].strip()!r} is not a finite number")
    return values


def _parse_timestamp(text: str) -> int:
    """Seconds since the epoch from an integer, a float, or ISO-8601 (naive = UTC)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not math.isfinite(seconds):
            raise ValueError(text)
        return int(math.floor(seconds))
    moment = datetime.datetime.fromisoformat(text)  # 3.11: dates, "T"/" ", "Z", offsets
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(math.floor(moment.timestamp()))


def to_timestamps(chunk: Chunk, column: str) -> np.ndarray:
    """``(n,) int64`` seconds since the epoch (see `_parse_timestamp`)."""
    raw = chunk.columns[column]
    try:
        return np.asarray(raw, dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    out = np.empty(len(raw), dtype=np.int64)
    for index, text in enumerate(raw):
        text = text.strip()
        try:
            out[index] = _parse_timestamp(text)
        except (ValueError, OverflowError):
            raise chunk.error(
                index,
                column,
                f"cannot parse {text!r} as a timestamp (integer seconds since the epoch, "
                "or an ISO-8601 date/datetime such as 2024-05-01 or 2024-05-01T12:30:00Z)",
            ) from None
    return out


def check_unique(chunk: Chunk, column: str, keys: np.ndarray) -> None:
    """Raises DataError on the first repeated key, naming both lines."""
    first_seen: Dict[str, int] = {}
    for index, value in enumerate(keys.tolist()):
        if first_seen.setdefault(value, index) != index:
            raise chunk.error(
                index, column,
                f"duplicate key {value!r} (first on line {chunk.lines[first_seen[value]]}); "
                "a feature table holds one row per key",
            )


def check_labels(chunk: Chunk, column: str, labels: np.ndarray) -> None:
    """Labels must be finite and >= 0 (negative labels mean padding downstream)."""
    negative = labels < 0
    if negative.any():
        index = int(np.argmax(negative))
        raise chunk.error(
            index, column,
            f"label {labels[index]:g} is negative; labels must be >= 0 (0 = exposure only)",
        )
    check_float32(chunk, column, labels)


def check_float32(chunk: Chunk, column: str, values: np.ndarray) -> None:
    """Finite values must stay finite as float32 (1e39 would become inf when stored)."""
    with np.errstate(invalid="ignore"):
        beyond = np.abs(values) > np.finfo(np.float32).max
    if beyond.any():
        index = int(np.argmax(beyond))
        raise chunk.error(index, column, f"{values[index]:g} is beyond the float32 range "
                          "(about 3.4e38)")
