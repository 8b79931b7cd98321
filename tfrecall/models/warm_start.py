"""Warm start: continue a trained model on new logs, growing vocabularies, keeping weights.

Incremental training (the freshness loop of a production recall system) needs ids
first seen in the new log to get their own embedding rows, while every known id keeps
its row (its index and its trained vector), so an index built before and after agree on
old items. Keras' lookup layers cannot grow in place, so the model is rebuilt from its
config with each vocabulary extended at the END (old indices unchanged), and every
variable is copied over: same-shaped ones whole, grown embedding tables into their
first rows (new rows keep their fresh initialisation). Normalisation statistics and
bucket boundaries stay as trained (re-fitting them would shift what the weights mean).
"""

from __future__ import annotations

import copy
from typing import Mapping, Optional

import numpy as np

from tfrecall._backend import keras, tf
from tfrecall.features.embeddings import vocabulary_from_counts

_GROWABLE = ("CategoricalEmbedding", "MultiCategoricalEmbedding")


def _grow(layer_config: dict, spec: dict, values: np.ndarray) -> int:
    """Appends the column's new tokens to a serialized lookup layer; returns how many."""
    config = layer_config["config"]
    old = config.get("vocabulary")
    if old is None or config.get("hash_buckets"):
        return 0  # hashing layers need no vocabulary
    strings = np.asarray(values, dtype=object).astype(str)
    if layer_config["class_name"].endswith("MultiCategoricalEmbedding"):
        tokens = [t for v in strings.tolist() for t in v.split(spec["separator"]) if t]
    else:
        tokens = [t for t in strings.tolist() if t]
    known = set(old)
    counts: dict = {}
    for t in tokens:
        if t not in known:
            counts[t] = counts.get(t, 0) + 1
    new = vocabulary_from_counts(counts, config.get("min_count", 1), None)
    config["vocabulary"] = list(old) + list(new)
    return len(new)


def warm_start(
    old,
    user_table: Mapping[str, np.ndarray],
    item_table: Mapping[str, np.ndarray],
    in_batch_negatives: Optional[bool] = None,
    log=print,
):
    """A new `TwoTowerModel` with `old`'s weights and vocabularies grown from the tables.

    Args:
      old: a trained, built `TwoTowerModel` (e.g. `tfrecall.recipe.load_model`).
      user_table, item_table: numpy column tables of the new data (all ids it knows).
      in_batch_negatives: the new run's training view (None: keep the old one).
      log: where to report how many ids were added per feature.

    Returns:
      The warm-started model, built, with every variable copied from `old`.
    """
    spec = copy.deepcopy(model_spec(old))
    config = spec["config"]
    if in_batch_negatives is not None:
        config["in_batch_negatives"] = bool(in_batch_negatives)
    for side, table in (("user_tower", user_table), ("item_tower", item_table)):
        encoder = config[side]["config"]["features"]["config"]
        for feature, layer_config in zip(encoder["specs"], encoder["feature_layers"],
                                         strict=True):
            if (layer_config["class_name"].split(">")[-1] in _GROWABLE
                    and feature["name"] in table):
                added = _grow(layer_config, feature, table[feature["name"]])
                if added:
                    log(f"warm start: {feature['name']}: {added} new ids appended to the "
                        f"vocabulary ({len(layer_config['config']['vocabulary'])} in all)")
    new = keras.saving.deserialize_keras_object(spec)
    new(default_batch(new))
    # Only real variables: lookup tables (already rebuilt from the grown vocabularies)
    # also appear in `variables` as weight handlers.
    old_vars = [v for v in old.variables if isinstance(v, tf.Variable)]
    new_vars = [v for v in new.variables if isinstance(v, tf.Variable)]
    if len(old_vars) != len(new_vars):
        raise ValueError(f"warm start: the rebuilt model has {len(new_vars)} variables, the "
                         f"old one {len(old_vars)}")
    for was, now in zip(old_vars, new_vars, strict=True):
        a, b = was.shape, now.shape
        if a == b:
            now.assign(was)
        elif a.rank == b.rank and a.rank >= 1 and a[0] <= b[0] and a[1:] == b[1:]:
            now[: a[0]].assign(was)  # a grown embedding table: old rows first
        else:
            raise ValueError(f"warm start: cannot carry {was.name} {a} into {now.name} {b}")
    return new


def model_spec(model) -> dict:
    """The model's Keras serialization without its build/compile records, which hold
    nested input shapes Keras cannot rebuild a subclassed model with dict inputs from;
    the weights restore lazily without them."""
    spec = keras.saving.serialize_keras_object(model)
    spec.pop("build_config", None)
    spec.pop("compile_config", None)
    return spec


def default_batch(model) -> dict:
    """One row of missing-value features per tower input: builds every variable."""

    def side(encoder, shape):
        defaults = encoder.default_values()
        return {name: tf.fill(shape, tf.constant(defaults[name], spec.dtype))
                for name, spec in encoder.input_signature().items()}

    return {"user": side(model.user_tower.encoder, [1]),
            "items": side(model.item_tower.encoder, [1, 1])}
