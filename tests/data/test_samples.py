"""Tests of the tf.data sample builders and the feature store."""

import numpy as np
import pytest

from tfrecall._backend import tf
from tfrecall.data.synthetic import SyntheticConfig, generate
from tfrecall.io.schema import RecallData
from tfrecall.sampling import requests as samples
from tfrecall.sampling.config import SamplingConfig
from tfrecall.sampling.dataset import TrainingSamples, make_training_dataset
from tfrecall.sampling.features import FeatureStore
from tfrecall.sampling.negatives import MIN_PROBABILITY_SCALE


# The one-view builders these tests read: make_training_dataset with uniform negatives
# and no log Q (the library's four shortcuts for them were removed as test-only code).
def _view(train, user_store, item_store, batch_size, view, options, catalogue=None,
          seed=0, shuffle=True, drop_remainder=False):
    config = SamplingConfig(view=view, log_q=False, seed=seed, shuffle=shuffle,
                            drop_remainder=drop_remainder, **options)
    catalogue = train.item_catalogue() if catalogue is None else catalogue
    return make_training_dataset(train, np.asarray(catalogue, dtype=object), user_store,
                                 item_store, config, batch_size)


def in_batch_dataset(train, user_store, item_store, batch_size, **kw):
    return _view(train, user_store, item_store, batch_size, "in_batch",
                 {"negatives": ("in_batch",)}, **kw)


def pointwise_dataset(train, user_store, item_store, batch_size, num_negatives=3, **kw):
    return _view(train, user_store, item_store, batch_size, "pointwise",
                 {"negatives": ("uniform",), "num_negatives": num_negatives}, **kw)


def pairwise_dataset(train, user_store, item_store, batch_size, **kw):
    return _view(train, user_store, item_store, batch_size, "pairwise",
                 {"negatives": ("uniform",), "num_negatives": 1}, **kw)


def listwise_dataset(train, user_store, item_store, batch_size, list_size, mode="sampled",
                     **kw):
    return _view(train, user_store, item_store, batch_size, "listwise",
                 {"negatives": ("uniform",) if mode == "sampled" else None,
                  "list_size": list_size, "list_mode": mode}, **kw)

NAN = float("nan")


def _obj(values):
    return np.asarray(values, dtype=object)


def _toy():
    """A hand-built log of 4 requests (event, label, positive per row).

    r1 u1: a impression 1, b click 3, c order 5
    r2 u2: d impression 1, e impression 1          (no positive)
    r3 u1: f cart 4, a impression 1, b impression 1, c click 3
    r4 u3: g click 3, d impression 1               (g is not in the item table)
    """
    rows = [("r1", "u1", "a", 1, 0), ("r1", "u1", "b", 3, 1), ("r1", "u1", "c", 5, 1),
            ("r2", "u2", "d", 1, 0), ("r2", "u2", "e", 1, 0),
            ("r3", "u1", "f", 4, 1), ("r3", "u1", "a", 1, 0), ("r3", "u1", "b", 1, 0),
            ("r3", "u1", "c", 3, 1),
            ("r4", "u3", "g", 3, 1), ("r4", "u3", "d", 1, 0)]
    req, user, item, label, pos = zip(*rows, strict=True)
    inter = {"user_id": _obj(user), "item_id": _obj(item),
             "label": np.asarray(label, np.float32), "positive": np.asarray(pos, bool),
             "request_id": _obj(req), "timestamp": np.arange(len(rows), dtype=np.int64)}
    users = {"user_id": _obj(["u1", "u2", "u3"]), "age": np.asarray([20, NAN, 40], np.float32),
             "gender": _obj(["f", "m", ""])}
    items = {"item_id": _obj(list("abcdef")),
             "price": np.asarray([1, 2, 3, 4, NAN, 6], np.float32),
             "category": _obj(["x", "x", "y", "y", "z", "z"])}
    return RecallData(inter, users, items, name="toy")


def _stores(data):
    return FeatureStore(data.users, "user_id"), FeatureStore(data.items, "item_id")


def _epoch(ds):
    """Concatenates one pass: (user ids (N,), item ids (N, L), labels (N, L), batches)."""
    users, items, labels, batches = [], [], [], []
    for x, y in ds:
        users.append(x["user"]["user_id"].numpy().astype(str))
        items.append(x["items"]["item_id"].numpy().astype(str))
        labels.append(y.numpy())
        batches.append((x, y))
    return np.concatenate(users), np.concatenate(items), np.concatenate(labels), batches


