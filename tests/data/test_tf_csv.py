"""Tests of tfrecall.io.tf_csv: block splitting, batching and ISO dates vs Python."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from tfrecall._backend import tf
from tfrecall.io import tf_csv


def _python_seconds(text: str) -> int:
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() // 1)


def _chunks(dataset):
    return [tuple(x.numpy() for x in chunk) for chunk in dataset]


class TestFileLines:
    @pytest.mark.parametrize("block_bytes", [1, 2, 3, 5, 7, 64])
    def test_lines_are_the_same_whatever_the_block_size(self, tmp_path, block_bytes):
        path = tmp_path / "x.csv"
        # CRLF pairs, a blank line, a non-ASCII line, no final line break.
        path.write_bytes("h\r\nab\r\n\r\ncdé\nefgh\r\ni".encode("utf-8"))
        chunks = _chunks(tf_csv.file_lines(str(path), 3, 1, 1, block_bytes=block_bytes))
        files = np.concatenate([c[0] for c in chunks])
        numbers = np.concatenate([c[1] for c in chunks])
        texts = np.concatenate([c[2] for c in chunks])
        plain = np.concatenate([c[3] for c in chunks])
        # Line 1 (the header, skip=1) and blank line 3 are dropped.
        assert numbers.tolist() == [2, 4, 5, 6]
        assert [t.decode() for t in texts] == ["ab", "cdé", "efgh", "i"]
        assert files.tolist() == [3, 3, 3, 3]
        # A line is plain when every block it touches is: "cdé" never is; "ab" is in
        # small blocks of ASCII, but not when one block holds the whole file.
        assert not plain[1]
        assert plain[0] == (block_bytes < 64)

    def test_batches_are_exact_across_chunks(self):
        def chunk(start, n):
            return (tf.zeros([n], tf.int32), tf.range(start, start + n, dtype=tf.int64),
                    tf.strings.as_string(tf.range(start, start + n)), tf.ones([n], tf.bool))

        lines = tf.data.Dataset.from_tensors(chunk(0, 3)).concatenate(
            tf.data.Dataset.from_tensors(chunk(3, 0))).concatenate(
            tf.data.Dataset.from_tensors(chunk(3, 6)))
        out = [b[1].numpy().tolist() for b in tf_csv.batches(lines, 4, False)]
        assert out == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
        out = [b[1].numpy().tolist() for b in tf_csv.batches(lines, 4, True)]
        assert out == [[0, 1, 2, 3], [4, 5, 6, 7]]


class TestIsoSeconds:
    VALID = [
        "1970-01-01", "2024-01-01", "2024-02-29", "2000-02-29", "1900-03-01", "0001-01-01",
        "9999-12-31", "1969-12-31T23:59:59", "2024-05-01 12:30", "2024-05-01T12:30:05.999",
        "2024-05-01T12:30:05Z", "2024-05-01T12:30:05+05:30", "2024-05-01T00:00:00-08:00",
        "1960-07-04T01:02:03-00:30",
    ]

    def test_matches_python(self):
        seconds, ok = tf_csv.iso_seconds(tf.constant(self.VALID))
        assert ok.numpy().all()
        assert seconds.numpy().tolist() == [_python_seconds(t) for t in self.VALID]

    @pytest.mark.parametrize("text", ["2023-02-29", "1900-02-29", "2024-13-01", "2024-04-31",
                                      "2024-01-00", "2024-01-01T24:00", "2024-01-01T10:60",
                                      "0000-01-01"])
    def test_impossible_dates_are_rejected_like_python(self, text):
        with pytest.raises(ValueError):
            _python_seconds(text)
        _, ok = tf_csv.iso_seconds(tf.constant([text]))
        assert not ok.numpy()[0]
