"""From feature specs to one vector per example: the input stage of a tower."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Sequence, Union

import numpy as np

from tfrecall._backend import keras, register, tf
from tfrecall.config import STRING_KINDS, FeatureSpec
from tfrecall.features.continuous import BucketizedEmbedding, ContinuousFeature
from tfrecall.features.embeddings import CategoricalEmbedding, MultiCategoricalEmbedding
from tfrecall.features.history import ItemHistoryEmbedding
from tfrecall.features.text import DEFAULT_HASH_BUCKETS, TextEmbedding


def _layer_name(feature: str) -> str:
    # Layer names become TF name scopes, which reject spaces, "/" and the like.
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", feature)


def build_feature_layer(spec: FeatureSpec) -> keras.layers.Layer:
    """The (unadapted) layer that encodes one feature; its output width is `spec.dim`.

    Args:
      spec: the feature's spec.

    Returns:
      `CategoricalEmbedding` for id/categorical, `MultiCategoricalEmbedding`,
      `ContinuousFeature` or `BucketizedEmbedding`, named after the feature.
    """
    name = _layer_name(spec.name)
    if spec.kind in ("id", "categorical"):
        return CategoricalEmbedding(
            spec.dim,
            num_oov_buckets=spec.num_oov_buckets,
            hash_buckets=spec.hash_buckets,
            max_tokens=spec.max_tokens,
            min_count=spec.min_count,
            name=name,
        )
    if spec.kind == "multi_categorical":
        return MultiCategoricalEmbedding(
            spec.dim,
            separator=spec.separator,
            num_oov_buckets=spec.num_oov_buckets,
            hash_buckets=spec.hash_buckets,
            max_tokens=spec.max_tokens,
            min_count=spec.min_count,
            name=name,
        )
    if spec.kind == "history":
        return ItemHistoryEmbedding(spec.dim, separator=spec.separator, name=name)
    if spec.kind == "text":
        return TextEmbedding(spec.dim, hash_buckets=spec.hash_buckets or DEFAULT_HASH_BUCKETS,
                             ngram_orders=spec.ngram_orders, name=name)
    if spec.kind == "continuous":
        return ContinuousFeature(log1p=spec.log1p, name=name)
    if spec.kind == "bucketized":
        return BucketizedEmbedding(
            spec.dim, num_buckets=spec.num_buckets, log1p=spec.log1p, name=name
        )
    raise ValueError(f"feature {spec.name!r}: no layer for kind {spec.kind!r}")


def _as_specs(specs: Sequence[Union[FeatureSpec, Mapping[str, Any]]]) -> List[FeatureSpec]:
    if isinstance(specs, (FeatureSpec, Mapping)) or not specs:
        raise ValueError(f"FeatureEncoder: specs must be a non-empty list of specs, got {specs!r}")
    out = [s if isinstance(s, FeatureSpec) else FeatureSpec.from_dict(s) for s in specs]
    names = [s.name for s in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"FeatureEncoder: feature names must be unique, repeated: {dupes}")
    return out


@register
class FeatureEncoder(keras.layers.Layer):
    """Encodes a dict of raw feature tensors into the concatenation of their vectors.

    Args:
      specs: `FeatureSpec`s (or their dicts), in output order.
      **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
      features: {name: tensor}; every spec'd feature present (extra keys ignored),
        all of one shape S of rank >= 1, e.g. (B,) for users or (B, L) for a list of
        L candidate items. Strings (or integers) for id/categorical/multi_categorical,
        numbers for continuous/bucketized.
      training: unused (no layer behaves differently in training).

    Returns:
      S + (output_dim,) float tensor: the features' vectors concatenated in spec order.

    Example:
      >>> encoder = FeatureEncoder([FeatureSpec("genres", "multi_categorical"),
      ...                           FeatureSpec("year", "continuous")])
      >>> encoder.adapt(item_table)
      >>> encoder({"genres": tf.constant(["Action|Drama"]), "year": tf.constant([1995.0])})
    """

    def __init__(self, specs: Sequence[Union[FeatureSpec, Mapping[str, Any]]], **kwargs):
        super().__init__(**kwargs)
        self._specs = _as_specs(specs)
        self.feature_layers = [build_feature_layer(s) for s in self._specs]

    @property
    def specs(self) -> List[FeatureSpec]:
        return list(self._specs)

    def layer(self, feature: str) -> keras.layers.Layer:
        """The layer that encodes `feature` (ValueError naming the known features)."""
        for spec, layer in zip(self._specs, self.feature_layers, strict=True):
            if spec.name == feature:
                return layer
        raise ValueError(f"FeatureEncoder: no feature {feature!r}; features: "
                         f"{[s.name for s in self._specs]}")

    @property
    def output_dim(self) -> int:
        return sum(s.dim for s in self._specs)

    def adapt(self, table: Mapping[str, np.ndarray]) -> None:
        """Adapts every feature's layer from the column of the same name.

        Raises:
          ValueError: a spec'd column is absent (names it and the available columns).
        """
        missing = [s.name for s in self._specs if s.name not in table]
        if missing:
            raise ValueError(
                f"FeatureEncoder.adapt: feature(s) {missing} not in the table; "
                f"available columns: {sorted(table)}"
            )
        for spec, layer in zip(self._specs, self.feature_layers, strict=True):
            layer.adapt(np.asarray(table[spec.name]))

    def adapt_from_stats(self, stats: Any) -> None:
        """Adapts every feature's layer from precomputed statistics (a streaming pass).

        `stats` is anything with the three methods of
        `tfrecall.io.stats.StreamingStats`:

        - ``token_counts(name, separator)`` -> ``{token: count}`` for id/categorical
          (``separator=None``) and multi_categorical (the spec's separator) features;
        - ``moments(name, log1p)`` -> an object with ``mean`` and ``variance`` of the
          finite values, for continuous features;
        - ``quantiles(name, levels, log1p)`` -> the values at ``levels``, for
          bucketized features.

        The result equals `adapt` on the same data where the statistics are exact
        (see `tfrecall.io.stats` for when they are approximate and by how much).
        """
        for spec, layer in zip(self._specs, self.feature_layers, strict=True):
            if spec.kind in ("history", "text"):
                continue  # no state of its own (the item tower's ids; hashed tokens)
            if spec.kind in ("id", "categorical"):
                layer.adapt_from_counts(stats.token_counts(spec.name, None))
            elif spec.kind == "multi_categorical":
                layer.adapt_from_counts(stats.token_counts(spec.name, spec.separator))
            elif spec.kind == "continuous":
                moments = stats.moments(spec.name, spec.log1p)
                layer.adapt_from_moments(moments.mean, moments.variance)
            else:
                layer.adapt_from_quantiles(
                    stats.quantiles(spec.name, layer.quantile_levels, spec.log1p))

    def call(self, features: Mapping[str, tf.Tensor], training=None) -> tf.Tensor:
        if not isinstance(features, Mapping):
            raise TypeError(
                f"FeatureEncoder expects a dict of features, got {type(features).__name__}"
            )
        missing = [s.name for s in self._specs if s.name not in features]
        if missing:
            raise ValueError(
                f"FeatureEncoder: feature(s) {missing} missing from the inputs; "
                f"got {sorted(features)}"
            )
        tensors = [tf.convert_to_tensor(features[s.name]) for s in self._specs]
        first = tensors[0]
        for spec, x in zip(self._specs, tensors, strict=True):
            if x.shape.rank is None or x.shape.rank < 1 or x.shape.rank != first.shape.rank:
                raise ValueError(
                    f"FeatureEncoder: every feature needs the same shape of rank >= 1; "
                    f"{self._specs[0].name!r} has shape {first.shape}, {spec.name!r} has {x.shape}"
                )
        # Encode flat (N,) columns, then restore S: each layer then sees one layout,
        # whatever the rank of S.
        outputs = [
            layer(tf.reshape(x, [-1]))
            for layer, x in zip(self.feature_layers, tensors, strict=True)
        ]
        flat = tf.concat([tf.cast(o, self.compute_dtype) for o in outputs], axis=-1)
        out = tf.reshape(flat, tf.concat([tf.shape(first), [self.output_dim]], axis=0))
        out.set_shape(first.shape.concatenate([self.output_dim]))
        return out

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape[self._specs[0].name])
        return shape.concatenate([self.output_dim])

    def input_signature(self) -> Dict[str, tf.TensorSpec]:
        """{name: TensorSpec([None], string|float32)}: a batch of raw values per feature."""
        return {
            s.name: tf.TensorSpec(
                [None], tf.string if s.kind in STRING_KINDS else tf.float32, name=s.name
            )
            for s in self._specs
        }

    def default_values(self) -> Dict[str, Any]:
        """What serving feeds for a missing feature: "" (-> an OOV bucket) for string kinds,
        NaN (-> the learned default / the NaN bucket) for numeric kinds."""
        return {s.name: "" if s.kind in STRING_KINDS else float("nan") for s in self._specs}

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "specs": [s.to_dict() for s in self._specs],
                # The adapted state (vocabularies, mean/variance, boundaries).
                "feature_layers": [keras.layers.serialize(layer) for layer in self.feature_layers],
            }
        )
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "FeatureEncoder":
        config = dict(config)
        layer_configs = config.pop("feature_layers", None)
        encoder = cls(**config)
        if layer_configs is not None:
            layers = [keras.layers.deserialize(c) for c in layer_configs]
            expected = [type(layer) for layer in encoder.feature_layers]
            if [type(layer) for layer in layers] != expected:
                raise ValueError(
                    "FeatureEncoder.from_config: feature_layers do not match specs: "
                    f"{[type(x).__name__ for x in layers]} vs {[t.__name__ for t in expected]}"
                )
            encoder.feature_layers = layers
        return encoder


__all__ = ["FeatureEncoder", "build_feature_layer"]
