"""Multi-channel recall: the channel tables, each channel and the quota merge against
hand-worked answers and a plain-Python merge, and the export loaded in a fresh process
(a user without history falls through to the other channels)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.models import TwoTowerModel
from tfrecall.serving import embed_items, embed_users, export_saved_model
from tfrecall.serving.channel_tables import attribute_index, build_tables, item2item_table
from tfrecall.serving.channels import (
    FUSION_OFFSET,
    ChannelModule,
    first_positions,
    fusion_positions,
    merge_quotas,
    positive_top_k,
    quota_grid,
)
from tfrecall.serving.index import build_brute_force

ITEMS = np.array([f"i{j}" for j in range(6)], object)
# u0: i0 i1; u1: i0 i1 i2; u2: i2 i3. Positives per item: 2 2 2 1 0 0.
USER_IDX = np.array([0, 0, 1, 1, 1, 2, 2])
ITEM_IDX = np.array([0, 1, 0, 1, 2, 2, 3])
GENRES = np.array(["A", "A|B", "B", "C", "A", "C"], object)
ALL = ("item2item", "attribute", "two_tower", "popularity")


def reference_merge(lists, quotas, k):
    """The merge in plain Python: quotas in channel order, then the leftovers."""
    out, taken = [], set()
    for c, rows in enumerate(lists):
        n = 0
        for r in rows:
            if r >= 0 and r not in taken and n < quotas[c]:
                out.append((r, c))
                taken.add(r)
                n += 1
    for c, rows in enumerate(lists):
        for r in rows:
            if r >= 0 and r not in taken:
                out.append((r, c))
                taken.add(r)
    return (out + [(-1, -1)] * k)[:k]


def reference_fusion(lists, weights, k):
    """Weighted reciprocal-rank fusion in plain Python (float64): (row, tag channel)."""
    total, first, tag = {}, {}, {}
    for c, rows in enumerate(lists):
        for p, r in enumerate(rows):
            if r < 0:
                continue
            w = weights[c] / (FUSION_OFFSET + p + 1)
            total[r] = total.get(r, 0.0) + w
            first.setdefault(r, c * len(rows) + p)
            if r not in tag or w > tag[r][0]:
                tag[r] = (w, c)
    ranked = sorted(total, key=lambda r: (-round(total[r] * 2**24), first[r]))
    return ([(r, tag[r][1]) for r in ranked] + [(-1, -1)] * k)[:k]


def fuse(lists, weights, k):
    cat = tf.concat([tf.constant(x, tf.int32) for x in lists], axis=1)
    pos, tag = fusion_positions(cat, first_positions(cat), weights, k)
    rows = np.where(pos.numpy() >= 0, np.take_along_axis(cat.numpy(), np.maximum(
        pos.numpy(), 0), axis=1), -1)
    return rows, tag.numpy()


def test_fusion_by_hand_and_against_plain_python():
    a, b = [[5, 2, 7, -1]], [[2, 9, 8, 1]]
    # 2: .5/62 + .5/61; 5: .5/61; 9: .5/62; 7 and 8: .5/63 each, 7 first in merge order.
    rows, tags = fuse([a, b], (0.5, 0.5), 4)
    assert rows[0].tolist() == [2, 5, 9, 7] and tags[0].tolist() == [1, 0, 1, 0]
    # One channel's weight: its list, then the others' items in merge order.
    rows, tags = fuse([a, b], (1.0, 0.0), 4)
    assert rows[0].tolist() == [5, 2, 7, 9] and tags[0].tolist() == [0, 0, 0, 1]
    rows, _ = fuse([[[-1, -1, -1, -1]], b], (1.0, 0.0), 4)
    assert rows[0].tolist() == [2, 9, 8, 1]  # nothing to say: the next channel's list
    rng = np.random.default_rng(1)
    k, m = 6, 3
    lists = []
    for _ in range(m):
        rows = np.stack([rng.permutation(12)[:k] for _ in range(30)]).astype(np.int32)
        rows[:, 4:][rng.random((30, 2)) < 0.5] = -1  # some short lists
        lists.append(rows)
    for weights in [(0.2, 0.3, 0.5), (0.0, 0.7, 0.3), (1.0, 0.0, 0.0)]:
        rows, tags = fuse(lists, weights, k)
        for u in range(30):
            want = reference_fusion([x[u] for x in lists], weights, k)
            assert rows[u].tolist() == [r for r, _ in want], (weights, u)
            assert tags[u].tolist() == [c for _, c in want], (weights, u)


def test_item2item_table_is_itemcf_cosine_by_hand():
    rows, weights = item2item_table(USER_IDX, ITEM_IDX, 3, 6, num_neighbors=3)
    # c01 = 2 -> 2/sqrt(2*2) = 1; c02 = c12 = 1 -> 1/2; c23 = 1 -> 1/sqrt(2*1).
    np.testing.assert_array_equal(rows, [[1, 2, -1], [0, 2, -1], [3, 0, 1], [2, -1, -1],
                                         [-1, -1, -1], [-1, -1, -1]])
    np.testing.assert_allclose(weights[:4], [[1, .5, 0], [1, .5, 0], [2 ** -.5, .5, .5],
                                             [2 ** -.5, 0, 0]], rtol=1e-6)
    rows, _ = item2item_table(USER_IDX, ITEM_IDX, 3, 6, num_neighbors=1)
    np.testing.assert_array_equal(rows[:, 0], [1, 0, 3, 2, -1, -1])


def test_attribute_index_by_hand():
    pop = np.array([2, 2, 2, 1, 0, 0], np.float32)
    values, item_values, value_items, value_scores = attribute_index(GENRES, pop, top_n=5)
    assert values.tolist() == ["A", "B", "C"]
    np.testing.assert_array_equal(item_values, [[0, -1], [0, 1], [1, -1], [2, -1], [0, -1],
                                                [2, -1]])
    # Items without a positive (i4, i5) stay out of the lists; popularity / max = /2.
    np.testing.assert_array_equal(value_items, [[0, 1], [1, 2], [3, -1]])
    np.testing.assert_allclose(value_scores, [[1, 1], [1, 1], [.5, 0]])
    _, _, top1, _ = attribute_index(GENRES, np.array([1, 3, 2, 1, 0, 0]), top_n=1)
    np.testing.assert_array_equal(top1[:, 0], [1, 1, 3])
    with pytest.raises(ValueError, match="no value on any item"):
        attribute_index(np.array(["", " "], object), np.ones(2))
    with pytest.raises(ValueError, match="no item has a training positive"):
        attribute_index(GENRES, np.zeros(6))


def test_positive_top_k_drops_zero_and_excluded_and_pads():
    scores = tf.constant([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 0.0, 0.0]])
    rows, top = positive_top_k(scores, tf.constant([[1, -1], [-1, -1]]), 3)
    np.testing.assert_array_equal(rows.numpy(), [[3, 2, -1], [0, -1, -1]])
    np.testing.assert_allclose(top.numpy()[:, :1], [[2.0], [5.0]])


def test_merge_quotas_by_hand_and_against_plain_python():
    a, b = [5, 2, 7, -1], [2, 9, 8, 1]
    cases = {(2, 2): [5, 2, 9, 8], (4, 0): [5, 2, 7, 9], (0, 4): [2, 9, 8, 1],
             (1, 1): [5, 2, 7, 9]}  # (1, 1): a gives 5, b's 2 is new to pass 1 -> 2
    for quotas, want in cases.items():
        _, merged = merge_quotas([tf.constant([a]), tf.constant([b])], quotas, 4)
        assert merged.numpy()[0].tolist() == want, quotas
    rng = np.random.default_rng(0)
    k, m = 6, 3
    lists = []
    for _ in range(m):  # distinct rows per list, some -1 tails
        rows = np.stack([rng.permutation(10)[:k] for _ in range(20)]).astype(np.int32)
        rows[rng.random((20, k)) < 0.2] = -1
        lists.append(rows)
    for quotas in [(6, 0, 0), (2, 2, 2), (0, 3, 3), (1, 0, 5)]:
        pos, merged = merge_quotas([tf.constant(x) for x in lists], quotas, k)
        for u in range(20):
            want = reference_merge([x[u] for x in lists], quotas, k)
            assert merged.numpy()[u].tolist() == [r for r, _ in want], (quotas, u)
            got_channel = np.where(pos.numpy()[u] >= 0, pos.numpy()[u] // k, -1)
            assert got_channel.tolist() == [c for _, c in want]


def test_quota_grid_holds_every_one_channel_split():
    grid = quota_grid(3, 100, steps=10)
    assert len(grid) == 66 and all(sum(q) == 100 for q in grid)
    for c in range(3):
        assert tuple(100 if i == c else 0 for i in range(3)) in grid


@pytest.fixture(scope="module")
def module_parts():
    keras.utils.set_random_seed(1)
    model = TwoTowerModel.from_specs(
        [FeatureSpec("user_id", "id", embedding_dim=4),
         FeatureSpec("history", "history", embedding_dim=4)],
        [FeatureSpec("item_id", "id", embedding_dim=4)],
        tower=TowerConfig(hidden_units=(), output_dim=4))
    model.adapt({"user_id": np.array(["u0", "u1"], object),
                 "history": np.array(["", ""], object)}, {"item_id": ITEMS})
    tables = build_tables(ALL, USER_IDX, ITEM_IDX, 3, 6, "genre", GENRES, num_neighbors=3)
    embeddings = embed_items(model, {"item_id": ITEMS})
    return model, tables, embeddings


def make_module(parts, quotas=(1, 1, 1, 1), k=4, **merge):
    model, tables, embeddings = parts
    index, _ = build_brute_force(embeddings)
    return ChannelModule(model, ITEMS, index, k, tables, ALL, quotas, **merge)


USERS = {"user_id": ["u0", "nobody", "u1"], "history": ["i0", "", "i0| i3"]}


def call(module, name, exclude=None):
    features = {k: tf.constant(v) for k, v in USERS.items()}
    if name == "serving_default":
        return {k: v.numpy() for k, v in module.serving_default(features).items()}
    exclude = exclude or [[""]] * 3
    out = getattr(module, name)({**features, "exclude_item_ids": tf.constant(exclude)})
    return {k: v.numpy() for k, v in out.items()}


def ids(out):
    return out["item_ids"].astype(str).tolist()


def test_each_channel_by_hand(module_parts):
    module = make_module(module_parts)
    # History i0: neighbours i1 (1.0), i2 (0.5). History i0, i3: i2 = 0.5 + 1/sqrt(2).
    assert ids(call(module, "channel_item2item")) == [
        ["i1", "i2", "", ""], ["", "", "", ""], ["i2", "i1", "", ""]]
    # History i0, i3: A and C half each -> A: i1 (0.5 x 1; i0 is seen), C: i3 (seen).
    # History i0: A only -> i1 (1 x 1). No history: nothing.
    assert ids(call(module, "channel_attribute")) == [
        ["i1", "", "", ""], ["", "", "", ""], ["i1", "", "", ""]]
    np.testing.assert_allclose(call(module, "channel_attribute")["scores"][2, 0], 0.5)
    # Popularity (2, 2, 2, 1, 0, 0): seen items out, items without positives never.
    assert ids(call(module, "channel_popularity")) == [
        ["i1", "i2", "i3", ""], ["i0", "i1", "i2", "i3"], ["i1", "i2", "", ""]]
    # Two-tower: exact scores, history and the listed items excluded.
    model, _, embeddings = module_parts
    scores = embed_users(model, {k: np.array(v, object) for k, v in USERS.items()}) @ \
        embeddings.T
    seen = [{0, 5}, {2}, {0, 3}]
    exclude = [["i5"], ["i2"], [""]]
    got = ids(call(module, "channel_two_tower", exclude))
    for u in range(3):
        want = [f"i{j}" for j in np.argsort(-scores[u], kind="stable") if j not in seen[u]][:4]
        assert got[u] == want + [""] * (4 - len(want))


def test_merge_is_the_plain_python_merge_of_the_channels(module_parts):
    for quotas in [(1, 1, 1, 1), (4, 0, 0, 0), (0, 0, 0, 4), (2, 0, 2, 0)]:
        module = make_module(module_parts, quotas)
        lists = [[[int(i[1:]) if i else -1 for i in row] for row in ids(call(module, "channel_"
                                                                          + c))] for c in ALL]
        merged = call(module, "serving_exclude")
        default = call(module, "serving_default")
        assert ids(merged) == ids(default)
        for u in range(3):
            want = reference_merge([lists[c][u] for c in range(4)], quotas, 4)
            assert ids(merged)[u] == [f"i{r}" if r >= 0 else "" for r, _ in want]
            assert merged["channels"][u].astype(str).tolist() == [
                ALL[c] if c >= 0 else "" for _, c in want]
    # The user without history gets 4 items from two_tower and popularity, no error.
    assert set(merged["channels"][1].astype(str)) <= {"two_tower", "popularity"}
    assert all(ids(merged)[1])


def test_fusion_module_is_the_plain_python_fusion_of_the_channels(module_parts):
    for weights in [(0.25, 0.25, 0.25, 0.25), (0.0, 0.0, 1.0, 0.0), (0.5, 0.1, 0.2, 0.2)]:
        module = make_module(module_parts, merge="fusion", weights=weights)
        lists = [[[int(i[1:]) if i else -1 for i in row] for row in ids(call(module, "channel_"
                                                                          + c))] for c in ALL]
        merged = call(module, "serving_default")
        for u in range(3):
            want = reference_fusion([lists[c][u] for c in range(4)], weights, 4)
            assert ids(merged)[u] == [f"i{r}" if r >= 0 else "" for r, _ in want]
            assert merged["channels"][u].astype(str).tolist() == [
                ALL[c] if c >= 0 else "" for _, c in want]


def test_bad_arguments_are_refused(module_parts):
    model, tables, embeddings = module_parts
    index, _ = build_brute_force(embeddings)
    with pytest.raises(ValueError, match="one or more of"):
        ChannelModule(model, ITEMS, index, 4, tables, ("two_tower", "mf"))
    with pytest.raises(ValueError, match="quotas must give one number >= 0 per channel"):
        ChannelModule(model, ITEMS, index, 4, tables, ALL, (1, 1))
    with pytest.raises(ValueError, match="weights must give"):
        ChannelModule(model, ITEMS, index, 4, tables, ALL, weights=(1, -1, 0, 0))
    with pytest.raises(ValueError, match="merge must be one of"):
        ChannelModule(model, ITEMS, index, 4, tables, ALL, merge="rrf")
    with pytest.raises(ValueError, match="tables cover 6 items"):
        ChannelModule(model, ITEMS[:5], index, 4, tables, ALL)
    plain = TwoTowerModel.from_specs([FeatureSpec("user_id", "id", embedding_dim=4)],
                                     [FeatureSpec("item_id", "id", embedding_dim=4)],
                                     tower=TowerConfig(hidden_units=(), output_dim=4))
    with pytest.raises(ValueError, match="'history'"):
        ChannelModule(plain, ITEMS, index, 4, tables, ("item2item",))
    with pytest.raises(ValueError, match="item attribute column"):
        build_tables(("attribute",), USER_IDX, ITEM_IDX, 3, 6)


LOADER = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    assert "tfrecall" not in sys.modules
    m = tf.saved_model.load(sys.argv[1])
    users = {"user_id": tf.constant(["u0", "nobody", "u1"]),
             "history": tf.constant(["i0", "", "i0| i3"])}
    out = {"signatures": sorted(m.signatures)}
    merged = m.signatures["serving_default"](**users)
    out["merged"] = merged["item_ids"].numpy().astype(str).tolist()
    out["tags"] = merged["channels"].numpy().astype(str).tolist()
    for name in ("item2item", "attribute", "two_tower", "popularity"):
        got = m.signatures["channel_" + name](exclude_item_ids=tf.constant([[""]] * 3), **users)
        out[name] = got["item_ids"].numpy().astype(str).tolist()
    empty = m.signatures["serving_default"](user_id=tf.constant([], tf.string),
                                            history=tf.constant([], tf.string))
    out["empty"] = list(empty["item_ids"].shape)
    print(json.dumps(out))
    """
)


@pytest.mark.slow  # a fresh TensorFlow process (about 10-20 s on 2 shared cores)
def test_export_loads_in_a_fresh_process_and_falls_through(module_parts, tmp_path,
                                                           subprocess_env):
    model, tables, _ = module_parts
    path = export_saved_model(
        model, {"item_id": ITEMS}, str(tmp_path), k=4, index="brute_force",
        module_factory=lambda m, item_ids, index, k: ChannelModule(
            m, item_ids, index, k, tables, ALL, (1, 1, 1, 1)))
    env = {k: v for k, v in subprocess_env.items() if k != "TF_USE_LEGACY_KERAS"}
    run = subprocess.run([sys.executable, "-c", LOADER, path], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert {f"channel_{c}" for c in ALL} <= set(got["signatures"])
    assert path.info["signatures"][:2] == ["serving_default", "serving_exclude"]
    module = make_module(module_parts)
    assert got["merged"] == ids(call(module, "serving_default"))
    assert got["tags"] == call(module, "serving_default")["channels"].astype(str).tolist()
    for name in ALL:
        assert got[name] == ids(call(module, "channel_" + name)), name
    assert got["item2item"][1] == [""] * 4 and all(got["merged"][1])  # no history
    assert got["empty"] == [0, 4]
