"""numpy's parser for plain blocks of an interaction log (`read_chunks(numbers=...)`).

The reference is the csv reader's path, which `read_chunks` takes without ``numbers``:
every table must equal it exactly, every error must carry its message.
"""

import numpy as np
import pytest
from csv_tables import assert_same_table, csv_reader_table

from tfrecall.io import chunks, movielens, readers
from tfrecall.io.errors import DataError

HEADER = "user_id,item_id,label,timestamp,event,request_id,ranker_score\n"


def rows(n=40):
    """Plain rows: spaces around ids and numbers, unicode ids, varied number spellings."""
    labels = ["3", "3.50", "1e-3", "+2", " 4 ", "0", "2.25"]
    out = []
    for r in range(n):
        user = [f"u{r % 5}", f" u{r % 5} ", "ü7"][r % 3]
        item = f"i{r % 11}" if r % 4 else f"  i{r % 11}"
        out.append(f"{user},{item},{labels[r % 7]},{1_000_000 + 17 * r}, Click ,"
                   f"req{r // 3},{0.5 + r / 8}\n")
    return out


def write(tmp_path, lines, name="log.csv"):
    path = tmp_path / name
    path.write_bytes("".join([HEADER, *lines]).encode("utf-8"))
    return path


def plain_flags(path, chunk_rows):
    return [not c.exact for c in chunks.read_chunks(path, chunk_rows=chunk_rows,
                                                     numbers=readers.NUMBER_COLUMNS)]


def test_plain_blocks_are_parsed_by_numpy_and_equal_the_csv_readers_table(tmp_path):
    path = write(tmp_path, rows())
    ascii_path = write(tmp_path, [line.replace("ü7", "u7") for line in rows()], "ascii.csv")
    ascii_first = next(chunks.read_chunks(ascii_path, chunk_rows=8,
                                          numbers=readers.NUMBER_COLUMNS))
    assert ascii_first.columns["timestamp"].dtype == np.int64
    first = next(chunks.read_chunks(path, chunk_rows=8, numbers=readers.NUMBER_COLUMNS))
    assert not first.exact
    assert first.columns["label"].dtype == np.float64
    assert first.columns["timestamp"].dtype == np.int64  # "ü7" is in the BMP
    astral = write(tmp_path, [line.replace("ü7", "\U0001F600") for line in rows()], "a.csv")
    # Outside the BMP: integers are left to the converters (numpy's integer parser can
    # crash on some such characters; tests/data/test_int_ids.py).
    astral_first = next(chunks.read_chunks(astral, chunk_rows=8,
                                           numbers=readers.NUMBER_COLUMNS))
    assert astral_first.columns["timestamp"].tolist()[:2] == ["1000000", "1000017"]
    assert_same_table(readers.read_interactions_csv(astral, chunk_rows=8),
                      csv_reader_table(astral, 8))
    assert first.columns["user_id"].dtype == object
    assert first.columns["user_id"][1] == " u1 "  # as written; the converters strip
    np.testing.assert_array_equal(first.lines, np.arange(2, 10))
    as_read = first.as_read()
    assert as_read.exact and as_read.columns["label"][:5] == ("3", "3.50", "1e-3", "+2", " 4 ")
    np.testing.assert_array_equal(as_read.lines, first.lines)
    assert plain_flags(path, 8) == [True] * 5

    table = readers.read_interactions_csv(path, chunk_rows=8)
    assert_same_table(table, csv_reader_table(path, 8))
    # By hand: row 4 is " u4 ", "  i4", " 4 ", 1000068; rows 1 and 6 are " u1 " and "u1",
    # one object.
    assert (table["user_id"][4], table["item_id"][4]) == ("u4", "i4")
    assert (table["label"][4], table["timestamp"][4]) == (4.0, 1_000_068)
    assert table["user_id"][1] == "u1" and table["user_id"][1] is table["user_id"][6]
    assert table["label"].dtype == np.float32
    np.testing.assert_array_equal(table["positive"], table["label"] > 0)  # "0": not one


@pytest.mark.parametrize("line", [
    'u1,i1,3,1000,click,"req,with,commas",0.5\n',   # quoting
    'u1,i1,3,1000,click,"two\nlines",0.5\n',        # a quoted line break
    "\n",                                            # a blank line
    "u1,i1,3,1000,click,r,0.5\r",                    # a bare CR line end
    "u1,i1,3,2024-05-01T12:30:00Z,click,r,0.5\n",    # an ISO timestamp
    "u1,i1,3,1.7e9,click,r,0.5\n",                   # a float timestamp (floored)
    "u1,i1,1_000,1000,click,r,0.5\n",                # a label Python's float() reads
    "u1,i1,3,1000,click,r,\n",                       # an empty ranker score (NaN)
])
def test_the_csv_reader_takes_over_at_the_first_block_numpy_cannot_take(tmp_path, line):
    lines = rows()
    lines.insert(19, line)  # in the third block of 8
    path = write(tmp_path, lines)
    assert plain_flags(path, 8)[:2] == [True, True]
    assert not any(plain_flags(path, 8)[2:])
    assert_same_table(readers.read_interactions_csv(path, chunk_rows=8),
                      csv_reader_table(path, 8))
    # Outside the BMP: the same table whichever path takes the third block.
    lines = [row.replace("ü7", "\U0001F600") for row in rows()]
    lines.insert(19, line)
    path = write(tmp_path, lines, "astral.csv")
    assert_same_table(readers.read_interactions_csv(path, chunk_rows=8),
                      csv_reader_table(path, 8))