def _positive_pairs(data):
    inter = data.interactions
    m = inter["positive"]
    return set(zip(inter["user_id"][m].tolist(), inter["item_id"][m].tolist(), strict=True))


@pytest.fixture(scope="module")
def small():
    return generate(SyntheticConfig(num_users=150, num_items=80, num_categories=5,
                                    num_brands=10, num_tags=8, requests_per_user=3.0,
                                    exposures_per_request=8, seed=3)).data


# ----------------------------------------------------------------------------- FeatureStore


def test_feature_store_lookup_known_and_unknown_ids():
    store = _stores(_toy())[1]
    out = store.lookup(tf.constant([["a", "zz"], ["f", "a"]]))
    assert set(out) == {"item_id", "price", "category"}
    assert store.feature_names == ("item_id", "price", "category")
    np.testing.assert_array_equal(out["item_id"].numpy().astype(str), [["a", "zz"], ["f", "a"]])
    np.testing.assert_array_equal(out["price"].numpy(), [[1.0, NAN], [6.0, 1.0]])
    np.testing.assert_array_equal(out["category"].numpy().astype(str), [["x", ""], ["z", "x"]])
    assert out["price"].dtype == tf.float32 and out["category"].dtype == tf.string
    # A NaN in the table stays NaN; scalars keep their (empty) shape.
    assert np.isnan(store.lookup(tf.constant("e"))["price"].numpy())
    assert store.lookup(tf.constant("e"))["price"].shape == ()


def test_feature_store_without_table_holds_the_id_only():
    store = FeatureStore(None, "item_id", _obj(["a", "b"]))
    out = store.lookup(tf.constant(["b", "q"]))
    assert list(out) == ["item_id"]
    assert out["item_id"].numpy().tolist() == [b"b", b"q"]
    assert store.ids.tolist() == ["a", "b"]


def test_feature_store_ids_lists_table_then_extra_ids():
    store = FeatureStore(_toy().items, "item_id", _obj(["g", "a"]))
    assert store.ids.tolist() == ["a", "b", "c", "d", "e", "f", "g"]


def test_feature_store_works_inside_dataset_map():
    store = _stores(_toy())[0]
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(["u2", "u9", "u1"])).batch(3)
    out = next(iter(ds.map(store.lookup)))
    np.testing.assert_array_equal(out["age"].numpy(), [NAN, NAN, 20.0])
    assert out["gender"].numpy().tolist() == [b"m", b"", b"f"]


@pytest.mark.parametrize("table, match", [
    ({"id": _obj(["a"])}, "key column"),
    ({"item_id": _obj(["a", "a"])}, "not unique"),
    ({"item_id": _obj(["a", "b"]), "x": np.zeros(3, np.float32)}, "'x' has 3 rows"),
    ({"item_id": _obj(["a", "b"]), "x": _obj(["p", None])}, "'x' must hold str"),
    ({"item_id": _obj(["a"]), "when": np.asarray(["2020-01-01"], "datetime64[D]")},
     "unsupported dtype"),
])
def test_feature_store_bad_table_raises(table, match):
    with pytest.raises(ValueError, match=match):
        FeatureStore(table, "item_id")


# ----------------------------------------------------------------------------- builders


def test_in_batch_batches_have_the_contract_shapes_and_dtypes():
    data = _toy()
    ds = in_batch_dataset(data, *_stores(data), batch_size=2, shuffle=False)
    users, items, labels, batches = _epoch(ds)
    x, y = batches[0]
    assert set(x) == {"user", "items"}
    assert set(x["user"]) == {"user_id", "age", "gender"}
    assert set(x["items"]) == {"item_id", "price", "category"}
    assert x["user"]["age"].shape == (2,) and x["user"]["age"].dtype == tf.float32
    assert x["items"]["price"].shape == (2, 1) and x["items"]["category"].dtype == tf.string
    assert y.shape == (2, 1) and y.dtype == tf.float32
    assert [b[1].shape[0] for b in batches] == [2, 2, 1]  # 5 positives
    # Unshuffled rows are the positives in log order.
    assert users.tolist() == ["u1", "u1", "u1", "u1", "u3"]
    assert items[:, 0].tolist() == ["b", "c", "f", "c", "g"]
    np.testing.assert_array_equal(labels, np.ones((5, 1)))
    np.testing.assert_array_equal(batches[0][0]["user"]["age"].numpy(), [20.0, 20.0])
    # g is only in the log: its features are missing, its id is kept.
    assert np.isnan(batches[2][0]["items"]["price"].numpy()[0, 0])
    spec = ds.element_spec[0]
    assert spec["user"]["user_id"].shape.as_list() == [None]
    assert spec["items"]["item_id"].shape.as_list() == [None, 1]


