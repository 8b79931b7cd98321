"""TensorFlow ops that read and parse interaction CSVs; used by `streaming.csv_dataset`.

Throughput comes from never handling one line as one dataset element
(``TextLineDataset`` + ``enumerate`` costs about 5 us per line here, more than all the
parsing):

1. each file is read in 1 MiB blocks (``FixedLengthRecordDataset``), split into lines
   in parallel (a ``map``), and a ``scan`` stitches the line cut by each block edge,
   numbers the lines and drops blank and header lines;
2. a second ``scan`` over all files cuts the lines into batches of exactly
   ``batch_size`` (the last one shorter), so no ``rebatch`` is needed;
3. each batch is parsed by vectorized string ops in a parallel ``map``. A batch of
   plain lines (ASCII without control characters or quotes) takes a fast path:
   ``tf.strings.split`` and ASCII strip. Any other batch is checked for UTF-8,
   quoting and field counts, parsed by ``tf.io.decode_csv`` and stripped of Python's
   Unicode whitespace.

Every check is an assert op whose message starts with `MARKER` and reads like a
`tfrecall.io.errors.DataError`: ``"FILE, line N, column 'C': message 'value'"``.
"""

from __future__ import annotations

import os
import re
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from tfrecall._backend import tf
from tfrecall.config import WHITESPACE_RE2
from tfrecall.io.schema import EXPOSURE_EVENTS

MARKER = "tfrecall DataError: "
BLOCK_BYTES = 1 << 20
OUTPUT_ORDER = ("user_id", "item_id", "label", "positive", "event", "timestamp", "request_id",
                "ranker_score")

# Python's str.strip() whitespace, so fields are stripped exactly as the in-memory
# reader strips them.
_SPACE = WHITESPACE_RE2
_STRIP = f"^{_SPACE}+|{_SPACE}+$"
# Text in which ASCII strip equals Python's strip and no quote handling is needed.
_PLAIN = r"[\t\n\r\x20\x21\x23-\x7e]*"
_NUMBER = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_INTEGER = r"[+-]?[0-9]{1,19}"
_ISO = (r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})"
        r"(?:\.[0-9]+)?)?)?(?:Z|([+-])([0-9]{2}):([0-9]{2}))?")

Lines = tuple  # (file (n,) int32, line (n,) int64, text (n,) string, plain (n,) bool)


def _split_block(block):
    """A block's first piece, complete inner lines, last piece, whether it has a line
    break, and whether it is plain text."""
    plain = tf.strings.regex_full_match(block, _PLAIN)
    pieces = tf.strings.split(tf.strings.regex_replace(block, "\r\n", "\n"), "\n")
    return pieces[0], pieces[1:-1], pieces[-1], tf.size(pieces) > 1, plain


def file_lines(path: str, file_index: int, skip: int, parallel: int,
               block_bytes: int = BLOCK_BYTES) -> tf.data.Dataset:
    """`Lines` of one file per block: 1-based numbers, blank lines and lines <= `skip` dropped.

    "\r\n" endings become "\n"; a line break inside a quoted field splits the record
    (then reported as malformed quoting).
    """
    size = os.path.getsize(path)
    full, rest = divmod(size, block_bytes)
    blocks = tf.data.Dataset.from_tensors(tf.constant("\n"))  # flushes an unended last line
    if rest:
        blocks = tf.data.FixedLengthRecordDataset(
            path, rest, header_bytes=full * block_bytes).concatenate(blocks)
    if full:
        blocks = tf.data.FixedLengthRecordDataset(
            path, block_bytes, footer_bytes=rest).concatenate(blocks)
    pieces = blocks.map(_split_block, num_parallel_calls=parallel, deterministic=True)

    def stitch(state, piece):
        leftover, leftover_plain, number = state
        head, body, tail, has_break, plain = piece
        joined = tf.strings.join([leftover, head])
        first = tf.reshape(tf.strings.regex_replace(joined, "\r$", ""), [1])
        take = tf.cast(has_break, tf.int32)  # the joined line is complete only at a break
        text = tf.concat([first[:take], body], axis=0)
        flags = tf.concat([tf.reshape(leftover_plain & plain, [1])[:take],
                           tf.fill(tf.shape(body), plain)], axis=0)
        numbers = number + tf.range(tf.size(text, out_type=tf.int64))
        keep = (tf.strings.length(text) > 0) & (numbers > skip)
        state = (tf.where(has_break, tail, joined), tf.where(has_break, plain,
                                                             leftover_plain & plain),
                 number + tf.size(text, out_type=tf.int64))
        kept = tf.boolean_mask(numbers, keep)
        return state, (tf.fill(tf.shape(kept), file_index), kept, tf.boolean_mask(text, keep),
                       tf.boolean_mask(flags, keep))

    return pieces.scan((tf.constant(""), tf.constant(True), tf.constant(1, tf.int64)), stitch)


