"""Full-catalogue metrics against rankings worked by hand."""

import math

import numpy as np
import pytest

from tfrecall.evaluation import metrics
from tfrecall.evaluation.metrics import (
    PairSets,
    evaluate_embeddings,
    evaluate_ranking,
    group_pairs,
)

# Items: i0 = [1, 0], i1 = [0.5, 0], i2 = [0, 1].
ITEMS = np.array([[1.0, 0.0], [0.5, 0.0], [0.0, 1.0]], np.float32)
# u0 = [1, 0]   -> scores [1, .5, 0];   i0 excluded (training)  -> ranking i1, i2
# u1 = [.1, 1]  -> scores [.1, .05, 1];  nothing excluded       -> ranking i2, i0, i1
USERS = np.array([[1.0, 0.0], [0.1, 1.0]], np.float32)
TARGETS = {0: {1}, 1: {0, 1}}
EXCLUDE = {0: {0}}


def test_recall_ndcg_hit_rate_by_hand():
    m = evaluate_embeddings(USERS, ITEMS, TARGETS, EXCLUDE, ks=(1, 2, 3))
    # Recall (per pair, 3 pairs): @1 u0 hit i1, u1 miss -> 1/3; @2 +i0 -> 2/3; @3 all -> 1.
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@2"] == pytest.approx(2 / 3)
    assert m["recall@3"] == pytest.approx(1.0)
    # NDCG (per user): u0 always 1 (hit at rank 1).
    # u1 @1: 0; @2: (1/log2 3) / (1 + 1/log2 3); @3: (1/log2 3 + 1/log2 4) / (1 + 1/log2 3).
    d2, d3 = 1 / math.log2(3), 1 / math.log2(4)
    assert m["ndcg@1"] == pytest.approx((1 + 0) / 2)
    assert m["ndcg@2"] == pytest.approx((1 + d2 / (1 + d2)) / 2)
    assert m["ndcg@3"] == pytest.approx((1 + (d2 + d3) / (1 + d2)) / 2)
    assert m["hit_rate@1"] == pytest.approx(0.5)
    assert m["hit_rate@2"] == pytest.approx(1.0)
    assert m["num_pairs"] == 3 and m["num_users"] == 2
    # Per-user recall @2: u0 1/1, u1 1/2 -> 0.75. MRR: u0 first hit rank 1, u1 rank 2 -> 0.75.
    assert m["user_recall@2"] == pytest.approx(0.75)
    assert m["mrr"] == pytest.approx((1 + 1 / 2) / 2)
    # Coverage @1: u0 shows i1, u1 shows i2 -> 2 of 3 items.
    assert m["coverage@1"] == pytest.approx(2 / 3)


def test_popularity_bias():
    # Popularity counts [6, 0, 3] (mean 3). @1 u0 shows i1 (0), u1 shows i2 (3) -> mean 1.5
    # -> bias 1.5 / 3 = 0.5.
    m = evaluate_embeddings(USERS, ITEMS, TARGETS, EXCLUDE, ks=(1,),
                            item_popularity=np.array([6.0, 0.0, 3.0]))
    assert m["popularity_bias@1"] == pytest.approx(0.5)


def test_excluded_target_is_dropped_and_unknown_item_is_a_miss():
    # u0's target i0 is also a training item: dropped. u1 has an unknown item (-1): a miss.
    m = evaluate_embeddings(USERS, ITEMS, {0: {0, 1}, 1: {2, -1}}, EXCLUDE, ks=(1,))
    # pairs: u0 {1}, u1 {2, -1} -> 3 pairs; hits @1: u0 i1, u1 i2 -> 2/3.
    assert m["num_pairs"] == 3
    assert m["recall@1"] == pytest.approx(2 / 3)


def test_k_larger_than_catalogue_ranks_everything():
    big = evaluate_embeddings(USERS, ITEMS, TARGETS, EXCLUDE, ks=(10,), batch_size=1)
    assert big["recall@10"] == pytest.approx(1.0)


def test_batching_gives_the_same_figures_at_k_below_the_catalogue():
    rng = np.random.default_rng(1)
    users, items = rng.normal(size=(23, 6)), rng.normal(size=(50, 6))
    targets = {u: set(rng.choice(50, 4, replace=False).tolist()) for u in range(23)}
    exclude = {u: set(rng.choice(50, 6, replace=False).tolist()) for u in range(23)}
    runs = [evaluate_embeddings(users, items, targets, exclude, ks=(5, 10), batch_size=b)
            for b in (1, 4, 7, 1000)]
    assert 0 < runs[0]["recall@5"] < runs[0]["recall@10"] < 1  # K cuts the ranking
    for other in runs[1:]:
        assert other == pytest.approx(runs[0], abs=1e-12)


