"""Bad input for the readers (issue 7): property-based (hypothesis) and hand cases.

Every bad file gives a `DataError` naming the file (and the line and column where
there is one) and never another exception type; every accepted file gives a valid
`RecallData`. The streaming reader agrees with the in-memory one on which files are
bad, and on the rows of the good ones.
"""

from __future__ import annotations

import csv
import io
import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfrecall.io import feature_kinds as inference
from tfrecall.io import readers, streaming
from tfrecall.io.errors import DataError
from tfrecall.io.schema import RecallData, validate_table

# Deterministic examples (seeded from the test name), no example database; one
# temporary directory per test function, in which hypothesis runs many examples.
_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])
_counter = itertools.count()

# Cells that stress the parsers: numbers in every spelling, NaN/inf, out-of-range
# values, events in odd case, ISO dates real and impossible, quotes, delimiters,
# Unicode (including Unicode whitespace) and long values.
NASTY = ["", " ", "u1", "i1", "ü", "\u3000", "x\u3000", "nan", "NaN", "inf", "-inf", "1e39",
         "-1", "0", "3", "1.5", ".5", "5.", "+2", "1e-50", "1e400", "1_0", "click", " Click ",
         "impression", "ORDER", "bogus", "2024-01-01", "2024-02-30", "2024-01-01T10:00:00Z",
         '"', '""', '"a,b"', 'a"b', ",", "\t", "9" * 30, "é" * 300, "\x00", "\r"]
COLUMNS = ["user_id", "item_id", "label", "event", "timestamp", "request_id", "ranker_score",
           "extra"]


def _path(tmp_path, name="log.csv"):
    return tmp_path / f"{next(_counter)}_{name}"


def _rows_text(header, rows, line_end="\n"):
    return line_end.join([",".join(header)] + [",".join(r) for r in rows]) + line_end


@st.composite
def nasty_csv(draw):
    """A header (any columns, maybe repeated or missing) and rows of nasty cells."""
    header = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=6))
    width = len(header)
    cell = st.one_of(st.sampled_from(NASTY), st.text(max_size=6))
    rows = draw(st.lists(st.lists(cell, min_size=max(width - 1, 0), max_size=width + 1),
                         max_size=6))
    return _rows_text(header, rows, draw(st.sampled_from(["\n", "\r\n"])))


def _check_reader_outcome(path, read):
    try:
        result = read(path)
    except DataError as e:
        assert str(path) in str(e), str(e)
        return None
    return result


@settings(max_examples=150, **_SETTINGS)
@given(text=st.one_of(nasty_csv(), st.text(max_size=80)))
def test_any_text_reads_into_valid_data_or_a_data_error_naming_the_file(tmp_path, text):
    path = _path(tmp_path)
    path.write_text(text, encoding="utf-8")
    table = _check_reader_outcome(path, readers.read_interactions_csv)
    if table is not None:
        data = RecallData(table, name="x")  # validates columns, dtypes, finite labels
        assert all(s.strip() == s and s for s in data.interactions["user_id"].tolist())


@settings(max_examples=60, **_SETTINGS)
@given(data=st.binary(max_size=60))
def test_any_bytes_read_or_raise_a_data_error(tmp_path, data):
    path = _path(tmp_path)
    path.write_bytes(b"user_id,item_id\n" + data)
    _check_reader_outcome(path, readers.read_interactions_csv)


@settings(max_examples=80, **_SETTINGS)
@given(text=nasty_csv())
def test_any_feature_table_reads_or_raises_a_data_error(tmp_path, text):
    path = _path(tmp_path, "items.csv")
    path.write_text(text.replace("user_id", "item_id"), encoding="utf-8")
    table = _check_reader_outcome(path, lambda p: readers.read_feature_table_csv(p, "item_id"))
    if table is not None:
        validate_table(table, "item_id", "items")
        for name, column in table.items():
            assert column.dtype == object or (column.dtype == np.float32
                                              and not np.isinf(column).any()), name


