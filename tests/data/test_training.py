"""Tests of `make_training_dataset`: every view, negative mixes, log Q, epochs, fallbacks."""

import numpy as np
import pytest

from tfrecall.data import synthetic
from tfrecall.ids import positive_counts
from tfrecall.io.schema import RecallData
from tfrecall.sampling import negatives as neg
from tfrecall.sampling.config import VIEWS, SamplingConfig
from tfrecall.sampling.dataset import TrainingSamples
from tfrecall.sampling.features import FeatureStore
from tfrecall.sampling.requests import RankerLists

NAN = float("nan")


def _obj(values):
    return np.asarray(values, dtype=object)


def _toy(scores=True):
    """4 requests (event label, positive), the logged ranker score in brackets.

    r1 u1: a 1 (.2), b 3 + (.9), c 5 + (.5)
    r2 u2: d 1 (-), e 1 (-)                      no positive, no score
    r3 u1: f 4 + (1.), a 1 (-), b 1 (.1), c 3 + (-)
    r4 u3: g 3 + (.7), d 1 (.3)                   g is not in the item table
    """
    rows = [("r1", "u1", "a", 1, 0, .2), ("r1", "u1", "b", 3, 1, .9), ("r1", "u1", "c", 5, 1, .5),
            ("r2", "u2", "d", 1, 0, NAN), ("r2", "u2", "e", 1, 0, NAN),
            ("r3", "u1", "f", 4, 1, 1.), ("r3", "u1", "a", 1, 0, NAN), ("r3", "u1", "b", 1, 0, .1),
            ("r3", "u1", "c", 3, 1, NAN),
            ("r4", "u3", "g", 3, 1, .7), ("r4", "u3", "d", 1, 0, .3)]
    req, user, item, label, pos, score = zip(*rows, strict=True)
    inter = {"user_id": _obj(user), "item_id": _obj(item),
             "label": np.asarray(label, np.float32), "positive": np.asarray(pos, bool),
             "request_id": _obj(req)}
    if scores:
        inter["ranker_score"] = np.asarray(score, np.float32)
    users = {"user_id": _obj(["u1", "u2", "u3"]), "age": np.asarray([20, NAN, 40], np.float32)}
    items = {"item_id": _obj(list("abcdef")),
             "price": np.asarray([1, 2, 3, 4, NAN, 6], np.float32)}
    return RecallData(inter, users, items, name="toy")


def _build(data, catalogue=None, batch_size=64, **config):
    catalogue = data.item_catalogue() if catalogue is None else _obj(catalogue)
    ranker = config.pop("ranker_lists", None)
    pool = config.pop("hard_negatives", None)
    return TrainingSamples(data, catalogue, FeatureStore(data.users, "user_id"),
                           FeatureStore(data.items, "item_id"), SamplingConfig(**config),
                           batch_size, ranker_lists=ranker, hard_negatives=pool)


def _epoch(ds):
    """One pass: users (N,), item ids (N, L), labels (N, L), log_q (N, L) or None, batches."""
    users, items, labels, log_q, batches = [], [], [], [], []
    for x, y in ds:
        users.append(x["user"]["user_id"].numpy().astype(str))
        items.append(x["items"]["item_id"].numpy().astype(str))
        labels.append(y.numpy())
        if "log_q" in x:
            log_q.append(x["log_q"].numpy())
        batches.append((x, y))
    return (np.concatenate(users), np.concatenate(items), np.concatenate(labels),
            np.concatenate(log_q) if log_q else None, batches)


def _positive_pairs(data):
    inter = data.interactions
    m = inter["positive"]
    return set(zip(inter["user_id"][m].tolist(), inter["item_id"][m].tolist(), strict=True))


@pytest.fixture(scope="module")
def world():
    return synthetic.generate(synthetic.SyntheticConfig(
        num_users=120, num_items=90, num_categories=5, num_brands=10, num_tags=8,
        requests_per_user=3.0, exposures_per_request=8, seed=5))


@pytest.fixture(scope="module")
def ranker(world):
    return synthetic.ranker_lists(world, top_n=60)


# ---------------------------------------------------------------------------- config