def test_pointwise_rows_and_negatives():
    data = _toy()
    # Catalogue b, c, f, a: u1's positives are b, c, f, so every u1 negative must be "a".
    ds = pointwise_dataset(data, *_stores(data), batch_size=4, num_negatives=3,
                                   catalogue=_obj(["b", "c", "f", "a"]), shuffle=False)
    users, items, labels, batches = _epoch(ds)
    assert items.shape == (20, 1) and labels.shape == (20, 1)  # 5 positives x (1 + 3)
    np.testing.assert_array_equal(labels[:, 0], [1, 0, 0, 0] * 5)
    assert users.tolist() == ["u1"] * 16 + ["u3"] * 4
    negatives = items[labels[:, 0] == 0, 0]
    assert set(negatives[:12].tolist()) == {"a"}
    assert set(negatives[12:].tolist()) <= {"b", "c", "f", "a"}  # u3's positive g is off-catalogue


def test_pairwise_pairs():
    data = _toy()
    ds = pairwise_dataset(data, *_stores(data), batch_size=8, shuffle=False, seed=1)
    users, items, labels, _ = _epoch(ds)
    assert items.shape == (5, 2)
    np.testing.assert_array_equal(labels, [[1, 0]] * 5)
    assert items[:, 0].tolist() == ["b", "c", "f", "c", "g"]
    for user, neg in zip(users, items[:, 1], strict=True):
        # Catalogue = item table a..f plus g from the log.
        assert neg in set("abcdefg") - {"u1": set("bcf"), "u3": {"g"}}[user]


def test_listwise_sampled_lists():
    data = _toy()
    ds = listwise_dataset(data, *_stores(data), batch_size=8, list_size=4,
                                  shuffle=False)
    users, items, labels, batches = _epoch(ds)
    assert items.shape == (5, 4)
    np.testing.assert_array_equal(labels, [[1, 0, 0, 0]] * 5)
    assert batches[0][0]["items"]["price"].shape == (5, 4)
    for user, row in zip(users, items, strict=True):
        assert (user, row[0]) in _positive_pairs(data)
        assert all((user, item) not in _positive_pairs(data) for item in row[1:])


def test_listwise_graded_lists_carry_logged_labels_with_padding():
    data = _toy()
    ds = listwise_dataset(data, *_stores(data), batch_size=8, list_size=4,
                                  mode="graded", shuffle=False)
    users, items, labels, batches = _epoch(ds)
    # r2 has no positive and is dropped; r1, r3, r4 in log order, padded to 4.
    assert users.tolist() == ["u1", "u1", "u3"]
    assert items.tolist() == [["a", "b", "c", ""], ["f", "a", "b", "c"], ["g", "d", "", ""]]
    np.testing.assert_array_equal(labels, [[1, 3, 5, -1], [4, 1, 1, 3], [3, 1, -1, -1]])
    price = batches[0][0]["items"]["price"].numpy()
    np.testing.assert_array_equal(price[0], [1, 2, 3, NAN])  # padding gets missing features
    lists = samples.graded_lists(data, 4)
    assert lists.num_dropped_requests == 1 and lists.num_truncated_requests == 0
    assert lists.request_ids.tolist() == ["r1", "r3", "r4"]


def test_graded_truncation_keeps_positives_in_log_order():
    # r3 = f cart, a imp, b imp, c click with 3 slots: keep f, c (positives) and the
    # earliest non-positive a, in logged order: f, a, c.
    lists = samples.graded_lists(_toy(), 3)
    assert lists.item_ids.tolist() == [["a", "b", "c"], ["f", "a", "c"], ["g", "d", ""]]
    np.testing.assert_array_equal(lists.labels, [[1, 3, 5], [4, 1, 3], [3, 1, -1]])
    assert lists.num_truncated_requests == 1


