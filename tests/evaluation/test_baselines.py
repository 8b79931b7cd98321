"""Baselines against hand-worked examples and a dense numpy reference."""

import csv
import math
import time

import numpy as np
import pytest

from tfrecall.evaluation import baselines
from tfrecall.evaluation.baselines import ItemCF, _count_keys, popularity_scores
from tfrecall.evaluation.metrics import evaluate_ranking


def test_popularity_counts_training_positives_per_catalogue_item():
    catalogue = np.array(["a", "b", "c"], object)
    # a twice, c once, an item outside the catalogue ignored.
    scores = popularity_scores(np.array(["a", "c", "a", "zz"], object), catalogue)
    np.testing.assert_array_equal(scores, [2.0, 0.0, 1.0])


# ------------------------------------------------------------------------------ ItemCF
# 3 users x 3 items:  u0 = {i0, i1},  u1 = {i1, i2},  u2 = {i0, i1, i2}.
HAND_USERS = np.array([0, 0, 1, 1, 2, 2, 2])
HAND_ITEMS = np.array([0, 1, 1, 2, 0, 1, 2])
# n = [2, 3, 2] users per item; co-occurrence c01 = 2 (u0, u2), c02 = 1 (u2), c12 = 2 (u1, u2).
# sim01 = 2 / sqrt(2 * 3) = 2/sqrt6 ~ 0.8165,  sim02 = 1 / sqrt(2 * 2) = 0.5,  sim12 = 2/sqrt6.
S = 2 / math.sqrt(6)
# All neighbours kept: score(u, k) = sum over u's items j != k of sim(j, k).
HAND_SCORES_ALL = [
    [S, S, 0.5 + S],  # u0 {i0, i1}: i0 <- sim10; i1 <- sim01; i2 <- sim02 + sim12
    [S + 0.5, S, S],  # u1 {i1, i2}: i0 <- sim10 + sim20; i1 <- sim21; i2 <- sim12
    [S + 0.5, 2 * S, 0.5 + S],  # u2 {i0, i1, i2}: i0 <- sim10 + sim20; i1 <- sim01 + sim21; ...
]
# One neighbour each: i0 -> i1 (S > 0.5); i1 -> i0 (tie S = S with i2, lower index wins);
# i2 -> i1 (S > 0.5).
HAND_SCORES_TOP1 = [
    [S, S, 0.0],  # u0 {i0, i1}: i0 <- i1's list; i1 <- i0's list; nobody keeps i2
    [S, S, 0.0],  # u1 {i1, i2}: i0 <- i1's list; i1 <- i2's list
    [S, 2 * S, 0.0],  # u2: i0 <- i1's list; i1 <- i0's and i2's lists
]


def test_itemcf_hand_worked_example():
    cf = ItemCF(num_neighbors=None).fit(HAND_USERS, HAND_ITEMS, 3, 3)
    scores = cf.score(np.array([0, 1, 2]))
    assert scores.dtype == np.float32 and scores.shape == (3, 3)
    np.testing.assert_allclose(scores, HAND_SCORES_ALL, rtol=1e-6)
    items, weights = cf.similar_items(0)
    np.testing.assert_array_equal(items, [1, 2])  # most similar first
    np.testing.assert_allclose(weights, [S, 0.5], rtol=1e-6)


def test_itemcf_neighbor_truncation_keeps_the_most_similar_lower_index_on_ties():
    cf = ItemCF(num_neighbors=1).fit(HAND_USERS, HAND_ITEMS, 3, 3)
    assert [cf.similar_items(i)[0].tolist() for i in range(3)] == [[1], [0], [1]]
    np.testing.assert_allclose(cf.score(np.array([0, 1, 2])), HAND_SCORES_TOP1, rtol=1e-6)
    # Scores follow the requested user order, repeats included.
    np.testing.assert_allclose(
        cf.score(np.array([2, 0, 2])),
        [HAND_SCORES_TOP1[2], HAND_SCORES_TOP1[0], HAND_SCORES_TOP1[2]],
        rtol=1e-6,
    )