def batches(lines: tf.data.Dataset, batch_size: int, drop_remainder: bool) -> tf.data.Dataset:
    """Cuts a stream of `Lines` chunks into `Lines` batches of exactly `batch_size`."""
    empty = (tf.zeros([0], tf.int32), tf.zeros([0], tf.int64), tf.zeros([0], tf.string),
             tf.zeros([0], tf.bool))
    final = tf.data.Dataset.from_tensors((empty, True))  # flushes the last partial batch
    stream = lines.map(lambda *chunk: (chunk, False)).concatenate(final)

    def cut(pending, element):
        chunk, is_final = element
        joined = tuple(tf.concat([p, c], axis=0) for p, c in zip(pending, chunk, strict=True))
        count = tf.size(joined[0]) // batch_size * batch_size
        full = tuple(tf.reshape(x[:count], [-1, batch_size]) for x in joined)
        rest = tuple(x[count:] for x in joined)
        keep_rest = tf.logical_and(is_final, tf.logical_not(drop_remainder))
        size = tf.size(rest[0]) * tf.cast(keep_rest, tf.int32)
        return rest, (full, tuple(x[:size] for x in rest))

    def unroll(full, last):
        tail = tf.data.Dataset.from_tensors(last).filter(lambda *x: tf.size(x[0]) > 0)
        return tf.data.Dataset.from_tensor_slices(full).concatenate(tail)

    return stream.scan(empty, cut).flat_map(unroll)


def require(ok, paths, file, line, value, message: str, suffix: str = "", unit: str = "line"):
    """An assert op: all `ok`, else "MARKER path, <unit> N<message> 'value'<suffix>".

    Args:
      ok: (n,) bool.
      paths: (files,) string.
      file: (n,) int32 index of each row's file in `paths`.
      line: (n,) int64 line (or record) numbers.
      value: (n,) string shown for the first failing row, or None.
    """

    def text():
        first = tf.argmax(tf.cast(tf.logical_not(ok), tf.int32))
        parts = [MARKER, tf.gather(paths, tf.gather(file, first)), f", {unit} ",
                 tf.strings.as_string(tf.gather(line, first)), message]
        if value is not None:
            shown = tf.strings.substr(tf.gather(value, first), 0, 80, unit="UTF8_CHAR")
            parts += [" '", shown, "'"]
        return tf.strings.join(parts + [suffix])

    # The message is built only when a row fails (an empty batch never fails).
    all_ok = tf.reduce_all(ok)
    return tf.debugging.Assert(all_ok, [tf.cond(all_ok, lambda: tf.constant(""), text)],
                               summarize=1)


