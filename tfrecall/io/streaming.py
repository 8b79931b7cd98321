"""Logs larger than memory: a tf.data CSV reader and one-pass statistics.

- `csv_dataset`: interaction log CSVs as a ``tf.data.Dataset`` of dict batches in the
  `schema` interactions layout (``user_id``, ``item_id`` ``(B,) string``, ``label``
  ``(B,) float32``, ``positive`` ``(B,) bool``, and ``event``, ``timestamp`` ``int64``,
  ``request_id``, ``ranker_score`` ``float32`` where the file has them). The file is
  read in 1 MiB blocks and parsed a batch at a time by vectorized string ops
  (`tfrecall.io.tf_csv`); no Python runs per row and memory holds a few blocks and
  batches, whatever the file size.
- `scan_interactions_csv`, `scan_table_csv`, `scan_dataset`: one pass that feeds a
  `tfrecall.io.stats.StreamingStats` (vocabulary counts, moments, quantile sample)
  chunk by chunk; `FeatureEncoder.adapt_from_stats` then adapts a tower's layers.
- `iterate`, `data_errors`, `as_data_error`: bad-input errors raised inside tf.data
  turned back into `DataError`.

Validation in the streaming path matches `readers.read_interactions_csv` (same
columns, event -> label mapping, positives and checks; the tests compare the two on
generated files) with these differences, all reported as errors, never silently
changed:

- A bad row surfaces when the batch holding it is read, as a
  ``tf.errors.InvalidArgumentError`` whose message is the `DataError` text
  (``"tfrecall DataError: FILE, line N, column 'C': ..."``); `iterate`, `scan_dataset`
  and `data_errors` re-raise it as a `DataError` with ``path``, ``line`` and
  ``column``. A missing file, an empty file, a bad header, a missing
  ``user_id``/``item_id`` column or a file without data rows raise `DataError` at
  once (only the header and the first data row are read eagerly).
- A record is one line: a quoted field may hold the delimiter and doubled quotes but
  not a line break; a quote inside an unquoted field is malformed.
- Numbers are ASCII decimals (``12``, ``-1.5e3``, ``.5``); timestamps are integer or
  decimal seconds, or ISO-8601 ``YYYY-MM-DD[(T| )hh:mm[:ss[.fff]]][Z|+hh:mm]`` (naive =
  UTC). Other forms that Python's parsers accept (``1_000``, non-ASCII digits,
  ``-nan``, ``2024-01-01T12``, ``+0530``, week dates) are errors here.
- Several files are read in order as one log and must have the same header.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import logging
import os
import re
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from tfrecall._backend import tf
from tfrecall.io import chunks, readers, tf_csv
from tfrecall.io.errors import DataError, PathLike
from tfrecall.io.schema import INTERACTION_COLUMNS
from tfrecall.io.stats import StreamingStats

logger = logging.getLogger(__name__)

STREAM_CHUNK_ROWS = 1 << 16
"""Rows per chunk of the Python scans: about 30 MB of raw strings for six columns."""



def _paths(paths: Union[PathLike, Sequence[PathLike]]) -> List[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("no input file given")
    return paths


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
            batch_size < 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return int(batch_size)


# --------------------------------------------------------------------------------------
# Errors raised inside tf.data carry the DataError text.
# --------------------------------------------------------------------------------------


_ERROR_TEXT = re.compile(re.escape(tf_csv.MARKER) + r"(.*)\]")
_WHERE = re.compile(r"^(?P<path>.*?), (?:line|record) (?P<line>\d+)"
                    r"(?:, column '(?P<column>[^']*)')?: ")


def as_data_error(error: BaseException) -> Optional[DataError]:
    """The `DataError` carried by an error raised while reading a streaming dataset, or None."""
    found = _ERROR_TEXT.search(str(error))
    if found is None:
        return None
    # TensorFlow prints the message C-escaped (\\' and octal bytes for non-ASCII).
    text = codecs.escape_decode(found.group(1).encode("utf-8"))[0].decode("utf-8", "replace")
    where = _WHERE.match(text)
    if where is None:
        return DataError(text)
    return DataError(text[where.end():], path=where.group("path"),
                     line=int(where.group("line")), column=where.group("column"))


@contextlib.contextmanager
def data_errors():
    """Re-raises a streaming dataset's bad-input error as its `DataError`.

    Example:
      >>> with data_errors():
      ...     model.fit(csv_dataset("log.csv", 1024).map(to_examples))
    """
    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        error = as_data_error(e)
        if error is None:
            raise
        raise error from None


def iterate(dataset: tf.data.Dataset) -> Iterator[Dict[str, np.ndarray]]:
    """Yields the dataset's batches as numpy dicts; bad input raises `DataError`."""
    with data_errors():
        for batch in dataset.as_numpy_iterator():
            yield batch


