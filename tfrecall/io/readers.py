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
TensorFlow stack trace to find a bad row. Files are read in chunks of 16k rows and
converted to numpy column by column. An interaction log's plain blocks (no quoting, no
blank line) are parsed by numpy's C parser, labels and timestamps as numbers; the stdlib
`csv` module reads the rest of a file from its first other block, and words every error
(`chunks.read_chunks`, ``numbers``): about 1M rows/s of user, item, label, timestamp in
one thread (BENCHMARKS.md); `tfrecall.io.streaming` reads files larger than memory.

MovieLens directories are recognised by `load_data` and read by
`tfrecall.io.movielens`.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Collection, Dict, List, Mapping, Optional

import numpy as np

from tfrecall.config import STRING_KINDS
from tfrecall.io import movielens
from tfrecall.io.chunks import (
    CHUNK_ROWS,
    Chunk,
    ColumnBuffer,
    check_float32,
    check_labels,
    check_unique,
    convert_chunk,
    object_array,
    read_chunks,
    require_columns,
    to_floats,
    to_ids,
    to_strings,
    to_timestamps,
)
from tfrecall.io.errors import DataError, PathLike
from tfrecall.io.schema import (
    DEFAULT_EVENT_LABELS,
    EXPOSURE_EVENTS,
    INTERACTION_COLUMNS,
    RecallData,
    Table,
)

logger = logging.getLogger(__name__)

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
    mapping = normalized_event_labels(event_labels)
    columns = ColumnBuffer()
    caches: Dict[str, dict] = {"id": {}, "event": {}, "request_id": {}}
    for number, chunk in enumerate(read_chunks(path, chunk_rows=chunk_rows,
                                               numbers=NUMBER_COLUMNS, int_ids=ID_COLUMNS)):
        if number == 0:
            require_columns(chunk, ID_COLUMNS)
            ignored = [c for c in chunk.columns if c not in INTERACTION_COLUMNS]
            if ignored:
                logger.warning("%s: ignoring column(s) %s; interactions use %s",
                               path, ignored, list(INTERACTION_COLUMNS))
        columns.append(convert_chunk(
            chunk, lambda c, cache: convert_interactions(c, mapping, cache), caches))
    return columns.arrays()


# The columns numpy's parser may read as numbers (`read_chunks`): the converters below
# take them as they are; a label or score of "1e400" still fails their checks.
NUMBER_COLUMNS = {"label": np.float64, "timestamp": np.int64, "ranker_score": np.float64}
# The id columns it may read as integers where a block writes them so (`read_chunks`).
ID_COLUMNS = ("user_id", "item_id")


def normalized_event_labels(event_labels: Optional[Mapping[str, float]]) -> Dict[str, float]:
    mapping = {}
    for name, label in (DEFAULT_EVENT_LABELS if event_labels is None else event_labels).items():
        label = float(label)
        if not math.isfinite(label) or label < 0:
            raise ValueError(f"event_labels[{name!r}] must be a finite number >= 0, got {label}")
        mapping[str(name).strip().lower()] = label
    if not mapping:
        raise ValueError("event_labels is empty; give at least one event name -> label")
    return mapping


def convert_interactions(chunk: Chunk, mapping: Dict[str, float], caches=None) -> Table:
    """One chunk's rows as table columns; `caches` (None: new ones) share equal strings."""
    caches = caches or {"id": {}, "event": {}, "request_id": {}}
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
    movielens_text: bool = False,
) -> RecallData:
    """Reads a data set: a MovieLens download, or generic interaction/user/item CSVs.

    A MovieLens layout is recognised from `interactions` (a directory, or its
    ratings file): ml-latest-small / ml-25m (``ratings.csv`` with header
    ``userId,movieId,rating,timestamp`` and ``movies.csv``), ml-100k (``u.data``) or
    ml-1m (``ratings.dat``); see `tfrecall.io.movielens`. Anything else is read
    with `read_interactions_csv` and `read_feature_table_csv`.

    Args:
      interactions: the interaction CSV, or a MovieLens directory or ratings file.
      users: optional users CSV (key ``user_id``); not allowed with MovieLens.
      items: optional items CSV (key ``item_id``); not allowed with MovieLens.
      event_labels: event name -> label for the generic reader (None: defaults).
      movielens_min_rating: MovieLens only: ratings >= this are positives (0: all).
      movielens_text: MovieLens only: add the items' title and tags text columns.
      feature_config: the dict of `tfrecall.io.feature_kinds.load_feature_config`;
        columns it gives a string kind (id, categorical, multi_categorical) are
        read as str even if they hold numbers.

    Returns:
      A validated `RecallData` named after the file (or MovieLens directory).

    Raises:
      DataError: a bad file (names file, line, column) or a directory that is not a
        MovieLens download.
      ValueError: users/items given together with a MovieLens layout.
    """
    config = feature_config or {}
    if movielens.detect_layout(interactions) is not None:
        if users is not None or items is not None:
            raise ValueError(
                f"{interactions} is a MovieLens data set, which brings its own user and item "
                "tables; do not pass users= or items= with it"
            )
        data = movielens.read_movielens(interactions, min_rating=movielens_min_rating,
                                        text=movielens_text)
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
