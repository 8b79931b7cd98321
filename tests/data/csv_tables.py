"""The reference of the reader tests: a log's table as the csv reader's path converts it
(`read_chunks` without ``numbers``: no numpy parse), and exact table equality."""

import numpy as np

from tfrecall.io import chunks, readers


def csv_reader_table(path, chunk_rows):
    """The table as the csv reader's path converts it (no numpy parse)."""
    mapping = readers.normalized_event_labels(None)
    caches = {"id": {}, "event": {}, "request_id": {}}
    buffer = chunks.ColumnBuffer()
    for chunk in chunks.read_chunks(path, chunk_rows=chunk_rows):
        assert chunk.exact
        buffer.append(readers.convert_interactions(chunk, mapping, caches))
    return buffer.arrays()


def assert_same_table(got, want):
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