def test_a_large_catalogue_is_scored_in_smaller_batches_with_the_same_figures(monkeypatch):
    rng = np.random.default_rng(2)
    users, items = rng.normal(size=(23, 6)), rng.normal(size=(50, 6))
    targets = {u: set(rng.choice(50, 4, replace=False).tolist()) for u in range(23)}
    exclude = {u: set(rng.choice(50, 6, replace=False).tolist()) for u in range(23)}
    sizes = []

    def score(batch):
        sizes.append(len(batch))
        return users[batch] @ items.T

    want = evaluate_ranking(score, 50, targets, exclude, ks=(5, 10), batch_size=1)
    sizes.clear()
    monkeypatch.setattr(metrics, "SCORE_ENTRIES", 50 * 4 + 49)  # 4 users of 50 items
    got = evaluate_ranking(score, 50, targets, exclude, ks=(5, 10), batch_size=512)
    assert sizes == [4] * 5 + [3]
    assert got == pytest.approx(want, abs=1e-12)
    sizes.clear()
    monkeypatch.setattr(metrics, "SCORE_ENTRIES", 10)  # fewer entries than one row
    assert evaluate_ranking(score, 50, targets, exclude, ks=(5, 10)) == pytest.approx(want)
    assert set(sizes) == {1}


def test_matches_numpy_full_sort_reference():
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(40, 8)), rng.normal(size=(200, 8))
    targets = {u: set(rng.choice(200, 3, replace=False).tolist()) for u in range(40)}
    exclude = {u: set(rng.choice(200, 5, replace=False).tolist()) for u in range(40)}
    m = evaluate_embeddings(users, items, targets, exclude, ks=(20,), batch_size=7)
    hits = pairs = 0
    for u in range(40):  # independent reference: full argsort
        s = (users[u] @ items.T).astype(np.float32)
        s[list(exclude[u])] = -np.inf
        top = set(np.argsort(-s)[:20].tolist())
        t = targets[u] - exclude[u]
        hits += len(t & top)
        pairs += len(t)
    assert m["recall@20"] == pytest.approx(hits / pairs)


def test_group_pairs_maps_ids_and_skips_unknown_users():
    g = group_pairs(
        np.array(["a", "a", "zz"], object), np.array(["x", "nope", "x"], object),
        {"a": 0}, {"x": 3},
    )
    assert g == {0: {3, -1}}


def test_pair_sets_equal_a_dict_of_sets_built_pair_by_pair():
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 30, 500), rng.integers(-1, 20, 500)  # duplicates, -1
    reference = {}
    for u, i in zip(users.tolist(), items.tolist(), strict=True):
        reference.setdefault(u, set()).add(i)
    pairs = PairSets(users, items)
    assert pairs == reference and len(pairs) == len(reference)
    assert sorted(pairs) == sorted(reference)
    missing = next(u for u in range(40) if u not in reference)
    assert pairs.get(missing, set()) == set()
    with pytest.raises(KeyError):
        pairs[missing]
    assert PairSets(np.zeros(0), np.zeros(0)) == {}


def test_bad_score_shape_and_bad_k():
    with pytest.raises(ValueError, match="score_fn returned"):
        evaluate_ranking(lambda u: np.zeros((len(u), 2)), 3, TARGETS, {}, ks=(1,))
    with pytest.raises(ValueError, match="ks must be positive"):
        evaluate_ranking(lambda u: np.zeros((len(u), 3)), 3, TARGETS, {}, ks=(0,))


def test_top_lists_agree_with_scores_and_drop_excluded_items():
    from tfrecall.evaluation.metrics import evaluate_top_lists

    # u0's list still holds its excluded item i0 (an index without exclusion): removed.
    lists = {0: [0, 1, 2], 1: [2, 0, 1]}
    m = evaluate_top_lists(lists, 3, TARGETS, EXCLUDE, ks=(1, 2, 3))
    ref = evaluate_embeddings(USERS, ITEMS, TARGETS, EXCLUDE, ks=(1, 2, 3))
    for key in ("recall@1", "recall@2", "ndcg@2", "mrr", "coverage@1"):
        assert m[key] == pytest.approx(ref[key]), key
    # A list cut short (only 1 item) gives no hit beyond it.
    short = evaluate_top_lists({0: [1], 1: [2]}, 3, TARGETS, EXCLUDE, ks=(3,))
    assert short["recall@3"] == pytest.approx(1 / 3)