def test_sampled_negatives_never_hit_the_users_positives(small):
    stores = _stores(small)
    positives = _positive_pairs(small)
    for build, kwargs in [(pointwise_dataset, {"num_negatives": 4}),
                          (pairwise_dataset, {}),
                          (listwise_dataset, {"list_size": 6})]:
        users, items, labels, _ = _epoch(build(small, *stores, batch_size=256, seed=5, **kwargs))
        rows, cols = np.nonzero(labels == 0)
        assert len(rows) > 0
        assert not any((users[r], items[r, c]) in positives for r, c in zip(rows, cols,
                                                                             strict=True))
        rows, cols = np.nonzero(labels == 1)
        assert all((users[r], items[r, c]) in positives for r, c in zip(rows, cols, strict=True))


def test_user_with_every_catalogue_item_gets_masked_negatives():
    # Catalogue b, c, f: all of u1's positives. No valid negative exists for u1, so its
    # negative slots are masked (label -1), never labelled 0; u3 (positive g, not in
    # the catalogue) gets ordinary negatives.
    data = _toy()
    ds = pairwise_dataset(data, *_stores(data), batch_size=8, shuffle=False,
                                  catalogue=_obj(["b", "c", "f"]))
    users, items, labels, _ = _epoch(ds)
    np.testing.assert_array_equal(labels[users == "u1"], [[1, -1]] * 4)
    np.testing.assert_array_equal(labels[users == "u3"], [[1, 0]])
    # Counted: u1 covers b, c, f; with a too, u1's 4 positive rows (c twice) do not.
    for catalogue, covering in ((["b", "c", "f"], 1), (["b", "c", "f", "a"], 0)):
        built = TrainingSamples(data, _obj(catalogue), *_stores(data),
                                SamplingConfig(view="pairwise"), 8)
        assert built.info.counts["users_covering_catalogue"] == covering


def test_same_seed_same_epochs_and_each_pass_has_fresh_negatives(small):
    stores = _stores(small)
    ds_a = pointwise_dataset(small, *stores, batch_size=128, seed=3)
    ds_b = pointwise_dataset(small, *stores, batch_size=128, seed=3)
    a1, a2 = _epoch(ds_a), _epoch(ds_a)
    b1, b2 = _epoch(ds_b), _epoch(ds_b)
    c1 = _epoch(pointwise_dataset(small, *stores, batch_size=128, seed=4))
    # Same seed: the same first and second epochs.
    np.testing.assert_array_equal(a1[1], b1[1])
    np.testing.assert_array_equal(a2[1], b2[1])
    np.testing.assert_array_equal(a1[2], b1[2])
    assert not np.array_equal(a1[1], c1[1])
    # The second pass draws new negatives: the multiset of (user, negative) changes
    # while the positives stay the same.
    def pairs(e, label):
        rows = e[2][:, 0] == label
        return sorted(zip(e[0][rows].tolist(), e[1][rows, 0].tolist(), strict=True))
    assert pairs(a1, 1) == pairs(a2, 1)
    assert pairs(a1, 0) != pairs(a2, 0)
    # Two passes over one dataset: same rows, another order.
    ds = in_batch_dataset(small, *stores, batch_size=128, seed=3)
    first, second = _epoch(ds), _epoch(ds)
    assert sorted(first[1][:, 0].tolist()) == sorted(second[1][:, 0].tolist())
    assert first[1][:, 0].tolist() != second[1][:, 0].tolist()


def _assert_store_features(store, features):
    """Each feature is what the store's str-hashing `lookup` gives for the row's id."""
    for name, value in store.lookup(features[store.key]).items():
        np.testing.assert_array_equal(features[name].numpy(), value.numpy(), err_msg=name)


def _partial_world(data):
    """Every 7th item off the catalogue, every other user off the user table."""
    catalogue = data.item_catalogue()
    users = FeatureStore({k: v[::2] for k, v in data.users.items()}, "user_id")
    return catalogue[np.arange(len(catalogue)) % 7 != 3], users, FeatureStore(data.items,
                                                                               "item_id")