class CsvParser:
    """Parses `Lines` batches into the interactions layout; one header for all files.

    Call with ``(paths, file, line, text, plain)``: ``paths`` (files,) string names the
    files for messages, indexed by the `Lines` file index. The parsing graph is traced
    once per parser (`parser_for` shares parsers between datasets), not per dataset.

    Args:
      header: the files' stripped column names.
      delimiter: one character.
      mapping: normalized event name -> label.
      columns: the interaction columns to output (those the header has).
    """

    def __init__(self, header: Sequence[str], delimiter: str, mapping: Mapping[str, float],
                 columns: Sequence[str]):
        self.width = len(header)
        self.delimiter = delimiter
        self.mapping = dict(mapping)
        self.select = sorted(header.index(c) for c in columns)
        self.names = [header[i] for i in self.select]
        self.events = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(self.mapping), tf.string),
                                                tf.constant(list(self.mapping.values()),
                                                            tf.float64)),
            default_value=-1.0)
        self._where = None
        self.parse = tf.function(self._parse, input_signature=[
            tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.string),
            tf.TensorSpec([None], tf.bool)])

    def check(self, ok, line, value, column: Optional[str], message: str, suffix: str = ""):
        where = ": " if column is None else f", column '{column}': "
        return require(ok, *self._where, line, value, where + message, suffix)

    def _parse(self, paths, file, line, text, plain):
        self._where = (paths, file)  # read by `check` while the graph is traced
        plain = tf.reduce_all(plain)
        fields = tf.cond(plain, lambda: self._plain_fields(line, text),
                         lambda: self._general_fields(line, text))
        return self._convert(line, {n: fields[:, i] for i, n in enumerate(self.names)}, plain)


    def _field_count_check(self, line, text, count):
        return self.check(tf.equal(count, self.width), line, text, None,
                          f"expected {self.width} fields but found another number in")

    def _plain_fields(self, line, text):
        """(n, k) stripped selected fields of lines without quotes or non-ASCII bytes."""
        split = tf.strings.split(text, self.delimiter)
        check = self._field_count_check(line, text, split.row_lengths())
        with tf.control_dependencies([check]):
            fields = tf.reshape(split.flat_values, [-1, self.width])
            return tf.strings.strip(tf.gather(fields, self.select, axis=1))

    def _general_fields(self, line, text):
        """(n, k) stripped selected fields, with UTF-8, quoting and field-count checks."""
        valid = tf.equal(tf.strings.unicode_transcode(
            text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD), text)
        check = self.check(valid, line, None, None, "not valid UTF-8 text",
                           " (save the file as UTF-8)")
        d = re.escape(self.delimiter)
        quoted = f'(^|{d})"(?:[^"]|"")*"({d}|$)'
        with tf.control_dependencies([check]):  # later messages print the line as UTF-8
            # Quoted fields are removed in two passes (a match consumes the delimiter
            # that the next quoted field would need); any quote left is malformed.
            bare = tf.strings.regex_replace(tf.strings.regex_replace(text, quoted, r"\1\2"),
                                            quoted, r"\1\2")
            check = self.check(
                tf.logical_not(tf.strings.regex_full_match(bare, '.*".*')), line, text, None,
                "malformed quoting in", " (a quoted field must end at a delimiter and stay "
                "on one line; double a quote inside quotes)")
        with tf.control_dependencies([check]):
            count = tf.strings.split(bare, self.delimiter).row_lengths()
            check = self._field_count_check(line, text, count)
        with tf.control_dependencies([check]):
            parsed = tf.io.decode_csv(text, [[""]] * len(self.select),
                                      field_delim=self.delimiter, select_cols=self.select)
            return tf.strings.regex_replace(tf.stack(parsed, axis=1), _STRIP, "")

    def _convert(self, line, raw, plain):
        out, checks = {}, []
        for name in ("user_id", "item_id"):
            out[name] = raw[name]
            checks.append(self.check(tf.strings.length(raw[name]) > 0, line, raw[name], name,
                                     "empty id; every row needs one"))
        if "label" in raw:
            label, ok = _number(raw["label"])
            label32 = tf.cast(label, tf.float32)
            checks.append(self.check(ok & tf.math.is_finite(label32) & (label >= 0), line,
                                     raw["label"], "label", "a label must be a finite number "
                                     ">= 0 (0 = exposure only) within float32, got"))
        if "event" in raw:
            # Unicode lowering (as Python's str.lower) only where needed: it is 4x
            # slower, and ICU stops at a NUL byte, which must not hide ("click\0").
            def unicode_lower(text):
                has_nul = tf.strings.regex_full_match(text, "(?s).*\x00.*")
                return tf.where(has_nul, "\x00", tf.strings.lower(text, encoding="utf-8"))

            event = tf.cond(plain, lambda: tf.strings.lower(raw["event"]),
                            lambda: unicode_lower(raw["event"]))
            value = self.events.lookup(event)
            known = value >= 0
            if "label" in raw:
                known |= tf.equal(event, "")
            checks.append(self.check(
                known, line, raw["event"], "event", "unknown event" if "label" in raw
                else "unknown or empty event", f"; known events are {sorted(self.mapping)} "
                "(set event_labels to map other names)"))
            out["event"] = event
            if "label" not in raw:
                label32 = tf.cast(value, tf.float32)
        if "label" not in raw and "event" not in raw:
            label32 = tf.ones(tf.shape(line), tf.float32)  # a plain log: every row positive
        positive = label32 > 0  # from the float32 label, as the reader
        if "event" in raw:
            for exposure in EXPOSURE_EVENTS:
                positive &= tf.not_equal(out["event"], exposure)
        if "timestamp" in raw:
            stamp, ok = _timestamp(raw["timestamp"])
            checks.append(self.check(
                ok, line, raw["timestamp"], "timestamp", "cannot parse as a timestamp:",
                " (integer seconds since the epoch, or ISO-8601 such as 2024-05-01 or "
                "2024-05-01T12:30:00Z)"))
            out["timestamp"] = stamp
        if "request_id" in raw:
            out["request_id"] = raw["request_id"]
        if "ranker_score" in raw:
            text = raw["ranker_score"]
            missing = tf.equal(text, "") | tf.equal(tf.strings.lower(text), "nan")
            score, ok = _number(text)
            score = tf.cast(score, tf.float32)
            checks.append(self.check(missing | (ok & tf.math.is_finite(score)), line, text,
                                     "ranker_score", "cannot parse as a finite float32 number:"))
            out["ranker_score"] = tf.where(missing, tf.constant(np.nan, tf.float32), score)
        out["label"], out["positive"] = label32, positive
        with tf.control_dependencies(checks):
            return {name: tf.identity(out[name]) for name in OUTPUT_ORDER if name in out}


