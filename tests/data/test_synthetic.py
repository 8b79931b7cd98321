"""Tests of the synthetic world: determinism, schema, and the signal it must carry."""

import dataclasses

import numpy as np
import pytest

from tfrecall.data.synthetic import SyntheticConfig, generate, ranker_lists
from tfrecall.io.schema import DEFAULT_EVENT_LABELS, RecallData

SMALL = SyntheticConfig(num_users=200, num_items=120, num_categories=6, num_brands=12,
                        num_tags=10, requests_per_user=3.0, exposures_per_request=8, seed=7)


@pytest.fixture(scope="module")
def world():
    """The default world (the package's default data set); generated once."""
    return generate()


@pytest.fixture(scope="module")
def small():
    return generate(SMALL)


def _all_arrays(w):
    d = w.data
    tables = {"interactions": d.interactions, "users": d.users, "items": d.items}
    out = {f"{t}.{c}": v for t, table in tables.items() for c, v in table.items()}
    out.update(user_vectors=w.user_vectors, item_vectors=w.item_vectors)
    return out


def test_same_seed_gives_identical_arrays(small):
    again = _all_arrays(generate(SMALL))
    for name, value in _all_arrays(small).items():
        assert value.dtype == again[name].dtype, name
        if value.dtype == object:
            assert value.tolist() == again[name].tolist(), name
        else:
            assert value.tobytes() == again[name].tobytes(), name


def test_other_seed_gives_other_world(small):
    other = generate(dataclasses.replace(SMALL, seed=8))
    assert not np.array_equal(small.user_vectors, other.user_vectors)
    assert small.data.interactions["item_id"].tolist() != other.data.interactions[
        "item_id"].tolist()


def test_default_size_matches_the_target(world):
    # The default is meant to train in well under a minute on 2 cores.
    inter = world.data.interactions
    assert 100_000 <= len(inter["user_id"]) <= 200_000
    assert 15_000 <= int(inter["positive"].sum()) <= 30_000
    assert len(world.data.users["user_id"]) == 3000
    assert len(world.data.items["item_id"]) == 1500


def test_columns_and_dtypes(small):
    d = small.data
    # Rebuilding the RecallData runs the schema validation again.
    RecallData(d.interactions, d.users, d.items)
    assert set(d.users) == {"user_id", "age", "gender", "country", "interests"}
    assert set(d.items) == {"item_id", "category", "brand", "price", "tags"}
    assert set(d.interactions) == {"user_id", "item_id", "label", "positive", "timestamp",
                                   "event", "request_id", "ranker_score"}
    assert d.users["user_id"][:3].tolist() == ["u0", "u1", "u2"]
    assert d.items["item_id"][:3].tolist() == ["i0", "i1", "i2"]
    for table, col, dtype in [("users", "age", np.float32), ("items", "price", np.float32),
                              ("interactions", "label", np.float32),
                              ("interactions", "ranker_score", np.float32),
                              ("interactions", "timestamp", np.int64),
                              ("interactions", "positive", bool)]:
        assert getattr(d, table)[col].dtype == dtype, (table, col)
    for table, col in [("users", "gender"), ("users", "country"), ("users", "interests"),
                       ("items", "category"), ("items", "brand"), ("items", "tags"),
                       ("interactions", "event"), ("interactions", "request_id")]:
        values = getattr(d, table)[col]
        assert values.dtype == object and all(isinstance(v, str) for v in values), (table, col)
    assert small.true_affinity.shape == (200, 120)
    assert small.true_affinity.dtype == np.float32


def test_labels_follow_events(small):
    inter = small.data.interactions
    expected = np.asarray([DEFAULT_EVENT_LABELS[e] for e in inter["event"]], np.float32)
    np.testing.assert_array_equal(inter["label"], expected)
    np.testing.assert_array_equal(inter["positive"], inter["event"] != "impression")
    assert set(inter["event"].tolist()) == {"impression", "click", "cart", "order"}