def test_itemcf_duplicated_pairs_count_once():
    # u0 has i0 three times and u2 has i2 twice: with counts, c02 and n0 would change.
    users = np.concatenate([HAND_USERS, [0, 0, 2]])
    items = np.concatenate([HAND_ITEMS, [0, 0, 2]])
    cf = ItemCF(num_neighbors=None).fit(users, items, 3, 3)
    np.testing.assert_allclose(cf.score(np.array([0, 1, 2])), HAND_SCORES_ALL, rtol=1e-6)


def _dense_reference(x: np.ndarray, num_neighbors) -> np.ndarray:
    """Item-item cosine on binary X the naive dense way, top-N per row, scores = X @ S_N."""
    c = x.T @ x  # co-occurrence counts, diagonal n_i
    n = np.diag(c).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        sim = np.where(c > 0, c / np.sqrt(np.outer(n, n)), 0.0)
    np.fill_diagonal(sim, 0.0)
    kept = np.zeros_like(sim)
    for i in range(len(sim)):
        # Same rule as documented: similarity on a 2^-40 grid, descending; lower index on ties.
        order = np.lexsort((np.arange(len(sim)), -np.rint(sim[i] * 2.0**40)))
        order = [j for j in order if sim[i, j] > 0][:num_neighbors]
        kept[i, order] = sim[i, order]
    return x @ kept


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("num_neighbors", [None, 1, 3, 8])
@pytest.mark.parametrize("max_block_pairs", [1, 50, 1 << 23])
def test_itemcf_matches_dense_reference(seed, num_neighbors, max_block_pairs):
    rng = np.random.default_rng(seed)
    num_users, num_items = 40, 30
    x = (rng.random((num_users, num_items)) < 0.15).astype(np.float64)
    x[:, 7] = 0.0  # an item nobody has: no neighbours, scores 0
    x[:, :2] = 0.0  # nor the first two: the blocks' costs start after them
    x[5, :] = 0.0  # a user with no history: all scores 0
    users, items = np.nonzero(x)
    perm = rng.permutation(len(users))  # input order must not matter
    # max_block_pairs = 1 forces one item per block; 50 gives several-item blocks.
    cf = ItemCF(num_neighbors=num_neighbors, max_block_pairs=max_block_pairs)
    cf.fit(users[perm], items[perm], num_users, num_items)
    expected = _dense_reference(x, num_neighbors)
    batch = rng.permutation(num_users)
    np.testing.assert_allclose(cf.score(batch), expected[batch], rtol=1e-5, atol=1e-6)
    assert np.all(cf.score(np.array([5])) == 0.0)
    assert np.all(cf.score(np.arange(num_users))[:, 7] == 0.0)


def test_triples_before_each_item_count_its_users_items_by_hand():
    # Users 0..2 hold {1, 2}, {2}, {0, 1, 2}: item CSR 0: [2]; 1: [0, 2]; 2: [0, 1, 2];
    # items 3 and 4 nobody has. Item 0 costs 3 (user 2's 3 items), item 1 2 + 3, item 2
    # 2 + 1 + 3.
    user_indptr = np.array([0, 2, 3, 6])
    item_indptr = np.array([0, 1, 3, 6, 6, 6])
    item_users = np.array([2, 0, 2, 0, 1, 2], np.int32)
    np.testing.assert_array_equal(
        baselines._triples_before(item_indptr, item_users, user_indptr), [0, 3, 8, 14, 14, 14])
    # Items without users at the front: 0 until the first entry.
    np.testing.assert_array_equal(
        baselines._triples_before(np.array([0, 0, 0, 1]), np.array([0]), np.array([0, 4])),
        [0, 0, 0, 4])


