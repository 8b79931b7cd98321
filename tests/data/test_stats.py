"""Tests of tfrecall.io.stats: streaming counts, moments and quantiles vs numpy."""

from __future__ import annotations

import collections
import math

import numpy as np
import pytest

from tfrecall._backend import tf
from tfrecall.config import FeatureSpec
from tfrecall.io.stats import QuantileSample, StreamingStats, TokenCounts

NAN = float("nan")
INF = float("inf")


def _obj(values):
    values = list(values)
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _batches(table, size):
    n = len(next(iter(table.values())))
    for start in range(0, n, size):
        yield {k: v[start:start + size] for k, v in table.items()}


def _zipf_tokens(n, distinct, seed):
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, distinct + 1)
    return _obj(f"t{i}" for i in rng.choice(distinct, n, p=p / p.sum()))


class TestTokenCounts:
    def test_vocabulary_by_hand(self):
        stats = StreamingStats(strings=["item"])
        stats.update({"item": _obj(["b", "a", "c", "a", "", "b", "d"])})
        stats.update({"item": _obj(["a", "e"])})
        # a 3, b 2, c 1, d 1, e 1; "" is missing. Ties by value.
        assert stats.vocabulary("item") == ["a", "b", "c", "d", "e"]
        assert stats.vocabulary("item", min_count=2) == ["a", "b"]
        assert stats.vocabulary("item", max_tokens=3) == ["a", "b", "c"]
        counts = stats.token_stats("item")
        assert (counts.total, counts.missing, counts.error) == (8, 1, 0)
        assert stats.rows == 9

    def test_exact_up_to_capacity(self):
        tokens = _zipf_tokens(5000, 300, seed=0)
        stats = StreamingStats(strings=["t"], capacity=300)
        for batch in _batches({"t": tokens}, 777):
            stats.update(batch)
        assert stats.token_counts("t") == dict(collections.Counter(tokens.tolist()))
        assert stats.token_stats("t").exact

    @pytest.mark.parametrize("seed", [0, 1])
    def test_misra_gries_bound_beyond_capacity(self, seed):
        tokens = _zipf_tokens(20000, 5000, seed=seed)
        capacity = 200
        stats = StreamingStats(strings=["t"], capacity=capacity)
        for batch in _batches({"t": tokens}, 1000):
            stats.update(batch)
        counts = stats.token_stats("t")
        truth = collections.Counter(tokens.tolist())
        estimate = counts.counts()
        assert len(estimate) <= capacity
        # The error actually reached, and the Misra-Gries bound N / (capacity + 1).
        assert 0 < counts.error <= 20000 / (capacity + 1)
        for token, count in truth.items():
            assert count - counts.error <= estimate.get(token, 0) <= count
        # Tokens more frequent than the error are never lost.
        assert all(t in estimate for t, c in truth.items() if c > counts.error)

    def test_merge_of_summaries_keeps_the_bound(self):
        a, b = _zipf_tokens(10000, 3000, seed=2), _zipf_tokens(10000, 3000, seed=3)
        left, right = TokenCounts(150), TokenCounts(150)
        for part, tokens in ((left, a), (right, b)):
            for start in range(0, len(tokens), 500):
                part.add(collections.Counter(tokens[start:start + 500].tolist()))
        left.merge(right)
        truth = collections.Counter(a.tolist() + b.tolist())
        estimate = left.counts()
        assert left.error <= 20000 / 151
        for token, count in truth.items():
            assert count - left.error <= estimate.get(token, 0) <= count

    def test_multi_valued_column_counts_tokens(self):
        stats = StreamingStats(multi={"genres": "|"})
        stats.update({"genres": _obj(["Action|Comedy", "Comedy", "", "Drama||Comedy"])})
        # Comedy 3, Action 1, Drama 1; "" and the gap in "Drama||Comedy" are missing.
        assert stats.token_counts("genres", "|") == {"Action": 1, "Comedy": 3, "Drama": 1}
        assert stats.token_stats("genres").missing == 2
        with pytest.raises(ValueError, match="separator '\\|'.*None was asked"):
            stats.token_counts("genres")

    def test_bytes_and_tensors_are_decoded(self):
        stats = StreamingStats(strings=["u"], numbers=["x"])
        stats.update({"u": tf.constant(["é", "a", "é"]), "x": tf.constant([1.0, 2.0, 3.0])})
        stats.update({"u": np.array([b"a"], dtype=object), "x": np.array([4], np.int64)})
        assert stats.token_counts("u") == {"é": 2, "a": 2}
        assert stats.moments("x").count == 4


class TestMoments:
    def test_match_numpy_and_count_missing(self):
        rng = np.random.default_rng(0)
        # A large offset: a naive sum of squares would lose the small variance.
        x = 1e9 + rng.normal(size=10000)
        x[::97] = NAN
        x[5] = INF
        x[6] = -INF
        stats = StreamingStats(numbers=["x"])
        for batch in _batches({"x": x}, 333):
            stats.update(batch)
        finite = x[np.isfinite(x)]
        m = stats.moments("x")
        assert m.count == finite.size and m.missing == x.size - finite.size
        np.testing.assert_allclose(m.mean, finite.mean(), rtol=1e-12)
        np.testing.assert_allclose(m.variance, finite.var(), rtol=1e-6)
        assert (m.minimum, m.maximum) == (finite.min(), finite.max())

    def test_log1p_moments(self):
        x = np.array([-3.0, 0.0, 1.0, 10.0, 1000.0, NAN])
        stats = StreamingStats(numbers=["x"])
        stats.update({"x": x[:2]})
        stats.update({"x": x[2:]})
        t = np.sign(x[:5]) * np.log1p(np.abs(x[:5]))
        m = stats.moments("x", log1p=True)
        np.testing.assert_allclose([m.mean, m.variance], [t.mean(), t.var()], rtol=1e-12)

    def test_no_finite_value_gives_nan_moments(self):
        stats = StreamingStats(numbers=["x"])
        stats.update({"x": np.array([NAN, INF])})
        m = stats.moments("x")
        assert m.count == 0 and m.missing == 2 and math.isnan(m.mean)
        with pytest.raises(ValueError, match="'x' has no finite value"):
            stats.quantiles("x", [0.5])


