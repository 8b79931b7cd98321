"""Tests of tfrecall.io.streaming: csv_dataset against the in-memory reader, its
errors, and the streaming statistics feeding the feature encoder."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from tfrecall._backend import tf
from tfrecall.config import FeatureSpec
from tfrecall.features.encoder import FeatureEncoder
from tfrecall.io import readers, streaming
from tfrecall.io.errors import DataError
from tfrecall.io.stats import StreamingStats

# Every column, CRLF line ends, a BOM, blank lines, quoted fields with delimiters and
# doubled quotes, Unicode ids and whitespace, ISO and decimal timestamps, empty/NaN
# ranker scores, an empty event next to a label, a duplicate row.
LOG = (
    "\ufeffuser_id,item_id,label,event,timestamp,request_id,ranker_score\r\n"
    "u1,i1,1,impression,1700000000,r1,0.5\r\n"
    "u1,i2,3,Click,2024-01-01,r1,\r\n"
    "\r\n"
    '"u,2",i3,4,cart,2024-01-01T00:00:10Z,r2,nan\r\n'
    "ünï,\u3000i4 ,5, ORDER ,2024-02-29 01:30:00+02:00,r2,-1e3\r\n"
    '"say ""hi""",i1,0,,12.9,,2\r\n'
    "u1,i2,3,Click,2024-01-01,r1,\r\n"
    "u3,i5,2.5,click,-5,r3,3.25"
)


