"""TwoTowerModel: scoring, in-batch labels, log Q, the three training views, round trips."""

import numpy as np
import pytest

from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.losses import SoftmaxLoss
from tfrecall.models import Tower, TwoTowerModel

USERS = {"user_id": np.array(["u1", "u2", "u3"], object),
         "age": np.array([20.0, 35.0, np.nan], np.float32)}
ITEMS = {"item_id": np.array(["a", "b", "c", "d"], object),
         "genres": np.array(["x|y", "y", "", "z"], object)}
USER_SPECS = [FeatureSpec("user_id", "id", embedding_dim=8), FeatureSpec("age", "continuous")]
ITEM_SPECS = [FeatureSpec("item_id", "id", embedding_dim=8),
              FeatureSpec("genres", "multi_categorical", embedding_dim=4)]


def make_model(**kwargs):
    keras.utils.set_random_seed(1)
    model = TwoTowerModel.from_specs(
        USER_SPECS, ITEM_SPECS, tower=TowerConfig(hidden_units=(16,), output_dim=6), **kwargs
    )
    model.adapt(USERS, ITEMS)
    return model


def batch(item_ids, user_ids=("u1", "u2", "u3")):
    item_ids = np.asarray(item_ids, object)
    genre = {"a": "x|y", "b": "y", "c": "", "d": "z"}
    return {
        "user": {"user_id": tf.constant(list(user_ids)),
                 "age": tf.constant([20.0, 35.0, np.nan][: len(user_ids)])},
        "items": {"item_id": tf.constant(item_ids.astype(str)),
                  "genres": tf.constant(np.vectorize(lambda i: genre.get(i, ""))(item_ids))},
    }