# ----------------------------------------------------------------- streaming vs in memory

# The header is fixed (so the parsing graph is traced once) and the cells avoid the
# documented differences of the streaming path (Python-only number syntax such as
# "1_0", quotes inside unquoted fields, line breaks inside quotes, rarer ISO forms).
SAFE = ["", " ", "u1", "ü", "\u3000v", "nan", "NaN", "inf", "1e39", "-1", "0", "3", "1.5",
        ".5", "+2", "1e-50", "1e400", "click", " Click ", "impression", "ORDER", "bogus",
        "2024-01-01", "2024-02-30", "2024-01-01T10:00:00+02:00", '"a,b"', '"x""y"', "9" * 30]
HEADER = ["user_id", "item_id", "label", "event", "timestamp", "request_id", "ranker_score"]


VALID = {  # per column, values both readers accept
    "user_id": ["u1", "ü", "\u3000v", '"a,b"', '"x""y"', "9" * 30, " u2 "],
    "item_id": ["i1", "é", '"a,b"', "x\u3000"],
    "label": ["0", "3", "1.5", ".5", "+2", "1e-50", "2.5e1"],
    "event": ["", "click", " Click ", "impression", "ORDER"],
    "timestamp": ["5", "1.5", "-3", "1e3", "2024-01-01", "2024-01-01T10:00:00+02:00",
                  "2024-02-29 23:59"],
    "request_id": ["", "r1", "ü"],
    "ranker_score": ["", "nan", "NaN", "0.5", "-1e3"],
}


@st.composite
def safe_csv(draw):
    """Mostly valid rows; some with one cell drawn from SAFE, some blank."""
    valid_row = st.tuples(*[st.sampled_from(VALID[c]) for c in HEADER]).map(list)

    @st.composite
    def spoiled_row(draw):
        row = draw(valid_row)
        row[draw(st.integers(0, len(HEADER) - 1))] = draw(st.sampled_from(SAFE))
        return row

    rows = draw(st.lists(st.one_of(valid_row, valid_row, valid_row, spoiled_row(),
                                   st.just([])), min_size=1, max_size=8))
    return _rows_text(HEADER, rows)


@settings(max_examples=15, **_SETTINGS)
@given(text=safe_csv())
def test_streaming_agrees_with_the_in_memory_reader(tmp_path, text):
    path = _path(tmp_path)
    path.write_text(text, encoding="utf-8")
    expected = _check_reader_outcome(path, readers.read_interactions_csv)
    try:
        batches = list(streaming.iterate(streaming.csv_dataset(path, 4)))
    except DataError as e:
        assert str(path) in str(e) and e.line is not None
        assert expected is None, f"only the streaming reader refused it: {e}"
        return
    assert expected is not None, "only the in-memory reader refused it"
    for name, values in expected.items():
        got = np.concatenate([b[name] for b in batches])
        if values.dtype == object:
            assert [g.decode("utf-8") for g in got] == values.tolist(), name
        else:
            np.testing.assert_array_equal(got, values, err_msg=name)


# ----------------------------------------------------------------- unicode ids round trip

ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


def _write_ids(path, pairs):
    out = io.StringIO()
    writer = csv.writer(out)  # "\r\n" ends: fields holding "\r" or "\n" are quoted
    writer.writerow(["user_id", "item_id"])
    writer.writerows(pairs)
    path.write_text(out.getvalue(), encoding="utf-8")


@settings(max_examples=80, **_SETTINGS)
@given(pairs=st.lists(st.tuples(ids, ids), min_size=1, max_size=5))
def test_unicode_ids_round_trip_through_the_reader(tmp_path, pairs):
    path = _path(tmp_path)
    _write_ids(path, pairs)
    expected_users = [u.strip() for u, _ in pairs]
    expected_items = [i.strip() for _, i in pairs]
    if "" in expected_users + expected_items:
        with pytest.raises(DataError, match="empty id"):
            readers.read_interactions_csv(path)
        return
    table = readers.read_interactions_csv(path)
    assert table["user_id"].tolist() == expected_users
    assert table["item_id"].tolist() == expected_items


