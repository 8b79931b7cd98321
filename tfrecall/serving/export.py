"""Export: user tower + an index over the item catalogue as one SavedModel.

The exported directory is TF Serving's layout, `export_dir/<version>/`, holding a
SavedModel with four signatures:

- ``serving_default``: raw user features (each `(B,)`) -> ``item_ids`` `(B, K)` string
  and ``scores`` `(B, K)` float32 (the similarity: a cosine for cosine models), best
  first;
- ``serving_exclude``: the same plus ``exclude_item_ids`` `(B, M)` string, padded with
  "": the listed items (e.g. what the user already has) never appear in the K
  results. TF signatures have no optional inputs, so exclusion is a second signature
  rather than an input every client must feed; unknown ids in the list are ignored;
- ``user_embedding``: raw user features -> ``embedding`` `(B, D)`;
- ``item_embedding``: raw item features -> ``embedding`` `(B, D)`.

Every feature the towers were built with is a signature input. A feature value that
is missing is fed as "" (strings) or NaN (numbers): the feature layers map it to the
OOV bucket or to the learned default, so an unknown user still gets K items. An empty
batch returns `(0, K)` outputs.

Inputs are checked in the graph, each error naming the signature and the input: every
input must have its rank (`(B,)`; `exclude_item_ids` `(B, M)`) and the same batch
size B. (The signatures declare the inputs' dtypes and leave their rank open, so that
a wrong rank reaches these checks instead of a kernel deep in the tower.) A wrong
dtype is refused by TensorFlow before the graph runs, by position ("input #k"):
`assets.extra/tfrecall_export.json` lists each signature's inputs in that order with
their dtypes (``inputs``). Ids (and categories) are stripped of surrounding
whitespace as the CSV readers strip them in training; a number beyond the training
range is clipped in its standardized form as in training (a NaN or inf is missing).

Where fewer than K items qualify (a catalogue smaller than K + the excluded items), the
remaining slots hold item id "" and score `finfo(float32).min / 100`.

The index (`tfrecall.serving.index`) is ScaNN (`index="scann"`; loading needs
`import scann` before `tf.saved_model.load`, and TF Serving its ScaNN-enabled build),
a partitioned index of stock TensorFlow ops (`"partitioned"`; loads anywhere,
sub-linear) or exact search (`"brute_force"`). Approximate indexes are tuned at export
to a target recall@10; the achieved recall, build time and index size are written to
`assets.extra/tfrecall_export.json` and returned as `path.info`. The loaded model
needs TensorFlow (and scann), never tfrecall: the feature layers are traced into the
graph.

A version is written to a hidden temporary directory beside the final one and renamed
into place, so TF Serving, which polls `export_dir`, never sees a partial version;
only the newest `keep_versions` versions are kept (`tfrecall.serving.versions`).
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Mapping, Optional, Union

import numpy as np

from tfrecall._backend import tf
from tfrecall.features.embeddings import strip_ids
from tfrecall.models.embed import embed_items, embed_table, embed_users  # noqa: F401
from tfrecall.serving import versions
from tfrecall.serving.index import INDEX_KINDS, build_index

METADATA_FILE = "tfrecall_export.json"
EXCLUDE_INPUT = "exclude_item_ids"
QUERY_SIGNATURES = ("serving_default", "serving_exclude", "user_embedding")
SIGNATURES = QUERY_SIGNATURES + ("item_embedding",)


class ExportPath(str):
    """The new version directory (a `str`), with the export's facts as `.info` (a dict)."""

    info: dict

    def __new__(cls, path: str, info: dict):
        obj = super().__new__(cls, path)
        obj.info = info
        return obj