def test_config_resolves_default_negatives_per_view():
    assert SamplingConfig().negatives == ("in_batch",)
    assert SamplingConfig(view="pointwise").negatives == ("uniform",)
    assert SamplingConfig(view="distill").negatives == ()
    assert SamplingConfig(view="pairwise", pairwise_mode="segments").negatives == ()
    assert SamplingConfig(view="listwise", list_mode="graded", list_size=1).negatives == ()
    cfg = SamplingConfig(negatives="in_batch, popularity,hard", hard_negative_window="10,50")
    assert cfg.negatives == ("in_batch", "popularity", "hard")
    assert cfg.hard_negative_window == (10, 50)
    assert cfg.to_dict()["negatives"] == ["in_batch", "popularity", "hard"]
    assert cfg.hard_fraction == pytest.approx(1 / 101)  # 100:1 by default


@pytest.mark.parametrize("kwargs, match", [
    ({"view": "triplet"}, "view must be one of"),
    ({"negatives": ("uniform",)}, "needs 'in_batch'"),
    ({"view": "pointwise", "negatives": ("in_batch",)}, "need view='in_batch'"),
    ({"negatives": ("in_batch", "nope")}, "distinct names"),
    ({"negatives": ("in_batch", "in_batch")}, "distinct names"),
    ({"view": "distill", "negatives": ("uniform",)}, "samples no negatives"),
    ({"view": "pairwise", "pairwise_mode": "not_exposed", "negatives": ("hard",)}, "fallback"),
    ({"num_negatives": 0}, "num_negatives"),
    ({"view": "listwise", "list_size": 1}, "list_size"),
    ({"hard_negative_window": (500, 100)}, "hard_negative_window"),
    ({"hard_negative_window": "a,b"}, "hard_negative_window"),
    ({"easy_hard_ratio": -1.0}, "easy_hard_ratio"),
    ({"popularity_alpha": -0.5}, "popularity_alpha"),
    ({"frequency": "guess"}, "frequency"),
])
def test_config_errors_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingConfig(**kwargs)


def test_flag_help_covers_the_pipeline_flags():
    for flag in ("view", "negatives", "num_negatives", "list_size", "hard_negative_window",
                 "easy_hard_ratio"):
        assert SamplingConfig.__dataclass_fields__[flag].metadata["help"]
    view_help = SamplingConfig.__dataclass_fields__["view"].metadata["help"]
    for view in VIEWS:
        assert view in view_help


# ---------------------------------------------------------------------------- in-batch


def test_in_batch_rows_labels_and_exact_log_q():
    data = _toy()
    samples = _build(data, batch_size=5, shuffle=False)
    users, items, labels, log_q, batches = _epoch(samples.dataset)
    assert users.tolist() == ["u1", "u1", "u1", "u1", "u3"]
    assert items[:, 0].tolist() == ["b", "c", "f", "c", "g"]
    np.testing.assert_array_equal(labels, np.ones((5, 1)))
    # Positives b, c, f, c, g: q = .2, .4, .2, .4, .2; log Q = log(B q), B = 5.
    np.testing.assert_allclose(log_q[:, 0], np.log([1.0, 2.0, 1.0, 2.0, 1.0]), atol=1e-6)
    x = batches[0][0]
    assert set(x) == {"user", "items", "log_q"}
    np.testing.assert_array_equal(x["user"]["age"].numpy(), [20, 20, 20, 20, 40])
    assert np.isnan(x["items"]["price"].numpy()[4, 0])  # g: only in the log
    assert samples.info.counts["users_without_positives"] == 1  # u2
    assert samples.info.rows_per_epoch == 5 and samples.info.batches_per_epoch == 1


def test_in_batch_mixed_batch_carries_shared_negatives_with_log_q():
    data = _toy()
    catalogue = list("abcdefg")  # N = 7
    samples = _build(data, catalogue, batch_size=5, shuffle=False,
                     negatives=("in_batch", "uniform"), num_negatives=4)
    (x, y), = list(samples.dataset)
    assert x["negatives"]["item_id"].shape == (4,) and x["negatives"]["price"].shape == (4,)
    shared = x["negatives"]["item_id"].numpy().astype(str)
    assert set(shared) <= set(catalogue)
    # log Q of a shared negative j: B q(j) + S / N = 5 q(j) + 4/7, q as above (a, d, e: 0).
    q = {"a": 0, "b": .2, "c": .4, "d": 0, "e": 0, "f": .2, "g": .2}
    want = [np.log(5 * q[j] + 4 / 7) for j in shared]
    np.testing.assert_allclose(x["negatives_log_q"].numpy(), want, rtol=1e-6)
    # The positives' columns get the same mixture: b -> log(1 + 4/7).
    np.testing.assert_allclose(x["log_q"].numpy()[0, 0], np.log(1 + 4 / 7), rtol=1e-6)
    assert "tfrecall.models.mixed" in samples.describe()