def test_event_rates_follow_the_config(world):
    events = world.data.interactions["event"]
    n = len(events)
    # "at least a click" = click, cart or order; thresholds are quantiles of all exposures.
    at_least = {"click": ("click", "cart", "order"), "cart": ("cart", "order"),
                "order": ("order",)}
    for name, rate in [("click", 0.15), ("cart", 0.05), ("order", 0.02)]:
        assert np.isin(events, at_least[name]).sum() / n == pytest.approx(rate, abs=1e-3)


def test_positives_have_higher_true_affinity(world):
    inter = world.data.interactions
    a = world.true_affinity[world.user_rows(inter["user_id"]), world.item_rows(inter["item_id"])]
    means = [a[inter["event"] == e].mean() for e in ("impression", "click", "cart", "order")]
    assert means == sorted(means)  # events are increasing thresholds on affinity + noise
    assert a[inter["positive"]].mean() > a[~inter["positive"]].mean() + 1.0
    # The ranker score is a noisy affinity: strongly but not perfectly correlated.
    corr = np.corrcoef(a, inter["ranker_score"])[0, 1]
    assert 0.7 < corr < 0.999


def test_popularity_is_long_tailed(world):
    counts = np.bincount(world.item_rows(world.data.interactions["item_id"]), minlength=1500)
    share_top10 = np.sort(counts)[::-1][:150].sum() / counts.sum()
    assert share_top10 > 0.3  # uniform exposure would give 0.1
    # Exposure counts follow the hidden Zipf popularity (rank correlation).
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    assert np.corrcoef(rank(counts), rank(world.popularity))[0, 1] > 0.5


def test_missing_rates(world):
    users, items = world.data.users, world.data.items
    # 2% of 3000 users: 60 expected, std about 7.7; of 1500 items: 30, std about 5.4.
    assert 0.01 < np.isnan(users["age"]).mean() < 0.035
    assert 0.005 < np.isnan(items["price"]).mean() < 0.04
    assert 0.01 < (users["gender"] == "").mean() < 0.035
    assert 0.01 < (users["country"] == "").mean() < 0.035
    assert (users["interests"] == "").any() and (items["tags"] == "").any()
    price = items["price"][~np.isnan(items["price"])]
    assert price.min() > 0 and price.max() > 5 * np.median(price)  # log-normal, heavy tailed


def test_multi_valued_and_brand_structure(small):
    users, items = small.data.users, small.data.items
    categories = {f"cat{k}" for k in range(6)}
    for value in users["interests"]:
        parts = value.split("|") if value else []
        assert set(parts) <= categories and len(parts) == len(set(parts)) <= 3
    tags = {f"tag{k}" for k in range(10)}
    for value in items["tags"]:
        parts = value.split("|") if value else []
        assert set(parts) <= tags and len(parts) == len(set(parts)) <= 3
    # Each brand belongs to exactly one category.
    for brand in np.unique(items["brand"]):
        assert len(np.unique(items["category"][items["brand"] == brand])) == 1


def test_requests_are_consistent(small):
    inter = small.data.interactions
    assert np.all(np.diff(inter["timestamp"]) > 0)
    for rid in np.unique(inter["request_id"])[:50]:
        rows = inter["request_id"] == rid
        assert rows.sum() == 8
        assert len(set(inter["item_id"][rows].tolist())) == 8  # distinct items per request
        assert len(set(inter["user_id"][rows].tolist())) == 1


def test_features_carry_signal(world):
    # Between-brand share of the item vectors' variance (one-way ANOVA R^2): the brand
    # (hence the category) explains much of an item's latent vector.
    brand = world.data.items["brand"]
    v = world.item_vectors.astype(np.float64)
    _, code = np.unique(brand, return_inverse=True)
    means = np.stack([np.bincount(code, weights=v[:, j]) for j in range(v.shape[1])], axis=1)
    means /= np.bincount(code)[:, None]
    r2 = 1.0 - np.sum((v - means[code]) ** 2) / np.sum((v - v.mean(axis=0)) ** 2)
    assert r2 > 0.3