def test_tower_shapes_and_unit_norm():
    model = make_model()
    u = model.user_embeddings(batch([["a"]] * 3)["user"]).numpy()
    v = model.item_embeddings(batch([["a", "b"], ["c", "d"], ["a", "zzz"]])["items"]).numpy()
    assert u.shape == (3, 6) and v.shape == (3, 2, 6)
    np.testing.assert_allclose(np.linalg.norm(u, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 1.0, rtol=1e-5)
    assert np.all(np.isfinite(u))  # NaN age goes through the learned default


def test_scores_are_cosine_over_temperature():
    model = make_model(temperature=0.1)
    x = batch([["a", "b"], ["c", "d"], ["b", "a"]])
    scores = model(x).numpy()
    u = model.user_embeddings(x["user"]).numpy()
    v = model.item_embeddings(x["items"]).numpy()
    expected = np.stack([v[b] @ u[b] for b in range(3)]) / 0.1  # numpy, per row
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_in_batch_labels_mask_accidental_hits_and_log_q_shifts_columns():
    model = make_model(in_batch_negatives=True)
    x = batch([["a"], ["b"], ["a"]])  # rows 0 and 2 share item a
    logits, labels = model.logits_and_labels(x, None, training=False)
    # Row 0's positive is a: column 2 (also a) is an accidental hit -> -1; same for row 2.
    np.testing.assert_array_equal(labels.numpy(), [[1, 0, -1], [0, 1, 0], [-1, 0, 1]])
    u = model.user_embeddings(x["user"]).numpy()
    v = model.item_embeddings({k: t[:, 0] for k, t in x["items"].items()}).numpy()
    np.testing.assert_allclose(logits.numpy(), u @ v.T / 0.05, rtol=1e-4, atol=1e-4)
    log_q = np.log(np.array([[0.5], [0.25], [0.5]], np.float32))
    corrected, _ = model.logits_and_labels({**x, "log_q": tf.constant(log_q)}, None, False)
    # Each column j is shifted by -log Q(item of row j).
    np.testing.assert_allclose(corrected.numpy(), logits.numpy() - log_q[:, 0][None, :],
                               rtol=1e-5, atol=1e-4)


def test_listwise_collision_with_positive_is_masked():
    model = make_model()
    x = batch([["a", "b", "a"], ["b", "c", "d"], ["c", "c", "a"]])
    y = tf.constant([[1.0, 0, 0], [0, 1, 0], [1, 0, -1]])
    _, labels = model.logits_and_labels(x, y, training=False)
    # Row 0: the negative 'a' equals the positive -> -1. Row 2: the second 'c' -> -1.
    np.testing.assert_array_equal(labels.numpy(), [[1, 0, -1], [0, 1, 0], [1, -1, -1]])


def test_pointwise_negative_rows_are_not_masked():
    # L = 1 rows with label 0 have no positive: the negative must stay a negative.
    model = make_model()
    x = batch([["a"], ["b"], ["c"]])
    _, labels = model.logits_and_labels(x, tf.constant([[1.0], [0.0], [0.0]]), training=False)
    np.testing.assert_array_equal(labels.numpy(), [[1], [0], [0]])


def _dataset(view):
    rng = np.random.default_rng(0)
    n = 64
    users = rng.choice(USERS["user_id"], n)
    pos = np.where(users == "u1", "a", np.where(users == "u2", "b", "c"))
    if view == "in_batch":
        items, labels = pos[:, None], np.ones((n, 1), np.float32)
    elif view == "pointwise":
        neg = np.where(pos == "d", "a", "d")
        items = np.concatenate([pos, neg])[:, None]
        users = np.concatenate([users, users])
        labels = np.concatenate([np.ones(n), np.zeros(n)])[:, None].astype(np.float32)
    elif view == "pairwise":
        items = np.stack([pos, np.full(n, "d")], 1)
        labels = np.tile([[1.0, 0.0]], (n, 1)).astype(np.float32)
    else:
        items = np.stack([pos, np.full(n, "d"), np.full(n, "a")], 1)
        labels = np.tile([[1.0, 0.0, -1.0]], (n, 1)).astype(np.float32)
    age = {"u1": 20.0, "u2": 35.0, "u3": np.nan}
    genre = {"a": "x|y", "b": "y", "c": "", "d": "z"}
    x = {"user": {"user_id": users.astype(str),
                  "age": np.array([age[u] for u in users], np.float32)},
         "items": {"item_id": items.astype(str), "genres": np.vectorize(genre.get)(items)}}
    return tf.data.Dataset.from_tensor_slices((x, labels)).batch(16)


@pytest.mark.parametrize(
    "view,loss_name",
    [("in_batch", "SoftmaxLoss"), ("pointwise", "PointwiseBCELoss"),
     ("pairwise", "BPRLoss"), ("listwise", "SoftmaxLoss")],
)
def test_fit_each_view_lowers_the_loss(view, loss_name):
    from tfrecall import losses

    model = make_model(in_batch_negatives=view == "in_batch", temperature=0.2)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=getattr(losses, loss_name)())
    ds = _dataset(view)
    before = model.evaluate(ds, verbose=0)
    model.fit(ds, epochs=15, verbose=0)
    after = model.evaluate(ds, verbose=0)
    assert np.isfinite(after) and after < 0.7 * before


def test_loss_needing_log_q_refuses_a_batch_without_it():
    class NeedsLogQ(SoftmaxLoss):
        requires_log_q = True

    model = make_model(in_batch_negatives=True)
    model.compile(optimizer="adam", loss=NeedsLogQ())
    with pytest.raises(ValueError, match="log_q"):
        model.fit(_dataset("in_batch"), epochs=1, verbose=0)


def test_config_round_trip_gives_identical_scores():
    model = make_model()
    x = batch([["a", "b"], ["c", "zzz"], ["d", "a"]])
    expected = model(x).numpy()
    clone = TwoTowerModel.from_config(model.get_config())
    clone(x)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x).numpy(), expected, rtol=1e-6)


def test_keras_savedmodel_round_trip(tmp_path):
    model = make_model()
    x = batch([["a", "b"], ["c", "zzz"], ["d", "a"]])
    expected = model(x).numpy()
    model.save(str(tmp_path / "m"))
    loaded = keras.models.load_model(str(tmp_path / "m"))
    np.testing.assert_allclose(loaded(x).numpy(), expected, rtol=1e-6)