one_line_ids = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                       min_size=1, max_size=12).filter(lambda s: s.strip())


@settings(max_examples=6, **_SETTINGS)
@given(pairs=st.lists(st.tuples(one_line_ids, one_line_ids), min_size=1, max_size=30))
def test_unicode_ids_round_trip_through_the_streaming_reader(tmp_path, pairs):
    path = _path(tmp_path)
    _write_ids(path, pairs)
    batches = list(streaming.iterate(streaming.csv_dataset(path, 7)))
    users = [u.decode("utf-8") for b in batches for u in b["user_id"]]
    items = [i.decode("utf-8") for b in batches for i in b["item_id"]]
    assert users == [u.strip() for u, _ in pairs]
    assert items == [i.strip() for _, i in pairs]


# ----------------------------------------------------------------- hand cases


@pytest.mark.parametrize("text, line, column, message", [
    ("", 1, None, "the file is empty"),
    ("\ufeff\n \n", 1, None, "header field 1 is empty"),
    ("user_id,item_id\n", 1, None, "header but no data rows"),
    ("user_id,item_id\nu,i,extra\n", 2, None, "expected 2 fields .* found 3"),
    ("user_id,item_id\nu\n", 2, None, "expected 2 fields .* found 1"),
    ("user_id,item_id\nu,i\n\"u,i\n", 3, None, "malformed CSV"),
    ("user_id,item_id,label\nu,i,nan\n", 2, "label", "not a finite number"),
    ("user_id,item_id,label\nu,i,-inf\n", 2, "label", "not a finite number"),
    ("user_id,item_id,label\nu,i,1e39\n", 2, "label", "beyond the float32 range"),
    ("user_id,item_id,ranker_score\nu,i,3e38\nu,i,4e38\n", 3, "ranker_score",
     "beyond the float32 range"),
    ("user_id,item_id,ranker_score\nu,i,inf\n", 2, "ranker_score", "not a finite number"),
    ("user_id,item_id\nu,\n", 2, "item_id", "empty id"),
    ("user_id,item_id,event\nu,i,like\n", 2, "event", "unknown event 'like'"),
    ("user_id,item_id,timestamp\nu,i,2024-02-30\n", 2, "timestamp", "as a timestamp"),
    ("user,item\nu,i\n", 1, "user_id", "missing required column"),
])
def test_bad_logs(tmp_path, text, line, column, message):
    path = _path(tmp_path)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message) as error:
        readers.read_interactions_csv(path)
    assert (error.value.path, error.value.line, error.value.column) == (str(path), line, column)


def test_nan_ranker_scores_are_missing_not_errors(tmp_path):
    path = _path(tmp_path)
    path.write_text("user_id,item_id,ranker_score\nu,i,\nu,j,nan\nu,k,0.5\n", encoding="utf-8")
    np.testing.assert_array_equal(readers.read_interactions_csv(path)["ranker_score"],
                                  [np.nan, np.nan, 0.5])


def test_duplicate_rows_are_kept_as_repeated_events(tmp_path):
    # A repeated (user, item, event) is a repeated signal, not a data error: both
    # readers keep every row (docs/streaming.md, "Duplicates").
    path = _path(tmp_path)
    path.write_text("user_id,item_id,event\nu,i,click\nu,i,click\nu,i,click\nv,i,order\n",
                    encoding="utf-8")
    table = readers.read_interactions_csv(path)
    assert table["user_id"].tolist() == ["u", "u", "u", "v"]
    streamed = list(streaming.iterate(streaming.csv_dataset(path, 8)))[0]
    assert streamed["user_id"].tolist() == [b"u", b"u", b"u", b"v"]


