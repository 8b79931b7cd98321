"""Training samples as TFRecord files: prepare them on one machine, train on another.

Sampling negatives (hard-negative pools, ranker lists, feature lookups) can need more
memory or time than the training machine has. `write_samples` runs a
`TrainingSamples.dataset` for ``epochs`` iterations (each one epoch with fresh
negatives) and stores every batch; `read_samples` returns a dataset with the same
``element_spec`` that reads them back, e.g. from ``gs://`` (all file operations go
through ``tf.io.gfile``).

Format of a samples directory:

- ``epoch-00000.tfrecord.gz``, ...: one file per epoch (``.tfrecord`` without
  compression, ``.tfrecord.zlib`` with ZLIB). One record per BATCH, not per row,
  because mixed batches carry negatives shared by all their rows. A record is a
  ``tf.train.Example`` with one bytes feature per tensor, named by its nest path
  (``0/user/age``, ``1`` for ``(x, y)`` elements), holding ``tf.io.serialize_tensor``
  of it, which keeps dtype, shape, strings and NaN exactly.
- ``spec.json``: ``files``, ``batches_per_file``, ``compression`` and ``element_spec``
  (a JSON tree of ``{"dict": ...}``, ``{"tuple": [...]}`` and
  ``{"tensor": {"dtype", "shape"}}`` with ``null`` for unknown dims), so the reader
  rebuilds the original static shapes.

Atomicity: every file is first written under a hidden temporary name in the same
directory and renamed into place only after all epochs are complete; ``spec.json`` is
renamed last and lists only complete files. A failed write removes its temporary
files; an overwrite deletes the old ``spec.json`` before touching the old data files,
so a crash leaves a directory the reader refuses (no spec), never a mix of two runs.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import List, Optional, Union

from tfrecall._backend import tf

SPEC_FILE = "spec.json"
FORMAT_VERSION = 1
_EXTENSIONS = {None: ".tfrecord", "GZIP": ".tfrecord.gz", "ZLIB": ".tfrecord.zlib"}
_DATA_FILE = re.compile(r"^epoch-\d{5}\.tfrecord(\.gz|\.zlib)?$")


def _join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name


def _compression(value: Optional[str]) -> Optional[str]:
    key = str(value).upper() if value else None
    if key not in _EXTENSIONS:
        raise ValueError(f"compression must be 'GZIP', 'ZLIB' or None, got {value!r}")
    return key


def _encode_spec(spec, path: str = ""):
    """Element spec -> JSON tree; raises ValueError on what the format cannot hold."""
    where = path or "the element"
    if isinstance(spec, dict):
        if not all(isinstance(k, str) for k in spec):
            raise ValueError(f"dict keys of {where} must be strings, got {list(spec)!r}")
        return {"dict": {k: _encode_spec(v, f"{path}/{k}".lstrip("/")) for k, v in spec.items()}}
    if isinstance(spec, tuple) and not hasattr(spec, "_fields"):
        return {"tuple": [_encode_spec(v, f"{path}/{i}".lstrip("/")) for i, v in enumerate(spec)]}
    if type(spec) is not tf.TensorSpec:
        raise ValueError(f"{where}: only dicts, tuples and dense tensors can be written, "
                         f"got {spec!r}")
    dims = spec.shape.as_list() if spec.shape.rank is not None else None
    return {"tensor": {"path": path, "dtype": spec.dtype.name, "shape": dims}}


def _decode_spec(tree):
    if "dict" in tree:
        return {k: _decode_spec(v) for k, v in tree["dict"].items()}
    if "tuple" in tree:
        return tuple(_decode_spec(v) for v in tree["tuple"])
    leaf = tree["tensor"]
    return tf.TensorSpec(leaf["shape"], tf.as_dtype(leaf["dtype"]))


def _leaf_names(tree) -> List[str]:
    """Feature names of the leaves, in `tf.nest.flatten` order (dicts by sorted key)."""
    if "dict" in tree:
        return [n for k in sorted(tree["dict"]) for n in _leaf_names(tree["dict"][k])]
    if "tuple" in tree:
        return [n for v in tree["tuple"] for n in _leaf_names(v)]
    return [tree["tensor"]["path"]]


def _holds_samples(directory: str) -> List[str]:
    names = tf.io.gfile.listdir(directory) if tf.io.gfile.isdir(directory) else []
    return [n.rstrip("/") for n in names if n == SPEC_FILE or _DATA_FILE.match(n.rstrip("/"))]


def _to_example(values: List[bytes], names: List[str]) -> bytes:
    feature = {n: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
               for n, v in zip(names, values, strict=True)}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_samples(dataset: tf.data.Dataset, directory: str, epochs: int = 1,
                  compression: Optional[str] = "GZIP", overwrite: bool = False) -> dict:
    """Writes ``epochs`` iterations of ``dataset`` to ``directory`` (see the module doc).

    Args:
      dataset: a finite dataset of nested dicts/tuples of dense tensors, one epoch per
        iteration (e.g. `TrainingSamples.dataset`: ``(x, y)`` batches).
      directory: local path or URL (``gs://...``); created if missing.
      epochs: iterations to write, one file each (>= 1).
      compression: "GZIP", "ZLIB" or None/"" (case-insensitive).
      overwrite: replace samples already in ``directory``; otherwise that raises.

    Returns:
      The written spec (what `read_spec` returns).

    Raises:
      ValueError: bad ``epochs``/``compression``, an infinite or empty epoch, an
        element the format cannot hold, or ``directory`` already holds samples.
      tf.errors.OpError: whatever the dataset raises; no file of this write remains.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    compression = _compression(compression)
    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ValueError("dataset is infinite (e.g. .repeat()); write_samples needs one "
                         "epoch per iteration")
    tree = _encode_spec(dataset.element_spec)
    names = _leaf_names(tree)
    if len(set(names)) != len(names):
        raise ValueError(f"two tensors share a path name (a key containing '/'?): {names}")
    old = _holds_samples(directory)
    if old and not overwrite:
        raise ValueError(f"{directory!r} already holds samples ({sorted(old)}); pass "
                         "overwrite=True to replace them")
    tf.io.gfile.makedirs(directory)

    def serialize(*element):  # in graph and in parallel; Python only builds the Examples
        return tf.stack([tf.io.serialize_tensor(t) for t in tf.nest.flatten(element)])

    serialized = dataset.map(serialize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.io.TFRecordOptions(compression_type=compression or "")
    tag = uuid.uuid4().hex[:12]
    files = [f"epoch-{e:05d}{_EXTENSIONS[compression]}" for e in range(epochs)]
    temps, counts = [], []
    try:
        for epoch, name in enumerate(files):
            temps.append(_join(directory, f".{name}.tmp-{tag}"))
            count = 0
            with tf.io.TFRecordWriter(temps[-1], options) as writer:
                for values in serialized:  # each iteration: a fresh epoch of `dataset`
                    writer.write(_to_example(list(values.numpy()), names))
                    count += 1
            if count == 0:
                raise ValueError(f"epoch {epoch} of dataset yielded no batch")
            counts.append(count)
        spec = {"format_version": FORMAT_VERSION, "files": files, "batches_per_file": counts,
                "compression": compression, "element_spec": tree}
        temps.append(_join(directory, f".{SPEC_FILE}.tmp-{tag}"))
        with tf.io.gfile.GFile(temps[-1], "w") as f:
            json.dump(spec, f, indent=1, sort_keys=True)
        # The old spec goes first: from here until the new spec lands, readers see none.
        for name in sorted(old, key=lambda n: n != SPEC_FILE):
            tf.io.gfile.remove(_join(directory, name))
        for temp, name in zip(temps, files + [SPEC_FILE], strict=True):
            tf.io.gfile.rename(temp, _join(directory, name), overwrite=True)
    finally:
        for temp in temps:
            if tf.io.gfile.exists(temp):
                tf.io.gfile.remove(temp)
    return spec


def read_spec(directory: str) -> dict:
    """The ``spec.json`` of a samples directory, as a dict (see the module docstring).

    Raises:
      ValueError: ``spec.json`` is missing (nothing or an incomplete write there) or
        has an unknown ``format_version``.
    """
    path = _join(directory, SPEC_FILE)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{path!r}: spec.json not found; write samples with write_samples "
                         "(a directory without it holds no complete samples)")
    with tf.io.gfile.GFile(path, "r") as f:
        spec = json.load(f)
    if spec.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path!r}: format_version must be {FORMAT_VERSION}, "
                         f"got {spec.get('format_version')!r}")
    return spec


