"""TwoTowerModel's fused in-batch softmax trains exactly like the dense (B, B) path."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.losses import KLLoss, SampledSoftmaxLoss, SoftmaxLoss
from tfrecall.models import TwoTowerModel

USERS = np.array([f"u{i}" for i in range(12)], object)
ITEMS = np.array([f"i{j}" for j in range(7)], object)


def make_model(fused=True, regularize=False):
    keras.utils.set_random_seed(4)
    model = TwoTowerModel.from_specs(
        [FeatureSpec("user_id", "id", embedding_dim=8)],
        [FeatureSpec("item_id", "id", embedding_dim=8)],
        tower=TowerConfig(hidden_units=(16,), output_dim=8), temperature=0.2,
        in_batch_negatives=True, fused_in_batch=fused)
    model.adapt({"user_id": USERS}, {"item_id": ITEMS})
    if regularize:
        model(next(iter(dataset()))[0])  # builds the tables
        table = model.user_tower.encoder.feature_layers[0].embeddings
        model.user_tower.add_loss(lambda: 0.01 * tf.reduce_sum(tf.square(table)))
    return model


def dataset(log_q=True, weights=True):
    rng = np.random.default_rng(0)
    n = 40
    # 7 items over 40 rows: every batch of 10 holds repeated items (accidental hits).
    items = rng.choice(ITEMS, n)[:, None].astype(str)
    x = {"user": {"user_id": rng.choice(USERS, n).astype(str)}, "items": {"item_id": items}}
    if log_q:
        x["log_q"] = np.log(rng.uniform(0.05, 0.5, (n, 1))).astype(np.float32)
    y = np.ones((n, 1), np.float32)
    parts = (x, y, rng.uniform(0.5, 2.0, n).astype(np.float32)) if weights else (x, y)
    return tf.data.Dataset.from_tensor_slices(parts).batch(10)


@pytest.mark.parametrize("loss_cls,reduction", [(SoftmaxLoss, "auto"),
                                                (SampledSoftmaxLoss, "sum")])
def test_fit_matches_the_dense_path(loss_cls, reduction):
    runs = []
    for fused in (True, False):
        model = make_model(fused, regularize=True)
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss_cls(reduction=reduction))
        history = model.fit(dataset(), epochs=3, verbose=0)
        assert model._fuses(next(iter(dataset()))[0]) == fused
        runs.append((history.history["loss"], model.evaluate(dataset(), verbose=0),
                     [w.numpy() for w in model.trainable_weights]))
    (loss_f, eval_f, weights_f), (loss_d, eval_d, weights_d) = runs
    np.testing.assert_allclose(loss_f, loss_d, rtol=1e-4)
    np.testing.assert_allclose(eval_f, eval_d, rtol=1e-4)
    assert loss_f[-1] < loss_f[0]
    for a, b in zip(weights_f, weights_d, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def mixed_dataset(log_q=True):
    """In-batch rows plus 5 negatives shared by each batch of 10 (the default recipe's
    layout), some of them accidental hits of the rows' positives."""
    rng = np.random.default_rng(1)
    batches = []
    for _ in range(4):
        x = {"user": {"user_id": tf.constant(rng.choice(USERS, 10).astype(str))},
             "items": {"item_id": tf.constant(rng.choice(ITEMS, 10)[:, None].astype(str))},
             "negatives": {"item_id": tf.constant(rng.choice(ITEMS, 5).astype(str))}}
        if log_q:
            x["log_q"] = tf.constant(np.log(rng.uniform(0.05, 0.5, (10, 1))), tf.float32)
            x["negatives_log_q"] = tf.constant(np.log(rng.uniform(0.05, 0.5, 5)), tf.float32)
        batches.append((x, tf.ones((10, 1))))
    return tf.data.Dataset.from_generator(
        lambda: iter(batches), output_signature=tf.nest.map_structure(
            lambda t: tf.TensorSpec(t.shape, t.dtype), batches[0]))


