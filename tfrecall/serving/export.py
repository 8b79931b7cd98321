"""Export: user tower + an index over the item catalogue as one SavedModel.

The exported directory is TF Serving's layout, `export_dir/<version>/`, holding a
SavedModel with three signatures:

- ``serving_default``: raw user features (each `(B,)`) -> ``item_ids`` `(B, K)` string and
  ``scores`` `(B, K)` float32 (the similarity: a cosine for cosine models), best first;
- ``user_embedding``: raw user features -> ``embedding`` `(B, D)`;
- ``item_embedding``: raw item features -> ``embedding`` `(B, D)`.

Every feature the towers were built with is a signature input. A feature value that
is missing is fed as "" (strings) or NaN (numbers): the feature layers map it to the
OOV bucket or to the learned default, so an unknown user still gets K items.

The index is ScaNN (`index="scann"`; loading needs `import scann` before
`tf.saved_model.load`, and TF Serving needs its ScaNN-enabled build) or an exact
matrix product + `top_k` built from stock TensorFlow ops (`index="brute_force"`;
loads anywhere). The loaded model needs TensorFlow (and scann), never tfrecall: the
feature layers are traced into the graph.

A version is written to a hidden temporary directory beside the final one and renamed
into place, so TF Serving, which polls `export_dir`, never sees a partial version.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import uuid
from typing import Mapping, Optional

import numpy as np

from tfrecall._backend import tf

INDEX_KINDS = ("scann", "brute_force")
METADATA_FILE = "tfrecall_export.json"


def _import_scann_ops():
    try:
        from scann.scann_ops.py import scann_ops
    except ImportError as e:  # pragma: no cover - scann is a hard dependency of setup.py
        raise ImportError(
            "index='scann' needs the scann package (pip install 'scann~=1.4.2'); "
            "or export with index='brute_force'"
        ) from e
    return scann_ops


def build_scann_state(embeddings: np.ndarray, k: int, seed: int = 0):
    """Builds a ScaNN searcher over `embeddings` (dot product) and returns its tf.Module state.

    Small catalogues (< 10k items) are searched exhaustively; larger ones use a
    partition tree (about sqrt(n) leaves), anisotropic hashing (Guo et al., ICML 2020)
    and exact re-ordering of the best candidates.
    """
    scann_ops = _import_scann_ops()
    n, _ = embeddings.shape
    db = tf.constant(embeddings, tf.float32)
    builder = scann_ops.builder(db, k, "dot_product")
    if n < 10_000:
        builder = builder.score_brute_force()
    else:
        leaves = int(round(math.sqrt(n)))
        builder = builder.tree(
            num_leaves=leaves,
            num_leaves_to_search=max(1, leaves // 10),
            training_sample_size=min(n, 250_000),
        )
        builder = builder.score_ah(2, anisotropic_quantization_threshold=0.2)
        builder = builder.reorder(max(100, 4 * k))
    searcher = builder.build()
    return searcher.serialize_to_module()


class RecallModule(tf.Module):
    """The exported object: towers, catalogue ids and embeddings, and the index."""

    def __init__(self, model, item_ids: np.ndarray, item_embeddings: np.ndarray, k: int, index: str):
        super().__init__(name="tfrecall")
        self.user_tower = model.user_tower
        self.item_tower = model.item_tower
        self.k = int(k)
        self.index_kind = index
        self.item_ids = tf.Variable(np.asarray(item_ids, dtype=object).astype(str), trainable=False)
        self.item_embeddings = tf.Variable(item_embeddings.astype(np.float32), trainable=False)
        if index == "scann":
            self.scann = build_scann_state(item_embeddings, self.k)

        user_sig = model.user_tower.encoder.input_signature()
        item_sig = model.item_tower.encoder.input_signature()

        @tf.function(input_signature=[user_sig])
        def serving_default(features):
            return self._recommend(features)

        @tf.function(input_signature=[user_sig])
        def user_embedding(features):
            return {"embedding": self.user_tower(features, training=False)}

        @tf.function(input_signature=[item_sig])
        def item_embedding(features):
            return {"embedding": self.item_tower(features, training=False)}

        self.serving_default = serving_default
        self.user_embedding = user_embedding
        self.item_embedding = item_embedding

    def _recommend(self, features):
        queries = self.user_tower(features, training=False)  # (B, D)
        if self.index_kind == "scann":
            scann_ops = _import_scann_ops()
            searcher = scann_ops.searcher_from_module(self.scann)
            # Batched search on an empty batch is not defined by the ScaNN op: guard it.
            def search():
                idx, scores = searcher.search_batched(queries, final_num_neighbors=self.k)
                return tf.cast(idx, tf.int32), scores

            def empty():
                return tf.zeros([0, self.k], tf.int32), tf.zeros([0, self.k], tf.float32)

            idx, scores = tf.cond(tf.shape(queries)[0] > 0, search, empty)
        else:
            all_scores = tf.matmul(queries, self.item_embeddings, transpose_b=True)
            scores, idx = tf.math.top_k(all_scores, k=self.k)
        return {"item_ids": tf.gather(self.item_ids, idx), "scores": scores}


def embed_table(tower, table: Mapping[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """`(N, D)` float32 embeddings of a column table (one row per entity) by `tower`."""
    n = len(next(iter(table.values())))
    sig = tower.encoder.input_signature()
    out = []
    for start in range(0, n, batch_size):
        batch = {
            name: tf.constant(_column(table, name, spec, start, batch_size, n))
            for name, spec in sig.items()
        }
        out.append(tower(batch, training=False).numpy())
    return np.concatenate(out) if out else np.zeros((0, tower.output_dim), np.float32)


def embed_items(model, items: Mapping[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """`(N, D)` item-tower embeddings of the item table `items`."""
    return embed_table(model.item_tower, items, batch_size)


def embed_users(model, users: Mapping[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """`(N, D)` user-tower embeddings of the user table `users`."""
    return embed_table(model.user_tower, users, batch_size)


def _column(table, name, spec, start, size, n):
    """A slice of a column, or the missing-value default when the table lacks the column."""
    stop = min(start + size, n)
    if name in table:
        values = table[name][start:stop]
    else:
        values = np.full(stop - start, "" if spec.dtype == tf.string else np.nan, dtype=object)
    if spec.dtype == tf.string:
        return np.asarray(values, dtype=object).astype(str).astype(object)
    return np.asarray(values, dtype=np.float32)


def next_version(export_dir: str) -> int:
    """One more than the largest numeric version directory (1 for an empty directory)."""
    versions = [int(d) for d in os.listdir(export_dir) if d.isdigit()] if os.path.isdir(export_dir) else []
    return max(versions + [0]) + 1


def export_saved_model(
    model,
    items: Mapping[str, np.ndarray],
    export_dir: str,
    k: int = 100,
    index: str = "scann",
    version: Optional[int] = None,
    metadata: Optional[dict] = None,
) -> str:
    """Embeds the catalogue, builds the index and writes `export_dir/<version>/` atomically.

    Args:
      model: a trained `TwoTowerModel`.
      items: the catalogue as a column table: `item_id` plus the item tower's features
        (features absent from the table are fed as missing).
      export_dir: the TF Serving model base path.
      k: items returned per query (capped at the catalogue size).
      index: "scann" or "brute_force".
      version: the version number (default: next free).
      metadata: extra JSON-serializable facts written to `assets.extra/tfrecall_export.json`.

    Returns:
      The path of the new version directory.

    Raises:
      ValueError: unknown index, k < 1, an empty catalogue or duplicate item ids.
    """
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {index!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    item_ids = np.asarray(items[model.item_id_feature], dtype=object)
    if len(item_ids) == 0:
        raise ValueError("cannot export an index over an empty item catalogue")
    if len(set(item_ids.tolist())) != len(item_ids):
        raise ValueError("the item catalogue has duplicate item ids")
    k = min(int(k), len(item_ids))
    start = time.time()
    embeddings = embed_items(model, items)
    module = RecallModule(model, item_ids, embeddings, k, index)
    os.makedirs(export_dir, exist_ok=True)
    version = next_version(export_dir) if version is None else int(version)
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final):
        raise ValueError(f"export version already exists: {final}")
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-{uuid.uuid4().hex[:8]}-", dir=export_dir)
    try:
        tf.saved_model.save(
            module,
            tmp,
            signatures={
                "serving_default": module.serving_default,
                "user_embedding": module.user_embedding,
                "item_embedding": module.item_embedding,
            },
        )
        info = {
            "index": index,
            "k": k,
            "num_items": int(len(item_ids)),
            "embedding_dim": int(embeddings.shape[1]),
            "user_features": sorted(model.user_tower.encoder.input_signature()),
            "item_features": sorted(model.item_tower.encoder.input_signature()),
            "needs_import_scann": index == "scann",
            "export_seconds": round(time.time() - start, 3),
        }
        info.update(metadata or {})
        os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
        with open(os.path.join(tmp, "assets.extra", METADATA_FILE), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
        os.rename(tmp, final)  # atomic on one file system
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