def test_count_keys_dense_and_sparse_paths_agree_with_a_plain_count():
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 50, 200)
    expected = np.array([np.sum(keys == v) for v in range(50)])
    for size in (50, 10_000):  # 50 <= 2 * 200: bincount; 10_000: sort-based
        distinct, counts = _count_keys(keys, size)
        np.testing.assert_array_equal(distinct, np.flatnonzero(expected))
        np.testing.assert_array_equal(counts, expected[expected > 0])


@pytest.mark.parametrize(
    "users, items, num_users, num_items, match",
    [
        ([0, -1], [0, 1], 2, 2, "user_idx must be >= 0, got -1"),
        ([0, 2], [0, 1], 2, 2, "user_idx must be < num_users = 2, got 2"),
        ([0, 1], [0, 5], 2, 2, "item_idx must be < num_items = 2, got 5"),
        ([0, 1], [-3, 1], 2, 2, "item_idx must be >= 0, got -3"),
        ([], [], 2, 2, "at least one interaction"),
        ([0, 1], [0], 2, 2, "same length, got 2 and 1"),
        ([0.0, 1.0], [0, 1], 2, 2, "user_idx must hold integer indices"),
        ([[0, 1]], [[0, 1]], 2, 2, "user_idx must be 1-D"),
        ([0], [0], 0, 2, "num_users must be a positive int, got 0"),
        ([0], [0], 2, 1.5, "num_items must be a positive int, got 1.5"),
    ],
)
def test_itemcf_fit_rejects_bad_input(users, items, num_users, num_items, match):
    with pytest.raises(ValueError, match=match):
        ItemCF().fit(np.array(users), np.array(items), num_users, num_items)


def test_itemcf_score_errors():
    with pytest.raises(RuntimeError, match="before fit"):
        ItemCF().score(np.array([0]))
    cf = ItemCF().fit(HAND_USERS, HAND_ITEMS, 3, 3)
    with pytest.raises(ValueError, match="user_indices must be < num_users = 3, got 3"):
        cf.score(np.array([0, 3]))
    with pytest.raises(ValueError, match="user_indices must be >= 0, got -1"):
        cf.score(np.array([-1]))
    with pytest.raises(ValueError, match=r"item must be in \[0, num_items = 3\), got 3"):
        cf.similar_items(3)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="num_neighbors must be a positive int"):
            ItemCF(num_neighbors=bad)
    with pytest.raises(ValueError, match="max_block_pairs must be a positive int, got 0"):
        ItemCF(max_block_pairs=0)