def read_samples(directory: str, epoch: Union[int, str, None] = None) -> tf.data.Dataset:
    """The samples written by `write_samples`, with the original ``element_spec``.

    Args:
      directory: where `write_samples` wrote.
      epoch: which written epochs to read.
        - None: each iteration of the dataset reads ONE written epoch, cycling:
          iteration k (counted per returned dataset, from 0) reads epoch k % N, so
          ``model.fit(ds, epochs=N)`` sees every written epoch once, in order.
        - int k in [0, N): every iteration reads epoch k.
        - "all": every iteration reads all epochs in order.

    Returns:
      A dataset of the written batches.

    Raises:
      ValueError: no spec in ``directory``, or a bad ``epoch``.
    """
    spec = read_spec(directory)
    paths = [_join(directory, name) for name in spec["files"]]
    n = len(paths)
    compression = spec["compression"] or ""
    if epoch is None:
        with tf.device("/cpu:0"):  # read by the tf.data runtime, which lives on the CPU
            counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="read_samples_epoch")
        files = tf.constant(paths)
        # A stateful counter, not Dataset.random: cycling never repeats an epoch early.
        records = tf.data.Dataset.from_tensors(0).map(
            lambda _: counter.assign_add(1) - 1).flat_map(
            lambda k: tf.data.TFRecordDataset(files[k % n], compression))
    elif epoch == "all":
        records = tf.data.TFRecordDataset(paths, compression)
    elif not isinstance(epoch, bool) and isinstance(epoch, int) and 0 <= epoch < n:
        records = tf.data.TFRecordDataset(paths[epoch], compression)
    else:
        raise ValueError(f"epoch must be None, 'all' or an integer in [0, {n}), got {epoch!r}")

    tree = spec["element_spec"]
    element_spec = _decode_spec(tree)
    leaves = tf.nest.flatten(element_spec)
    names = _leaf_names(tree)
    features = {name: tf.io.FixedLenFeature([], tf.string) for name in names}

    def parse(record):
        raw = tf.io.parse_single_example(record, features)
        tensors = []
        for name, leaf in zip(names, leaves, strict=True):
            t = tf.io.parse_tensor(raw[name], leaf.dtype)
            # parse_tensor knows no static shape; restore (and check) the written one.
            tensors.append(t if leaf.shape.rank is None else tf.ensure_shape(t, leaf.shape))
        return tf.nest.pack_sequence_as(element_spec, tensors)

    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True).prefetch(tf.data.AUTOTUNE)


__all__ = ["read_samples", "read_spec", "write_samples"]