# --------------------------------------------------------------------------------------
# CSV -> tf.data.
# --------------------------------------------------------------------------------------


def _read_header(path: str, delimiter: str) -> Tuple[List[str], int]:
    """The stripped header and the line it ends on; checks a data row follows."""
    if not os.path.isfile(path):
        raise DataError("no such file", path=path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = csv.reader(f, delimiter=delimiter, strict=True)
            header = next((row for row in rows if row), None)
            if header is None:
                raise DataError("the file is empty; expected a header row", path=path, line=1)
            header_line = rows.line_num
            if next((row for row in rows if row), None) is None:
                raise DataError("the file has a header but no data rows", path=path, line=1)
    except UnicodeDecodeError as e:
        raise DataError(f"not valid UTF-8 text ({e.reason}); save the file as UTF-8", path=path,
                        line=chunks.first_undecodable_line(path, "utf-8-sig"),
                        ) from None
    except csv.Error as e:
        raise DataError(f"malformed CSV ({e})", path=path, line=1) from None
    header = [name.strip() for name in header]
    chunks.check_header(header, path)
    return header, header_line


def csv_dataset(
    paths: Union[PathLike, Sequence[PathLike]],
    batch_size: int,
    event_labels: Optional[Mapping[str, float]] = None,
    *,
    columns: Optional[Sequence[str]] = None,
    delimiter: str = ",",
    drop_remainder: bool = False,
    num_parallel_calls: Optional[int] = None,
) -> tf.data.Dataset:
    """Streams interaction log CSVs as batches in the `schema` interactions layout.

    Args:
      paths: one CSV or several (each with its own header; read in order).
      batch_size: rows per batch (the last may be smaller unless `drop_remainder`).
      event_labels: event name -> label as in `readers.read_interactions_csv` (None:
        `DEFAULT_EVENT_LABELS`).
      columns: the optional interaction columns to parse (None: all the file has);
        ``user_id``, ``item_id``, ``label`` and ``positive`` always come out.
      delimiter: a one-character field separator.
      drop_remainder: drop a last batch smaller than `batch_size`.
      num_parallel_calls: parallel parsing calls (None: ``tf.data.AUTOTUNE``); order is
        kept either way.

    Returns:
      A dataset of ``{"user_id": (B,) string, "item_id": (B,) string, "label": (B,)
      float32, "positive": (B,) bool, ...}``; see the module docstring.

    Raises:
      DataError: now, for a missing/empty file, a bad header or a missing id column;
        while iterating (as ``InvalidArgumentError`` with the DataError text, see
        `data_errors`), for a bad row.
      ValueError: a bad argument.
    """
    batch_size = _check_batch_size(batch_size)
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\n\r':
        raise ValueError(f"delimiter must be one character other than a quote or newline, "
                         f"got {delimiter!r}")
    mapping = readers.normalized_event_labels(event_labels)
    unknown = sorted(set(columns or ()) - set(INTERACTION_COLUMNS))
    if unknown:
        raise ValueError(f"columns: unknown interaction column(s) {unknown}; known are "
                         f"{list(INTERACTION_COLUMNS)}")
    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
    paths = _paths(paths)
    header, skip = _read_header(paths[0], delimiter)
    for name in ("user_id", "item_id"):
        if name not in header:
            raise DataError(f"missing required column; the header has {header}",
                            path=paths[0], line=1, column=name)
    ignored = [c for c in header if c not in INTERACTION_COLUMNS]
    if ignored:
        logger.warning("%s: ignoring column(s) %s; interactions use %s", paths[0], ignored,
                       list(INTERACTION_COLUMNS))
    lines = tf_csv.file_lines(paths[0], 0, skip, parallel)
    for index, path in enumerate(paths[1:], 1):
        other, skip = _read_header(path, delimiter)
        if other != header:
            raise DataError(f"the header {other} differs from {header} in {paths[0]}; the files "
                            "of one log need the same columns in the same order",
                            path=path, line=1)
        lines = lines.concatenate(tf_csv.file_lines(path, index, skip, parallel))
    wanted = set(INTERACTION_COLUMNS if columns is None else columns) | {"user_id", "item_id"}
    parser = tf_csv.parser_for(header, delimiter, mapping,
                               [c for c in INTERACTION_COLUMNS if c in header and c in wanted])
    names = tf.constant(paths)
    return tf_csv.batches(lines, batch_size, drop_remainder).map(
        lambda *batch: parser.parse(names, *batch), num_parallel_calls=parallel,
        deterministic=True)


# --------------------------------------------------------------------------------------
# One-pass statistics.
# --------------------------------------------------------------------------------------


def _require_stats_columns(chunk: chunks.Chunk, stats: StreamingStats, present) -> None:
    for name in stats.columns:
        if name not in present:
            raise DataError(f"missing column the statistics need; the header has "
                            f"{list(chunk.columns)}", path=chunk.path, line=1, column=name)


def scan_interactions_csv(
    path: PathLike,
    stats: StreamingStats,
    event_labels: Optional[Mapping[str, float]] = None,
    *,
    chunk_rows: int = STREAM_CHUNK_ROWS,
) -> StreamingStats:
    """Adds an interaction log to `stats`, `chunk_rows` rows at a time.

    The rows go through `readers.read_interactions_csv`'s own parser and checks, so
    the log is validated exactly as in memory (multi-line quoted fields included),
    while memory holds one chunk plus the statistics.

    Args:
      path: the interaction CSV.
      stats: the statistics to update; its columns are interaction columns (e.g.
        ``user_id``, ``item_id``, ``label``, ``timestamp``).
      event_labels: as in `readers.read_interactions_csv`.
      chunk_rows: rows parsed at a time.

    Returns:
      `stats`, updated.

    Raises:
      DataError: a bad file or row (file, line, column), or a stats column the log
        does not have.
    """
    mapping = readers.normalized_event_labels(event_labels)
    first = True
    for chunk in chunks.read_chunks(path, chunk_rows=chunk_rows,
                                    numbers=readers.NUMBER_COLUMNS,
                                    int_ids=readers.ID_COLUMNS):
        if first:
            chunks.require_columns(chunk, readers.ID_COLUMNS)
            _require_stats_columns(chunk, stats, set(chunk.columns) | {"label", "positive"})
            first = False
        # Fresh caches per chunk (None): a shared id cache would grow with the log.
        table = chunks.convert_chunk(
            chunk, lambda c, cache: readers.convert_interactions(c, mapping, cache), None)
        stats.update({name: table[name] for name in stats.columns})
    return stats


def scan_table_csv(
    path: PathLike,
    stats: StreamingStats,
    key: Optional[str] = None,
    *,
    chunk_rows: int = STREAM_CHUNK_ROWS,
) -> StreamingStats:
    """Adds a users/items feature CSV to `stats`, `chunk_rows` rows at a time.

    String columns of `stats` are read as stripped str ("" = missing); numeric ones
    must hold numbers (empty = NaN), as `readers.read_feature_table_csv` reads a
    numeric column. Unlike that reader, keys are not checked for uniqueness (that
    would need memory for every key).

    Args:
      path: the CSV.
      stats: the statistics to update.
      key: the key column (``user_id``/``item_id``): every row needs a non-empty one.
      chunk_rows: rows parsed at a time.

    Returns:
      `stats`, updated.

    Raises:
      DataError: a bad file or value (file, line, column), or a column missing.
    """
    numeric = set(stats.columns) - set(stats.string_columns)
    first = True
    for chunk in chunks.read_chunks(path, chunk_rows=chunk_rows):
        if first:
            if key is not None:
                chunks.require_columns(chunk, (key,), f" (the {key} of each row)")
            _require_stats_columns(chunk, stats, set(chunk.columns))
            first = False
        if key is not None:
            chunks.to_ids(chunk, key)
        batch = {}
        for name in stats.columns:
            if name in numeric:
                values = chunks.to_floats(chunk, name, missing_ok=True)
                chunks.check_float32(chunk, name, values)
                batch[name] = values
            else:
                batch[name] = chunks.to_strings(chunk, name)
        stats.update(batch)
    return stats


def scan_dataset(dataset: tf.data.Dataset, stats: StreamingStats) -> StreamingStats:
    """Adds every dict batch of `dataset` (e.g. `csv_dataset`) to `stats`.

    Raises:
      DataError: bad input found by the dataset (see `data_errors`).
      ValueError: a stats column missing from the batches.
    """
    for batch in iterate(dataset):
        stats.update(batch)
    return stats


__all__ = ["INTERACTION_COLUMNS", "STREAM_CHUNK_ROWS", "as_data_error", "csv_dataset",
           "data_errors", "iterate", "scan_dataset", "scan_interactions_csv", "scan_table_csv"]