# ------------------------------------------------------- MovieLens reference protocol
def test_itemcf_movielens_reference_protocol(ml_latest_small):
    """ml-latest-small, random 80/20 split (seed 42), all ratings = interactions.

    Reference (../shared/data/README.md): ItemCF cosine binary, training items excluded,
    Recall@10 0.064, @50 0.190, @100 0.279.
    """
    with open(ml_latest_small / "ratings.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        assert next(reader)[:2] == ["userId", "movieId"]
        rows = [(int(r[0]), int(r[1])) for r in reader]
    user_ids = np.array([r[0] for r in rows])
    movie_ids = np.array([r[1] for r in rows])
    users, user_idx = np.unique(user_ids, return_inverse=True)
    catalogue, item_idx = np.unique(movie_ids, return_inverse=True)  # every movieId rated
    perm = np.random.default_rng(42).permutation(len(rows))
    cut = int(0.8 * len(rows))
    train, test = perm[:cut], perm[cut:]

    def by_user(rows_):
        out = {}
        for u, i in zip(user_idx[rows_].tolist(), item_idx[rows_].tolist(), strict=True):
            out.setdefault(u, set()).add(i)
        return out

    t0 = time.perf_counter()
    cf = ItemCF(num_neighbors=200).fit(user_idx[train], item_idx[train], len(users),
                                       len(catalogue))
    t_fit = time.perf_counter() - t0
    m = evaluate_ranking(cf.score, len(catalogue), by_user(test), by_user(train), ks=(10, 50, 100))
    t_all = time.perf_counter() - t0
    print(f"\nItemCF(200) ml-latest-small: recall@10 {m['recall@10']:.4f} @50 "
          f"{m['recall@50']:.4f} @100 {m['recall@100']:.4f} (reference 0.064 / 0.190 / "
          f"0.279); fit {t_fit:.1f} s, fit + eval {t_all:.1f} s")
    assert m["recall@100"] == pytest.approx(0.279, abs=0.03)
    assert m["recall@10"] == pytest.approx(0.064, abs=0.02)


# -------------------------------------------------------------------------------- EASE
# The same 3 x 3 matrix, lambda = 1. G = X^T X = [[2, 2, 1], [2, 3, 2], [1, 2, 2]];
# G + I = [[3, 2, 1], [2, 4, 2], [1, 2, 3]], det 16, cofactors 8, -4, 0 / 8, -4 / 8:
# P = (G + I)^-1 = [[.5, -.25, 0], [-.25, .5, -.25], [0, -.25, .5]]; diag(P) = .5, so
# B = -P / diag(P) with a zero diagonal = [[0, .5, 0], [.5, 0, .5], [0, .5, 0]].
HAND_EASE = [
    [0.5, 0.5, 0.5],  # u0 = [1, 1, 0] @ B
    [0.5, 0.5, 0.5],  # u1 = [0, 1, 1] @ B
    [0.5, 1.0, 0.5],  # u2 = [1, 1, 1] @ B
]


def test_ease_hand_worked_example_and_unseen_items_and_users():
    from tfrecall.evaluation.baselines import EASE

    # A 4th item nobody took and a 4th user with no pair.
    ease = EASE(l2=1.0).fit(HAND_USERS, HAND_ITEMS, 4, 4)
    scores = ease.score(np.array([0, 1, 2, 3]))
    assert scores.dtype == np.float32 and scores.shape == (4, 4)
    np.testing.assert_allclose(scores[:3, :3], HAND_EASE, rtol=1e-6)
    np.testing.assert_array_equal(scores[3, :3], 0.0)  # no history: nothing to regress on
    assert (scores[:, 3] < -1e30).all()  # never seen in training: ranked last
    # Repeated pairs count once (binary X).
    again = EASE(l2=1.0).fit(np.r_[HAND_USERS, 0], np.r_[HAND_ITEMS, 0], 4, 4)
    np.testing.assert_allclose(again.score(np.arange(3))[:, :3], HAND_EASE, rtol=1e-6)


@pytest.mark.parametrize("num_users,num_items", [(40, 12), (9, 50)])  # primal, dual (Woodbury)
def test_ease_matches_the_dense_closed_form(num_users, num_items):
    from tfrecall.evaluation.baselines import EASE

    rng = np.random.default_rng(num_users)
    users = rng.integers(0, num_users, 300)
    items = rng.integers(0, num_items - 3, 300)
    ease = EASE(l2=7.0).fit(users, items, num_users, num_items)
    assert ease._dual == (num_users < num_items)
    x = np.zeros((num_users, num_items))
    x[users, items] = 1.0
    seen = x.sum(0) > 0
    xs = x[:, seen]
    p = np.linalg.inv(xs.T @ xs + 7.0 * np.eye(seen.sum()))  # Steck 2019, eq. 8
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(ease.score(np.arange(num_users))[:, seen], xs @ b,
                               rtol=1e-5, atol=1e-6)


def test_ease_memory_budget_and_bad_arguments():
    from tfrecall.evaluation.baselines import EASE

    with pytest.raises(MemoryError, match="over its budget"):
        EASE(l2=1.0, max_bytes=100).fit(HAND_USERS, HAND_ITEMS, 3, 3)
    with pytest.raises(ValueError, match="l2 must be a number > 0"):
        EASE(l2=0.0)
    with pytest.raises(RuntimeError, match="before fit"):
        EASE().score(np.array([0]))
    # The cheaper form's bytes: 2 users x 1000 items -> dual, 3*4 + 2*2000 doubles.
    assert EASE.memory_bytes(2, 1000) == 8 * (3 * 4 + 2 * 2 * 1000)
    assert EASE.memory_bytes(1000, 2) == 8 * 3 * 4


def test_select_ease_l2_picks_the_best_validation_recall_without_the_test_split():
    from tfrecall.data.splits import holdout_pairs
    from tfrecall.evaluation.baselines import EASE, select_ease_l2

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(60), 8)
    items = (users % 3) * 10 + rng.integers(0, 10, len(users))  # 3 blocks of 10 items
    best, scores = select_ease_l2(users, items, 60, 30, grid=(0.5, 50.0, 5000.0), k=5,
                                  fraction=0.25, seed=3)
    assert sorted(scores) == [0.5, 50.0, 5000.0] and best == max(scores, key=scores.get)
    # Each score is Recall@5 on the same slice, recomputed here by hand.
    held = holdout_pairs(users, items, 0.25, 3)
    ease = EASE(best).fit(users[~held], items[~held], 60, 30)
    s = ease.score(np.arange(60))
    s[users[~held], items[~held]] = -np.inf
    top = np.argsort(-s, axis=1, kind="stable")[:, :5]
    pairs = set(zip(users[held].tolist(), items[held].tolist(), strict=True))
    hits = sum(i in top[u] for u, i in pairs)
    assert scores[best] == pytest.approx(hits / len(pairs))