class TestQuantiles:
    def test_exact_while_the_sample_holds_everything(self):
        rng = np.random.default_rng(1)
        x = rng.exponential(size=5000)
        stats = StreamingStats(numbers=["x"], sample_size=5000)
        for batch in _batches({"x": x}, 600):
            stats.update(batch)
        levels = np.arange(1, 10) / 10
        np.testing.assert_array_equal(stats.quantiles("x", levels), np.quantile(x, levels))
        t = np.sign(x) * np.log1p(np.abs(x))
        np.testing.assert_allclose(stats.quantiles("x", levels, log1p=True),
                                   np.quantile(t, levels), rtol=1e-12)
        assert stats.quantile_sample("x").rank_error() == 0.0

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_rank_error_within_the_dkw_bound(self, seed):
        rng = np.random.default_rng(100 + seed)
        x = rng.lognormal(size=100_000)
        sample = QuantileSample(size=2000, seed=seed)
        for start in range(0, x.size, 7000):
            sample.add(x[start:start + 7000])
        levels = np.arange(1, 20) / 20
        estimate = sample.quantiles(levels)
        ranks = np.searchsorted(np.sort(x), estimate) / x.size
        bound = sample.rank_error(1e-6)
        # eps = sqrt(ln(2 / 1e-6) / (2 * 2000)) = 0.0602
        np.testing.assert_allclose(bound, math.sqrt(math.log(2e6) / 4000), rtol=1e-12)
        assert np.max(np.abs(ranks - levels)) <= bound
        assert sample.values.size == 2000 and sample.count == x.size


class TestMerge:
    def test_two_shards_equal_one_pass(self):
        rng = np.random.default_rng(3)
        n = 4000
        table = {"u": _obj(f"u{i}" for i in rng.integers(0, 50, n)),
                 "x": rng.normal(3.0, 2.0, n)}
        one = StreamingStats(strings=["u"], numbers=["x"])
        for batch in _batches(table, 500):
            one.update(batch)
        left = StreamingStats(strings=["u"], numbers=["x"], seed=1)
        right = StreamingStats(strings=["u"], numbers=["x"], seed=2)
        for i, batch in enumerate(_batches(table, 500)):
            (left if i % 2 else right).update(batch)
        merged = left.merge(right)
        assert merged.rows == one.rows == n
        assert merged.token_counts("u") == one.token_counts("u")
        a, b = merged.moments("x"), one.moments("x")
        assert a.count == b.count
        np.testing.assert_allclose([a.mean, a.variance], [b.mean, b.variance], rtol=1e-12)
        levels = [0.1, 0.5, 0.9]
        np.testing.assert_array_equal(merged.quantiles("x", levels),
                                      np.quantile(table["x"], levels))

    def test_merge_needs_the_same_columns(self):
        with pytest.raises(ValueError, match="different columns"):
            StreamingStats(strings=["u"]).merge(StreamingStats(strings=["v"]))


class TestArguments:
    def test_from_specs(self):
        specs = [FeatureSpec("item_id", "id"), FeatureSpec("genres", "multi_categorical",
                                                           separator=";"),
                 FeatureSpec("price", "continuous"), FeatureSpec("year", "bucketized")]
        stats = StreamingStats.from_specs(specs)
        assert stats.columns == ["item_id", "genres", "price", "year"]
        assert stats.string_columns == ["item_id", "genres"]
        stats.update({"item_id": _obj(["a"]), "genres": _obj(["x;y"]),
                      "price": np.array([1.0]), "year": np.array([2000.0])})
        assert stats.token_counts("genres", ";") == {"x": 1, "y": 1}

    @pytest.mark.parametrize("kwargs, message", [
        ({}, "at least one column"),
        ({"strings": ["a"], "numbers": ["a"]}, "named more than once"),
        ({"multi": {"g": ""}}, "non-empty separator"),
        ({"strings": ["a"], "capacity": 0}, "capacity must be an integer >= 1"),
        ({"numbers": ["a"], "sample_size": 1.5}, "sample_size must be an integer"),
    ])
    def test_bad_arguments(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            StreamingStats(**kwargs)

    def test_bad_batches(self):
        stats = StreamingStats(strings=["u"], numbers=["x"])
        with pytest.raises(ValueError, match=r"column\(s\) \['x'\] missing from the batch"):
            stats.update({"u": _obj(["a"])})
        with pytest.raises(TypeError, match="'u' is a string column.*float64"):
            stats.update({"u": np.array([1.0]), "x": np.array([1.0])})
        with pytest.raises(TypeError, match="'x' is numeric.*"):
            stats.update({"u": _obj(["a"]), "x": _obj(["1"])})
        with pytest.raises(TypeError, match="'u' holds 7; expected str"):
            stats.update({"u": _obj(["a", 7]), "x": np.array([1.0, 2.0])})
        with pytest.raises(ValueError, match="'u' holds b.*which is not UTF-8 text"):
            stats.update({"u": _obj([b"\xff"]), "x": np.array([1.0])})
        with pytest.raises(ValueError, match="'x' is not a string column"):
            stats.vocabulary("x")
        with pytest.raises(ValueError, match="'u' is not a numeric column"):
            stats.moments("u")