@pytest.mark.parametrize("log_q", [True, False])
def test_mixed_shared_negatives_take_the_fused_path_with_the_dense_gradients(log_q):
    x, y = next(iter(mixed_dataset(log_q)))
    grads, losses = [], []
    for fused in (True, False):
        model = make_model(fused)
        model.compile(optimizer="sgd", loss=SoftmaxLoss())
        model(x)  # builds the variables
        assert model._fuses(x) == fused
        with tf.GradientTape() as tape:
            if fused:
                loss = model._fused_loss(x, None, training=True)
            else:
                logits, labels = model.logits_and_labels(x, y, training=True)
                loss = SoftmaxLoss()(labels, logits)
        losses.append(loss.numpy())
        grads.append([g.numpy() if not isinstance(g, tf.IndexedSlices)
                      else tf.convert_to_tensor(g).numpy()
                      for g in tape.gradient(loss, model.trainable_variables)])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # And whole fits agree.
    runs = []
    for fused in (True, False):
        model = make_model(fused)
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss=SoftmaxLoss())
        runs.append(model.fit(mixed_dataset(log_q), epochs=3, verbose=0).history["loss"])
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-4)
    assert runs[0][-1] < runs[0][0]


def test_per_row_negatives_keep_the_dense_path():
    model = make_model(True)
    model.compile(optimizer="sgd", loss=SoftmaxLoss())
    x = {"user": {"user_id": tf.constant(["u1", "u2"])},
         "items": {"item_id": tf.constant([["i1", "i2"], ["i3", "i4"]])}}
    assert not model._fuses(x)


def test_loss_value_is_the_dense_softmax_loss_of_logits_and_labels():
    model = make_model()
    model.compile(optimizer="sgd", loss=SoftmaxLoss())
    x, y, w = next(iter(dataset()))
    logits, labels = model.logits_and_labels(x, y)
    want = SoftmaxLoss()(labels, logits, sample_weight=w)
    got = model._fused_loss(x, w, training=False)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)


@pytest.mark.parametrize("compile_kwargs", [
    dict(loss=KLLoss()),
    dict(loss=SoftmaxLoss(), metrics=[keras.metrics.CategoricalAccuracy()]),
    dict(loss=SoftmaxLoss(), loss_weights=[2.0]),
    dict(loss=SoftmaxLoss(reduction="none")),
])
def test_anything_that_needs_the_logits_takes_the_dense_path(compile_kwargs):
    model = make_model()
    model.compile(optimizer="sgd", **compile_kwargs)
    x = next(iter(dataset()))[0]
    assert not model._fuses(x)
    history = model.fit(dataset(), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    if "metrics" in compile_kwargs:
        assert "categorical_accuracy" in history


def test_config_round_trip_keeps_the_switch():
    model = make_model(fused=False)
    clone = TwoTowerModel.from_config(model.get_config())
    assert clone.fused_in_batch is False


MIRRORED = r"""
import json, numpy as np, tensorflow as tf
import tfrecall
from tfrecall._backend import keras
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.losses import SoftmaxLoss
from tfrecall.models import TwoTowerModel
rng = np.random.default_rng(0)
users = np.array([f"u{i}" for i in range(12)], object)
items = np.array([f"i{j}" for j in range(5)], object)
x = {"user": {"user_id": rng.choice(users, 32).astype(str)},
     "items": {"item_id": rng.choice(items, 32)[:, None].astype(str)},
     "log_q": np.log(rng.uniform(0.05, 0.5, (32, 1))).astype(np.float32)}
data = tf.data.Dataset.from_tensor_slices((x, np.ones((32, 1), np.float32))).batch(8)
out = {}
for fused in (True, False):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = TwoTowerModel.from_specs(
            [FeatureSpec("user_id", "id", embedding_dim=4)],
            [FeatureSpec("item_id", "id", embedding_dim=4)],
            tower=TowerConfig(hidden_units=(8,), output_dim=4), temperature=0.2,
            in_batch_negatives=True, fused_in_batch=fused)
        model.adapt({"user_id": users}, {"item_id": items})
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss=SoftmaxLoss())
    history = model.fit(data, epochs=2, verbose=0).history["loss"]
    out[str(fused)] = {"loss": history,
                       "weights": [w.numpy().tolist() for w in model.trainable_weights]}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_fused_path_under_two_replicas_matches_the_dense_one(subprocess_env):
    # The fused loss sees the all-gathered candidates (global batch, accidental hits across
    # replicas) and is scaled per replica as Keras' loss container scales the dense one.
    out = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True,
                         env=subprocess_env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(got["True"]["loss"], got["False"]["loss"], rtol=1e-4)
    for a, b in zip(got["True"]["weights"], got["False"]["weights"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