class SearchModule(tf.Module):
    """The exported object's search side: catalogue ids, an id -> row table, the index,
    and the query-side signatures (`QUERY_SIGNATURES`) around `embed_query`.

    Subclasses hold the query model and implement `embed_query` (features -> `(B, D)`);
    `RecallModule` (a `TwoTowerModel`) and `tfrecall.serving.query_model` (any Keras
    model or callable) share everything else, so their exports answer alike.

    Args:
      query_signature: `{name: tf.TensorSpec}`, the query features (signature inputs).
      item_ids: `(n,)` catalogue ids; row i of the index is item_ids[i].
      index: an `Index` module over the catalogue's embeddings.
      k: items returned per query.
      name: the module name.

    Raises:
      ValueError: a query feature is named like the exclusion input.
    """

    def __init__(self, query_signature: Mapping[str, tf.TensorSpec], item_ids: np.ndarray,
                 index, k: int, name: str = "tfrecall"):
        super().__init__(name=name)
        self.k = int(k)
        self.index = index
        ids = np.asarray(item_ids, dtype=object).astype(str)
        self.item_ids = tf.Variable(ids, trainable=False)
        self.id_to_row = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(ids), tf.range(len(ids), dtype=tf.int64)
            ),
            default_value=-1,
        )
        query_signature = dict(query_signature)
        if EXCLUDE_INPUT in query_signature:
            raise ValueError(
                f"a query (user) feature is named {EXCLUDE_INPUT!r}, the exclusion input of "
                "serving_exclude; rename the feature"
            )
        exclude_sig = {
            **query_signature,
            EXCLUDE_INPUT: tf.TensorSpec([None, None], tf.string, name=EXCLUDE_INPUT),
        }

        self.input_specs = {"serving_default": query_signature, "serving_exclude": exclude_sig,
                            "user_embedding": query_signature}

        @tf.function(input_signature=[_open_rank(query_signature)])
        def serving_default(features):
            return self._recommend(check_inputs(features, query_signature, "serving_default"),
                                   None)

        @tf.function(input_signature=[_open_rank(exclude_sig)])
        def serving_exclude(features):
            features = dict(check_inputs(features, exclude_sig, "serving_exclude"))
            exclude = strip_ids(features.pop(EXCLUDE_INPUT))
            return self._recommend(features, exclude)

        @tf.function(input_signature=[_open_rank(query_signature)])
        def user_embedding(features):
            features = check_inputs(features, query_signature, "user_embedding")
            return {"embedding": self.embed_query(features)}

        self.serving_default = serving_default
        self.serving_exclude = serving_exclude
        self.user_embedding = user_embedding

    def embed_query(self, features) -> tf.Tensor:
        """`(B, D)` float32 query embeddings of the signature's features."""
        raise NotImplementedError(f"{type(self).__name__} must implement embed_query")

    def signatures(self) -> dict:
        """`{signature name: tf.function}`: what `tf.saved_model.save` exports (those of
        `SIGNATURES` the module has; `item_embedding` needs an item model)."""
        return {name: getattr(self, name) for name in SIGNATURES if hasattr(self, name)}

    def _recommend(self, features, exclude_ids):
        queries = self.embed_query(features)  # (B, D)
        exclude_rows = None
        if exclude_ids is not None:
            exclude_rows = tf.cast(self.id_to_row.lookup(exclude_ids), tf.int32)  # (B, M)
        rows, scores = self.index.search(queries, self.k, exclude_rows)
        ids = tf.gather(self.item_ids, tf.maximum(rows, 0))
        return {"item_ids": tf.where(rows >= 0, ids, ""), "scores": scores}


class RecallModule(SearchModule):
    """The exported object of a `TwoTowerModel`: towers, catalogue ids, id table, index.

    Args:
      model: the trained `TwoTowerModel`.
      item_ids: `(n,)` catalogue ids; row i of the index is item_ids[i].
      index: an `Index` module over the catalogue's embeddings.
      k: items returned per query.
    """

    def __init__(self, model, item_ids: np.ndarray, index, k: int):
        super().__init__(model.user_tower.encoder.input_signature(), item_ids, index, k)
        self.user_tower = model.user_tower
        self.item_tower = model.item_tower

        item_sig = model.item_tower.encoder.input_signature()
        self.input_specs["item_embedding"] = item_sig

        @tf.function(input_signature=[_open_rank(item_sig)])
        def item_embedding(features):
            features = check_inputs(features, item_sig, "item_embedding")
            return {"embedding": self.item_tower(features, training=False)}

        self.item_embedding = item_embedding

    def embed_query(self, features):
        return self.user_tower(features, training=False)