def test_bad_arguments_are_named():
    tower = Tower(USER_SPECS, hidden_units=(), output_dim=4)
    item = Tower(ITEM_SPECS, hidden_units=(), output_dim=4, normalize=False)
    with pytest.raises(ValueError, match="similarity"):
        TwoTowerModel(tower, Tower(ITEM_SPECS, hidden_units=(), output_dim=4), similarity="l2")
    with pytest.raises(ValueError, match="temperature"):
        TwoTowerModel(tower, Tower(ITEM_SPECS, hidden_units=(), output_dim=4), temperature=0)
    with pytest.raises(ValueError, match="normalize"):
        TwoTowerModel(tower, item)
    with pytest.raises(ValueError, match="output_dim"):
        TwoTowerModel(tower, Tower(ITEM_SPECS, hidden_units=(), output_dim=5))


def test_tower_without_projection_is_the_bare_embedding():
    # Matrix factorization: the tower output is the id embedding row itself.
    tower = Tower([FeatureSpec("user_id", "id", embedding_dim=4)], hidden_units=(),
                  output_dim=4, normalize=False, projection=False)
    tower.encoder.adapt({"user_id": np.array(["u1", "u2"], object)})
    out = tower({"user_id": tf.constant(["u2", "zz"])}).numpy()
    table = tower.encoder.feature_layers[0].embeddings.numpy()
    # Rows: 0 = OOV, 1 = u1, 2 = u2 (vocabulary after the OOV bucket).
    np.testing.assert_allclose(out, table[[2, 0]])
    with pytest.raises(ValueError, match="projection=False"):
        Tower([FeatureSpec("user_id", "id", embedding_dim=4)], hidden_units=(), output_dim=8,
              projection=False)


CROSS_REPLICA = r"""
import json, numpy as np, tensorflow as tf
import tfrecall
from tfrecall._backend import keras
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.models import TwoTowerModel
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    keras.utils.set_random_seed(0)
    model = TwoTowerModel.from_specs([FeatureSpec("user_id", "id", embedding_dim=4)],
                                     [FeatureSpec("item_id", "id", embedding_dim=4)],
                                     tower=TowerConfig(hidden_units=(), output_dim=4))
model.adapt({"user_id": np.array(["u0", "u1", "u2", "u3"], object)},
            {"item_id": np.array(["a", "b", "c"], object)})
model.in_batch_negatives = True
x = {"user": {"user_id": tf.constant(["u0", "u1", "u2", "u3"])},
     "items": {"item_id": tf.constant([["a"], ["b"], ["a"], ["c"]])},
     "log_q": tf.math.log(tf.constant([[0.5], [0.25], [0.5], [0.25]]))}
dist = strategy.experimental_distribute_values_from_function(
    lambda ctx: tf.nest.map_structure(lambda t: t[2 * ctx.replica_id_in_sync_group:
                                                  2 * ctx.replica_id_in_sync_group + 2], x))
out = strategy.run(lambda b: model.logits_and_labels(b, None, training=False), args=(dist,))
logits = [t.numpy().tolist() for t in strategy.experimental_local_results(out[0])]
labels = [t.numpy().tolist() for t in strategy.experimental_local_results(out[1])]
single_logits, single_labels = model.logits_and_labels(x, None, training=False)
print(json.dumps({"logits": logits, "labels": labels,
                  "single_logits": single_logits.numpy().tolist(),
                  "single_labels": single_labels.numpy().tolist()}))
"""


def test_cross_replica_in_batch_negatives_have_global_batch_width(subprocess_env):
    # Two replicas of 2 rows each: every replica's logits are (2, 4), the global batch, and
    # equal the single-device rows; labels mark the replica's own block, and the
    # accidental hit (item a in rows 0 and 2, on different replicas) is masked across them.
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", CROSS_REPLICA], capture_output=True, text=True,
                         env=subprocess_env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert [np.shape(t) for t in got["logits"]] == [(2, 4), (2, 4)]
    np.testing.assert_allclose(np.concatenate(got["logits"]), got["single_logits"], rtol=1e-5)
    np.testing.assert_array_equal(np.concatenate(got["labels"]), got["single_labels"])
    np.testing.assert_array_equal(got["labels"][0], [[1, 0, -1, 0], [0, 1, 0, 0]])