def test_in_batch_streaming_log_q_tracks_the_batches():
    data = _toy()
    samples = _build(data, batch_size=5, shuffle=False, frequency="streaming")
    first = next(iter(samples.dataset))[0]["log_q"].numpy()[:, 0]
    est = samples.frequency_estimator
    assert est is not None and int(est.step.numpy()) >= 1
    # After one batch every positive was first seen at step 1 (gap 1 - 0 = 1, alpha
    # .01 from the initial 1000): B = .99 * 1000 + .01 * 1 / c... c = 2 for c.
    b1 = 0.99 * 1000 + 0.01 * 1.0
    b2 = 0.99**2 * 1000 + (1 - 0.99**2) * 0.5
    np.testing.assert_allclose(first, -np.log([b1, b2, b1, b2, b1]), rtol=1e-5)


def test_in_batch_hard_negatives_come_from_the_ranker_window(world, ranker):
    data = world.data
    samples = _build(data, batch_size=32, negatives=("in_batch", "hard"), ranker_lists=ranker,
                     hard_negative_window=(20, 40), easy_hard_ratio=10.0)
    h = samples.info.counts["hard_negatives_per_row"]
    assert h == round(31 / 10)  # (B - 1 in-batch easy negatives) / ratio
    x, y = next(iter(samples.dataset))
    assert x["items"]["item_id"].shape == (32, 1 + h) and y.shape == (32, 1 + h)
    window = {r: set(ranker.item_vocab[ranker.items[i, 20:40]].tolist())
              for i, r in enumerate(ranker.request_ids.tolist())}
    inter = data.interactions
    pos = inter["positive"]
    users, items = x["user"]["user_id"].numpy().astype(str), x["items"]["item_id"].numpy()
    row_req = {}
    for u, i, r in zip(inter["user_id"][pos], inter["item_id"][pos], inter["request_id"][pos],
                       strict=True):
        row_req.setdefault((u, i), set()).add(r)
    for b in range(32):
        reqs = row_req[(users[b], items[b, 0].decode())]
        allowed = set().union(*(window[r] for r in reqs))
        hard = {v.decode() for v, lab in zip(items[b, 1:], y.numpy()[b, 1:], strict=True)
                if lab == 0}
        assert hard <= allowed
    assert samples.info.counts["hard_rows_from_ranker_window"] == int(pos.sum())


# ---------------------------------------------------------------------------- per-row views


def test_pointwise_one_to_three_with_uniform_log_q():
    data = _toy()
    samples = _build(data, list("abcdefg"), batch_size=7, view="pointwise", shuffle=False)
    users, items, labels, log_q, _ = _epoch(samples.dataset)
    assert items.shape == (20, 1)  # 5 positives x (1 + 3)
    np.testing.assert_array_equal(labels[:, 0], [1, 0, 0, 0] * 5)
    positives = _positive_pairs(data)
    for u, i, lab in zip(users, items[:, 0], labels[:, 0], strict=True):
        assert ((u, i) in positives) == (lab == 1)
    # Uniform over N = 7 with k = 3 per positive: log(k Q) = log(3/7) on every row.
    np.testing.assert_allclose(log_q, np.log(3 / 7), rtol=1e-6)


def test_sampled_negatives_never_equal_a_user_positive(world):
    data = world.data
    positives = _positive_pairs(data)
    for config in ({"view": "pointwise", "num_negatives": 4},
                   {"view": "pairwise"},
                   {"view": "listwise", "list_size": 6, "negatives": ("popularity",)},
                   {"view": "listwise", "list_size": 6, "negatives": ("uniform", "hard"),
                    "easy_hard_ratio": 1.0}):
        users, items, labels, _, _ = _epoch(_build(data, batch_size=256, **config).dataset)
        rows, cols = np.nonzero(labels == 0)
        assert len(rows) > 0
        assert not any((users[r], items[r, c]) in positives
                       for r, c in zip(rows, cols, strict=True)), config


