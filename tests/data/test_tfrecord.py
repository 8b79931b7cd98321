"""Tests of writing training samples to TFRecord and reading them back."""

import json
import os

import numpy as np
import pytest

from tfrecall._backend import tf
from tfrecall.io import tfrecord
from tfrecall.io.schema import RecallData
from tfrecall.sampling.config import SamplingConfig
from tfrecall.sampling.dataset import TrainingSamples
from tfrecall.sampling.features import FeatureStore

NAN = float("nan")


def _obj(values):
    return np.asarray(values, dtype=object)


def _data():
    inter = {"user_id": _obj(["u1", "u1", "u2", "u3", "u3"]),
             "item_id": _obj(["a", "b", "c", "a", "d"]),
             "label": np.ones(5, np.float32), "positive": np.asarray([1, 1, 1, 1, 0], bool)}
    users = {"user_id": _obj(["u1", "u2", "u3"]), "age": np.asarray([20, NAN, 40], np.float32)}
    items = {"item_id": _obj(list("abcde")), "genre": _obj(["x", "", "y", "x|y", "z"]),
             "price": np.asarray([1, 2, NAN, 4, 5], np.float32)}
    return RecallData(inter, users, items)


def _dataset(**config):
    data = _data()
    samples = TrainingSamples(data, data.item_catalogue(), FeatureStore(data.users, "user_id"),
                              FeatureStore(data.items, "item_id"), SamplingConfig(**config), 3)
    return samples.dataset


def _as_numpy(batches):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in batches]


def _assert_same(a, b):
    flat_a, flat_b = tf.nest.flatten(a), tf.nest.flatten(b)
    tf.nest.assert_same_structure(a, b)
    for x, y in zip(flat_a, flat_b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        if x.dtype == object:
            assert x.tolist() == y.tolist()
        else:
            np.testing.assert_array_equal(x, y)  # NaN == NaN here


@pytest.mark.parametrize("compression", ["GZIP", None])
def test_round_trip_keeps_structure_dtypes_values_and_nan(tmp_path, compression):
    config = dict(negatives=("in_batch", "uniform"), num_negatives=2)
    ds = _dataset(**config)
    out = str(tmp_path / "samples")
    tfrecord.write_samples(ds, out, epochs=1, compression=compression)
    back = tfrecord.read_samples(out, epoch=0)
    # The reader can rebuild the original element spec (static dims kept).
    assert back.element_spec == ds.element_spec
    # The written epoch is the first epoch of any dataset of the same config and seed.
    written = _as_numpy(_dataset(**config))
    _assert_same(_as_numpy(back), written)
    assert any(np.isnan(b[0]["user"]["age"]).any() for b in written)  # u2's NaN survived


def test_each_written_epoch_has_its_own_negatives_and_all_reads_them_in_order(tmp_path):
    ds = _dataset(view="listwise", list_size=3, seed=4)
    epochs = [_as_numpy(ds) for _ in range(3)]  # what write_samples will see, in order
    out = str(tmp_path / "s")
    tfrecord.write_samples(_dataset(view="listwise", list_size=3, seed=4), out, epochs=3)
    spec = tfrecord.read_spec(out)
    assert spec["files"] == [f"epoch-0000{i}.tfrecord.gz" for i in range(3)]
    assert spec["batches_per_file"] == [2, 2, 2]  # 4 positives, batch 3
    everything = _as_numpy(tfrecord.read_samples(out, epoch="all"))
    _assert_same(everything, epochs[0] + epochs[1] + epochs[2])
    _assert_same(_as_numpy(tfrecord.read_samples(out, epoch=2)), epochs[2])
    # epoch=None: each iteration is one of the written epochs.
    chosen = _as_numpy(tfrecord.read_samples(out))
    assert any(chosen[0][1].tolist() == e[0][1].tolist() and
               chosen[0][0]["items"]["item_id"].tolist() == e[0][0]["items"]["item_id"].tolist()
               for e in epochs)


def test_writes_are_atomic_and_never_clobber_silently(tmp_path):
    out = str(tmp_path / "s")
    tfrecord.write_samples(_dataset(), out, epochs=2)
    assert sorted(os.listdir(out)) == ["epoch-00000.tfrecord.gz", "epoch-00001.tfrecord.gz",
                                       "spec.json"]  # no temporary file left behind
    with pytest.raises(ValueError, match="already holds samples"):
        tfrecord.write_samples(_dataset(), out)
    tfrecord.write_samples(_dataset(), out, overwrite=True, compression=None)
    assert sorted(os.listdir(out)) == ["epoch-00000.tfrecord", "spec.json"]
    with open(os.path.join(out, "spec.json")) as f:
        assert json.load(f)["files"] == ["epoch-00000.tfrecord"]


def test_failed_write_leaves_no_partial_file(tmp_path):
    def bad(i):
        tf.debugging.assert_less(i, tf.constant(2, tf.int64))
        return {"v": tf.cast(i, tf.float32)}

    ds = tf.data.Dataset.range(5).map(bad)
    out = str(tmp_path / "s")
    with pytest.raises(tf.errors.InvalidArgumentError):
        tfrecord.write_samples(ds, out)
    assert os.listdir(out) == []


def test_read_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="spec.json not found"):
        tfrecord.read_samples(str(tmp_path))
    out = str(tmp_path / "s")
    tfrecord.write_samples(_dataset(), out)
    with pytest.raises(ValueError, match=r"epoch must be .* \[0, 1\)"):
        tfrecord.read_samples(out, epoch=1)
    with pytest.raises(ValueError, match="epochs"):
        tfrecord.write_samples(_dataset(), out, epochs=0, overwrite=True)
    with pytest.raises(ValueError, match="compression"):
        tfrecord.write_samples(_dataset(), out, compression="LZ4", overwrite=True)


