"""CSV readers: interaction logs and user/item feature tables -> `RecallData`.

The files a user hands to ``pipelines.train`` (see ``data/README.md``):

- interactions: a header row, then ``user_id``, ``item_id`` and optionally
  ``label`` (graded relevance, a number >= 0), ``event`` (a name from
  ``event_labels``: impression, click, cart, order -> 1, 3, 4, 5 by default),
  ``timestamp`` (integer seconds since the epoch, so 20240101 is seconds, not a date;
  or an ISO-8601 date/datetime, naive ones taken as UTC),
  ``request_id`` and ``ranker_score``. With neither ``label`` nor ``event`` every row
  is a positive with label 1. If both are given the ``label`` column wins and
  ``event`` is kept only to mark exposures. A row is a positive when
  ``label > 0 and event not in EXPOSURE_EVENTS``.
- users / items: the key column (``user_id`` / ``item_id``) plus feature columns.
  A column whose every non-empty value parses as a number becomes float32 (NaN for
  empty); any other column becomes str ("" for empty).

Every problem in a file raises `DataError`, whose message names the file, the line
(1-based, the header is line 1) and the column, so a user never has to read a
TensorFlow stack trace to find a bad row. Files are read with the stdlib `csv`
module (about 3 s per million six-column rows on one core) in chunks of a million rows, and
converted to numpy column by column; files larger than memory need a streaming
reader, which is left for a later change.

MovieLens directories are recognised by `load_data` and read by
`tfrecall.data.movielens`.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import gc
import logging
import math
import os
from pathlib import Path
from typing import Collection, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from tfrecall.config import STRING_KINDS
from tfrecall.data.schema import DEFAULT_EVENT_LABELS, EXPOSURE_EVENTS, RecallData, Table

PathLike = Union[str, os.PathLike]

CHUNK_ROWS = 1 << 20  # rows converted at a time: bounds the memory of the raw strings
_INTERACTION_COLUMNS = (
    "user_id", "item_id", "label", "event", "timestamp", "request_id", "ranker_score"
)

"""Feature kinds whose values are str (the others, continuous/bucketized, are numbers)."""

logger = logging.getLogger(__name__)


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


def _first_undecodable_line(path: PathLike, encoding: str) -> int:
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
            line=_first_undecodable_line(path, encoding),
        ) from None


def _chunks_of(f, path, delimiter, names, quoting, chunk_rows) -> Iterator[Chunk]:
    rows_in = _row_source(f, path, delimiter, quoting)
    if names is None:
        header = next((row for _, row in rows_in if row), None)
        if header is None:
            raise DataError("the file is empty; expected a header row", path=path, line=1)
        header = [name.strip() for name in header]
        _check_header(header, path)
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


def _check_header(header: List[str], path: PathLike) -> None:
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


# --------------------------------------------------------------------------------------
# Public readers.
# --------------------------------------------------------------------------------------


def read_interactions_csv(
    path: PathLike,
    event_labels: Optional[Mapping[str, float]] = DEFAULT_EVENT_LABELS,
    *,
    chunk_rows: Optional[int] = CHUNK_ROWS,
) -> Table:
    """Reads an interaction log CSV into the `schema` interactions table.

    Args:
      path: the CSV file (header row; see the module docstring for the columns).
      event_labels: event name -> label, used when there is an ``event`` column and
        no ``label`` column. Names are matched case-insensitively after stripping
        spaces, and every event must be one of them even when ``label`` is given
        (where an empty event is allowed). None means `DEFAULT_EVENT_LABELS`.
      chunk_rows: rows converted at a time (bounds the memory of the raw strings).

    Returns:
      A table with ``user_id``, ``item_id`` ``(n,) object``, ``label`` ``(n,) float32``,
      ``positive`` ``(n,) bool``, and those of ``timestamp`` ``(n,) int64``, ``event``,
      ``request_id`` ``(n,) object``, ``ranker_score`` ``(n,) float32`` (NaN for
      empty) present in the file. Other columns are ignored with a logged warning.

    Raises:
      DataError: naming file, line and column (see `read_chunks`, plus: a missing
        ``user_id``/``item_id`` column, an empty id, an unparseable or non-finite
        or negative label, an unknown or (without ``label``) empty event, an
        unparseable timestamp or ranker score).
    """
    mapping = _normalized_event_labels(event_labels)
    parts: Dict[str, List[np.ndarray]] = {}
    caches: Dict[str, dict] = {"id": {}, "event": {}, "request_id": {}}
    for chunk in read_chunks(path, chunk_rows=chunk_rows):
        if not parts:
            require_columns(chunk, ("user_id", "item_id"))
            ignored = [c for c in chunk.columns if c not in _INTERACTION_COLUMNS]
            if ignored:
                logger.warning("%s: ignoring column(s) %s; interactions use %s",
                               path, ignored, list(_INTERACTION_COLUMNS))
        for name, values in _convert_interactions(chunk, mapping, caches).items():
            parts.setdefault(name, []).append(values)
    return {name: np.concatenate(values) for name, values in parts.items()}


def _normalized_event_labels(event_labels: Optional[Mapping[str, float]]) -> Dict[str, float]:
    mapping = {}
    for name, label in (DEFAULT_EVENT_LABELS if event_labels is None else event_labels).items():
        label = float(label)
        if not math.isfinite(label) or label < 0:
            raise ValueError(f"event_labels[{name!r}] must be a finite number >= 0, got {label}")
        mapping[str(name).strip().lower()] = label
    if not mapping:
        raise ValueError("event_labels is empty; give at least one event name -> label")
    return mapping


def _convert_interactions(chunk: Chunk, mapping: Dict[str, float], caches) -> Table:
    cols = chunk.columns
    out: Table = {
        "user_id": to_ids(chunk, "user_id", caches["id"]),
        "item_id": to_ids(chunk, "item_id", caches["id"]),
    }
    if "label" in cols:
        label = to_floats(chunk, "label")
        check_labels(chunk, "label", label)
    if "event" in cols:
        cache = caches["event"]
        events = object_array(
            [cache.setdefault(e, e) for e in (v.strip().lower() for v in cols["event"])])
        _check_events(chunk, events, mapping, allow_empty="label" in cols)
        out["event"] = events
        if "label" not in cols:
            label = np.asarray([mapping[e] for e in events], dtype=np.float64)
    if "label" not in cols and "event" not in cols:
        label = np.ones(len(chunk), dtype=np.float64)  # a plain log: every row is a positive
    out["label"] = label.astype(np.float32)
    positive = out["label"] > 0  # from the stored float32, so a 1e-50 label is not a positive
    if "event" in cols:
        positive &= ~np.isin(out["event"], list(EXPOSURE_EVENTS))
    out["positive"] = positive
    if "timestamp" in cols:
        out["timestamp"] = to_timestamps(chunk, "timestamp")
    if "request_id" in cols:
        out["request_id"] = to_strings(chunk, "request_id", caches["request_id"])
    if "ranker_score" in cols:
        scores = to_floats(chunk, "ranker_score", missing_ok=True)
        check_float32(chunk, "ranker_score", scores)
        out["ranker_score"] = scores.astype(np.float32)
    return out


def _check_events(chunk: Chunk, events: np.ndarray, mapping, allow_empty: bool) -> None:
    known = set(mapping) | ({""} if allow_empty else set())
    for value in set(events.tolist()) - known:
        index = int(np.argmax(events == value))
        what = "empty event" if not value else f"unknown event {value!r}"
        raise chunk.error(
            index, "event", f"{what}; known events are {sorted(mapping)} (set event_labels "
            "to map other names)",
        )


def read_feature_table_csv(
    path: PathLike, key: str, *, str_columns: Collection[str] = ()
) -> Table:
    """Reads a users or items CSV: one row per key, plus feature columns.

    Args:
      path: the CSV file with a header row.
      key: the key column (``user_id`` or ``item_id``).
      str_columns: columns to keep as str even if every value looks like a number
        (codes such as zip codes or category ids; `load_data` derives them from the
        feature config).

    Returns:
      ``{key: (n,) object, column: (n,) float32 | (n,) object, ...}``: a column whose
      every non-empty value parses as a number is float32 with NaN for empty
      values; any other column is str, stripped, "" for empty.

    Raises:
      DataError: naming file, line and column (see `read_chunks`, plus: a missing key
        column, an empty or repeated key, inf or a number beyond float32).
    """
    chunk = next(read_chunks(path, chunk_rows=None))
    require_columns(chunk, (key,), f" (the {key} of each row)")
    keys = to_ids(chunk, key)
    check_unique(chunk, key, keys)
    table: Table = {key: keys}
    for name in chunk.columns:
        if name != key:
            table[name] = _feature_column(chunk, name, force_str=name in str_columns)
    return table


def _feature_column(chunk: Chunk, name: str, force_str: bool) -> np.ndarray:
    strings = to_strings(chunk, name)
    if not force_str:
        try:
            values = np.asarray([s or "nan" for s in strings.tolist()], dtype=np.float64)
        except ValueError:
            _check_mostly_numbers(chunk, name, strings)
            return strings
        with np.errstate(over="ignore"):
            values32 = values.astype(np.float32)
        bad = np.isinf(values32)
        if bad.any():
            index = int(np.argmax(bad))
            raise chunk.error(index, name, f"{strings[index]!r} is infinite or beyond float32; "
                              "give a finite number or leave the value empty")
        return values32
    return strings


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_mostly_numbers(chunk: Chunk, name: str, strings: np.ndarray) -> None:
    """A column of numbers with a few words in it ("unknown", "n/a") is a mistake to name,
    not a categorical column: most values numbers and some not raises DataError."""
    present = [(i, v) for i, v in enumerate(strings.tolist()) if v]
    words = [(i, v) for i, v in present if not _is_number(v)]
    if words and 2 * len(words) < len(present):
        index, value = words[0]
        raise chunk.error(
            index, name,
            f"{value!r} in a column of numbers ({len(present) - len(words)} of {len(present)} "
            "values); leave a missing value empty, or give the column a string kind "
            '(e.g. {"kind": "categorical"}) in the feature config')


def load_data(
    interactions: PathLike,
    users: Optional[PathLike] = None,
    items: Optional[PathLike] = None,
    event_labels: Optional[Mapping[str, float]] = None,
    movielens_min_rating: float = 0.0,
    feature_config: Optional[Mapping[str, Mapping]] = None,
) -> RecallData:
    """Reads a data set: a MovieLens download, or generic interaction/user/item CSVs.

    A MovieLens layout is recognised from `interactions` (a directory, or its
    ratings file): ml-latest-small / ml-25m (``ratings.csv`` with header
    ``userId,movieId,rating,timestamp`` and ``movies.csv``), ml-100k (``u.data``) or
    ml-1m (``ratings.dat``); see `tfrecall.data.movielens`. Anything else is read
    with `read_interactions_csv` and `read_feature_table_csv`.

    Args:
      interactions: the interaction CSV, or a MovieLens directory or ratings file.
      users: optional users CSV (key ``user_id``); not allowed with MovieLens.
      items: optional items CSV (key ``item_id``); not allowed with MovieLens.
      event_labels: event name -> label for the generic reader (None: defaults).
      movielens_min_rating: MovieLens only: ratings >= this are positives (0: all).
      feature_config: the dict of `tfrecall.data.inference.load_feature_config`;
        columns it gives a string kind (id, categorical, multi_categorical) are
        read as str even if they hold numbers.

    Returns:
      A validated `RecallData` named after the file (or MovieLens directory).

    Raises:
      DataError: a bad file (names file, line, column) or a directory that is not a
        MovieLens download.
      ValueError: users/items given together with a MovieLens layout.
    """
    # Imported here: movielens builds on this module's helpers, so a top-level import
    # would be circular.
    from tfrecall.data import movielens

    config = feature_config or {}
    if movielens.detect_layout(interactions) is not None:
        if users is not None or items is not None:
            raise ValueError(
                f"{interactions} is a MovieLens data set, which brings its own user and item "
                "tables; do not pass users= or items= with it"
            )
        data = movielens.read_movielens(interactions, min_rating=movielens_min_rating)
        return RecallData(
            data.interactions,
            _with_strings(data.users, _string_columns(config.get("users"))),
            _with_strings(data.items, _string_columns(config.get("items"))),
            name=data.name,
        )
    if os.path.isdir(interactions):
        raise DataError(
            "is a directory but not a MovieLens download (expected ratings.csv + movies.csv, "
            "u.data, or ratings.dat); pass the interactions CSV file instead",
            path=interactions,
        )
    inter = read_interactions_csv(interactions, event_labels)
    user_table = None if users is None else read_feature_table_csv(
        users, "user_id", str_columns=_string_columns(config.get("users")))
    item_table = None if items is None else read_feature_table_csv(
        items, "item_id", str_columns=_string_columns(config.get("items")))
    return RecallData(inter, user_table, item_table, name=Path(interactions).stem)


def _string_columns(section: Optional[Mapping[str, Optional[Mapping]]]) -> List[str]:
    return [name for name, entry in (section or {}).items()
            if entry and entry.get("kind") in STRING_KINDS]


def _with_strings(table: Optional[Table], columns: Collection[str]) -> Optional[Table]:
    if table is None:
        return None
    return {name: as_strings(values) if name in columns and values.dtype != object else values
            for name, values in table.items()}


def as_strings(values: np.ndarray) -> np.ndarray:
    """``(n,) object`` str form of a numeric column: 25.0 -> "25", 0.5 -> "0.5", NaN -> "".

    For a numeric code (an age bracket, an occupation id) that a feature config
    declares categorical.
    """
    values = np.asarray(values)
    if values.dtype == object:
        return values
    if not np.issubdtype(values.dtype, np.floating):
        return object_array([str(v) for v in values.tolist()])
    return object_array(
        ["" if np.isnan(v) else np.format_float_positional(v, trim="-") for v in values]
    )