def test_each_epoch_has_fresh_negatives_and_the_seed_fixes_them(world):
    data = world.data
    a, b = (_build(data, batch_size=128, view="listwise", list_size=4, seed=9).dataset
            for _ in range(2))
    a1, a2, b1, b2 = _epoch(a), _epoch(a), _epoch(b), _epoch(b)
    np.testing.assert_array_equal(a1[1], b1[1])
    np.testing.assert_array_equal(a2[1], b2[1])
    assert not np.array_equal(np.sort(a1[1][:, 1:], axis=None), np.sort(a2[1][:, 1:], axis=None))
    assert sorted(a1[1][:, 0].tolist()) == sorted(a2[1][:, 0].tolist())  # same positives
    assert a1[1][:, 0].tolist() != a2[1][:, 0].tolist()  # in a new order


def test_popularity_negatives_follow_count_to_the_alpha(world):
    data = world.data
    catalogue = data.item_catalogue()
    samples = _build(data, batch_size=512, view="listwise", list_size=41,
                     negatives=("popularity",), popularity_alpha=0.75)
    _, items, labels, log_q, _ = _epoch(samples.dataset)
    counts = positive_counts(data, catalogue).astype(np.float64)
    q = counts**0.75 / np.sum(counts**0.75)
    # log Q of each drawn slot is log(k Q(item)) with k = 40 (independent numpy Q).
    index = {v: i for i, v in enumerate(catalogue.tolist())}
    drawn = np.vectorize(index.get)(items[:, 1:])
    np.testing.assert_allclose(log_q[:, 1:], np.log(40 * q[drawn]), rtol=1e-5)
    # Draw shares vs Q over the most popular items (rejection of a user's own
    # positives lowers them a little: a loose 20% + 3 sigma band).
    valid = labels[:, 1:] == 0
    freq = np.bincount(drawn[valid], minlength=len(catalogue)) / valid.sum()
    top = np.argsort(-q)[:10]
    sigma = np.sqrt(q[top] / valid.sum())
    assert np.all(np.abs(freq[top] - q[top]) < 0.2 * q[top] + 3 * sigma), (freq[top], q[top])


def test_listwise_graded_pads_with_minus_one():
    data = _toy()
    samples = _build(data, batch_size=8, view="listwise", list_mode="graded", list_size=4,
                     shuffle=False)
    users, items, labels, log_q, _ = _epoch(samples.dataset)
    assert users.tolist() == ["u1", "u1", "u3"] and log_q is None
    assert items.tolist() == [["a", "b", "c", ""], ["f", "a", "b", "c"], ["g", "d", "", ""]]
    np.testing.assert_array_equal(labels, [[1, 3, 5, -1], [4, 1, 1, 3], [3, 1, -1, -1]])
    assert samples.info.counts["requests_without_positive_dropped"] == 1


# ---------------------------------------------------------------------------- pairwise


def _toy_ranker():
    # r1 (u1): a, c, d, e, f, b best first; r3 (u1): d, e; r4 (u3): e, f, g.
    vocab = _obj(list("abcdefg"))
    items = np.asarray([[0, 2, 3, 4, 5, 1], [3, 4, -1, -1, -1, -1], [4, 5, 6, -1, -1, -1]],
                       np.int32)
    scores = np.where(items >= 0, 10.0 - np.arange(6), NAN).astype(np.float32)
    return RankerLists(_obj(["r1", "r3", "r4"]), _obj(["u1", "u1", "u3"]), vocab, items, scores)


def test_pairwise_not_exposed_draws_ranked_items_the_request_did_not_show():
    data = _toy()
    samples = _build(data, list("abcdefg"), batch_size=8, view="pairwise",
                     pairwise_mode="not_exposed", ranker_lists=_toy_ranker(), shuffle=False)
    for _ in range(5):  # several epochs: fresh draws
        users, items, labels, _, _ = _epoch(samples.dataset)
        # Rows: (u1,b)@r1 (u1,c)@r1 (u1,f)@r3 (u1,c)@r3 (u3,g)@r4.
        # r1 listed a c d e f b, shown a b c -> d e f, minus u1's positives (b c f) -> d, e.
        # r3 listed d e, shown f a b c -> d e. r4 listed e f g, shown g d -> e f.
        assert set(items[:2, 1]) <= {"d", "e"} and set(items[2:4, 1]) <= {"d", "e"}
        assert items[4, 1] in {"e", "f"}
        np.testing.assert_array_equal(labels, [[1, 0]] * 5)
    assert samples.info.counts["rows_with_pool: ranked, not shown"] == 5