def test_rows_ids_features_and_log_q_follow_the_log(small):
    # Users and items are coded once and gathered per row: each row's user and positive,
    # their features and log Q are checked against numpy over the log, items off the
    # catalogue and users off the user table included.
    inter, m = small.interactions, small.interactions["positive"]
    catalogue, user_store, item_store = _partial_world(small)
    users, items = inter["user_id"][m].astype(str), inter["item_id"][m].astype(str)
    in_cat = np.isin(items, catalogue.astype(str))
    assert 0 < in_cat.sum() < len(items)
    assert 0 < np.isin(users, user_store.ids.astype(str)).sum() < len(users)
    ids, counts = np.unique(items, return_counts=True)
    share = dict(zip(ids.tolist(), counts / len(items), strict=True))
    n, s = len(catalogue), 5
    easy = dict.fromkeys(catalogue.tolist(), 1 / n)  # uniform Q; off the catalogue: the floor
    config = SamplingConfig(negatives=("in_batch", "uniform"), num_negatives=s, shuffle=False)
    built = TrainingSamples(small, catalogue, user_store, item_store, config, 64)
    got_users, got_items, log_q = [], [], []
    for x, _ in built.dataset:
        positive = {name: value[:, 0] for name, value in x["items"].items()}
        _assert_store_features(user_store, x["user"])
        _assert_store_features(item_store, positive)
        got_users += x["user"]["user_id"].numpy().astype(str).tolist()
        got_items += positive["item_id"].numpy().astype(str).tolist()
        b = len(x["user"]["user_id"])
        log_q += [np.log(b * share[i] + s * easy.get(i, MIN_PROBABILITY_SCALE / n))
                  for i in got_items[-b:]]
        _assert_store_features(item_store, x["negatives"])
    assert got_users == users.tolist() and got_items == items.tolist()
    np.testing.assert_allclose(np.concatenate([x["log_q"][:, 0] for x, _ in built.dataset]),
                               log_q, rtol=1e-6)
    counts = built.info.counts
    assert (counts["positives"], counts["positives_off_catalogue"]) == (m.sum(), (~in_cat).sum())
    assert counts["users_with_positives"] == len(set(users))
    assert counts["users_without_positives"] == len(set(inter["user_id"])) - len(set(users))


@pytest.mark.parametrize("options", [
    dict(view="pointwise", negatives=("uniform", "hard"), easy_hard_ratio=1.0),
    dict(view="listwise", list_mode="graded"),
    dict(view="listwise", negatives=("hard",)),
])
def test_views_rows_follow_the_log(small, options):
    # Per-row users (and positives, or graded lists) in log order, their features the
    # stores' lookups; hard negatives keyed by user take each distinct user's pool.
    inter, m = small.interactions, small.interactions["positive"]
    catalogue, user_store, item_store = _partial_world(small)
    config = SamplingConfig(shuffle=False, log_q=False, **options)
    built = TrainingSamples(small, catalogue, user_store, item_store, config, 50)
    got_users, got_items = [], []
    for x, _ in built.dataset:
        _assert_store_features(user_store, x["user"])
        _assert_store_features(item_store, x["items"])
        got_users += x["user"]["user_id"].numpy().astype(str).tolist()
        got_items += x["items"]["item_id"].numpy().astype(str).tolist()
    if options.get("list_mode") == "graded":
        lists = samples.graded_lists(small, config.list_size)
        assert got_users == lists.user_ids.tolist() and got_items == lists.item_ids.tolist()
        return
    k = config.num_negatives + 1 if config.view == "pointwise" else 1
    assert got_users == np.repeat(inter["user_id"][m], k).tolist()
    assert [row[0] for row in got_items[::k]] == inter["item_id"][m].tolist()
    assert built.info.counts["hard_rows_fallback_easy"] < m.sum()


def test_drop_remainder():
    data = _toy()
    ds = in_batch_dataset(data, *_stores(data), batch_size=2, drop_remainder=True)
    assert [y.shape[0] for _, y in ds] == [2, 2]
    assert ds.element_spec[1].shape.as_list() == [2, 1]


