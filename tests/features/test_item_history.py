"""ItemHistoryEmbedding: the user's history read through the item tower's own id table."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO

from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.features import ItemHistoryEmbedding
from tfrecall.models import TwoTowerModel

ITEMS = np.array([f"a{i}" for i in range(8)] + [f"b{i}" for i in range(8)], object)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def _model(user_id=True, hidden=()):
    user_specs = [FeatureSpec("history", "history", embedding_dim=8)]
    if user_id:
        user_specs.insert(0, FeatureSpec("user_id", "id", embedding_dim=8))
    model = TwoTowerModel.from_specs(
        user_specs, [FeatureSpec("item_id", "id", embedding_dim=8)],
        tower=TowerConfig(hidden_units=hidden, output_dim=8), in_batch_negatives=True)
    users = {"user_id": np.array(["u0", "u1"], object), "history": np.array(["", ""], object)}
    model.adapt(users, {"item_id": ITEMS})
    return model


def test_history_is_the_mean_of_the_item_towers_id_rows_with_no_table_of_its_own():
    model = _model()
    encoder = model.user_tower.encoder
    history = encoder.layer("history")
    item_layer = model.item_tower.encoder.layer("item_id")
    out = history(tf.constant(["a1|a3", "b0", "", "a1||zzz"])).numpy()
    table = item_layer.embeddings.numpy()  # row 0 = OOV, row 1 + i = vocabulary[i]
    row = {v: 1 + i for i, v in enumerate(item_layer.vocabulary)}
    np.testing.assert_allclose(out[0], (table[row["a1"]] + table[row["a3"]]) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[1], table[row["b0"]], rtol=1e-6)
    np.testing.assert_array_equal(out[2], np.zeros(8))  # no history -> zeros
    # An empty token is dropped; an unknown id reads the item tower's OOV row, as items do.
    np.testing.assert_allclose(out[3], (table[row["a1"]] + table[0]) / 2, rtol=1e-6)
    # One table: the model holds it once, and the history layer owns no weights.
    model(_batch())
    assert history.weights == []
    tables = [v for v in model.trainable_variables if "embedding" in v.name]
    assert len(tables) == 2  # user_id's and item_id's; none for the history
    assert len({id(v) for v in model.trainable_variables}) == len(model.trainable_variables)


def _batch(histories=("a1|a2", "b3|b4"), positives=("a5", "b6")):
    return {"user": {"user_id": tf.constant(["u0", "u1"]), "history": tf.constant(histories)},
            "items": {"item_id": tf.constant([[p] for p in positives])}}


def test_gradients_from_the_user_side_reach_the_item_id_rows_of_the_history():
    model = _model()
    model(_batch())
    item_layer = model.item_tower.encoder.layer("item_id")
    with tf.GradientTape() as tape:
        users = model.user_embeddings(_batch()["user"])
        loss = tf.reduce_sum(users * tf.constant(np.ones((2, 8), np.float32)))
    grad = tape.gradient(loss, item_layer.embeddings)
    grad = tf.convert_to_tensor(grad).numpy()
    touched = {item_layer.vocabulary[r - 1] for r in np.flatnonzero(np.abs(grad).sum(1))}
    assert touched == {"a1", "a2", "b3", "b4"}  # the history items, through the user tower


def test_unbound_layer_and_width_mismatch_are_clear_errors():
    layer = ItemHistoryEmbedding(8)
    with pytest.raises(ValueError, match="not bound"):
        layer(tf.constant(["a1"]))
    with pytest.raises(ValueError, match="differs from the item id embedding's 4"):
        from tfrecall.features import CategoricalEmbedding

        layer.bind(CategoricalEmbedding(4, vocabulary=["a"]))
    with pytest.raises(ValueError, match="belongs to the user tower"):
        TwoTowerModel.from_specs([FeatureSpec("user_id", "id")],
                                 [FeatureSpec("item_id", "id", embedding_dim=8),
                                  FeatureSpec("history", "history", embedding_dim=8)])


def test_config_round_trip_rebinds_and_weights_reload_in_a_fresh_process(tmp_path,
                                                                          subprocess_env):
    from tfrecall.recipe import load_model, save_model

    model = _model(hidden=(16,))
    model(_batch())
    feed = {"user_id": np.array(["u0", "new"], object),
            "history": np.array(["a1|a2|a3", "b1|b2"], object)}
    want = model.user_embeddings({k: tf.constant(v.astype(str)) for k, v in feed.items()})
    save_model(model, str(tmp_path))
    code = textwrap.dedent(f"""
        import json, numpy as np, tensorflow as tf
        from tfrecall.recipe import load_model
        m = load_model({str(tmp_path)!r})
        out = m.user_embeddings({{"user_id": tf.constant(["u0", "new"]),
                                  "history": tf.constant(["a1|a2|a3", "b1|b2"])}})
        hist = m.user_tower.encoder.layer("history")
        assert hist.bound and hist.weights == []
        print(json.dumps(out.numpy().tolist()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    np.testing.assert_allclose(json.loads(out.stdout.splitlines()[-1]), want.numpy(),
                               rtol=1e-5, atol=1e-6)
    # In-process too: the reloaded history reads the reloaded item table, not a copy.
    again = load_model(str(tmp_path))
    assert (again.user_tower.encoder.layer("history")._item.layer
            is again.item_tower.encoder.layer("item_id"))


def test_a_new_user_with_a_history_of_one_taste_retrieves_that_taste():
    """Trained on two tastes (a*, b*), a user never seen in training whose history holds
    three a-items gets a-items on top, without retraining (the history carries them)."""
    from tfrecall import losses

    rng = np.random.default_rng(0)
    users, histories, positives = [], [], []
    for u in range(60):
        taste = "a" if u % 2 == 0 else "b"
        taken = rng.choice(8, size=5, replace=False)
        for j in taken:
            rest = [f"{taste}{i}" for i in taken if i != j]
            users.append(f"u{u}")
            histories.append("|".join(rest))  # leave-one-out: the target is not in it
            positives.append(f"{taste}{j}")
    model = _model(user_id=True, hidden=(16,))
    x = {"user": {"user_id": np.array(users), "history": np.array(histories)},
         "items": {"item_id": np.array(positives)[:, None]}}
    ds = tf.data.Dataset.from_tensor_slices((x, np.ones((len(users), 1), np.float32)))
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=losses.SoftmaxLoss())
    model.fit(ds.shuffle(1000, seed=0).batch(16), epochs=30, verbose=0)
    user = model.user_embeddings({"user_id": tf.constant(["never-seen"]),
                                  "history": tf.constant(["a0|a3|a6"])}).numpy()
    items = model.item_embeddings({"item_id": tf.constant(ITEMS)}).numpy()
    scores = (user @ items.T)[0]
    fresh = [i for i in np.argsort(-scores) if ITEMS[i] not in ("a0", "a3", "a6")]
    top = [ITEMS[i] for i in fresh[:5]]
    assert all(t.startswith("a") for t in top), top
    # And the same user with a b-history retrieves b-items.
    other = model.user_embeddings({"user_id": tf.constant(["never-seen"]),
                                   "history": tf.constant(["b1|b2|b5"])}).numpy()
    top_b = [ITEMS[i] for i in np.argsort(-(other @ items.T)[0])
             if ITEMS[i] not in ("b1", "b2", "b5")][:5]
    assert all(t.startswith("b") for t in top_b), top_b