_PARSERS: Dict[tuple, CsvParser] = {}


def parser_for(header: Sequence[str], delimiter: str, mapping: Mapping[str, float],
               columns: Sequence[str]) -> CsvParser:
    """A `CsvParser`, shared by every dataset of the same header, settings and columns."""
    key = (tuple(header), delimiter, tuple(sorted(mapping.items())), tuple(columns))
    if key not in _PARSERS:
        if len(_PARSERS) >= 64:  # a long-lived process reading many layouts
            _PARSERS.pop(next(iter(_PARSERS)))
        _PARSERS[key] = CsvParser(header, delimiter, mapping, columns)
    return _PARSERS[key]


def _number(text):
    """(float64 value, parsed ok) of stripped strings; unparsed values are 0."""
    ok = tf.strings.regex_full_match(text, _NUMBER)
    return tf.strings.to_number(tf.where(ok, text, "0"), tf.float64), ok


def _timestamp(text):
    """(int64 seconds, parsed ok) from integer/decimal seconds or ISO-8601 (naive = UTC)."""
    is_int = tf.strings.regex_full_match(text, r"[0-9]{1,18}")  # the common case, exact
    return tf.cond(tf.reduce_all(is_int),
                   lambda: (tf.strings.to_number(text, tf.int64), is_int),
                   lambda: _any_timestamp(text))


def _any_timestamp(text):
    is_number = tf.strings.regex_full_match(text, _NUMBER)
    as_float = tf.strings.to_number(tf.where(is_number, text, "0"), tf.float64)
    in_range = tf.abs(as_float) < 9.2e18  # int64 holds 9.22e18
    # Integers are parsed as int64 (exact); other numbers are floored from float64.
    is_int = tf.strings.regex_full_match(text, _INTEGER) & in_range
    as_int = tf.strings.to_number(tf.where(is_int, text, "0"), tf.int64)
    floored = tf.cast(tf.floor(tf.where(in_range, as_float, 0.0)), tf.int64)
    seconds = tf.where(is_int, as_int, floored)
    is_iso = tf.strings.regex_full_match(text, _ISO) & ~is_number
    # The date arithmetic costs more than the rest of the row: only when needed.
    iso, iso_ok = tf.cond(tf.reduce_any(is_iso),
                          lambda: iso_seconds(tf.where(is_iso, text, "1970-01-01")),
                          lambda: (seconds, tf.zeros_like(is_iso)))
    return (tf.where(is_iso, iso, seconds),
            (is_number & in_range) | (is_iso & iso_ok))


def iso_seconds(text):
    """(int64 seconds since the epoch, the date is real) of strings matching `_ISO`."""
    # The groups as "Y M D h m s sign oh om" (absent groups -> ""), then numbers.
    parts = tf.strings.split(tf.strings.regex_replace(text, _ISO, r"\1 \2 \3 \4 \5 \6 \7 \8 \9"),
                             sep=" ").to_tensor("", shape=[None, 9])
    sign = tf.where(tf.equal(parts[:, 6], "-"), tf.constant(-1, tf.int64), 1)
    digits = tf.concat([parts[:, :6], parts[:, 7:]], axis=1)
    number = tf.strings.to_number(tf.where(tf.equal(digits, ""), "0", digits), tf.int64)
    y, m, d, hh, mm, ss, oh, om = (number[:, i] for i in range(8))
    leap = (tf.equal(y % 4, 0) & tf.not_equal(y % 100, 0)) | tf.equal(y % 400, 0)
    month_days = tf.constant([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], tf.int64)
    days_in_month = tf.gather(month_days, tf.clip_by_value(m - 1, 0, 11)) + tf.cast(
        leap & tf.equal(m, 2), tf.int64)
    ok = ((m >= 1) & (m <= 12) & (d >= 1) & (d <= days_in_month) & (hh < 24) & (mm < 60)
          & (ss < 60) & (oh < 24) & (om < 60) & (y >= 1))
    # Days since 1970-01-01 by H. Hinnant's days_from_civil ("chrono-Compatible
    # Low-Level Date Algorithms"): years start in March, so the leap day comes last.
    y = y - tf.cast(m <= 2, tf.int64)
    era = tf.math.floordiv(y, 400)
    yoe = y - era * 400
    doy = (153 * tf.where(m > 2, m - 3, m + 9) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days * 86400 + hh * 3600 + mm * 60 + ss - sign * (oh * 3600 + om * 60), ok