def test_huge_ids_stay_exact_strings(tmp_path):
    big_number = str(2**200)
    long_id = "é" * 100_000
    path = _path(tmp_path)
    path.write_text(f"user_id,item_id\n{big_number},{long_id}\n007,1e3\n", encoding="utf-8")
    table = readers.read_interactions_csv(path)
    assert table["user_id"].tolist() == [big_number, "007"]
    assert table["item_id"].tolist() == [long_id, "1e3"]


@pytest.mark.parametrize("text, line, column, message", [
    ("item_id,price\na,1\na,2\n", 3, "item_id", "duplicate key 'a' \\(first on line 2\\)"),
    ("item_id,price\na,1\nb,inf\n", 3, "price", "infinite or beyond float32"),
    ("item_id,price\na,1\nb,1e39\n", 3, "price", "infinite or beyond float32"),
    ("item_id,price\n,1\n", 2, "item_id", "empty id"),
    ("price\n1\n", 1, "item_id", "missing required column"),
])
def test_bad_feature_tables(tmp_path, text, line, column, message):
    path = _path(tmp_path, "items.csv")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message) as error:
        readers.read_feature_table_csv(path, "item_id")
    assert (error.value.line, error.value.column) == (line, column)


def test_missing_values_in_feature_tables_are_nan_or_empty(tmp_path):
    path = _path(tmp_path, "items.csv")
    path.write_text("item_id,price,brand\na,,x\nb,nan,\nc,2,y\n", encoding="utf-8")
    table = readers.read_feature_table_csv(path, "item_id")
    np.testing.assert_array_equal(table["price"], [np.nan, np.nan, 2.0])
    assert table["brand"].tolist() == ["x", "", "y"]


@pytest.mark.parametrize("which", ["users", "items"])
def test_missing_optional_files_are_named(tmp_path, which):
    log = _path(tmp_path)
    log.write_text("user_id,item_id\nu,i\n", encoding="utf-8")
    missing = tmp_path / f"no_{which}.csv"
    with pytest.raises(DataError, match=f"no_{which}.csv: no such file"):
        readers.load_data(log, **{which: missing})


class TestFeatureConfig:
    def _config(self, tmp_path, content):
        path = _path(tmp_path, "features.json")
        path.write_text(content if isinstance(content, str) else json.dumps(content),
                        encoding="utf-8")
        return path

    @pytest.mark.parametrize("content, message", [
        ({"items": {"price": {"kind": "fancy"}}}, "section 'items'.*'price'.*unknown kind "
                                                  "'fancy'"),
        ({"items": {"price": {"dim": 3}}}, "'price'.*unknown field\\(s\\) \\['dim'\\]"),
        ({"items": {"price": {"num_buckets": "8"}}}, "num_buckets must be an integer"),
        ({"shops": {}}, "unknown top-level key\\(s\\) \\['shops'\\]"),
        ("{\n  \"items\": {,}\n}", "line 2: invalid JSON"),
    ])
    def test_bad_config_files(self, tmp_path, content, message):
        path = self._config(tmp_path, content)
        with pytest.raises(DataError, match=message) as error:
            inference.load_feature_config(path)
        assert str(path) in str(error.value)

    def test_config_naming_unknown_columns(self, tmp_path):
        path = self._config(tmp_path, {"items": {"colour": {"kind": "categorical"}}})
        config = inference.load_feature_config(path)
        table = {"item_id": np.array(["a"], dtype=object), "price": np.array([1.0], np.float32)}
        with pytest.raises(ValueError, match="features.json, section 'items'.*\\['colour'\\] "
                                             "are not columns.*'item_id', 'price'"):
            inference.infer_feature_specs(table, "item_id", overrides=config["items"],
                                          source=inference.config_source(path, "items"))

    def test_missing_config_file(self, tmp_path):
        with pytest.raises(DataError, match="nope.json: no such feature config file"):
            inference.load_feature_config(tmp_path / "nope.json")