def test_line_numbers_after_the_csv_reader_took_over_count_from_the_file(tmp_path):
    lines = rows()
    lines.insert(3, 'u1,i1,3,1000,click,"two\nlines",0.5\n')  # lines 5-6 of the file
    lines.insert(30, "u1,i1,-1,1000,click,r,0.5\n")           # line 33 of the file
    path = write(tmp_path, lines)
    with pytest.raises(DataError, match="line 33, column 'label'"):
        readers.read_interactions_csv(path, chunk_rows=8)


@pytest.mark.parametrize("line", [
    "u1,i1,nan,1000,click,r,0.5\n",
    "u1,i1,inf,1000,click,r,0.5\n",
    "u1,i1,1e400,1000,click,r,0.5\n",
    "u1,i1,-1,1000,click,r,0.5\n",
    "u1,i1,abc,1000,click,r,0.5\n",
    "u1,,3,1000,click,r,0.5\n",
    "u1, ,3,1000,click,r,0.5\n",
    "u1,i1,3,1000,click,r\n",
    "u1,i1,3,1000,click,r,0.5,extra\n",
    "u1,i1,3,1000,browse,r,0.5\n",
    "u1,i1,3,yesterday,click,r,0.5\n",
    "u1,i1,3,99999999999999999999999,click,r,0.5\n",
    "u1,i1,3,1000,click,r,1e39\n",
])
def test_errors_in_plain_blocks_are_the_csv_readers_errors(tmp_path, line):
    lines = rows()
    lines.insert(21, line)  # line 23 of the file, in the third block of 8
    path = write(tmp_path, lines)
    with pytest.raises(DataError) as want:
        csv_reader_table(path, 8)
    with pytest.raises(DataError) as got:
        readers.read_interactions_csv(path, chunk_rows=8)
    assert str(got.value) == str(want.value)
    assert "line 23" in str(got.value)


def test_a_file_with_only_a_header_and_blank_lines_has_no_data_rows(tmp_path):
    path = write(tmp_path, ["\n", "\n"])
    with pytest.raises(DataError, match="header but no data rows"):
        readers.read_interactions_csv(path, chunk_rows=8)


def test_equal_values_are_stripped_and_shared_across_chunks():
    cache = {}
    first = chunks._shared(["a", " a", "b ", ""], cache)
    again = chunks._shared(np.array([" a", "a ", "b"], object), cache)  # numpy's columns
    assert first == ["a", "a", "b", ""] and again == ["a", "a", "b"]
    assert first[0] is first[1] is again[0] is again[1]
    assert "" in cache  # how to_ids sees an empty id


def movielens_csv_reader_ratings(path, min_rating):
    """ratings.csv as the csv reader's path converts it."""
    ids, buffer = {}, chunks.ColumnBuffer()
    for chunk in chunks.read_chunks(path):
        assert chunk.exact
        buffer.append(movielens._convert_ratings(chunk, ids, min_rating))
    return buffer.arrays()


def test_movielens_ratings_read_by_numpy_equal_the_csv_readers(ml_latest_small):
    path = ml_latest_small / "ratings.csv"
    assert all(not c.exact for c in chunks.read_chunks(path, numbers=movielens.RATING_NUMBERS))
    got = movielens._read_ratings(movielens.detect_layout(ml_latest_small), 4.0)
    assert_same_table(got, movielens_csv_reader_ratings(path, 4.0))
    assert len(got["user_id"]) == 100_836  # the README's count of ml-latest-small ratings


def test_movielens_rating_errors_are_the_csv_readers(tmp_path):
    lines = [f"{u},{m},{(u + m) % 10 / 2 + 0.5},{964982703 + u}\n"
             for u in range(1, 30) for m in (1, 3)]
    lines[40] = "7,3,5.5e400,964982703\n"  # line 42 of the file
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(lines))
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,A (1995),Comedy\n")
    with pytest.raises(DataError) as want:
        movielens_csv_reader_ratings(tmp_path / "ratings.csv", 4.0)
    with pytest.raises(DataError) as got:
        movielens._read_ratings(movielens.detect_layout(tmp_path), 4.0)
    assert str(got.value) == str(want.value) and "line 42" in str(got.value)