def _write(tmp_path, text, name="log.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def _collect(dataset):
    parts = collections.defaultdict(list)
    sizes = []
    for batch in streaming.iterate(dataset):
        sizes.append(len(batch["user_id"]))
        for name, values in batch.items():
            parts[name].append(values)
    return {k: np.concatenate(v) for k, v in parts.items()}, sizes


def _decoded(table):
    return {k: np.array([x.decode("utf-8") for x in v], dtype=object) if v.dtype == object
            else v for k, v in table.items()}


def _assert_tables_equal(streamed, expected):
    assert sorted(streamed) == sorted(expected)
    for name, values in expected.items():
        got = streamed[name]
        if values.dtype == object:
            assert got.tolist() == values.tolist(), name
        else:
            assert got.dtype == values.dtype, name
            np.testing.assert_array_equal(got, values, err_msg=name)


class TestCsvDataset:
    @pytest.mark.parametrize("batch_size", [3, 100])
    def test_same_rows_as_the_in_memory_reader(self, tmp_path, batch_size):
        path = _write(tmp_path, LOG)
        streamed, sizes = _collect(streaming.csv_dataset(path, batch_size))
        _assert_tables_equal(_decoded(streamed), readers.read_interactions_csv(path))
        # 7 data rows: full batches, then the remainder.
        assert sizes == [batch_size] * (7 // batch_size) + ([7 % batch_size] if 7 % batch_size
                                                             else [])

    def test_hand_values(self, tmp_path):
        table, _ = _collect(streaming.csv_dataset(_write(tmp_path, LOG), 4))
        table = _decoded(table)
        assert table["user_id"].tolist() == ["u1", "u1", "u,2", "ünï", 'say "hi"', "u1", "u3"]
        # "\u3000i4 " is stripped as Python's str.strip() strips it.
        assert table["item_id"].tolist() == ["i1", "i2", "i3", "i4", "i1", "i2", "i5"]
        assert table["event"].tolist() == ["impression", "click", "cart", "order", "", "click",
                                           "click"]
        # The label column wins; an impression or label 0 is not a positive.
        np.testing.assert_array_equal(table["label"], [1, 3, 4, 5, 0, 3, 2.5])
        np.testing.assert_array_equal(table["positive"], [0, 1, 1, 1, 0, 1, 1])
        # 2024-01-01 = 1704067200; +10 s; 2024-02-29 01:30+02:00 = 2024-02-28 23:30 UTC
        # = 1704067200 + 58 days * 86400 + 23.5 h = 1709163000; 12.9 floors to 12.
        np.testing.assert_array_equal(
            table["timestamp"],
            [1700000000, 1704067200, 1704067210, 1709163000, 12, 1704067200, -5])
        np.testing.assert_array_equal(table["ranker_score"],
                                      [0.5, np.nan, np.nan, -1000, 2, np.nan, 3.25])

    def test_events_without_labels_and_a_plain_log(self, tmp_path):
        events = _write(tmp_path, "user_id,item_id,event\na,x,impression\nb,y,order\n", "e.csv")
        table, _ = _collect(streaming.csv_dataset(events, 8))
        np.testing.assert_array_equal(table["label"], [1.0, 5.0])
        np.testing.assert_array_equal(table["positive"], [False, True])
        plain = _write(tmp_path, "item_id,user_id\nx,a\ny,b", "p.csv")  # any column order
        table, _ = _collect(streaming.csv_dataset(plain, 8, {"view": 1}))
        assert set(table) == {"user_id", "item_id", "label", "positive"}
        assert table["user_id"].tolist() == [b"a", b"b"]
        np.testing.assert_array_equal(table["label"], [1.0, 1.0])

    def test_custom_event_labels_and_selected_columns(self, tmp_path):
        path = _write(tmp_path, "user_id,item_id,event,timestamp\na,x,VIEW,5\nb,y,like,bad\n")
        table, _ = _collect(streaming.csv_dataset(path, 8, {"view": 0, "like": 2},
                                                  columns=["event"]))
        # The unparsed timestamp column is not read, so "bad" is no error.
        assert sorted(table) == ["event", "item_id", "label", "positive", "user_id"]
        np.testing.assert_array_equal(table["label"], [0.0, 2.0])
        np.testing.assert_array_equal(table["positive"], [False, True])

    def test_several_files_batch_across_file_ends(self, tmp_path):
        a = _write(tmp_path, "user_id,item_id\na,x\nb,y\nc,z\n", "a.csv")
        b = _write(tmp_path, "user_id,item_id\r\nd,w\r\ne,v", "b.csv")
        table, sizes = _collect(streaming.csv_dataset([a, b], 2))
        assert table["user_id"].tolist() == [b"a", b"b", b"c", b"d", b"e"]
        assert sizes == [2, 2, 1]
        _, sizes = _collect(streaming.csv_dataset([a, b], 2, drop_remainder=True))
        assert sizes == [2, 2]

    def test_files_with_other_headers_are_refused(self, tmp_path):
        a = _write(tmp_path, "user_id,item_id\na,x\n", "a.csv")
        b = _write(tmp_path, "item_id,user_id\nx,a\n", "b.csv")
        with pytest.raises(DataError, match="b.csv, line 1: the header.*differs"):
            streaming.csv_dataset([a, b], 2)

    def test_long_lines_and_tiny_blocks(self, tmp_path):
        # Lines far longer than a block are stitched from several blocks.
        long_id = "x" * 5000
        path = _write(tmp_path, f"user_id,item_id\n{long_id},i\nu,{long_id}é\n")
        table, _ = _collect(streaming.csv_dataset(path, 1))
        assert table["user_id"].tolist() == [long_id.encode(), b"u"]
        assert table["item_id"].tolist() == [b"i", (long_id + "é").encode()]

    def test_usable_in_a_traced_training_input(self, tmp_path):
        dataset = streaming.csv_dataset(_write(tmp_path, LOG), 4)
        dataset = dataset.map(lambda b: ({"user_id": b["user_id"]}, b["label"]))
        x, y = next(iter(dataset))
        assert x["user_id"].dtype == tf.string and y.shape == (4,)

    @pytest.mark.parametrize("batch_size, message", [(0, "batch_size"), (2.5, "batch_size")])
    def test_bad_arguments(self, tmp_path, batch_size, message):
        with pytest.raises(ValueError, match=message):
            streaming.csv_dataset(_write(tmp_path, LOG), batch_size)
        with pytest.raises(ValueError, match="unknown interaction column"):
            streaming.csv_dataset(_write(tmp_path, LOG), 2, columns=["price"])
        with pytest.raises(ValueError, match="delimiter"):
            streaming.csv_dataset(_write(tmp_path, LOG), 2, delimiter='"')


class TestCsvDatasetErrors:
    @pytest.mark.parametrize("header, rows, line, column, message", [
        ("user_id,item_id,label,event", "u,i,1,click,5", 3, None, "expected 4 fields"),
        ("user_id,item_id,label,event", '"u,i,1,click', 3, None, "malformed quoting"),
        ("user_id,item_id,label,event", " ,i,1,click", 3, "user_id", "empty id"),
        ("user_id,item_id,label,event", "u,i,abc,click", 3, "label", "finite number >= 0"),
        ("user_id,item_id,label,event", "u,i,-1,click", 3, "label", "finite number >= 0"),
        ("user_id,item_id,label,event", "u,i,1e39,click", 3, "label", "within float32"),
        ("user_id,item_id,label,event", "u,i,1,click\n\nu,i,2,buy", 5, "event",
         "unknown event 'buy'"),
        ("user_id,item_id,event", "u,i,", 3, "event", "unknown or empty event"),
        ("user_id,item_id,timestamp", "u,i,2024-02-30", 3, "timestamp", "as a timestamp"),
        ("user_id,item_id,ranker_score", "u,i,inf", 3, "ranker_score", "finite float32"),
    ])
    def test_bad_rows_name_file_line_and_column(self, tmp_path, header, rows, line, column,
                                                message):
        good = {3: "u0,i0,click", 4: "u0,i0,1,click"}[header.count(",") + 1]
        if header.endswith(("timestamp", "ranker_score")):
            good = "u0,i0,5"
        path = _write(tmp_path, f"{header}\n{good}\n{rows}\n")
        with pytest.raises(DataError, match=message) as error:
            _collect(streaming.csv_dataset(path, 2))
        assert (error.value.path, error.value.line, error.value.column) == (str(path), line,
                                                                             column)

    def test_invalid_utf8_names_the_line(self, tmp_path):
        path = tmp_path / "log.csv"
        # Far enough from the header that the eager header check does not read it.
        path.write_bytes(b"user_id,item_id\n" + b"u,i\n" * 20000 + b"u\xff,i\n")
        with pytest.raises(DataError, match="line 20002: not valid UTF-8"):
            _collect(streaming.csv_dataset(path, 8192))
        path.write_bytes(b"user_id,item_id\nu\xff,i\n")
        with pytest.raises(DataError, match="line 2: not valid UTF-8"):
            streaming.csv_dataset(path, 8)

    @pytest.mark.parametrize("text, message", [
        ("", "the file is empty"),
        ("\n\n", "the file is empty"),
        ("user_id,item_id\n", "header but no data rows"),
        ("user_id,item\nu,i\n", "line 1, column 'item_id': missing required column"),
        ("user_id,item_id,user_id\nu,i,u\n", "column name appears twice"),
    ])
    def test_file_level_errors_are_raised_at_once(self, tmp_path, text, message):
        with pytest.raises(DataError, match=message):
            streaming.csv_dataset(_write(tmp_path, text), 2)

    def test_missing_file(self, tmp_path):
        with pytest.raises(DataError, match="nope.csv: no such file"):
            streaming.csv_dataset(tmp_path / "nope.csv", 2)

    def test_data_errors_leaves_other_errors_alone(self):
        with pytest.raises(tf.errors.InvalidArgumentError):
            with streaming.data_errors():
                tf.debugging.assert_equal(1, 2)
        assert streaming.as_data_error(ValueError("x")) is None


class TestStatistics:
    def _table(self):
        rng = np.random.default_rng(0)
        n = 3000
        users = rng.integers(0, 40, n)
        items = rng.zipf(1.5, n) % 60
        stamps = 1_700_000_000 + rng.integers(0, 10**6, n)
        scores = np.round(rng.normal(size=n), 3)
        scores[::50] = np.nan
        return users, items, stamps, scores

    def _write_log(self, tmp_path):
        users, items, stamps, scores = self._table()
        rows = [f"u{u},i{i},click,{t},{'' if np.isnan(s) else s}"
                for u, i, t, s in zip(users, items, stamps, scores, strict=True)]
        return _write(tmp_path, "user_id,item_id,event,timestamp,ranker_score\n"
                      + "\n".join(rows) + "\n")

    def _stats(self):
        return StreamingStats(strings=["user_id", "item_id"], numbers=["timestamp",
                                                                       "ranker_score"])

    def test_chunked_pass_equals_numpy(self, tmp_path):
        users, items, stamps, scores = self._table()
        stats = streaming.scan_interactions_csv(self._write_log(tmp_path), self._stats(),
                                                chunk_rows=700)
        assert stats.rows == 3000
        assert stats.token_counts("item_id") == dict(collections.Counter(
            f"i{i}" for i in items))
        assert stats.token_counts("user_id") == dict(collections.Counter(
            f"u{u}" for u in users))
        finite = scores[~np.isnan(scores)]
        m = stats.moments("ranker_score")
        assert (m.count, m.missing) == (finite.size, 60)
        # float32 like the reader stores it.
        finite32 = finite.astype(np.float32).astype(np.float64)
        np.testing.assert_allclose([m.mean, m.variance], [finite32.mean(), finite32.var()],
                                   rtol=1e-6)
        levels = [0.1, 0.5, 0.9]
        np.testing.assert_array_equal(stats.quantiles("timestamp", levels),
                                      np.quantile(stamps.astype(np.float64), levels))

    def test_tf_data_pass_equals_chunked_pass(self, tmp_path):
        path = self._write_log(tmp_path)
        chunked = streaming.scan_interactions_csv(path, self._stats())
        streamed = streaming.scan_dataset(streaming.csv_dataset(path, 256), self._stats())
        assert streamed.rows == chunked.rows
        for name in ("user_id", "item_id"):
            assert streamed.token_counts(name) == chunked.token_counts(name)
        for name in ("timestamp", "ranker_score"):
            a, b = streamed.moments(name), chunked.moments(name)
            assert (a.count, a.missing) == (b.count, b.missing)
            np.testing.assert_allclose([a.mean, a.variance], [b.mean, b.variance], rtol=1e-9)

    def test_bad_rows_and_missing_columns(self, tmp_path):
        path = _write(tmp_path, "user_id,item_id,label\nu,i,1\nu,i,-2\n")
        with pytest.raises(DataError, match="line 3, column 'label'.*negative"):
            streaming.scan_interactions_csv(path, StreamingStats(strings=["user_id"]))
        with pytest.raises(DataError, match="column 'timestamp': missing column"):
            streaming.scan_interactions_csv(path, StreamingStats(numbers=["timestamp"]))
        with pytest.raises(DataError, match="line 3, column 'label': .*>= 0"):
            streaming.scan_dataset(streaming.csv_dataset(path, 8),
                                   StreamingStats(strings=["user_id"]))

    def test_feature_table_pass(self, tmp_path):
        path = _write(tmp_path, "item_id,genres,price\na,X|Y,1.5\nb,Y,\nc,,4.5\n")
        stats = StreamingStats(strings=["item_id"], numbers=["price"], multi={"genres": "|"})
        streaming.scan_table_csv(path, stats, "item_id", chunk_rows=2)
        assert stats.token_counts("genres", "|") == {"X": 1, "Y": 2}
        m = stats.moments("price")
        # mean(1.5, 4.5) = 3, variance = 2.25; one empty price is missing.
        assert (m.count, m.mean, m.variance, m.missing) == (2, 3.0, 2.25, 1)
        bad = _write(tmp_path, "item_id,price\na,1\nb,cheap\n", "bad.csv")
        with pytest.raises(DataError, match="bad.csv, line 3, column 'price'"):
            streaming.scan_table_csv(bad, StreamingStats(numbers=["price"]), "item_id")
        with pytest.raises(DataError, match="column 'genres': missing column"):
            streaming.scan_table_csv(bad, StreamingStats(multi={"genres": "|"}))

    def test_encoder_adapted_from_stats_equals_adapt(self, tmp_path):
        rng = np.random.default_rng(4)
        n = 500
        items = np.array([f"i{i}" for i in rng.zipf(1.3, n) % 40], dtype=object)
        genres = np.array(["|".join(rng.choice(["a", "b", "c", "d"], rng.integers(0, 3)))
                           for _ in range(n)], dtype=object)
        price = rng.lognormal(size=n).astype(np.float32)
        price[::7] = np.nan
        table = {"item_id": items, "genres": genres, "price": price, "year": price * 10}
        specs = [FeatureSpec("item_id", "id", min_count=2), FeatureSpec("genres",
                                                                        "multi_categorical"),
                 FeatureSpec("price", "continuous", log1p=True),
                 FeatureSpec("year", "bucketized", num_buckets=5)]
        stats = StreamingStats.from_specs(specs)
        for start in range(0, n, 64):
            stats.update({k: v[start:start + 64] for k, v in table.items()})
        streamed, in_memory = FeatureEncoder(specs), FeatureEncoder(specs)
        streamed.adapt_from_stats(stats)
        in_memory.adapt(table)
        # Independent references: counts, log1p moments and quantiles by numpy.
        counts = collections.Counter(items.tolist())
        vocab = sorted((t for t, c in counts.items() if c >= 2), key=lambda t: (-counts[t], t))
        assert streamed.feature_layers[0].vocabulary == vocab
        assert sorted(streamed.feature_layers[1].vocabulary) == ["a", "b", "c", "d"]
        finite = price[np.isfinite(price)].astype(np.float64)
        t = np.log1p(finite)
        layer = streamed.feature_layers[2]
        np.testing.assert_allclose([layer.mean, layer.variance], [t.mean(), t.var()],
                                   rtol=1e-6)
        year = (price * 10)[np.isfinite(price)].astype(np.float64)
        expected = np.unique(np.quantile(year, [0.2, 0.4, 0.6, 0.8]).astype(np.float32))
        np.testing.assert_array_equal(streamed.feature_layers[3].boundaries, expected)
        # And the same state as adapt on the whole table.
        for i in (0, 1):
            assert streamed.feature_layers[i].vocabulary == in_memory.feature_layers[i].vocabulary
        np.testing.assert_allclose(
            [layer.mean, layer.variance],
            [in_memory.feature_layers[2].mean, in_memory.feature_layers[2].variance], rtol=1e-9)
        assert streamed.feature_layers[3].boundaries == in_memory.feature_layers[3].boundaries
