"""Id columns written as integers (`tfrecall.io.int_ids`, `read_chunks(int_ids=...)`).

The reference is the csv reader's path (`read_chunks` without ``numbers``): every table
must equal it exactly, str ids and all, whichever way a block's ids were parsed.
"""

import subprocess
import sys

import numpy as np
import pytest
from csv_tables import assert_same_table, csv_reader_table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfrecall.io import chunks, readers
from tfrecall.io.errors import DataError
from tfrecall.io.int_ids import (
    IntIds,
    canonical_int_ids,
    decimal_widths,
    distinct,
    field_widths,
)

HEADER = "user_id,item_id,label,timestamp\n"


def int_rows(n=40, start=0):
    return [f"{(r * 7) % 13 - 3},{10 ** (r % 6) + r % 4},{1 + r % 5},{1_000_000 + r}\n"
            for r in range(start, start + n)]


def write(tmp_path, lines, name="log.csv", header=HEADER, newline="\n"):
    path = tmp_path / name
    text = "".join([header, *lines])
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def id_kinds(path, chunk_rows=8):
    """Per chunk: whether (user_id, item_id) came as `IntIds`."""
    return [(isinstance(c.columns["user_id"], IntIds), isinstance(c.columns["item_id"], IntIds))
            for c in chunks.read_chunks(path, chunk_rows=chunk_rows,
                                        numbers=readers.NUMBER_COLUMNS,
                                        int_ids=readers.ID_COLUMNS)]


def test_field_widths_by_hand():
    np.testing.assert_array_equal(field_widths("12,ab,3\n4,,56\n", ",", 2, 3),
                                  [[2, 2, 1], [1, 0, 2]])
    # The last line without a line end, "\r\n" ends, a multi-byte character elsewhere.
    np.testing.assert_array_equal(field_widths("1,é\r\n22,x", ",", 2, 2), [[1, 2], [2, 1]])
    assert field_widths("1,2\n3\n", ",", 2, 2) is None   # a short line
    assert field_widths("1;2\n", ";;", 1, 2) is None    # a delimiter of two characters
    assert field_widths("1\u20442\n", "\u2044", 1, 2) is None  # not one byte in UTF-8


def test_decimal_widths_are_the_lengths_of_str():
    rng = np.random.default_rng(0)
    edges = [0, 1, -1, 9, 10, -9, -10, 2 ** 63 - 1, -2 ** 63, -2 ** 63 + 1]
    edges += [s * (10 ** k + d) for k in range(19) for d in (-1, 0) for s in (1, -1)]
    values = np.array(edges + rng.integers(-2 ** 63, 2 ** 63 - 1, 2000).tolist(), np.int64)
    np.testing.assert_array_equal(decimal_widths(values), [len(str(v)) for v in values.tolist()])


@pytest.mark.parametrize("values", [
    [7], [3, 3, 3], [5, -2, 5, 0, -2], [2 ** 63 - 1, -2 ** 63, 0],  # a span np.unique takes
    list(range(-3, 40, 3)) * 2, [10 ** 12, 10 ** 12 + 5, 10 ** 12],
])
def test_distinct_is_np_unique(values):
    values = np.array(values, np.int64)
    unique, inverse = distinct(values)
    want_unique, want_inverse = np.unique(values, return_inverse=True)
    np.testing.assert_array_equal(unique, want_unique)
    np.testing.assert_array_equal(inverse, want_inverse.reshape(-1))


def test_integer_ids_are_written_out_once_per_file():
    cache = {}
    first = IntIds(np.array([3, 12]), np.array([0, 1, 0])).strings(cache)
    again = IntIds(np.array([12, 40]), np.array([1, 0])).strings(cache)
    assert first.tolist() == ["3", "12", "3"] and again.tolist() == ["40", "12"]
    assert again[1] is first[1] and cache[12] is first[1] and cache["12"] is first[1]


def test_canonical_int_ids_by_hand():
    block = "7,-3\n12,7\n7,0\n"
    parsed = np.loadtxt(block.splitlines(True), dtype=np.dtype([("f0", np.int64),
                                                                ("f1", np.int64)]),
                        delimiter=",", ndmin=1)
    ids = canonical_int_ids(block, ",", parsed, [0, 1])
    np.testing.assert_array_equal(ids[0].unique, [7, 12])
    np.testing.assert_array_equal(ids[0].inverse, [0, 1, 0])
    cache = {"7": "7"}
    users = ids[0].strings(cache)
    assert users.tolist() == ["7", "12", "7"] and users[0] is cache["7"] and users[2] is users[0]
    assert ids[1].strings(cache).tolist() == ["-3", "7", "0"]
    assert ids[1].strings(cache)[1] is users[0]  # one str per id across columns
    for spelling in ("007", "+7", " 7", "7 ", "-0", "\t7"):
        other = block.replace("12,", spelling + ",", 1)
        parsed = np.loadtxt(other.splitlines(True), dtype=parsed.dtype, delimiter=",", ndmin=1)
        assert canonical_int_ids(other, ",", parsed, [0, 1]) is None, spelling


