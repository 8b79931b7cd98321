"""The text feature: DSSM letter trigrams and word n-grams by hand, the hashed table layout,
the mean bag against numpy, serialization, inference, and a new item served by its words."""

import json

import numpy as np
import pytest

from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec
from tfrecall.features.encoder import FeatureEncoder
from tfrecall.features.text import TextEmbedding, text_tokens
from tfrecall.io.feature_kinds import infer_feature_specs, infer_kind


def _lists(ragged):
    return [[t.decode() for t in row] for row in ragged.to_list()]


def test_letter_trigrams_and_word_ngrams_by_hand():
    trigrams, ngrams = text_tokens(tf.constant(["Word", "Red shoe, size-10!", "", "...", "a",
                                                "Café au lait"]))
    assert _lists(trigrams) == [
        ["#wo", "wor", "ord", "rd#"],
        ["#re", "red", "ed#", "#sh", "sho", "hoe", "oe#", "#si", "siz", "ize", "ze#",
         "#10", "10#"],
        [], [], ["#a#"],
        ["#ca", "caf", "afé", "fé#", "#au", "au#", "#la", "lai", "ait", "it#"],
    ]
    assert _lists(ngrams) == [["word"], ["red", "shoe", "size", "10", "red shoe", "shoe size",
                                         "size 10"], [], [], ["a"],
                              ["café", "au", "lait", "café au", "au lait"]]
    _, only_words = text_tokens(tf.constant(["x y z"]), ngram_orders=(1, 3))
    assert _lists(only_words) == [["x", "y", "z", "x y z"]]


def test_rows_are_the_hashes_in_two_disjoint_ranges():
    layer = TextEmbedding(4, hash_buckets=50)
    ids = layer.token_ids(tf.constant(["red shoe"])).to_list()[0]
    trigrams, ngrams = text_tokens(tf.constant(["red shoe"]))
    assert ids[:7] == tf.strings.to_hash_bucket_fast(trigrams, 50).to_list()[0]
    assert ids[7:] == (tf.strings.to_hash_bucket_fast(ngrams, 50) + 50).to_list()[0]
    assert all(0 <= i < 50 for i in ids[:7]) and all(50 <= i < 100 for i in ids[7:])


def test_output_is_the_mean_of_the_token_rows_and_empty_text_has_its_own_row():
    layer = TextEmbedding(3, hash_buckets=64)
    texts = tf.constant([["red shoe", "Red  SHOE!"], ["", "..."]])
    out = layer(texts).numpy()
    assert out.shape == (2, 2, 3)
    table = layer.embeddings.numpy()
    rows = layer.token_ids(tf.constant(["red shoe"])).to_list()[0]
    np.testing.assert_allclose(out[0, 0], table[rows].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(out[0, 1], out[0, 0])  # case and punctuation do not matter
    np.testing.assert_allclose(out[1, 0], table[128])  # the empty-text row
    np.testing.assert_allclose(out[1, 1], table[128])


def test_gradients_reach_only_the_rows_of_the_tokens():
    layer = TextEmbedding(2, hash_buckets=64)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(tf.constant(["red shoe"])))
    grad = tf.convert_to_tensor(tape.gradient(loss, layer.embeddings)).numpy()
    rows = layer.token_ids(tf.constant(["red shoe"])).to_list()[0]
    counts = np.bincount(rows, minlength=129)
    np.testing.assert_allclose(grad[:, 0], counts / len(rows), rtol=1e-6)


def test_serializes_by_configuration_and_round_trips_in_a_keras_model(tmp_path):
    encoder = FeatureEncoder([FeatureSpec("title", "text", embedding_dim=6, hash_buckets=128,
                                          ngram_orders=(1, 2, 3))])
    x = {"title": tf.constant(["the red shoe", "a blue hat", ""])}
    before = encoder(x).numpy()
    inputs = {"title": keras.Input(shape=(), dtype=tf.string, name="title")}
    model = keras.Model(inputs, encoder(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(x).numpy(), before, rtol=1e-6)
    layer = loaded.layers[-1].feature_layers[0]
    assert (layer.hash_buckets, layer.ngram_orders, layer.embedding_dim) == (128, (1, 2, 3), 6)


def test_spec_json_round_trip_and_bad_orders():
    spec = FeatureSpec("title", "text", ngram_orders=[1, 3])
    assert spec.ngram_orders == (1, 3) and spec.dim == 32
    assert FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="ngram_orders must be integers >= 1"):
        FeatureSpec("title", "text", ngram_orders=(0,))


def test_inference_proposes_text_for_spaced_high_cardinality_strings():
    titles = np.asarray([f"movie number {i}" for i in range(20)], dtype=object)
    assert infer_kind(titles) == "text"
    assert infer_kind(np.asarray(["red shoe"] * 20, dtype=object)) == "categorical"  # 1 value
    assert infer_kind(np.asarray([f"b{i}" for i in range(20)], dtype=object)) == "categorical"
    assert infer_kind(np.asarray(["a b|c"] * 3, dtype=object)) == "multi_categorical"
    specs = infer_feature_specs({"item_id": np.asarray([f"i{i}" for i in range(20)], object),
                                 "title": titles}, "item_id")
    assert {s.name: s.kind for s in specs} == {"item_id": "id", "title": "text"}


def test_a_new_item_is_served_by_its_words():
    # Items whose titles share words with trained items get those items' direction, with
    # no row of their own: train titles -> target vectors, then score unseen titles.
    keras.utils.set_random_seed(0)
    layer = TextEmbedding(8, hash_buckets=256)
    red = ["red shoe", "red hat", "red coat", "red scarf"]
    blue = ["blue shoe", "blue hat", "blue coat", "blue scarf"]
    x = tf.constant(red + blue)
    target = tf.constant([[1.0] + [0.0] * 7] * 4 + [[0.0, 1.0] + [0.0] * 6] * 4)
    opt = keras.optimizers.Adam(0.05)
    for _ in range(200):
        with tf.GradientTape() as tape:
            out = tf.math.l2_normalize(layer(x), -1)
            loss = -tf.reduce_sum(out * target)
        opt.apply_gradients(zip(tape.gradient(loss, [layer.embeddings]), [layer.embeddings],
                                strict=True))
    new = tf.math.l2_normalize(layer(tf.constant(["red boot", "blue boot"])), -1).numpy()
    assert new[0, 0] > new[0, 1] and new[1, 1] > new[1, 0]
