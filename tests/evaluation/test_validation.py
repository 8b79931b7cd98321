"""ValidationRecall: per-epoch full-catalogue recall, early stopping on it, best restored."""

import numpy as np

from tfrecall import losses
from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.evaluation.harness import make_eval_set
from tfrecall.evaluation.validation import ValidationRecall, monitor_name
from tfrecall.io.schema import RecallData
from tfrecall.models import TwoTowerModel


def _numpy_recall(model, users, items, targets, exclude, k):
    """Recall@k per held-out pair, recomputed from the towers' embeddings by hand."""
    u = model.user_embeddings({"user_id": tf.constant(users)}).numpy()
    v = model.item_embeddings({"item_id": tf.constant(items)}).numpy()
    scores = u @ v.T
    hits = total = 0
    for row, target in targets.items():
        s = scores[row].copy()
        s[list(exclude.get(row, ()))] = -np.inf
        top = set(np.argsort(-s, kind="stable")[:k].tolist())
        hits += len(target & top)
        total += len(target)
    return hits / total


def test_curve_matches_numpy_and_early_stopping_restores_the_best_epoch():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    users = np.array([f"u{i}" for i in range(40)], object)
    items = np.array([f"i{j}" for j in range(30)], object)
    fit_u, fit_i, val_u, val_i = [], [], [], []
    for n, u in enumerate(users):
        liked = (n % 3) * 10 + rng.choice(10, 6, replace=False)
        fit_u += [u] * 5
        fit_i += items[liked[:5]].tolist()
        val_u.append(u)
        val_i.append(items[liked[5]])

    def data(us, its):
        n = len(us)
        return RecallData({"user_id": np.array(us, object), "item_id": np.array(its, object),
                           "label": np.ones(n, np.float32), "positive": np.ones(n, bool)})

    eval_set = make_eval_set(data(fit_u, fit_i), data(val_u, val_i), users, items)
    model = TwoTowerModel.from_specs([FeatureSpec("user_id", "id", embedding_dim=8)],
                                     [FeatureSpec("item_id", "id", embedding_dim=8)],
                                     tower=TowerConfig(hidden_units=(), output_dim=8),
                                     in_batch_negatives=True)
    model.adapt({"user_id": users}, {"item_id": items})
    x = {"user": {"user_id": np.array(fit_u)}, "items": {"item_id": np.array(fit_i)[:, None]}}
    ds = tf.data.Dataset.from_tensor_slices((x, np.ones((len(fit_u), 1), np.float32)))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=losses.SoftmaxLoss())
    validator = ValidationRecall(eval_set, {"user_id": users}, {"item_id": items}, k=5)
    by_hand = []

    class Check(keras.callbacks.Callback):  # runs after the validator, same weights
        def on_epoch_end(self, epoch, logs=None):
            by_hand.append(_numpy_recall(self.model, users, items, eval_set.targets,
                                         eval_set.exclude, 5))
            assert logs[monitor_name(5)] == validator.curve[-1]

    stop = keras.callbacks.EarlyStopping(validator.monitor, mode="max", patience=2,
                                         restore_best_weights=True)
    history = model.fit(ds.shuffle(500, seed=0).batch(20), epochs=25, verbose=0,
                        callbacks=[validator, Check(), stop])
    np.testing.assert_allclose(validator.curve, by_hand, atol=1e-9)
    assert history.history[validator.monitor] == validator.curve
    assert max(validator.curve) > 0.3  # it learns the three taste blocks
    # After fit the model holds the best epoch's weights, whichever epoch was last.
    final = _numpy_recall(model, users, items, eval_set.targets, eval_set.exclude, 5)
    assert final == max(validator.curve)