def _open_rank(specs: Mapping[str, tf.TensorSpec]) -> dict:
    """The specs with their dtypes and an open shape (see `check_inputs`)."""
    return {name: tf.TensorSpec(None, spec.dtype, name=name) for name, spec in specs.items()}


def check_inputs(features: Mapping[str, tf.Tensor], specs: Mapping[str, tf.TensorSpec],
                 signature: str) -> dict:
    """The inputs with their static shapes, after in-graph checks naming the input.

    Each input must have the rank of its spec, and every input the batch size of the
    first (inputs in name order). A signature declared with `_open_rank` specs lets a
    wrong rank reach these checks: with the declared shape, TensorFlow folds the rank
    check away at trace time and a rank-2 input fails later in the tower, unnamed.

    Raises (when the graph runs):
      InvalidArgumentError: "<signature>: input <name> ..." for a wrong rank or a
        batch size that differs from the first input's.
    """
    names = sorted(features)
    rank_checks = [
        tf.debugging.assert_equal(
            tf.rank(features[name]), specs[name].shape.rank,
            message=f"{signature}: input {name} must have rank {specs[name].shape.rank} "
                    f"(shape {_shape_text(specs[name].shape)}, one row per query)")
        for name in names
    ]
    with tf.control_dependencies(rank_checks):
        first = names[0]
        batch = tf.shape(features[first])[0]
        size_checks = [
            tf.debugging.assert_equal(
                tf.shape(features[name])[0], batch,
                message=f"{signature}: input {name} has a different batch size than input "
                        f"{first}; feed every input one row per query")
            for name in names[1:]
        ]
    checked = {}
    with tf.control_dependencies(size_checks):
        # A reshape to the input's own dimensions, then the static shape. (Not
        # tf.ensure_shape: grappler reads its shape back into the input and folds the
        # rank checks above away, so the unnamed EnsureShape error would come first.)
        for name in names:
            x = features[name]
            checked[name] = tf.reshape(x, tf.shape(x)[: specs[name].shape.rank])
            checked[name].set_shape(specs[name].shape)
    return checked


def _shape_text(shape: tf.TensorShape) -> str:
    dims = ["B"] + ["M" if d is None else str(d) for d in shape.as_list()[1:]]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _tuning_queries(model, queries, num: int, seed: int) -> Optional[np.ndarray]:
    """`(Q, D)` query embeddings from an array or a user table (up to `num` rows sampled)."""
    if queries is None:
        return None
    if isinstance(queries, Mapping):
        n = len(next(iter(queries.values())))
        rows = np.random.default_rng(seed).permutation(n)[:num]
        return embed_users(model, {k: np.asarray(v)[rows] for k, v in queries.items()})
    return np.asarray(queries, np.float32)


def export_saved_model(
    model,
    items: Mapping[str, np.ndarray],
    export_dir: str,
    k: int = 100,
    index: str = "scann",
    version: Optional[int] = None,
    metadata: Optional[dict] = None,
    *,
    tuning_queries: Union[np.ndarray, Mapping[str, np.ndarray], None] = None,
    target_recall: float = 0.95,
    exact_below: int = 10_000,
    keep_versions: Optional[int] = 5,
    seed: int = 0,
    log: Optional[Callable[[str], None]] = None,
    module_factory: Optional[Callable] = None,
) -> ExportPath:
    """Embeds the catalogue, builds and tunes the index, writes `export_dir/<version>/`.

    Args:
      model: a trained `TwoTowerModel`.
      items: the catalogue as a column table: `item_id` plus the item tower's features
        (features absent from the table are fed as missing). Items unknown to the id
        vocabulary embed through the OOV id and their other features.
      export_dir: the TF Serving model base path.
      k: items returned per query (capped at the catalogue size).
      index: "scann", "partitioned" or "brute_force".
      version: the version number (default: next free).
      metadata: extra JSON-serializable facts written to `assets.extra/tfrecall_export.json`.
      tuning_queries: sample user queries for tuning the approximate indexes: `(Q, D)`
        user embeddings, or a user feature table (up to 1000 rows are embedded).
        None: sampled item embeddings stand in.
      target_recall: recall@10 against exact search the index is tuned to.
      exact_below: catalogues smaller than this are searched exactly.
      keep_versions: newest versions kept in `export_dir` (None: all); the version
        just written is never deleted.
      seed: seed of clustering and sampling.
      log: called with a one-line summary (e.g. `print`).
      module_factory: `(model, item_ids, index, k) -> SearchModule`, the object saved
        (default `RecallModule`; `tfrecall.serving.channels.ChannelModule` for several
        channels).

    Returns:
      The new version directory (`ExportPath`, a str) with `.info`, the dict written
      to `assets.extra/tfrecall_export.json` (index report included).

    Raises:
      ValueError: unknown index, k < 1, an empty catalogue, empty or duplicate item ids.
    """
    _check_args(index, k)
    item_ids = np.asarray(items[model.item_id_feature], dtype=object)
    _check_ids(item_ids)
    start = time.time()
    embeddings = embed_items(model, items)
    return export_embeddings(
        model, item_ids, embeddings, export_dir, k=k, index=index, version=version,
        metadata=metadata, tuning_queries=tuning_queries, target_recall=target_recall,
        exact_below=exact_below, keep_versions=keep_versions, seed=seed, log=log,
        _start=start, module_factory=module_factory,
    )


