"""Tests of FeatureEncoder: concat order, (B, L) inputs, errors, config/SavedModel, fit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec
from tfrecall.features import (
    BucketizedEmbedding,
    CategoricalEmbedding,
    ContinuousFeature,
    FeatureEncoder,
    MultiCategoricalEmbedding,
    build_feature_layer,
)
from tfrecall.features.continuous import EPSILON

NAN = float("nan")

SPECS = [
    FeatureSpec("item_id", "id", embedding_dim=4),
    FeatureSpec("price", "continuous", log1p=True),
    {"name": "genres", "kind": "multi_categorical", "embedding_dim": 3},
    FeatureSpec("year", "bucketized", embedding_dim=2, num_buckets=2),
]

TABLE = {
    "item_id": np.array(["i1", "i2", "i3", "i1"], dtype=object),
    # log1p: e-1 -> 1, e^3-1 -> 3: mean 2, variance 1 (NaN ignored)
    "price": np.array([math.e - 1, math.e**3 - 1, NAN, NAN], np.float32),
    "genres": np.array(["Action|Comedy", "Drama", "", "Action"], dtype=object),
    # median of 1990, 2000, 2010, 2020 = 2005
    "year": np.array([1990.0, 2000.0, 2010.0, 2020.0], np.float32),
    "unused": np.zeros(4),
}


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def _adapted() -> FeatureEncoder:
    encoder = FeatureEncoder(SPECS, name="items")
    encoder.adapt(TABLE)
    return encoder


def _feed(shape=None):
    feed = {
        "item_id": np.array(["i2", "nope", ""], dtype=object),
        "price": np.array([math.e**3 - 1, NAN, 0.0], np.float32),
        "genres": np.array(["Comedy|Action", "", "Drama|Sci-Fi"], dtype=object),
        "year": np.array([2004.0, 2005.0, NAN], np.float32),
        "extra": np.array([1, 2, 3]),  # ignored
    }
    if shape is not None:
        feed = {k: np.tile(v, 2).reshape(shape) for k, v in feed.items()}
    return feed


def _reference(encoder: FeatureEncoder, feed) -> np.ndarray:
    """Numpy re-computation of the encoding of `_feed()` from the learned tables."""
    item_layer, price_layer, genres_layer, year_layer = encoder.feature_layers
    item, genres = item_layer.embeddings.numpy(), genres_layer.embeddings.numpy()
    year, default = year_layer.embeddings.numpy(), float(price_layer.default.numpy())
    # vocabularies: item_id [i1, i2, i3] (i1 twice) -> i2 row 2; genres by count:
    # Action 2, Comedy 1, Drama 1 -> rows 1, 2, 3; OOV row 0
    rows = []
    for i, p, y, g in (
        ("i2", 3.0, 0, (2, 1)),  # price t = 3 -> z = (3 - 2) / 1; year 2004 < 2005 -> bucket 0
        ("nope", None, 1, ()),  # OOV; NaN price; 2005 >= 2005 -> bucket 1; "" -> zeros
        ("", 0.0, 2, (3, 0)),  # "" -> OOV; price 0 -> t 0 -> z -2; NaN year -> bucket 2
    ):
        item_row = item[{"i2": 2}.get(i, 0)]
        z, missing = (default, 1.0) if p is None else ((p - 2.0) / math.sqrt(1 + EPSILON), 0.0)
        genre_vec = np.mean(genres[list(g)], axis=0) if g else np.zeros(3)
        rows.append(np.concatenate([item_row, [z, missing], genre_vec, year[y]]))
    out = np.stack(rows)
    first = np.asarray(feed["item_id"])
    if first.ndim == 2:  # _feed(shape) tiles the 3 examples twice, row-major
        out = np.tile(out, (2, 1)).reshape(first.shape + (out.shape[-1],))
    return out


def _call(encoder, feed):
    return encoder({k: tf.constant(v) for k, v in feed.items()}).numpy()


def test_build_feature_layer_kinds_and_widths():
    kinds = {
        "id": CategoricalEmbedding,
        "categorical": CategoricalEmbedding,
        "multi_categorical": MultiCategoricalEmbedding,
        "continuous": ContinuousFeature,
        "bucketized": BucketizedEmbedding,
    }
    for kind, cls in kinds.items():
        spec = FeatureSpec(f"user {kind}", kind, hash_buckets=None)
        layer = build_feature_layer(spec)
        assert isinstance(layer, cls)
        assert getattr(layer, "embedding_dim", 2) == spec.dim
        assert layer.name == f"user_{kind}"  # a valid name scope
    hashed = build_feature_layer(FeatureSpec("u", "id", hash_buckets=11))
    assert hashed.vocabulary_size == 11


def test_output_is_concatenation_in_spec_order():
    encoder = _adapted()
    assert encoder.output_dim == 4 + 2 + 3 + 2
    assert [type(x).__name__ for x in encoder.feature_layers] == [
        "CategoricalEmbedding",
        "ContinuousFeature",
        "MultiCategoricalEmbedding",
        "BucketizedEmbedding",
    ]
    _call(encoder, _feed())  # builds the weights
    encoder.feature_layers[1].default.assign(0.25)  # a default other than its initial 0
    out = _call(encoder, _feed())
    assert out.shape == (3, 11)
    np.testing.assert_allclose(out, _reference(encoder, _feed()), rtol=1e-5, atol=1e-6)


def test_rank_two_item_lists():
    encoder = _adapted()
    feed = _feed(shape=(2, 3))
    out = _call(encoder, feed)
    assert out.shape == (2, 3, 11)
    np.testing.assert_allclose(out, _reference(encoder, feed), rtol=1e-5, atol=1e-6)


def test_missing_feature_and_shape_errors():
    encoder = _adapted()
    feed = {k: tf.constant(v) for k, v in _feed().items() if k != "genres"}
    with pytest.raises(ValueError, match=r"\['genres'\] missing"):
        encoder(feed)
    feed = {k: tf.constant(v) for k, v in _feed().items()}
    feed["year"] = tf.constant([[2000.0]])
    with pytest.raises(ValueError, match="'year' has"):
        encoder(feed)


def test_adapt_missing_column_lists_available():
    encoder = FeatureEncoder(SPECS)
    table = {k: v for k, v in TABLE.items() if k != "price"}
    with pytest.raises(ValueError, match=r"\['price'\] not in the table.*'genres'"):
        encoder.adapt(table)


def test_bad_specs():
    with pytest.raises(ValueError, match="unique"):
        FeatureEncoder([FeatureSpec("a", "id"), FeatureSpec("a", "categorical")])
    with pytest.raises(ValueError, match="non-empty list"):
        FeatureEncoder([])


def test_specs_signature_and_defaults():
    encoder = _adapted()
    assert all(isinstance(s, FeatureSpec) for s in encoder.specs)
    assert encoder.specs[2] == FeatureSpec.from_dict(SPECS[2])
    signature = encoder.input_signature()
    assert {k: v.dtype for k, v in signature.items()} == {
        "item_id": tf.string,
        "price": tf.float32,
        "genres": tf.string,
        "year": tf.float32,
    }
    assert all(v.shape.as_list() == [None] for v in signature.values())
    defaults = encoder.default_values()
    assert defaults["item_id"] == "" and defaults["genres"] == ""
    assert math.isnan(defaults["price"]) and math.isnan(defaults["year"])


def test_config_round_trip_rebuilds_adapted_layers():
    encoder = _adapted()
    expected = _call(encoder, _feed())
    config = json.loads(json.dumps(encoder.get_config()))
    clone = FeatureEncoder.from_config(config)
    assert clone.feature_layers[0].vocabulary == ["i1", "i2", "i3"]
    assert clone.feature_layers[3].boundaries == [2005.0]
    _call(clone, _feed())
    clone.set_weights(encoder.get_weights())
    np.testing.assert_array_equal(_call(clone, _feed()), expected)


def test_saved_model_round_trip(tmp_path):
    encoder = _adapted()

    class Serving(tf.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        @tf.function(input_signature=[encoder.input_signature()])
        def encode(self, features):
            return {"vector": self.encoder(features)}

    module = Serving(encoder)
    feed = {k: tf.constant(v) for k, v in _feed().items() if k != "extra"}
    expected = module.encode(feed)["vector"].numpy()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.encode})
    del module, encoder
    loaded = tf.saved_model.load(str(tmp_path))
    np.testing.assert_array_equal(loaded.encode(feed)["vector"].numpy(), expected)
    serving = loaded.signatures["serving_default"]
    np.testing.assert_array_equal(serving(**feed)["vector"].numpy(), expected)
    # Serving a request where every feature is missing: the defaults give finite vectors.
    defaults = FeatureEncoder(SPECS).default_values()
    missing = {k: tf.constant([v, v]) for k, v in defaults.items()}
    assert np.all(np.isfinite(serving(**missing)["vector"].numpy()))


def test_keras_model_save_and_load(tmp_path):
    encoder = _adapted()
    inputs = {
        name: keras.Input(shape=(), dtype=spec.dtype, name=name)
        for name, spec in encoder.input_signature().items()
    }
    model = keras.Model(inputs, keras.layers.Dense(2)(encoder(inputs)))
    feed = {k: v for k, v in _feed().items() if k != "extra"}
    expected = model.predict(feed, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    # Only the registered classes and their configs rebuild the encoder here.
    loaded = keras.models.load_model(path)
    assert any(isinstance(layer, FeatureEncoder) for layer in loaded.layers)
    np.testing.assert_array_equal(loaded.predict(feed, verbose=0), expected)


def test_fit_step_updates_every_feature():
    encoder = _adapted()
    inputs = {
        name: keras.Input(shape=(), dtype=spec.dtype, name=name)
        for name, spec in encoder.input_signature().items()
    }
    model = keras.Model(inputs, keras.layers.Dense(1)(encoder(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    before = [w.numpy().copy() for w in encoder.trainable_weights]
    feed = {k: v for k, v in _feed().items() if k != "extra"}
    history = model.fit(feed, np.array([1.0, -1.0, 2.0]), batch_size=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [w.numpy() for w in encoder.trainable_weights]
    # item table, price default (one NaN price in the batch), genre table, year table
    # (get_weights also holds the lookup tables' vocabularies, which are not trained)
    assert len(after) == 4
    for name, b, a in zip(["item_id", "price", "genres", "year"], before, after, strict=True):
        assert np.all(np.isfinite(a)), name
        assert not np.array_equal(a, b), f"{name} got no gradient"