@pytest.mark.parametrize("other", ["", ",\u00e9t\u00e9"])  # a request id, not ASCII
def test_integer_ids_come_as_integers_and_the_table_is_the_csv_readers(tmp_path, other):
    header = HEADER if not other else HEADER.replace("\n", ",request_id\n")
    path = write(tmp_path, [row.replace("\n", other + "\n") for row in int_rows()],
                 header=header)
    assert id_kinds(path) == [(True, True)] * 5
    first = next(chunks.read_chunks(path, chunk_rows=8, numbers=readers.NUMBER_COLUMNS,
                                    int_ids=readers.ID_COLUMNS))
    assert chunks.to_strings(first, "user_id").tolist() == [
        str((r * 7) % 13 - 3) for r in range(8)]  # by hand: int_rows' users
    table = readers.read_interactions_csv(path, chunk_rows=8)
    assert_same_table(table, csv_reader_table(path, 8))
    assert table["user_id"].dtype == object and table["user_id"][0] == "-3"
    assert table["item_id"][5] == "100001"  # row 5: 10 ** 5 + 1, by hand
    # Equal ids are one object, across columns and chunks.
    assert table["user_id"][0] is table["user_id"][13]
    # Row 0's item (10 ** 0 + 0) and row 8's user (56 % 13 - 3), by hand: one "1".
    assert table["item_id"][0] == "1" and table["item_id"][0] is table["user_id"][8]


@pytest.mark.parametrize("spelling", ["007", "+7", " 7", "7 ", "-0", "\t7", "7\u00a0",
                                      "\u00fc7", "7.0", "1e3", "u7", str(2 ** 70),
                                      "-" + str(2 ** 64)])
def test_ids_written_otherwise_are_read_as_written(tmp_path, spelling):
    lines = int_rows()
    lines[19] = f"5,{spelling},3,1000\n"  # in the third block of 8
    path = write(tmp_path, lines)
    kinds = id_kinds(path)
    assert kinds[:2] == [(True, True)] * 2
    assert not any(user or item for user, item in kinds[2:])  # str from there on
    table = readers.read_interactions_csv(path, chunk_rows=8)
    assert_same_table(table, csv_reader_table(path, 8))
    assert table["item_id"][19] == spelling.strip()


@pytest.mark.parametrize("spelling", ["7\U0001F600", "\U0001F6007"])
def test_a_block_outside_the_bmp_reads_its_ids_as_str_and_the_next_tries_again(tmp_path,
                                                                                spelling):
    lines = int_rows()
    lines[19] = f"5,{spelling},3,1000\n"  # in the third block of 8
    path = write(tmp_path, lines)
    assert id_kinds(path) == [(True, True)] * 2 + [(False, False)] + [(True, True)] * 2
    table = readers.read_interactions_csv(path, chunk_rows=8)
    assert_same_table(table, csv_reader_table(path, 8))
    assert table["item_id"][19] == spelling.strip()


def test_crlf_line_ends_and_an_id_in_the_last_column(tmp_path):
    path = write(tmp_path, [f"{r},{r * 10},{r % 4}\n" for r in range(20)],
                 header="user_id,timestamp,item_id\n", newline="\r\n")
    assert id_kinds(path) == [(True, True)] * 3
    table = readers.read_interactions_csv(path, chunk_rows=8)
    assert_same_table(table, csv_reader_table(path, 8))
    assert table["item_id"].tolist()[:5] == ["0", "1", "2", "3", "0"]


@pytest.mark.parametrize("line,column", [
    ("5,7,-1,1000\n", "label"),          # a negative label
    ("5,7,nan,1000\n", "label"),         # a NaN label
    ("5,,3,1000\n", "item_id"),          # an empty id
    ("5, ,3,1000\n", "item_id"),         # an id of spaces only
    ("5,7,3,yesterday\n", "timestamp"),  # a timestamp nothing parses
    ("5,7,3\n", None),                   # a missing field
])
def test_bad_rows_in_an_integer_id_log_are_the_csv_readers_errors(tmp_path, line, column):
    lines = int_rows()
    lines[21] = line  # line 23 of the file, in the third block of 8
    path = write(tmp_path, lines)
    with pytest.raises(DataError) as want:
        csv_reader_table(path, 8)
    with pytest.raises(DataError) as got:
        readers.read_interactions_csv(path, chunk_rows=8)
    assert str(got.value) == str(want.value) and "line 23" in str(got.value)
    assert column is None or f"column {column!r}" in str(got.value)


def test_a_character_that_crashes_numpys_integer_parser_is_an_error_not_a_crash(tmp_path):
    """numpy 2.4's int64 parser segfaults on some characters outside the BMP (found by
    fuzzing: U+E0100 alone in a field): a block that is not ASCII never reaches it."""
    lines = int_rows()
    lines[19] = "5,7,3,1\U000e0100\n"
    path = write(tmp_path, lines)
    code = ("import sys; from tfrecall.io import readers\n"
            "from tfrecall.io.errors import DataError\n"
            "try:\n    readers.read_interactions_csv(sys.argv[1], chunk_rows=8)\n"
            "except DataError as e:\n    print(e)\n")
    # A fresh process: a crash must fail this test, not end the test run.
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "line 21" in result.stdout and "timestamp" in result.stdout


# Differential: random logs whose ids mix canonical integers with every other spelling
# numpy's integer parser accepts, read both ways.
_id_values = st.one_of(
    st.integers(-(2 ** 63), 2 ** 63 - 1).map(str),
    st.integers(-50, 50).map(str),
    st.sampled_from(["007", "+7", "-0", "00", " 7", "7 ", "\t7", "1e3", "7.0", "u7",
                     str(2 ** 64), "-" + str(2 ** 63 + 1), "9" * 25]),
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(_id_values, _id_values), min_size=1, max_size=30),
       chunk_rows=st.integers(1, 9))
def test_random_integer_like_ids_read_as_the_csv_reader_reads_them(tmp_path, pairs,
                                                                   chunk_rows):
    lines = [f"{user},{item},{1 + r % 3},{1000 + r}\n" for r, (user, item) in enumerate(pairs)]
    path = write(tmp_path, lines)
    assert_same_table(readers.read_interactions_csv(path, chunk_rows=chunk_rows),
                      csv_reader_table(path, chunk_rows))
