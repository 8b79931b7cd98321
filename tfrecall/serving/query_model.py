"""Export any query model (a TFRS tower, a Keras model, a callable) through tfrecall's indexes.

`export_query_model` is `export_saved_model` for models tfrecall did not build: a
query model maps raw query features to `(B, D)` embeddings (a TFRS tutorial's
`user_model`, a `tfrs.Model`'s query tower, any Keras model), and the catalogue is
given as candidate ids plus either their `(n, D)` embeddings or a candidate model
with its features. The SavedModel is the one tfrecall writes for its own models:
the same index kinds (ScaNN, partitioned stock-TF, brute force) tuned to a target
recall, the same signatures (`serving_default`, `serving_exclude`,
`user_embedding`, and `item_embedding` when a candidate model is given) with the
same outputs, the same atomic versions and metadata (`tfrecall.serving.export`
holds all of it; this module only adapts the query model).

Signature inputs are the query model's own inputs: its Keras `save_spec()` (what it
was last built or called with; a functional model's `Input` names, a dict model's
keys), or `input_signature=` where the model has none or its input names are
Keras' defaults (a `Sequential` called on a tensor calls its input
`"<first layer>_input"`): `tf.TensorSpec([None], tf.string, name="user_id")`.

Why not TFRS' own `tfrs.layers.factorized_top_k` layers: `BruteForce` scans the whole
catalogue per query and `ScaNN` needs the ScaNN ops in the server (TFRS #182, #216,
#597: stock TF Serving cannot load it); neither has an id-based exclusion that
survives export (`query_with_exclusions` is not a signature and pads by over-
fetching a fixed count), tuning to a recall target or versioned atomic exports.
`benchmarks/tfrs_serving.py` measures `BruteForce` against these exports.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Optional, Union

import numpy as np

from tfrecall._backend import keras, tf
from tfrecall.serving.export import ExportPath, SearchModule, export_index

Features = Union[np.ndarray, Mapping[str, np.ndarray], tf.data.Dataset]
Structure = Union[tf.TensorSpec, Mapping[str, tf.TensorSpec], list, tuple]
_TUNING_QUERIES = 1000


def query_signature(model, input_signature: Optional[Structure] = None,
                    arg: str = "query_model") -> Structure:
    """The input structure a model takes, as `tf.TensorSpec`s with a `None` batch dim.

    Args:
      model: a Keras model (read through `save_spec()`), a `tf.function` with an
        `input_signature` (or a `tf.Module` whose `__call__` is one), or any callable
        when `input_signature` is given.
      input_signature: overrides the model's own: a named `tf.TensorSpec` (one tensor
        input), a dict of specs (a dict input, keys are the names) or a list of named
        specs (several inputs).
      arg: the argument name used in error messages.

    Returns:
      The structure, every spec named (a dict's keys become the names).

    Raises:
      ValueError: no signature can be found, inputs without names or with duplicate
        names, a spec without a batch dimension.
    """
    structure = input_signature
    # A tf.function's own signature, or that of a tf.Module's traced `__call__`.
    traced = getattr(model, "input_signature", None) or getattr(
        type(model).__dict__.get("__call__"), "input_signature", None)
    if structure is None:
        save_spec = getattr(model, "save_spec", None)
        if callable(save_spec) and save_spec() is not None:
            args, kwargs = save_spec()
            if len(args) != 1 or kwargs:
                raise ValueError(f"{arg} takes {len(args)} positional and {len(kwargs)} "
                                 "keyword inputs; give input_signature= (one structure)")
            structure = args[0]
        elif traced is not None:
            structure = traced[0] if len(traced) == 1 else list(traced)
        else:
            raise ValueError(
                f"{arg} has no input signature (a Keras model gets one when it is first "
                "called or built on inputs); pass input_signature=, e.g. "
                'tf.TensorSpec([None], tf.string, name="user_id")')
    names = []

    def named(spec, name):
        if not isinstance(spec, tf.TensorSpec):
            raise ValueError(f"{arg}: input signature entries must be tf.TensorSpec, got {spec!r}")
        if spec.shape.rank is None or spec.shape.rank < 1:
            raise ValueError(f"{arg}: input {name!r} must have a batch dimension (rank >= 1), "
                             f"got shape {spec.shape}")
        if not name:
            raise ValueError(f"{arg}: every input needs a name (the signature input names); "
                             f"give tf.TensorSpec(..., name=...) for {spec!r}")
        names.append(name)
        return tf.TensorSpec([None] + spec.shape.as_list()[1:], spec.dtype, name=name)

    if isinstance(structure, Mapping):
        structure = {key: named(spec, key) for key, spec in structure.items()}
    elif isinstance(structure, (list, tuple)):
        structure = type(structure)(named(spec, spec.name) for spec in structure)
    else:
        structure = named(structure, getattr(structure, "name", None))
    if len(set(names)) != len(names):
        raise ValueError(f"{arg}: input names must be unique, got {names}")
    return structure


def flat_signature(structure: Structure) -> dict:
    """`{name: spec}` of a structure from `query_signature` (the signature's inputs)."""
    return {spec.name: spec for spec in tf.nest.flatten(structure)}


def pack(structure: Structure, features: Mapping[str, tf.Tensor]):
    """The model's input structure from `{name: tensor}` (the inverse of `flat_signature`)."""
    return tf.nest.map_structure(lambda spec: features[spec.name], structure)


def call_model(model, inputs) -> tf.Tensor:
    """Calls a Keras model in inference mode (dropout off), any other callable plainly."""
    if isinstance(model, keras.layers.Layer):
        return model(inputs, training=False)
    return model(inputs)


def _check_embeddings(out, arg: str, dim: Optional[int] = None):
    """`out` if it is a `(B, D)` float tensor (D = dim when given), else a ValueError."""
    dtype = tf.as_dtype(out.dtype) if isinstance(out, (tf.Tensor, np.ndarray)) else None
    if dtype is None or not dtype.is_floating:
        raise ValueError(f"{arg} must return one (B, D) float tensor of embeddings, got "
                         f"{type(out).__name__} {dtype.name if dtype else ''}".rstrip())
    shape = tf.TensorShape(out.shape)
    if shape.rank != 2 or shape[1] is None:
        raise ValueError(f"{arg} must return (B, D) embeddings, got shape {shape}")
    if dim is not None and shape[1] != dim:
        raise ValueError(f"{arg} returns (B, {shape[1]}) embeddings but the query model "
                         f"returns (B, {dim})")
    return out


class QueryModelModule(SearchModule):
    """The exported object of `export_query_model`: a query model in front of the index.

    Args:
      query_model: raw query features -> `(B, D)` embeddings.
      structure: its input structure (`query_signature`).
      item_ids: `(n,)` catalogue ids, row i of the index.
      index: an `Index` over the catalogue.
      k: items returned per query.
      candidate_model: optional raw candidate features -> `(B, D)`; adds the
        `item_embedding` signature.
      candidate_structure: its input structure (with `candidate_model`).
    """

    def __init__(self, query_model, structure: Structure, item_ids: np.ndarray, index, k: int,
                 candidate_model=None, candidate_structure: Optional[Structure] = None):
        super().__init__(flat_signature(structure), item_ids, index, k)
        self.query_model = query_model
        # A bound method (e.g. a tfrs.Model's `query_embeddings`) saves its variables
        # through the object that owns them.
        self.query_owner = getattr(query_model, "__self__", None)
        self._structure = structure
        if candidate_model is not None:
            self.candidate_model = candidate_model
            self.input_specs["item_embedding"] = flat_signature(candidate_structure)

            @tf.function(input_signature=[flat_signature(candidate_structure)])
            def item_embedding(features):
                return {"embedding": call_model(candidate_model,
                                                pack(candidate_structure, features))}

            self.item_embedding = item_embedding

    def embed_query(self, features):
        return call_model(self.query_model, pack(self._structure, features))


def embed_features(model, structure: Structure, features: Features, arg: str,
                   batch_size: int = 4096, limit: Optional[int] = None,
                   dim: Optional[int] = None) -> np.ndarray:
    """`(N, D)` float32 embeddings of features by a model, batch by batch.

    Args:
      model: features -> `(B, D)`.
      structure: the model's input structure (`query_signature`).
      features: a `tf.data.Dataset` of batches as the model takes them (an unbatched
        dataset of scalars is batched here), or arrays: one array for a single-tensor
        input, `{name: array}` for a dict or several named inputs; rows are examples.
      arg: the argument name for error messages.
      batch_size: rows per call for arrays and unbatched datasets.
      limit: stop after this many rows (a Dataset's first rows).
      dim: the expected D (ValueError otherwise).
    """
    fn = tf.function(lambda x: call_model(model, x), reduce_retracing=True)
    out, seen = [], 0
    for batch in _batches(structure, features, arg, batch_size):
        emb = _check_embeddings(fn(batch), arg, dim).numpy()
        out.append(emb)
        seen += len(emb)
        if limit is not None and seen >= limit:
            break
    if not out:
        raise ValueError(f"{arg} holds no rows")
    return np.concatenate(out).astype(np.float32)[:limit]


def _batches(structure, features, arg, batch_size):
    if isinstance(features, tf.data.Dataset):
        spec = tf.nest.flatten(features.element_spec)
        if all(s.shape.rank == 0 for s in spec):
            features = features.batch(batch_size)
        yield from features
        return
    if isinstance(features, Mapping):
        flat = {name: np.asarray(v) for name, v in features.items()}
    else:
        specs = tf.nest.flatten(structure)
        if len(specs) != 1:
            raise ValueError(f"{arg}: the model takes {len(specs)} inputs; give "
                             f"{{name: array}} for {[s.name for s in specs]}")
        flat = {specs[0].name: np.asarray(features)}
    missing = set(flat_signature(structure)) - set(flat)
    if missing:
        raise ValueError(f"{arg} lacks the model's inputs {sorted(missing)}")
    n = len(next(iter(flat.values())))
    if any(len(v) != n for v in flat.values()):
        raise ValueError(f"{arg}: columns differ in length: "
                         f"{ {k: len(v) for k, v in flat.items()} }")
    for start in range(0, n, batch_size):
        yield pack(structure, {
            spec.name: tf.constant(flat[spec.name][start:start + batch_size], spec.dtype)
            for spec in tf.nest.flatten(structure)
        })


def _as_ids(ids, arg: str) -> np.ndarray:
    """`(n,)` str ids from an array, a tensor or a dataset of ids (bytes decoded as UTF-8)."""
    if isinstance(ids, tf.data.Dataset):
        ids = np.concatenate([np.reshape(np.asarray(b, dtype=object), [-1])
                              for b in ids.as_numpy_iterator()] or [np.zeros(0, object)])
    ids = np.asarray(ids.numpy() if isinstance(ids, tf.Tensor) else ids, dtype=object)
    if ids.ndim != 1:
        raise ValueError(f"{arg} must be (n,) ids, got shape {ids.shape}")
    return np.array([i.decode() if isinstance(i, bytes) else str(i) for i in ids], dtype=object)


def export_query_model(
    query_model: Callable,
    export_dir: str,
    candidate_ids,
    candidate_embeddings: Optional[np.ndarray] = None,
    *,
    candidate_model: Optional[Callable] = None,
    candidates: Optional[Features] = None,
    input_signature: Optional[Structure] = None,
    candidate_signature: Optional[Structure] = None,
    k: int = 100,
    index: str = "scann",
    version: Optional[int] = None,
    metadata: Optional[dict] = None,
    tuning_queries: Optional[Features] = None,
    target_recall: float = 0.95,
    exact_below: int = 10_000,
    keep_versions: Optional[int] = 5,
    seed: int = 0,
    log: Optional[Callable[[str], None]] = None,
) -> ExportPath:
    """Exports a query model and an index over candidates as a versioned SavedModel.

    Args:
      query_model: raw query features -> `(B, D)` float embeddings: a Keras model (a
        TFRS `user_model`, a `tfrs.Model`'s query tower), a `tf.Module`, or a callable
        whose variables belong to a tracked object (a bound method of a Keras model).
      export_dir: the TF Serving model base path; each export writes the next version.
      candidate_ids: `(n,)` ids of the candidates (strings or integers; served as
        strings), or a `tf.data.Dataset` of them (batched or not).
      candidate_embeddings: `(n, D)` float32 candidate embeddings, row i = id i. Give
        these, or `candidate_model` and `candidates`.
      candidate_model: raw candidate features -> `(B, D)` (a TFRS `movie_model`); also
        exported as the `item_embedding` signature.
      candidates: the candidates' features in `candidate_ids` order, as
        `candidate_model` takes them: a `tf.data.Dataset` (of batches, or of scalars),
        an array, or `{name: array}`.
      input_signature: the query model's inputs (see `query_signature`); default: its
        own (`save_spec()`). Names become the signature's input names.
      candidate_signature: the same for `candidate_model`.
      k: items returned per query (capped at the catalogue size).
      index: "scann", "partitioned" or "brute_force".
      version: the version number (default: next free).
      metadata: extra JSON-serializable facts for `assets.extra/tfrecall_export.json`.
      tuning_queries: query features (as `candidates`, for the query model) whose
        embeddings tune the approximate indexes; up to 1000 rows are used (a Dataset's
        first rows, else a seeded sample). None: candidate embeddings stand in.
      target_recall: recall@10 against exact search the index is tuned to.
      exact_below: catalogues smaller than this are searched exactly.
      keep_versions: newest versions kept (None: all); the new one is never deleted.
      seed: seed of clustering and sampling.
      log: called with a one-line summary.

    Returns:
      The new version directory (`ExportPath`, a str) with `.info`, the metadata dict.

    Raises:
      ValueError: neither or both of `candidate_embeddings` and `candidate_model`;
        `candidate_model` without `candidates`; a model whose output is not `(B, D)`;
        query and candidate widths that differ; as many ids as embeddings not given;
        no input signature; bad `index`, `k`, or ids (empty, duplicate, "").

    Example:
      >>> path = export_query_model(
      ...     model.user_model, "exports/movielens", candidate_ids=titles,
      ...     candidate_model=model.movie_model, candidates=titles,
      ...     input_signature=tf.TensorSpec([None], tf.string, name="user_id"),
      ...     index="partitioned", k=10)
      >>> tf.saved_model.load(path).signatures["serving_default"](user_id=["42"])
    """
    start = time.time()
    if (candidate_embeddings is None) == (candidate_model is None):
        raise ValueError("give candidate_embeddings or candidate_model (with candidates), "
                         "exactly one of them")
    if candidate_model is not None and candidates is None:
        raise ValueError("candidate_model needs candidates= (the candidates' features)")
    ids = _as_ids(candidate_ids, "candidate_ids")
    structure = query_signature(query_model, input_signature, "query_model")
    out = tf.function(lambda x: call_model(query_model, pack(structure, x))).get_concrete_function(
        flat_signature(structure)).structured_outputs
    dim = int(_check_embeddings(out, "query_model").shape[1])
    cand_structure = None
    if candidate_model is not None:
        cand_structure = _candidate_structure(candidate_model, candidate_signature, candidates)
        candidate_embeddings = embed_features(candidate_model, cand_structure, candidates,
                                              "candidate_model", dim=dim)
    embeddings = np.asarray(candidate_embeddings, np.float32)
    if embeddings.ndim != 2 or embeddings.shape[1] != dim:
        raise ValueError(f"candidate_embeddings must be (n, {dim}) like the query model's "
                         f"output, got shape {embeddings.shape}")
    if len(embeddings) != len(ids):
        source = "candidates gave" if candidate_model is not None else "candidate_embeddings has"
        raise ValueError(f"candidate_ids has {len(ids)} ids but {source} {len(embeddings)} "
                         "embeddings; they must match row for row")
    queries = None
    if tuning_queries is not None:
        if not isinstance(tuning_queries, tf.data.Dataset):
            tuning_queries = _sample_rows(tuning_queries, _TUNING_QUERIES, seed)
        queries = embed_features(query_model, structure, tuning_queries, "tuning_queries",
                                 limit=_TUNING_QUERIES, dim=dim)
    info = {
        "user_features": sorted(flat_signature(structure)),
        "item_features": sorted(flat_signature(cand_structure)) if cand_structure else [],
        "query_model": type(query_model).__name__,
    }
    return export_index(
        lambda idx, kk: QueryModelModule(query_model, structure, ids, idx, kk,
                                         candidate_model, cand_structure),
        ids, embeddings, export_dir, k=k, index=index, version=version, metadata=metadata,
        tuning_queries=queries, target_recall=target_recall, exact_below=exact_below,
        keep_versions=keep_versions, seed=seed, log=log, info=info, start=start,
    )


def _candidate_structure(model, signature: Optional[Structure], candidates: Features):
    """The candidate model's inputs: given, its own, else the candidate dataset's."""
    own = getattr(model, "save_spec", lambda: None)()
    if signature is None and own is None and isinstance(candidates, tf.data.Dataset):
        signature = candidates.element_spec  # names: a dict's keys
        if all(s.shape.rank == 0 for s in tf.nest.flatten(signature)):  # batched here
            signature = tf.nest.map_structure(
                lambda s: tf.TensorSpec([None], s.dtype, s.name), signature)
    return query_signature(model, signature, "candidate_model")


def _sample_rows(features, num: int, seed: int):
    """Up to `num` seeded rows of an array, or of every column of `{name: array}`."""
    columns = dict(features) if isinstance(features, Mapping) else {None: features}
    n = len(next(iter(columns.values())))
    rows = np.sort(np.random.default_rng(seed).permutation(n)[:num])
    picked = {name: np.asarray(v)[rows] for name, v in columns.items()}
    return picked if isinstance(features, Mapping) else picked[None]


__all__ = [
    "QueryModelModule",
    "embed_features",
    "export_query_model",
    "query_signature",
]