def test_epoch_none_cycles_through_the_written_epochs(tmp_path):
    ds = _dataset(view="listwise", list_size=3, seed=7)
    epochs = [_as_numpy(ds) for _ in range(3)]
    out = str(tmp_path / "s")
    tfrecord.write_samples(_dataset(view="listwise", list_size=3, seed=7), out, epochs=3)
    back = tfrecord.read_samples(out)
    # Iteration k of one returned dataset reads epoch k % 3: 0, 1, 2, 0.
    for k in range(4):
        _assert_same(_as_numpy(back), epochs[k % 3])


def test_other_dtypes_static_dims_and_zlib_round_trip(tmp_path):
    ids = tf.constant([[3, 1], [4, 1], [5, 9], [2, 6]], tf.int64)
    flags = tf.constant([True, False, True, True])
    ds = tf.data.Dataset.from_tensor_slices((ids, flags)).batch(2, drop_remainder=True).map(
        lambda i, f: {"ids": i, "flag": f, "n": tf.size(i)})
    out = str(tmp_path / "s")
    spec = tfrecord.write_samples(ds, out, compression="zlib")
    assert spec["files"] == ["epoch-00000.tfrecord.zlib"] and spec["compression"] == "ZLIB"
    back = tfrecord.read_samples(out, epoch="all")
    assert back.element_spec == {"ids": tf.TensorSpec((2, 2), tf.int64),
                                 "flag": tf.TensorSpec((2,), tf.bool),
                                 "n": tf.TensorSpec((), tf.int32)}
    got = _as_numpy(back)
    # Two batches of two rows each; n = 2 rows x 2 ids = 4.
    _assert_same(got, [{"ids": np.asarray([[3, 1], [4, 1]], np.int64),
                        "flag": np.asarray([True, False]), "n": np.int32(4)},
                       {"ids": np.asarray([[5, 9], [2, 6]], np.int64),
                        "flag": np.asarray([True, True]), "n": np.int32(4)}])


def test_failed_overwrite_keeps_the_old_samples(tmp_path):
    out = str(tmp_path / "s")
    good = tf.data.Dataset.from_tensor_slices({"v": tf.constant([1.0, 2.0, 3.0])}).batch(2)
    tfrecord.write_samples(good, out)

    def bad(i):
        tf.debugging.assert_less(i, tf.constant(1, tf.int64))
        return {"v": tf.cast(i, tf.float32)[None]}

    with pytest.raises(tf.errors.InvalidArgumentError):
        tfrecord.write_samples(tf.data.Dataset.range(3).map(bad), out, overwrite=True)
    assert sorted(os.listdir(out)) == ["epoch-00000.tfrecord.gz", "spec.json"]
    assert [b["v"].tolist() for b in _as_numpy(tfrecord.read_samples(out, epoch=0))] == \
        [[1.0, 2.0], [3.0]]


def test_write_rejects_what_it_cannot_store(tmp_path):
    finite = tf.data.Dataset.from_tensor_slices({"v": tf.constant([1.0])})
    with pytest.raises(ValueError, match="infinite"):
        tfrecord.write_samples(finite.repeat(), str(tmp_path / "a"))
    ragged = tf.data.Dataset.from_tensors({"r": tf.ragged.constant([[1], [2, 3]])})
    with pytest.raises(ValueError, match="r: only dicts, tuples and dense tensors"):
        tfrecord.write_samples(ragged, str(tmp_path / "b"))
    with pytest.raises(ValueError, match="no batch"):
        tfrecord.write_samples(finite.filter(lambda x: False), str(tmp_path / "c"))
    assert os.listdir(tmp_path / "c") == []
    with pytest.raises(ValueError, match=r"epoch must be .* \[0, 1\)"):
        tfrecord.write_samples(finite, str(tmp_path / "d"))
        tfrecord.read_samples(str(tmp_path / "d"), epoch="last")