def export_embeddings(
    model,
    item_ids: np.ndarray,
    item_embeddings: np.ndarray,
    export_dir: str,
    k: int = 100,
    index: str = "scann",
    version: Optional[int] = None,
    metadata: Optional[dict] = None,
    *,
    tuning_queries: Union[np.ndarray, Mapping[str, np.ndarray], None] = None,
    target_recall: float = 0.95,
    exact_below: int = 10_000,
    keep_versions: Optional[int] = 5,
    seed: int = 0,
    log: Optional[Callable[[str], None]] = None,
    _start: Optional[float] = None,
    module_factory: Optional[Callable] = None,
) -> ExportPath:
    """`export_saved_model` over precomputed item embeddings (`(n, D)`, row i = item_ids[i]).

    For catalogues embedded elsewhere (a batch job) and for benchmarks; the user and
    item towers of `model` are still exported as the query side and `item_embedding`.
    """
    start = time.time() if _start is None else _start
    _check_args(index, k)
    item_embeddings = np.asarray(item_embeddings, np.float32)
    if item_embeddings.ndim != 2 or item_embeddings.shape[1] != model.embedding_dim:
        raise ValueError(
            f"item_embeddings must be ({len(item_ids)}, {model.embedding_dim}), "
            f"got {item_embeddings.shape}"
        )
    info = {
        "user_features": sorted(model.user_tower.encoder.input_signature()),
        "item_features": sorted(model.item_tower.encoder.input_signature()),
    }
    factory = module_factory or RecallModule
    return export_index(
        lambda idx, k: factory(model, item_ids, idx, k), item_ids, item_embeddings,
        export_dir, k=k, index=index, version=version, metadata=metadata,
        tuning_queries=_tuning_queries(model, tuning_queries, 1000, seed),
        target_recall=target_recall, exact_below=exact_below, keep_versions=keep_versions,
        seed=seed, log=log, info=info, start=start,
    )