def test_evaluate_baselines_reports_ease_with_its_lambda_or_skips_it_with_a_reason():
    from tfrecall.evaluation.harness import evaluate_baselines, make_eval_set
    from tfrecall.io.schema import RecallData

    rng = np.random.default_rng(1)
    u = np.array([f"u{i}" for i in rng.integers(0, 50, 600)], object)
    i = np.array([f"i{j}" for j in rng.integers(0, 40, 600)], object)
    inter = {"user_id": u, "item_id": i, "label": np.ones(600, np.float32),
             "positive": np.ones(600, bool)}
    data = RecallData(inter)
    train, test = data.subset(np.arange(500)), data.subset(np.arange(500, 600))
    eval_set = make_eval_set(train, test, data.user_ids(), data.item_catalogue())
    lines = []
    out = evaluate_baselines(eval_set, (10,), ("popularity", "ease"), log=lines.append)
    assert out["ease"]["l2"] > 0 and 0 <= out["ease"]["recall@10"] <= 1
    assert "chosen on a validation slice" in lines[0]
    lines.clear()
    out = evaluate_baselines(eval_set, (10,), ("ease",), log=lines.append, ease_max_bytes=10)
    assert "ease" not in out and lines[0].startswith("baseline ease skipped: EASE needs")
    # The estimate names the whole training split's active users and items (50 x 40 here:
    # the dual/primal minimum of EASE.memory_bytes), checked before the lambda grid runs.
    users_n = len(np.unique(eval_set.train_user_idx))
    items_n = len(np.unique(eval_set.train_item_idx))
    assert f"for {users_n} users x {items_n} items" in lines[0]
    with pytest.raises(ValueError, match="unknown baseline"):
        evaluate_baselines(eval_set, (10,), ("knn",))


def test_evaluate_ease_refuses_an_over_budget_catalogue_before_the_lambda_grid(monkeypatch):
    from tfrecall.evaluation import harness
    from tfrecall.evaluation.harness import make_eval_set
    from tfrecall.io.schema import RecallData

    def grid_must_not_run(*args, **kwargs):
        raise AssertionError("select_ease_l2 ran although EASE is over its budget")

    monkeypatch.setattr(harness, "select_ease_l2", grid_must_not_run)
    u = np.array([f"u{k % 7}" for k in range(80)], object)
    i = np.array([f"i{k % 11}" for k in range(80)], object)
    data = RecallData({"user_id": u, "item_id": i, "label": np.ones(80, np.float32),
                       "positive": np.ones(80, bool)})
    eval_set = make_eval_set(data.subset(np.arange(60)), data.subset(np.arange(60, 80)),
                             data.user_ids(), data.item_catalogue())
    # 7 users x 11 items: dual form, 8 * (3*49 + 2*77) = 2408 bytes.
    with pytest.raises(MemoryError, match="about 0.0 GiB for 7 users x 11 items"):
        harness.evaluate_ease(eval_set, (5,), max_bytes=2407)
    # Within budget the grid runs (and here fails loudly, proving the order).
    with pytest.raises(AssertionError, match="select_ease_l2 ran"):
        harness.evaluate_ease(eval_set, (5,), max_bytes=2408)


