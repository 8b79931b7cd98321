"""Tests for tfrecall.io.readers: interaction and feature-table CSVs, errors, load_data."""

import csv
import logging

import numpy as np
import pytest

from tfrecall.io import chunks, readers
from tfrecall.io.errors import DataError


def write(tmp_path, name, text, encoding="utf-8", newline="\n"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


# ------------------------------------------------------------------ interactions: values


def test_events_map_to_default_labels_and_impressions_are_not_positives(tmp_path):
    path = write(tmp_path, "events.csv", (
        "user_id,item_id,event\n"
        "u1,i1,impression\n"
        "u1,i2,click\n"
        "u2,i1,cart\n"
        "u2,i3,order\n"
    ))
    table = readers.read_interactions_csv(path)
    np.testing.assert_array_equal(table["user_id"], ["u1", "u1", "u2", "u2"])
    np.testing.assert_array_equal(table["item_id"], ["i1", "i2", "i1", "i3"])
    # impression 1, click 3, cart 4, order 5.
    np.testing.assert_array_equal(table["label"], [1.0, 3.0, 4.0, 5.0])
    assert table["label"].dtype == np.float32
    np.testing.assert_array_equal(table["positive"], [False, True, True, True])
    np.testing.assert_array_equal(table["event"], ["impression", "click", "cart", "order"])
    assert table["user_id"].dtype == object and table["positive"].dtype == bool
    assert "timestamp" not in table


def test_custom_event_labels_are_case_insensitive(tmp_path):
    path = write(tmp_path, "events.csv", "user_id,item_id,event\nu1,i1, View \nu1,i2,LIKE\n")
    table = readers.read_interactions_csv(path, event_labels={"view": 0.0, "Like": 2.5})
    np.testing.assert_array_equal(table["label"], [0.0, 2.5])
    np.testing.assert_array_equal(table["event"], ["view", "like"])
    # label 0 is an exposure even though "view" is not in EXPOSURE_EVENTS.
    np.testing.assert_array_equal(table["positive"], [False, True])


def test_label_column_wins_over_event_and_zero_label_is_exposure(tmp_path):
    path = write(tmp_path, "events.csv", (
        "user_id,item_id,label,event\n"
        "u1,i1,2,impression\n"   # label 2 kept, but an impression is never a positive
        "u1,i2,0,click\n"        # label 0: an exposure
        "u2,i1,1.5,click\n"
        "u2,i2,4,\n"             # empty event allowed when labels are given
    ))
    table = readers.read_interactions_csv(path)
    np.testing.assert_array_equal(table["label"], [2.0, 0.0, 1.5, 4.0])
    np.testing.assert_array_equal(table["positive"], [False, False, True, True])


def test_without_label_or_event_every_row_is_a_positive_with_label_one(tmp_path):
    path = write(tmp_path, "log.csv", "user_id,item_id\na,x\nb,y\na,y\n")
    table = readers.read_interactions_csv(path)
    np.testing.assert_array_equal(table["label"], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(table["positive"], [True, True, True])
    assert set(table) == {"user_id", "item_id", "label", "positive"}


def test_timestamps_integer_float_and_iso(tmp_path):
    path = write(tmp_path, "log.csv", (
        "user_id,item_id,timestamp\n"
        "u,a,964982703\n"
        "u,b,2024-01-01\n"                  # 2024-01-01 00:00 UTC = 1704067200
        "u,c,2024-01-01T00:00:10Z\n"        # + 10 s
        "u,d,2024-01-01 01:00:00\n"         # naive = UTC: + 3600 s
        "u,e,2024-01-01T02:00:00+02:00\n"   # 00:00 UTC
        "u,f,12.9\n"                        # float seconds floor to 12
    ))
    table = readers.read_interactions_csv(path)
    assert table["timestamp"].dtype == np.int64
    np.testing.assert_array_equal(
        table["timestamp"],
        [964982703, 1704067200, 1704067210, 1704070800, 1704067200, 12],
    )


def test_request_id_and_ranker_score_with_missing_values(tmp_path):
    path = write(tmp_path, "log.csv", (
        "user_id,item_id,request_id,ranker_score\nu,a,r1,0.25\nu,b,r1,\nu,c,,-1e2\n"
    ))
    table = readers.read_interactions_csv(path)
    np.testing.assert_array_equal(table["request_id"], ["r1", "r1", ""])
    assert table["ranker_score"].dtype == np.float32
    np.testing.assert_array_equal(table["ranker_score"], [0.25, np.nan, -100.0])


def test_bom_crlf_quoted_commas_and_spaces(tmp_path):
    path = write(
        tmp_path, "bom.csv",
        'user_id, item_id ,label\n"u,1","item ""x"", large",3\n u2 ,b,1\n\n',
        encoding="utf-8-sig", newline="\r\n",
    )
    table = readers.read_interactions_csv(path)
    np.testing.assert_array_equal(table["user_id"], ["u,1", "u2"])
    np.testing.assert_array_equal(table["item_id"], ['item "x", large', "b"])
    np.testing.assert_array_equal(table["label"], [3.0, 1.0])


def test_extra_columns_are_ignored_with_a_warning(tmp_path, caplog):
    path = write(tmp_path, "log.csv", "user_id,item_id,lable\nu,a,3\n")
    with caplog.at_level(logging.WARNING, logger="tfrecall.io.readers"):
        table = readers.read_interactions_csv(path)
    assert "lable" not in table
    assert "lable" in caplog.text


def test_chunks_give_the_same_table_and_right_error_lines(tmp_path):
    rows = "".join(f"u{i % 3},i{i},{i % 4}\n" for i in range(7))
    path = write(tmp_path, "log.csv", "user_id,item_id,label\n" + rows)
    whole = readers.read_interactions_csv(path)
    for chunk_rows in (1, 2, 7):  # 7: exactly one full chunk, then an empty read
        chunked = readers.read_interactions_csv(path, chunk_rows=chunk_rows)
        assert set(chunked) == set(whole)
        for name in whole:
            np.testing.assert_array_equal(whole[name], chunked[name])
    np.testing.assert_array_equal(whole["label"], [0, 1, 2, 3, 0, 1, 2])
    # Row 6 (0-based) sits on line 8 and lands in the fourth chunk.
    bad = write(tmp_path, "bad.csv", "user_id,item_id,label\n" + rows + "u,i,x\n")
    with pytest.raises(DataError, match=r"line 9, column 'label'"):
        readers.read_interactions_csv(bad, chunk_rows=2)


def test_line_numbers_count_physical_lines_of_multiline_fields(tmp_path):
    path = write(tmp_path, "log.csv", (
        'user_id,item_id,label\nu,"two\nlines",1\nu,b,oops\n'
    ))
    # The quoted field spans lines 2-3, so the bad row starts on line 4.
    with pytest.raises(DataError, match=r"line 4, column 'label'"):
        readers.read_interactions_csv(path)



@pytest.mark.parametrize("chunk_rows", [1, 2, 3, None])
def test_record_start_lines_match_the_csv_readers_own_count(tmp_path, chunk_rows):
    # Quoted fields holding "\n", "\r\n" and a bare "\r", CRLF and LF record ends, blank
    # lines: each record's start line is checked against csv.reader's line_num read one
    # record at a time (the reference), in every chunking.
    text = ('user_id,item_id\r\n'
            'u1,"a\nb"\r\n'
            '\n'
            'u2,plain\n'
            '"u\r\n3","x\ry\nz"\r\n'
            '\r\n'
            'u4,last')
    path = tmp_path / "lines.csv"
    path.write_bytes(text.encode())
    expected = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, strict=True)
        previous = 0
        for record in reader:
            if record:
                expected.append((previous + 1, record))
            previous = reader.line_num
    expected = expected[1:]  # the header
    assert [line for line, _ in expected] == [2, 5, 6, 11]
    got_lines, got_users = [], []
    for chunk in chunks.read_chunks(path, chunk_rows=chunk_rows):
        got_lines += chunk.lines.tolist()
        got_users += list(chunk.columns["user_id"])
    assert got_lines == [line for line, _ in expected]
    assert got_users == [record[0] for _, record in expected]


def test_a_wrong_width_after_a_multiline_field_names_its_start_line(tmp_path):
    path = write(tmp_path, "log.csv", 'user_id,item_id\nu,"a\r\nb\nc"\n\nu,b,extra\n')
    for chunk_rows in (1, 2, None):
        with pytest.raises(DataError, match=r"line 6.*expected 2 fields"):
            list(chunks.read_chunks(path, chunk_rows=chunk_rows))


# ------------------------------------------------------------------ interactions: errors

BAD_INTERACTIONS = {
    "missing_column": ("user_id,label\nu,1\n", 1, "item_id", "missing required column"),
    "bad_label": ("user_id,item_id,label\nu,a,1\nu,b,abc\n", 3, "label", "'abc'"),
    "empty_label": ("user_id,item_id,label\nu,a,\n", 2, "label", "empty value"),
    "nan_label": ("user_id,item_id,label\nu,a,1\nu,b,nan\n", 3, "label", "not a finite"),
    "inf_label": ("user_id,item_id,label\nu,a,inf\n", 2, "label", "not a finite"),
    "negative_label": ("user_id,item_id,label\nu,a,-1\n", 2, "label", "negative"),
    "bad_timestamp": ("user_id,item_id,timestamp\nu,a,1\nu,b,yesterday\n", 3, "timestamp",
                      "'yesterday'"),
    "bad_score": ("user_id,item_id,ranker_score\nu,a,0.5\nu,b,high\n", 3, "ranker_score",
                  "'high'"),
    "unknown_event": ("user_id,item_id,event\nu,a,click\nu,b,purchase\n", 3, "event",
                      "['cart', 'click', 'impression', 'order']"),
    "empty_event": ("user_id,item_id,event\nu,a,\n", 2, "event", "empty event"),
    "empty_user": ("user_id,item_id\nu,a\n ,b\n", 3, "user_id", "empty id"),
    "empty_item": ("user_id,item_id\nu,\n", 2, "item_id", "empty id"),
    "duplicate_header": ("user_id,item_id,user_id\nu,a,v\n", 1, "user_id", "twice"),
}


@pytest.mark.parametrize("case", sorted(BAD_INTERACTIONS))
def test_bad_interactions_name_file_line_and_column(tmp_path, case):
    text, line, column, detail = BAD_INTERACTIONS[case]
    path = write(tmp_path, f"{case}.csv", text)
    with pytest.raises(DataError) as info:
        readers.read_interactions_csv(path)
    message = str(info.value)
    assert f"{case}.csv" in message
    assert f"line {line}," in message
    assert f"column '{column}'" in message
    assert detail in message
    assert (info.value.line, info.value.column) == (line, column)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "text, line, detail",
    [
        ("", 1, "empty"),
        ("\n\n", 1, "empty"),
        ("user_id,item_id\n", 1, "no data rows"),
        ("user_id,item_id\n\n", 1, "no data rows"),
        ("user_id,item_id\nu,a\nu,b,extra\n", 3, "expected 2 fields (user_id,item_id) but found 3"),
        ("user_id,item_id\nu,a\nu\n", 3, "found 1"),
        ('user_id,item_id\nu,"a"b\n', 2, "malformed CSV"),
        ("user_id,,item_id\nu,x,a\n", 1, "header field 2 is empty"),
    ],
)
def test_bad_file_shapes_name_file_and_line(tmp_path, text, line, detail):
    path = write(tmp_path, "shape.csv", text)
    with pytest.raises(DataError) as info:
        readers.read_interactions_csv(path)
    assert "shape.csv" in str(info.value)
    assert f"line {line}:" in str(info.value)
    assert detail in str(info.value)


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("user_id,item_id\nu,a\nu,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.csv, line 3: not valid utf-8"):
        readers.read_interactions_csv(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        readers.read_interactions_csv(tmp_path / "nope.csv")


def test_bad_event_labels_argument():
    with pytest.raises(ValueError, match=r"event_labels\['click'\]"):
        readers.normalized_event_labels({"click": -1})


# ------------------------------------------------------------------ feature tables


def test_feature_table_numeric_and_string_columns(tmp_path):
    path = write(tmp_path, "items.csv", (
        "item_id,price,brand,tags,code,blank\n"
        "a,1.5,acme,x|y,007,\n"
        "b,,,z,010,\n"
        "c,-2e1,  zeta ,,3,\n"
    ))
    table = readers.read_feature_table_csv(path, "item_id")
    np.testing.assert_array_equal(table["item_id"], ["a", "b", "c"])
    assert table["price"].dtype == np.float32
    np.testing.assert_array_equal(table["price"], [1.5, np.nan, -20.0])
    assert table["brand"].dtype == object
    np.testing.assert_array_equal(table["brand"], ["acme", "", "zeta"])
    np.testing.assert_array_equal(table["tags"], ["x|y", "z", ""])
    # Numbers-looking codes become floats unless asked to stay str.
    np.testing.assert_array_equal(table["code"], [7.0, 10.0, 3.0])
    # A column with no values at all is numeric and all missing.
    assert table["blank"].dtype == np.float32 and np.isnan(table["blank"]).all()
    kept = readers.read_feature_table_csv(path, "item_id", str_columns=["code"])
    np.testing.assert_array_equal(kept["code"], ["007", "010", "3"])


@pytest.mark.parametrize(
    "text, line, column, detail",
    [
        ("name,age\nx,1\n", 1, "user_id", "missing required column"),
        ("user_id,age\nu1,1\nu2,2\nu1,3\n", 4, "user_id", "duplicate key 'u1' (first on line 2)"),
        ("user_id,age\nu1,1\n,2\n", 3, "user_id", "empty id"),
        ("user_id,age\nu1,1\nu2,inf\n", 3, "age", "infinite"),
        ("user_id,age\nu1,1\nu2,1e39\n", 3, "age", "beyond float32"),
        # A word among numbers is a mistake to name, not a categorical column.
        ("user_id,age\nu1,31\nu2,unknown\nu3,40\n", 3, "age",
         "'unknown' in a column of numbers (2 of 3 values); leave a missing value empty"),
    ],
)
def test_bad_feature_tables(tmp_path, text, line, column, detail):
    path = write(tmp_path, "users.csv", text)
    with pytest.raises(DataError) as info:
        readers.read_feature_table_csv(path, "user_id")
    message = str(info.value)
    assert "users.csv" in message and f"line {line}," in message
    assert f"column '{column}'" in message and detail in message


def test_a_column_mostly_of_words_stays_text(tmp_path):
    path = write(tmp_path, "items.csv", "item_id,size\na,10\nb,M\nc,L\nd,\n")
    table = readers.read_feature_table_csv(path, "item_id")
    np.testing.assert_array_equal(table["size"], ["10", "M", "L", ""])


def test_as_strings_formats_codes():
    values = np.array([25.0, 0.5, np.nan, 1e7], dtype=np.float32)
    np.testing.assert_array_equal(readers.as_strings(values), ["25", "0.5", "", "10000000"])


# ------------------------------------------------------------------ load_data


def test_load_data_generic_with_feature_tables(tmp_path):
    events = write(tmp_path, "events.csv", "user_id,item_id,event\nu1,a,click\nu2,b,impression\n")
    users = write(tmp_path, "users.csv", "user_id,age,zip\nu1,30,02139\nu2,,10001\n")
    items = write(tmp_path, "items.csv", "item_id,genres\na,x|y\nb,z\nc,\n")
    config = {"users": {"zip": {"kind": "categorical"}, "age": None}}
    data = readers.load_data(events, users, items, feature_config=config)
    assert data.name == "events"
    assert data.num_interactions == 2
    np.testing.assert_array_equal(data.interactions["positive"], [True, False])
    np.testing.assert_array_equal(data.users["zip"], ["02139", "10001"])  # kept as str
    assert data.users["age"].dtype == np.float32  # a dropped column is still read
    np.testing.assert_array_equal(data.item_catalogue(), ["a", "b", "c"])


def test_load_data_custom_event_labels(tmp_path):
    events = write(tmp_path, "events.csv", "user_id,item_id,event\nu1,a,like\n")
    data = readers.load_data(events, event_labels={"like": 2})
    np.testing.assert_array_equal(data.interactions["label"], [2.0])


def test_load_data_rejects_a_plain_directory(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DataError, match="not a MovieLens download"):
        readers.load_data(tmp_path / "stuff")


def test_load_data_rejects_feature_tables_with_movielens(tmp_path):
    ratings = write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,10\n")
    users = write(tmp_path, "users.csv", "user_id\n1\n")
    with pytest.raises(ValueError, match="MovieLens"):
        readers.load_data(ratings, users=users)