def test_shards_split_each_epoch_into_disjoint_batches(small):
    """Per-worker input pipelines: shard i of n yields batches i, i + n, ... of the same
    epochs the unsharded dataset yields (same ids, labels and shared negatives), two
    epochs running, and counts its own batches and rows."""
    stores = _stores(small)
    config = SamplingConfig(view="in_batch", negatives=("in_batch", "uniform"),
                            num_negatives=16, seed=5)
    catalogue = small.item_catalogue()
    whole = TrainingSamples(small, catalogue, *stores, config, 50)
    shards = [TrainingSamples(small, catalogue, *stores, config, 50, shard=(3, i))
              for i in range(3)]
    num_batches = whole.info.batches_per_epoch
    assert num_batches >= 6 and whole.info.rows_per_epoch % 50  # a short last batch
    for _ in range(2):  # each iteration is the next epoch, in every dataset alike
        reference = list(whole.dataset)
        got = [list(s.dataset) for s in shards]
        for i, batches in enumerate(got):
            assert len(batches) == len(range(i, num_batches, 3))
            for (x, y), (rx, ry) in zip(batches, reference[i::3], strict=True):
                for name in ("user", "items", "negatives"):
                    for key, value in x[name].items():
                        np.testing.assert_array_equal(value.numpy(), rx[name][key].numpy())
                np.testing.assert_array_equal(x["log_q"].numpy(), rx["log_q"].numpy())
                np.testing.assert_array_equal(y.numpy(), ry.numpy())
    rows = [s.info.rows_per_epoch for s in shards]
    assert sum(rows) == whole.info.rows_per_epoch
    assert [s.info.batches_per_epoch for s in shards] == [
        len(range(i, num_batches, 3)) for i in range(3)]
    for bad in [(0, 0), (2, 2), (2, -1)]:
        with pytest.raises(ValueError, match="shard must be"):
            TrainingSamples(small, catalogue, *stores, config, 50, shard=bad)
    with pytest.raises(ValueError, match=r"shard \(2, 1\): no batch of 1; lower the batch size"):
        TrainingSamples(small, catalogue, *stores, config, 10 ** 6, shard=(2, 1))


def test_bad_inputs_raise():
    data = _toy()
    stores = _stores(data)
    no_pos = data.subset(~data.interactions["positive"])
    with pytest.raises(ValueError, match="no positive"):
        in_batch_dataset(no_pos, *stores, batch_size=2)
    with pytest.raises(ValueError, match="3 distinct items, fewer than the 5 negatives"):
        pointwise_dataset(data, *stores, batch_size=2, num_negatives=5,
                                  catalogue=_obj(["a", "d", "e"]))
    with pytest.raises(ValueError, match="mode"):
        listwise_dataset(data, *stores, batch_size=2, list_size=3, mode="nope")
    with pytest.raises(ValueError, match="list_size"):
        listwise_dataset(data, *stores, batch_size=2, list_size=1)
    with pytest.raises(ValueError, match="batch_size"):
        in_batch_dataset(data, *stores, batch_size=0)
    with pytest.raises(ValueError, match="num_negatives"):
        pointwise_dataset(data, *stores, batch_size=2, num_negatives=0)


def test_graded_needs_request_ids_of_one_user():
    data = _toy()
    stores = _stores(data)
    inter = {k: v for k, v in data.interactions.items() if k != "request_id"}
    with pytest.raises(ValueError, match="request_id"):
        listwise_dataset(RecallData(inter), *stores, batch_size=2, list_size=3,
                                 mode="graded")
    mixed = dict(data.interactions, user_id=data.interactions["user_id"].copy())
    mixed["user_id"][4] = "u3"  # r2 now has rows of u2 and u3
    with pytest.raises(ValueError, match="request 'r2'.*several users"):
        samples.graded_lists(RecallData(mixed), 3)


# ----------------------------------------------------------------------------- ranker lists