def export_index(
    make_module: Callable[[object, int], SearchModule],
    item_ids: np.ndarray,
    item_embeddings: np.ndarray,
    export_dir: str,
    *,
    k: int,
    index: str,
    version: Optional[int],
    metadata: Optional[dict],
    tuning_queries: Optional[np.ndarray],
    target_recall: float,
    exact_below: int,
    keep_versions: Optional[int],
    seed: int,
    log: Optional[Callable[[str], None]],
    info: dict,
    start: float,
) -> ExportPath:
    """The part every export shares: builds and tunes the index, writes a version atomically.

    Args:
      make_module: `(index, k) -> SearchModule`, the object saved (its `signatures()`
        are the SavedModel's).
      item_ids: `(n,)` catalogue ids, row i = item_embeddings[i].
      item_embeddings: `(n, D)` float32 (the caller checked D against its query side).
      tuning_queries: `(Q, D)` query embeddings or None (item embeddings stand in).
      info: facts of the caller (feature names) merged into the written metadata.
      start: when the export began (`time.time()`), for `export_seconds`.
      Others: as in `export_saved_model`.

    Returns:
      The new version directory as an `ExportPath`.
    """
    _check_args(index, k)
    item_ids = np.asarray(item_ids, dtype=object)
    _check_ids(item_ids)
    item_embeddings = np.asarray(item_embeddings, np.float32)
    if item_embeddings.ndim != 2 or len(item_embeddings) != len(item_ids):
        raise ValueError(f"item_embeddings must be ({len(item_ids)}, D) for {len(item_ids)} "
                         f"item ids, got {item_embeddings.shape}")
    if int(k) > len(item_ids) and log is not None:
        log(f"note: k={k} exceeds the catalogue's {len(item_ids)} items: capped at "
            f"k={len(item_ids)}")
    k = min(int(k), len(item_ids))
    idx, report = build_index(index, item_embeddings, k, queries=tuning_queries,
                              target_recall=target_recall, exact_below=exact_below, seed=seed)
    module = make_module(idx, k)
    signatures = module.signatures()
    info = {
        "index": index,
        "k": k,
        "num_items": int(len(item_ids)),
        "embedding_dim": int(item_embeddings.shape[1]),
        **info,
        "signatures": list(signatures),
        # Name order is the order TensorFlow numbers inputs in ("input #k" of a dtype error).
        "inputs": {name: {n: module.input_specs[name][n].dtype.name
                          for n in sorted(module.input_specs[name])} for name in signatures},
        "needs_import_scann": index == "scann",
        "recall_at_10": round(report.recall_at_10, 5),
        "target_recall": target_recall,
        "index_build_seconds": round(report.build_seconds, 3),
        "index_bytes": report.index_bytes,
        "index_report": report.to_dict(),
    }

    def write(tmp: str) -> None:
        tf.saved_model.save(module, tmp, signatures=signatures)
        info["saved_model_bytes"] = _dir_bytes(tmp)
        info["export_seconds"] = round(time.time() - start, 3)
        info.update(metadata or {})
        os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
        with open(os.path.join(tmp, "assets.extra", METADATA_FILE), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)

    final = versions.write_version(export_dir, write, version)
    info["version"] = int(os.path.basename(final))
    info["pruned_versions"] = versions.prune_versions(export_dir, keep_versions, protect=final)
    if log is not None:
        log(f"exported {final}: index={index} ({report.mode}) items={len(item_ids)} k={k} "
            f"index recall@10 vs exact search={report.recall_at_10:.4f} "
            f"(target {target_recall}; not the model's held-out recall) "
            f"index_build={report.build_seconds:.1f}s (tuning {report.tuning_seconds:.1f}s) "
            f"index_size={report.index_bytes / 2**20:.1f}MiB "
            f"params={report.params}")
    return ExportPath(final, info)


def read_export_info(path: str) -> dict:
    """The `assets.extra/tfrecall_export.json` of an export version directory."""
    with open(os.path.join(path, "assets.extra", METADATA_FILE)) as f:
        return json.load(f)


def _check_args(index: str, k: int) -> None:
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {index!r}")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")


def _check_ids(item_ids: np.ndarray) -> None:
    if len(item_ids) == 0:
        raise ValueError("cannot export an index over an empty item catalogue")
    ids = item_ids.astype(str)
    if len(np.unique(ids)) != len(ids):
        values, counts = np.unique(ids, return_counts=True)
        raise ValueError(f"the item catalogue has duplicate item ids: {values[counts > 1][:5]}")
    if (ids == "").any():
        raise ValueError('the item catalogue has an empty item id ("" means "no item" in outputs '
                         "and padding in exclude_item_ids)")


def _dir_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
    )


__all__ = [
    "EXCLUDE_INPUT",
    "ExportPath",
    "METADATA_FILE",
    "QUERY_SIGNATURES",
    "RecallModule",
    "SIGNATURES",
    "SearchModule",
    "embed_items",
    "embed_users",
    "export_embeddings",
    "export_index",
    "export_saved_model",
    "read_export_info",
]