def _eval_set(pop, targets, exclude):
    from tfrecall.evaluation.harness import EvalSet

    n = len(pop)
    return EvalSet(np.arange(len(targets)), np.arange(n), targets, exclude,
                   np.asarray(pop, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64),
                   True)


def test_popularity_ranks_by_count_ties_to_the_lower_index_minus_each_users_exclusions():
    from tfrecall.evaluation.harness import evaluate_popularity

    # Order by count, ties to the lower index: items 1, 2, 0, 3, 4.
    eval_set = _eval_set([3, 5, 5, 1, 0], {0: {2, 4}, 1: {0}, 2: {4}},
                         {0: {1}, 2: {1, 2, 0, 3}})
    out = evaluate_popularity(eval_set, (2,))
    # user 0: [2, 0] hits 2 (rank 1) of {2, 4}; user 1: [1, 2] misses 0; user 2: only
    # item 4 is left, a hit at rank 1 (the second slot stays empty).
    assert out["recall@2"] == pytest.approx(2 / 4)
    assert out["hit_rate@2"] == pytest.approx(2 / 3)
    assert out["mrr"] == pytest.approx(2 / 3)
    assert out["ndcg@2"] == pytest.approx((1 / (1 + 1 / np.log2(3)) + 0 + 1) / 3)
    assert out["coverage@2"] == pytest.approx(4 / 5)  # items 0, 1, 2 and 4 shown


def test_popularity_matches_the_generic_full_catalogue_ranking_without_ties():
    from tfrecall.evaluation.harness import evaluate_popularity
    from tfrecall.evaluation.metrics import evaluate_ranking

    rng = np.random.default_rng(4)
    pop = rng.permutation(300).astype(np.float32)  # distinct counts: no ties to break
    targets = {u: set(rng.choice(300, 5, replace=False).tolist()) for u in range(40)}
    exclude = {u: set(rng.choice(300, rng.integers(0, 60), replace=False).tolist())
               for u in range(40)}
    got = evaluate_popularity(_eval_set(pop, targets, exclude), (10, 50))
    want = evaluate_ranking(lambda users: np.broadcast_to(pop, (len(users), 300)), 300,
                            targets, exclude, (10, 50), item_popularity=pop)
    assert got == pytest.approx(want)


def test_itemcf_and_ease_fit_int32_indices_as_int64_ones():
    """The evaluation set holds its training pairs as int32; user x num_items overflows
    int32 here (69,999 x 40,000), so a fit that multiplied in int32 would differ."""
    from tfrecall.evaluation.baselines import EASE

    rng = np.random.default_rng(3)
    num_users, num_items = 70_000, 40_000
    users = np.concatenate([[69_999, 69_999, 0, 0, 12], rng.integers(0, num_users, 200)])
    items = np.concatenate([[39_999, 3, 39_999, 3, 3], rng.integers(0, 50, 200)])
    rows = np.array([69_999, 0, 12, 7])
    for model in (ItemCF(num_neighbors=10), EASE(l2=3.0)):
        wide = model.fit(users.astype(np.int64), items.astype(np.int64), num_users,
                         num_items).score(rows)
        narrow = model.fit(users.astype(np.int32), items.astype(np.int32), num_users,
                           num_items).score(rows)
        np.testing.assert_array_equal(narrow, wide)
        assert wide[0, 39_999] > 0 and wide[1, 3] > 0  # the pairs across the overflow count