def test_ranker_lists_from_rows_sorts_drops_nan_pads_and_caps():
    req = _obj(["r2", "r1", "r2", "r1", "r2", "r1"])
    users = _obj(["u2", "u1", "u2", "u1", "u2", "u1"])
    items = _obj(["x", "a", "y", "b", "z", "c"])
    scores = np.asarray([0.1, 2.0, 0.5, NAN, 0.3, 3.0], np.float32)
    rl = samples.RankerLists.from_rows(req, users, items, scores)
    # r2 appears first. r2: x .1, y .5, z .3 -> y, z, x; r1: a 2, b NaN (dropped), c 3 -> c, a.
    assert rl.request_ids.tolist() == ["r2", "r1"] and rl.user_ids.tolist() == ["u2", "u1"]
    names = np.where(rl.items >= 0, rl.item_vocab[np.maximum(rl.items, 0)], "")
    assert names.tolist() == [["y", "z", "x"], ["c", "a", ""]]
    np.testing.assert_allclose(rl.scores, [[0.5, 0.3, 0.1], [3.0, 2.0, NAN]])
    assert rl.lengths.tolist() == [3, 2]
    capped = samples.RankerLists.from_rows(req, users, items, scores, top_n=2)
    assert capped.items.shape == (2, 2)
    assert capped.item_vocab[capped.items].tolist() == [["y", "z"], ["c", "a"]]


def test_ranker_lists_reject_bad_tables():
    vocab = _obj(["a", "b"])
    with pytest.raises(ValueError, match="not unique"):
        samples.RankerLists(_obj(["r", "r"]), _obj(["u", "u"]), vocab,
                            np.zeros((2, 1), np.int32), np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match="padding"):
        samples.RankerLists(_obj(["r"]), _obj(["u"]), vocab, np.asarray([[-1, 0]], np.int32),
                            np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="index item_vocab"):
        samples.RankerLists(_obj(["r"]), _obj(["u"]), vocab, np.asarray([[2]], np.int32),
                            np.zeros((1, 1), np.float32))
    with pytest.raises(ValueError, match="request 'r'.*several users"):
        samples.RankerLists.from_rows(_obj(["r", "r"]), _obj(["u", "v"]), vocab,
                                      np.ones(2, np.float32))


def _toy_with_scores():
    """_toy() plus logged ranker scores: r2 has none, r3 only two."""
    data = _toy()
    scores = np.asarray([0.2, 0.9, 0.5, NAN, NAN, 1.0, NAN, 0.1, NAN, 0.7, 0.3], np.float32)
    return RecallData(dict(data.interactions, ranker_score=scores), data.users, data.items,
                      name="toy")


def test_ranked_requests_take_ranker_lists_then_logged_scores():
    data = _toy_with_scores()
    # r1 listed by the ranker (zz is off-catalogue); r9 is no training request.
    rl = samples.RankerLists(_obj(["r1", "r9"]), _obj(["u1", "u7"]), _obj(["c", "zz", "a", "e"]),
                             np.asarray([[0, 1, 2, 3], [2, 0, -1, -1]], np.int32),
                             np.asarray([[3, 2, 1, 0], [5, 4, NAN, NAN]], np.float32))
    catalogue = data.item_catalogue()  # a..f, then g (only in the log)
    ranked = samples.ranked_requests(data, catalogue, rl)
    names = [catalogue[ranked.items[a:b]].tolist()
             for a, b in zip(ranked.offsets[:-1], ranked.offsets[1:], strict=True)]
    # r1: the ranker's c, a, e; r2: no scores (skipped); r3: f 1.0, b 0.1; r4: g .7, d .3.
    assert ranked.request_ids.tolist() == ["r1", "r3", "r4"]
    assert ranked.user_ids.tolist() == ["u1", "u1", "u3"]
    assert names == [["c", "a", "e"], ["f", "b"], ["g", "d"]]
    np.testing.assert_allclose(ranked.scores, [3, 1, 0, 1.0, 0.1, 0.7, 0.3])
    assert (ranked.num_from_ranker, ranked.num_from_log, ranked.num_skipped,
            ranked.num_items_off_catalogue) == (1, 2, 1, 1)
    capped = samples.ranked_requests(data, catalogue, rl, top_n=2)
    assert capped.lengths.tolist() == [2, 2, 2]
    assert catalogue[capped.items[:2]].tolist() == ["c", "a"]


def test_ranked_requests_need_request_ids_and_some_scores():
    data = _toy()
    with pytest.raises(ValueError, match="2 ranked catalogue items"):
        samples.ranked_requests(data, data.item_catalogue())
    inter = {k: v for k, v in data.interactions.items() if k != "request_id"}
    with pytest.raises(ValueError, match="request_id"):
        samples.ranked_requests(RecallData(inter), data.item_catalogue())