def test_pairwise_not_exposed_without_ranker_lists_falls_back_and_says_so():
    data = _toy()
    samples = _build(data, batch_size=8, view="pairwise", pairwise_mode="not_exposed")
    assert samples.info.counts["hard_rows_fallback_easy"] == 5
    assert any("without ranker lists" in note for note in samples.info.notes)


@pytest.mark.parametrize("mode", ["head_tail", "segments"])
def test_ranker_pairs_put_the_better_ranked_item_first(mode):
    data = _toy()
    ranker = _toy_ranker()
    order = {r: ranker.item_vocab[ranker.items[i][ranker.items[i] >= 0]].tolist()
             for i, r in enumerate(ranker.request_ids)}
    samples = _build(data, list("abcdefg"), batch_size=8, view="pairwise", pairwise_mode=mode,
                     pairwise_segments=3, ranker_lists=ranker, shuffle=False)
    seen = set()
    for _ in range(20):
        users, items, labels, log_q, _ = _epoch(samples.dataset)
        assert log_q is None
        np.testing.assert_array_equal(labels, [[1, 0]] * 3)
        assert users.tolist() == ["u1", "u1", "u3"]
        for req, (better, worse) in zip(["r1", "r3", "r4"], items, strict=True):
            ranks = order[req]
            n = len(ranks)
            m = min(3, n)
            seg = [ranks.index(better) * m // n, ranks.index(worse) * m // n]
            assert seg[0] < seg[1]  # two different segments, the better one first
            if mode == "head_tail":
                assert seg == [0, m - 1]
            seen.add((req, better, worse))
    # r1 has 6 ranks in 3 segments: head (a, c) vs tail (f, b), all 4 pairs in 20 draws.
    if mode == "head_tail":
        assert {(b, w) for r, b, w in seen if r == "r1"} == {("a", "f"), ("a", "b"),
                                                            ("c", "f"), ("c", "b")}
    else:  # segments also pairs the middle (d, e) with the others
        assert any(r == "r1" and b in "de" for r, b, _ in seen)


def test_ranker_pairs_fall_back_to_logged_scores_and_count_missing_ones():
    data = _toy()
    samples = _build(data, batch_size=8, view="pairwise", pairwise_mode="head_tail")
    counts = samples.info.counts
    # No ranker lists: r1 (3 scores), r3 (f, b), r4 (g, d) from the log; r2 has none.
    assert counts["requests_from_logged_scores"] == 3
    assert counts["requests_without_ranking"] == 1
    _, items, _, _, _ = _epoch(samples.dataset)
    pairs = {tuple(row) for row in items.tolist()}
    assert ("f", "b") in pairs and ("g", "d") in pairs  # 2-item lists: best vs worst


# ---------------------------------------------------------------------------- distill


def test_distill_takes_exactly_one_item_per_segment_with_shifted_score_labels(world, ranker):
    data = world.data
    top_n, size = 40, 4
    samples = _build(data, batch_size=64, view="distill", list_size=size, distill_top_n=top_n,
                     ranker_lists=ranker, shuffle=False)
    users, items, labels, log_q, _ = _epoch(samples.dataset)
    assert log_q is None and items.shape[1] == size
    requests = samples.info.counts["requests_from_ranker_lists"]
    assert len(items) == requests
    # Rows follow the log's request order: look each list up in the ranker's table.
    inter = data.interactions
    names, first = np.unique(inter["request_id"].astype(str), return_index=True)
    order = names[np.argsort(first)]
    where = {r: i for i, r in enumerate(ranker.request_ids.tolist())}
    for row, req in enumerate(order[:len(items)]):
        listed = ranker.item_vocab[ranker.items[where[req], :top_n]].tolist()
        ranks = [listed.index(v) for v in items[row]]
        # Segment s holds ranks [10 s, 10 s + 10): one pick in each, in order.
        assert [r // (top_n // size) for r in ranks] == [0, 1, 2, 3]
        scores = ranker.scores[where[req], ranks]
        np.testing.assert_allclose(labels[row], scores - scores.min(), rtol=1e-5, atol=1e-6)


def test_distill_pads_short_lists_with_minus_one():
    data = _toy()
    samples = _build(data, list("abcdefg"), batch_size=8, view="distill", list_size=4,
                     ranker_lists=_toy_ranker(), shuffle=False)
    _, items, labels, _, _ = _epoch(samples.dataset)
    # r3 has 2 ranked items (d 10, e 9) over 4 segments: segments 0 and 2 are empty
    # (floor(s * 2 / 4) = 0, 0, 1, 1 -> ranks [0,0) [0,1) [1,1) [1,2)).
    assert items[1].tolist() == ["", "d", "", "e"]
    np.testing.assert_array_equal(labels[1], [-1, 1, -1, 0])
    assert samples.info.counts["distill_lists_shorter_than_list_size"] == 2  # r3, r4


# ---------------------------------------------------------------------------- bad input


def test_bad_input_gives_clear_errors():
    data = _toy()
    with pytest.raises(ValueError, match="no interactions"):
        _build(data.subset(np.zeros(data.num_interactions, bool)))
    with pytest.raises(ValueError, match="no positive"):
        _build(data.subset(~data.interactions["positive"]))
    with pytest.raises(ValueError, match="2 distinct items, fewer than the 3 negatives"):
        _build(data, ["a", "d"], view="listwise", list_size=4)
    with pytest.raises(ValueError, match="fewer than the 9 shared negatives"):
        _build(data, list("abc"), negatives=("in_batch", "uniform"), num_negatives=9)
    with pytest.raises(ValueError, match="catalogue is empty"):
        _build(data, [])
    with pytest.raises(ValueError, match="2 ranked catalogue items"):
        _build(_toy(scores=False), view="distill")
    with pytest.raises(ValueError, match="batch_size"):
        _build(data, batch_size=0)


def test_user_covering_the_catalogue_is_counted_and_masked():
    data = _toy()
    samples = _build(data, ["b", "c", "f", "a"], batch_size=8, view="listwise", list_size=3,
                     shuffle=False)
    assert samples.info.counts["users_covering_catalogue"] == 0
    samples = _build(data, ["b", "c", "f"], batch_size=8, view="listwise", list_size=3,
                     shuffle=False)
    assert samples.info.counts["users_covering_catalogue"] == 1  # u1 has b, c, f
    users, _, labels, _, _ = _epoch(samples.dataset)
    np.testing.assert_array_equal(labels[users == "u1"], [[1, -1, -1]] * 4)


def test_hard_negatives_without_ranker_lists_use_exposures_then_fall_back():
    data = _toy()
    samples = _build(data, batch_size=8, view="pointwise", negatives=("hard",))
    counts = samples.info.counts
    # Positives (u1 b r1, u1 c r1, u1 f r3, u1 c r3, u3 g r4): r1 shows a, r3 a b, r4 d.
    assert counts["hard_rows_from_request_exposures"] == 5
    assert counts["hard_rows_fallback_easy"] == 0
    users, items, labels, _, _ = _epoch(samples.dataset)
    negatives = items[labels[:, 0] == 0, 0]
    assert set(negatives[users[labels[:, 0] == 0] == "u3"]) == {"d"}
    assert set(negatives[users[labels[:, 0] == 0] == "u1"]) == {"a"}  # b is u1's positive


def test_mined_pool_overrides_the_hard_source():
    data = _toy()
    catalogue = _obj(list("abcdefg"))
    pool = neg.NegativePool.from_pairs(_obj(["u1", "u3"]), np.asarray([4, 0]), "user", "mined")
    samples = _build(data, catalogue, batch_size=8, view="pairwise", negatives=("hard",),
                     hard_negatives=pool, shuffle=False)
    users, items, _, _, _ = _epoch(samples.dataset)
    assert set(items[users == "u1", 1]) == {"e"} and set(items[users == "u3", 1]) == {"a"}
    assert samples.info.counts["rows_with_pool: mined"] == 5


def test_a_mined_pool_without_the_hard_source_is_refused():
    data = _toy()
    pool = neg.NegativePool.from_pairs(_obj(["u1"]), np.asarray([4]), "user", "mined")
    with pytest.raises(ValueError, match="hard_negatives were given.*do not include 'hard'"):
        _build(data, _obj(list("abcdefg")), batch_size=8, view="pairwise",
               negatives=("uniform",), hard_negatives=pool)


def test_drop_remainder_gives_static_shapes():
    data = _toy()
    samples = _build(data, batch_size=2, view="listwise", list_size=3, drop_remainder=True)
    spec = samples.dataset.element_spec
    assert spec[1].shape.as_list() == [2, 3]
    assert spec[0]["items"]["item_id"].shape.as_list() == [2, 3]
    assert [y.shape[0] for _, y in samples.dataset] == [2, 2]
