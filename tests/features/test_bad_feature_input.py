"""Bad input for the feature layers (issue 7): no NaN/inf out, whatever comes in.

Property-based (hypothesis) over NaN/inf/huge/subnormal numbers, empty, Unicode, huge
and invalid-UTF-8 strings and extreme integer ids; plus hand cases for adapting on
unusable columns and for the streaming adapt methods' argument checks. Layers are
built once per module (building Keras layers per example would dominate the time).
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec
from tfrecall.features.continuous import BucketizedEmbedding, ContinuousFeature
from tfrecall.features.embeddings import CategoricalEmbedding, MultiCategoricalEmbedding
from tfrecall.features.encoder import FeatureEncoder

# Deterministic examples (seeded from the test name), no example database.
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None)

strings = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "|", "||", "a|", "|a", "a|b", "é|ü", "\x00", "\u3000",
                     "x" * 10_000, "[UNK]", "nan"]),
)
raw_bytes = st.binary(max_size=12)  # mostly not valid UTF-8
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, -0.0, 1e-45, -1e-310, 3.4e38, -3.5e38, 1e308, float("nan"),
                     float("inf"), -float("inf")]),
)


def _finite(tensor) -> bool:
    return bool(np.all(np.isfinite(tf.convert_to_tensor(tensor).numpy())))


@pytest.fixture(scope="module")
def layers():
    keras.utils.set_random_seed(0)
    categorical = CategoricalEmbedding(4, num_oov_buckets=3, name="cat")
    categorical.adapt(np.array(["a", "b", "é", "a"], dtype=object))
    hashed = CategoricalEmbedding(4, hash_buckets=7, name="hashed")
    multi = MultiCategoricalEmbedding(4, name="multi")
    multi.adapt(np.array(["a|b", "c", "é|a"], dtype=object))
    continuous = ContinuousFeature(mean=2.0, variance=9.0, name="cont")
    logged = ContinuousFeature(mean=1.0, variance=0.5, log1p=True, name="logged")
    buckets = BucketizedEmbedding(4, boundaries=[-1.0, 0.0, 10.0], name="buckets")
    logged_buckets = BucketizedEmbedding(4, boundaries=[0.0, 1.0], log1p=True, name="lb")
    return {"categorical": categorical, "hashed": hashed, "multi": multi,
            "continuous": continuous, "logged": logged, "buckets": buckets,
            "logged_buckets": logged_buckets}


@SETTINGS
@given(values=st.lists(st.one_of(strings, raw_bytes), min_size=1, max_size=8))
def test_string_layers_never_output_nan_or_inf(layers, values):
    x = tf.constant([v.encode("utf-8") if isinstance(v, str) else v for v in values])
    for name in ("categorical", "hashed", "multi"):
        out = layers[name](x)
        assert out.shape == (len(values), 4), name
        assert _finite(out), (name, values)


@SETTINGS
@given(values=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=8))
def test_extreme_integer_ids(layers, values):
    x = tf.constant(values, tf.int64)
    for name in ("categorical", "hashed"):
        assert _finite(layers[name](x)), name


@SETTINGS
@given(values=st.lists(numbers, min_size=1, max_size=8))
def test_numeric_layers_never_output_nan_or_inf(layers, values):
    x = tf.constant(values, tf.float64)
    for name in ("continuous", "logged", "buckets", "logged_buckets"):
        out = layers[name](x)
        assert _finite(out), (name, values)
    # A value that is NaN or ±inf after the float32 cast is flagged missing, z = default.
    with np.errstate(over="ignore"):
        missing = ~np.isfinite(np.asarray(values, np.float64).astype(np.float32))
    np.testing.assert_array_equal(layers["continuous"](x).numpy()[:, 1], missing)


@SETTINGS
@given(values=st.lists(numbers, min_size=1, max_size=6))
def test_gradients_stay_finite_for_missing_numbers(layers, values):
    x = tf.constant(values, tf.float32)
    for name in ("continuous", "logged", "buckets"):
        layer = layers[name]
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x))
        for grad in tape.gradient(loss, layer.trainable_variables):
            assert _finite(tf.convert_to_tensor(grad)), name


@SETTINGS
@given(column=st.lists(st.one_of(st.text(max_size=6), st.just("")), min_size=1, max_size=10))
def test_adapt_on_any_strings_gives_a_vocabulary_or_a_clear_error(column):
    layer = CategoricalEmbedding(2, min_count=2, name="city")
    try:
        layer.adapt(np.array(column, dtype=object))
    except ValueError as e:
        assert "'city'" in str(e) and "vocabulary is empty" in str(e)
        counts = collections.Counter(v for v in column if v)
        assert not counts or max(counts.values()) < 2  # nothing was seen twice
        return
    assert "" not in layer.vocabulary
    assert all(column.count(v) >= 2 for v in layer.vocabulary)


class TestHandCases:
    @pytest.mark.parametrize("values", [[], [np.nan, np.inf, -np.inf]])
    def test_adapt_without_a_finite_value(self, values):
        for layer in (ContinuousFeature(name="price"), BucketizedEmbedding(2, name="price")):
            with pytest.raises(ValueError, match="'price': adapt got no finite value"):
                layer.adapt(np.array(values, np.float32))

    def test_adapt_on_text_for_a_numeric_layer(self):
        with pytest.raises(TypeError, match="'price': adapt needs numeric values"):
            ContinuousFeature(name="price").adapt(np.array(["1.5"], dtype=object))

    def test_streaming_adapt_arguments(self):
        with pytest.raises(ValueError, match="'price'.*finite mean.*no finite value seen"):
            ContinuousFeature(name="price").adapt_from_moments(float("nan"), float("nan"))
        with pytest.raises(ValueError, match="'price'.*variance >= 0"):
            ContinuousFeature(name="price").adapt_from_moments(1.0, -1.0)
        with pytest.raises(ValueError, match="'year'.*needs 3 finite quantiles"):
            BucketizedEmbedding(2, num_buckets=4, name="year").adapt_from_quantiles([1.0, 2.0])
        with pytest.raises(ValueError, match="'year'.*needs 3 finite quantiles"):
            BucketizedEmbedding(2, num_buckets=4, name="year").adapt_from_quantiles(
                [1.0, float("inf"), 3.0])
        with pytest.raises(ValueError, match="'city'.*vocabulary is empty"):
            CategoricalEmbedding(2, min_count=3, name="city").adapt_from_counts({"a": 2, "": 9})

    def test_streaming_adapt_by_hand(self):
        layer = CategoricalEmbedding(2, max_tokens=2)
        # "" (missing) is never kept; ties by value: b and c have 2, a has 1.
        layer.adapt_from_counts({"": 10, "c": 2, "a": 1, "b": 2})
        assert layer.vocabulary == ["b", "c"]
        buckets = BucketizedEmbedding(2, num_buckets=4)
        buckets.adapt_from_quantiles([3.0, 1.0, 1.0])  # sorted, ties merged
        assert buckets.boundaries == [1.0, 3.0]
        hashed = CategoricalEmbedding(2, hash_buckets=5)
        hashed.adapt_from_counts({"a": 1})  # hashing keeps no vocabulary
        assert hashed.vocabulary is None

    def test_streaming_adapt_after_build_is_refused(self):
        layer = ContinuousFeature(mean=0.0, variance=1.0, name="price")
        layer(tf.constant([1.0]))
        with pytest.raises(ValueError, match="before the first call"):
            layer.adapt_from_moments(1.0, 1.0)
        embedding = CategoricalEmbedding(2, vocabulary=["a"], name="city")
        embedding(tf.constant(["a"]))
        with pytest.raises(ValueError, match="before the first call"):
            embedding.adapt_from_counts({"b": 1})

    def test_encoder_names_unknown_columns_and_kinds(self):
        with pytest.raises(ValueError, match="feature 'colour': kind must be one of"):
            FeatureEncoder([{"name": "colour", "kind": "colorful"}])
        encoder = FeatureEncoder([FeatureSpec("colour", "categorical"),
                                  FeatureSpec("price", "continuous")])
        with pytest.raises(ValueError, match=r"\['colour'\] not in the table; available "
                                             r"columns: \['price'\]"):
            encoder.adapt({"price": np.array([1.0])})
        encoder.adapt({"colour": np.array(["red"], dtype=object), "price": np.array([1.0])})
        with pytest.raises(ValueError, match=r"\['price'\] missing from the inputs"):
            encoder({"colour": tf.constant(["red"])})

    def test_encoder_on_nasty_rows_is_finite(self):
        encoder = FeatureEncoder([FeatureSpec("colour", "categorical"),
                                  FeatureSpec("tags", "multi_categorical"),
                                  FeatureSpec("price", "continuous", log1p=True),
                                  FeatureSpec("year", "bucketized", num_buckets=3)])
        encoder.adapt({"colour": np.array(["red", "", "é"], dtype=object),
                       "tags": np.array(["a|b", "", "|"], dtype=object),
                       "price": np.array([1.0, np.nan, 1e30], np.float32),
                       "year": np.array([1990.0, 2000.0, np.inf], np.float32)})
        out = encoder({"colour": tf.constant(["", "\u3000", "x" * 5000]),
                       "tags": tf.constant(["||", "a|zz|", "\xff".encode("latin-1")]),
                       "price": tf.constant([np.nan, -np.inf, 3.4e38], tf.float32),
                       "year": tf.constant([np.nan, 1e38, -1e38], tf.float32)})
        assert out.shape == (3, encoder.output_dim) and _finite(out)