def test_true_affinity_beats_popularity_on_held_out_positives(world):
    # Random 80/20 split of rows; rank all items per user, training positives removed.
    inter = world.data.interactions
    rng = np.random.default_rng(42)
    test = rng.random(len(inter["user_id"])) < 0.2
    pos = inter["positive"]
    u, i = world.user_rows(inter["user_id"]), world.item_rows(inter["item_id"])
    seen = np.zeros((3000, 1500), bool)
    seen[u[pos & ~test], i[pos & ~test]] = True

    def recall_at_50(scores):
        scores = np.where(seen, -np.inf, scores)
        top = np.argpartition(-scores, 50, axis=1)[:, :50]
        hit = np.zeros_like(seen)
        hit[np.arange(3000)[:, None], top] = True
        return hit[u[pos & test], i[pos & test]].mean()

    popularity = np.bincount(i[pos & ~test], minlength=1500).astype(np.float64)
    pop_recall = recall_at_50(np.broadcast_to(popularity, seen.shape))
    assert recall_at_50(world.true_affinity) > pop_recall + 0.1
    # The feature-only part of the vectors alone also beats popularity.
    features = world.user_feature_vectors @ world.item_feature_vectors.T
    assert recall_at_50(features) > pop_recall


def test_affinity_and_rows(small):
    np.testing.assert_allclose(small.affinity([0, 5], [3, 7]),
                               small.true_affinity[[0, 5], [3, 7]], rtol=1e-5)
    np.testing.assert_array_equal(small.item_rows(np.array(["i5", "nope"], dtype=object)),
                                  [5, -1])
    np.testing.assert_array_equal(small.user_rows(np.array([["u1"]], dtype=object)), [[1]])


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_brands=3, num_categories=5), "num_brands"),
    (dict(click_rate=0.05, cart_rate=0.1), "click_rate"),
    (dict(exposures_per_request=50, num_items=10), "exposures_per_request"),
    (dict(num_users=0), "num_users"),
    (dict(feature_signal=1.5), "feature_signal"),
    (dict(requests_per_user=0.5), "requests_per_user"),
])
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticConfig(**kwargs)


def test_ranker_lists_rank_every_request_and_agree_with_the_log(small):
    rl = ranker_lists(small, top_n=30)
    inter = small.data.interactions
    names, first = np.unique(inter["request_id"].astype(str), return_index=True)
    order = np.argsort(first)
    assert rl.request_ids.tolist() == names[order].tolist()  # order of first appearance
    assert rl.user_ids.tolist() == inter["user_id"][np.sort(first)].tolist()
    assert rl.items.shape == (len(names), 30) and (rl.items >= 0).all()
    assert np.all(np.diff(rl.scores, axis=1) <= 0)  # best first
    assert all(len(set(row)) == 30 for row in rl.items.tolist())  # distinct items
    # An exposed item that made the list carries its logged ranker score.
    where = {r: i for i, r in enumerate(rl.request_ids.tolist())}
    listed = {(where[r], rl.item_vocab[i]): s for r in where for i, s in
              zip(rl.items[where[r]], rl.scores[where[r]], strict=True)}
    hits = [(listed[(where[r], i)], s) for r, i, s in
            zip(inter["request_id"], inter["item_id"], inter["ranker_score"], strict=True)
            if (where[r], i) in listed]
    assert len(hits) > 0.5 * len(inter["item_id"])  # exposures tend to rank high
    np.testing.assert_array_equal(*zip(*hits, strict=True))


def test_ranker_list_scores_are_affinity_plus_ranker_noise(small):
    full = ranker_lists(small, top_n=10_000)  # capped at the catalogue: no selection
    assert full.items.shape[1] == len(small.item_ids)
    users = small.user_rows(full.user_ids)
    residual = full.scores - small.affinity(users[:, None], small.item_rows(
        full.item_vocab)[full.items])
    assert abs(residual.std() - small.config.ranker_noise) < 0.05 * small.config.ranker_noise
    assert abs(residual.mean()) < 0.02


def test_ranker_lists_are_deterministic_and_leave_the_log_alone(small):
    before = {k: v.copy() for k, v in small.data.interactions.items()}
    a, b = ranker_lists(small, top_n=12), ranker_lists(small, top_n=12)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert not np.array_equal(a.scores, ranker_lists(small, top_n=12, seed=99).scores)
    for name, value in small.data.interactions.items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    with pytest.raises(ValueError, match="top_n"):
        ranker_lists(small, top_n=0)
