"""Tests of CategoricalEmbedding and MultiCategoricalEmbedding against the table rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfrecall._backend import keras, tf
from tfrecall.features.embeddings import (
    CategoricalEmbedding,
    MultiCategoricalEmbedding,
    count_vocabulary,
    strip_ids,
    to_string_array,
)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def _objects(*values):
    return np.array(values, dtype=object)


def _table(layer) -> np.ndarray:
    return layer.embeddings.numpy()


class TestCategoricalEmbedding:
    def test_index_layout_oov_first_and_empty_string_is_oov(self):
        layer = CategoricalEmbedding(3, vocabulary=["a", "b"])
        out = layer(tf.constant(["a", "b", "zz", ""])).numpy()
        e = _table(layer)
        assert e.shape == (3, 3)  # 1 OOV row + 2 values
        # Layout: row 0 = OOV, row 1 = "a", row 2 = "b"; "zz" and "" (missing) -> OOV.
        np.testing.assert_array_equal(out, e[[1, 2, 0, 0]])

    def test_several_oov_buckets_hash_unknown_values(self):
        layer = CategoricalEmbedding(2, vocabulary=["a", "b"], num_oov_buckets=3)
        unknown = ["c", "d", "e", "f", "g", ""]
        out = layer(tf.constant(["a", "b"] + unknown)).numpy()
        e = _table(layer)
        # Reference bucket of an unknown value: FarmHash fingerprint mod 3 (the TF op),
        # vocabulary rows start after the 3 OOV rows.
        oov_rows = tf.strings.to_hash_bucket_fast(unknown, 3).numpy()
        assert len(set(oov_rows.tolist())) > 1  # the example does spread over buckets
        np.testing.assert_array_equal(out, e[[3, 4] + oov_rows.tolist()])

    def test_adapt_min_count_max_tokens_and_ties(self):
        # counts: "" 5 (missing, never kept), x 3, y 3, z 2, w 1
        values = _objects(*(["x"] * 3 + ["y"] * 3 + ["z"] * 2 + ["w"] + [""] * 5))
        layer = CategoricalEmbedding(2, min_count=2)
        layer.adapt(values)
        assert layer.vocabulary == ["x", "y", "z"]  # x/y tie broken by value
        assert layer.vocabulary_size == 4
        capped = CategoricalEmbedding(2, max_tokens=2)
        capped.adapt(values)
        assert capped.vocabulary == ["x", "y"]
        out = capped(tf.constant(["z", "x", "w"])).numpy()
        np.testing.assert_array_equal(out, _table(capped)[[0, 1, 0]])

    def test_count_vocabulary_tie_order_is_by_value(self):
        assert count_vocabulary(["b", "a", "b", "a", "c"]) == ["a", "b", "c"]

    def test_integer_input_matches_its_decimal_string(self):
        layer = CategoricalEmbedding(2)
        layer.adapt(np.array([10, 20, 10, -5]))
        assert layer.vocabulary == ["10", "-5", "20"]  # 10 twice, then ties by value
        ints = layer(tf.constant([[20, 10], [99, -5]], tf.int64)).numpy()
        strings = layer(tf.constant([["20", "10"], ["99", "-5"]])).numpy()
        e = _table(layer)
        np.testing.assert_array_equal(ints, e[[[3, 1], [0, 2]]])
        np.testing.assert_array_equal(strings, ints)

    def test_hashing_mode(self):
        layer = CategoricalEmbedding(4, hash_buckets=5)
        layer.adapt(_objects("anything"))  # no-op
        assert layer.vocabulary is None and layer.vocabulary_size == 5
        values = ["u1", "u2", "u3", ""]
        out = layer(tf.constant(values)).numpy()
        rows = tf.strings.to_hash_bucket_fast(values, 5).numpy()
        np.testing.assert_array_equal(out, _table(layer)[rows])

    def test_any_input_shape(self):
        layer = CategoricalEmbedding(3, vocabulary=["a"])
        assert layer(tf.constant([[["a"]] * 4] * 2)).shape == (2, 4, 1, 3)

    def test_used_before_adapt_raises(self):
        layer = CategoricalEmbedding(3, name="user_id")
        with pytest.raises(ValueError, match="'user_id' has no vocabulary.*adapt"):
            layer(tf.constant(["a"]))

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"vocabulary": ["a", ""]}, "missing"),
            ({"vocabulary": ["a", "a"]}, "repeats"),
            ({"vocabulary": []}, "empty"),
            ({"vocabulary": ["a"], "hash_buckets": 3}, "not both"),
            ({"num_oov_buckets": 0}, "num_oov_buckets"),
            ({"min_count": 0}, "min_count"),
        ],
    )
    def test_bad_arguments(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            CategoricalEmbedding(2, **kwargs)

    def test_float_ids_rejected(self):
        layer = CategoricalEmbedding(2, vocabulary=["1"])
        with pytest.raises(TypeError, match="string or integer"):
            layer(tf.constant([1.0]))
        with pytest.raises(TypeError, match="dtype float"):
            CategoricalEmbedding(2).adapt(np.array([1.5]))

    def test_adapt_after_build_raises(self):
        layer = CategoricalEmbedding(2, vocabulary=["a"])
        layer(tf.constant(["a"]))
        with pytest.raises(ValueError, match="before the first call"):
            layer.adapt(_objects("a", "b"))

    @pytest.mark.parametrize("hash_buckets", [None, 7])
    def test_config_round_trip(self, hash_buckets):
        layer = CategoricalEmbedding(3, num_oov_buckets=2, hash_buckets=hash_buckets, name="cat")
        layer.adapt(_objects("a", "b", "b", "c"))
        x = tf.constant([["a", "b"], ["c", "nope"]])
        expected = layer(x).numpy()
        config = json.loads(json.dumps(layer.get_config()))  # JSON-safe
        clone = CategoricalEmbedding.from_config(config)
        assert clone.vocabulary == layer.vocabulary
        clone(x)
        clone.set_weights(layer.get_weights())
        np.testing.assert_array_equal(clone(x).numpy(), expected)
        revived = keras.layers.deserialize(keras.layers.serialize(layer))
        assert isinstance(revived, CategoricalEmbedding)


class TestMultiCategoricalEmbedding:
    def test_masked_mean_empty_value_and_unknown_token(self):
        layer = MultiCategoricalEmbedding(3, vocabulary=["a", "b", "c"])
        out = layer(tf.constant([["a|b", ""], ["c|zz|", "||"]])).numpy()
        e = _table(layer)  # rows: 0 OOV, 1 a, 2 b, 3 c
        expected = np.stack(
            [
                [(e[1] + e[2]) / 2, np.zeros(3)],  # "" -> no token -> zeros
                [(e[3] + e[0]) / 2, np.zeros(3)],  # "zz" -> OOV row; empty gaps dropped
            ]
        )
        assert out.shape == (2, 2, 3)
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)

    def test_gradient_is_the_token_share_and_finite(self):
        layer = MultiCategoricalEmbedding(2, vocabulary=["a", "b"])
        x = tf.constant(["a|b", "a", "", "|"])
        layer(x)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x))
        grad = tf.convert_to_tensor(tape.gradient(loss, layer.embeddings)).numpy()
        # d/dE_a = 1/2 ("a|b") + 1 ("a") = 1.5 per dim; d/dE_b = 1/2; OOV row unused.
        np.testing.assert_allclose(grad, [[0.0, 0.0], [1.5, 1.5], [0.5, 0.5]])

    def test_adapt_counts_tokens(self):
        layer = MultiCategoricalEmbedding(2, min_count=2)
        # tokens: b 3, a 1, c 1 ("" and empty gaps ignored)
        layer.adapt(_objects("a|b", "b|c", "b", "", "||"))
        assert layer.vocabulary == ["b"]
        all_tokens = MultiCategoricalEmbedding(2)
        all_tokens.adapt(_objects("a|b", "b|c", "b"))
        assert all_tokens.vocabulary == ["b", "a", "c"]

    def test_custom_separator_and_hashing(self):
        layer = MultiCategoricalEmbedding(2, separator=", ", hash_buckets=7)
        out = layer(tf.constant(["x, y", "x"])).numpy()
        rows = tf.strings.to_hash_bucket_fast(["x", "y"], 7).numpy()
        e = _table(layer)
        np.testing.assert_allclose(out, [(e[rows[0]] + e[rows[1]]) / 2, e[rows[0]]], rtol=1e-6)

    def test_vocabulary_entry_with_separator_rejected(self):
        with pytest.raises(ValueError, match="separator"):
            MultiCategoricalEmbedding(2, vocabulary=["a|b"])

    def test_config_round_trip(self):
        layer = MultiCategoricalEmbedding(3, separator=";", min_count=1, name="genres")
        layer.adapt(_objects("a;b", "c"))
        x = tf.constant(["a;c", "", "b;zz"])
        expected = layer(x).numpy()
        clone = MultiCategoricalEmbedding.from_config(json.loads(json.dumps(layer.get_config())))
        assert clone.separator == ";" and clone.vocabulary == layer.vocabulary
        clone(x)
        clone.set_weights(layer.get_weights())
        np.testing.assert_array_equal(clone(x).numpy(), expected)


def test_ids_are_stripped_as_the_csv_readers_strip_them():
    # Issue 13: training read "u1" (the reader strips), serving got "  u1 " (unknown).
    raw = ["  u1 ", "\tu2\n", "u\u00a0 3", "\u3000u4\u00a0", "", "  "]
    expected = [v.strip() for v in raw]  # the readers' str.strip(), Unicode spaces too
    assert [v.decode() for v in strip_ids(tf.constant(raw)).numpy().tolist()] == expected
    assert to_string_array(np.array(raw, object), "t").tolist() == expected
    layer = CategoricalEmbedding(4, vocabulary=["u1", "u2"])
    np.testing.assert_allclose(layer(tf.constant(["  u1 ", "u2\t"])).numpy(),
                               layer(tf.constant(["u1", "u2"])).numpy())
    multi = MultiCategoricalEmbedding(4, vocabulary=["a", "b"])
    np.testing.assert_allclose(multi(tf.constant([" a|b  "])).numpy(),
                               multi(tf.constant(["a|b"])).numpy())
