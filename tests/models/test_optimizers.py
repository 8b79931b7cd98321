"""LazyAdam: Adam's recurrence on the rows a sparse gradient names, nothing else moves."""

import numpy as np
import pytest

from tfrecall._backend import keras, tf
from tfrecall.models import LazyAdam
from tfrecall.recipe import RecipeConfig


def numpy_lazy_adam(table, batches, lr, beta_1=0.9, beta_2=0.999, eps=1e-7, amsgrad=False):
    """Reference: loss = sum over the batch's rows (repeats counted) of row**2 . weight."""
    table = table.copy()
    m, v, v_hat = np.zeros_like(table), np.zeros_like(table), np.zeros_like(table)
    for step, (rows, weight) in enumerate(batches, start=1):
        grad = np.zeros_like(table)
        for r in rows:
            grad[r] += 2 * table[r] * weight
        seen = sorted(set(rows))
        m[seen] = beta_1 * m[seen] + (1 - beta_1) * grad[seen]
        v[seen] = beta_2 * v[seen] + (1 - beta_2) * grad[seen] ** 2
        v_hat[seen] = np.maximum(v_hat[seen], v[seen])
        denominator = np.sqrt(v_hat[seen] if amsgrad else v[seen]) + eps
        alpha = lr * np.sqrt(1 - beta_2 ** step) / (1 - beta_1 ** step)
        table[seen] -= alpha * m[seen] / denominator
    return table


def run_lazy(table, batches, optimizer):
    variable = tf.Variable(table)
    for rows, weight in batches:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.gather(variable, rows)) * weight)
        gradient = tape.gradient(loss, variable)
        assert isinstance(gradient, tf.IndexedSlices)
        optimizer.apply_gradients([(gradient, variable)])
    return variable.numpy()


BATCHES = [([1, 3, 1], np.float32([1.0, -2.0, 0.5])), ([3], np.float32([0.3, 1.0, 1.0])),
           ([0, 5, 5, 5], np.float32([1.0, 1.0, -1.0])), ([1], np.float32([2.0, 2.0, 2.0]))]


@pytest.mark.parametrize("amsgrad", [False, True])
def test_lazy_adam_matches_a_numpy_reference_with_repeated_and_absent_rows(amsgrad):
    table = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    got = run_lazy(table, BATCHES, LazyAdam(learning_rate=0.05, amsgrad=amsgrad))
    want = numpy_lazy_adam(table.astype(np.float64), BATCHES, 0.05, amsgrad=amsgrad)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Rows 2 and 4 were never in a batch: untouched (Adam would not move them either,
    # since their moments are zero; rows 1 and 3 are where the two differ).
    np.testing.assert_array_equal(got[[2, 4]], table[[2, 4]])


def test_lazy_adam_differs_from_adam_only_on_rows_absent_from_a_later_batch():
    table = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
    lazy = run_lazy(table, BATCHES, LazyAdam(learning_rate=0.05))
    adam = run_lazy(table, BATCHES, keras.optimizers.Adam(learning_rate=0.05))
    # Row 5 appears only in the third batch; Adam keeps moving it on the fourth step.
    assert not np.allclose(lazy[5], adam[5])
    # Row 1 appears in the first and the last batch (absent in between): differs too.
    assert not np.allclose(lazy[1], adam[1])
    # After the first step alone the two are the same optimizer.
    np.testing.assert_allclose(run_lazy(table, BATCHES[:1], LazyAdam(learning_rate=0.05)),
                               run_lazy(table, BATCHES[:1],
                                        keras.optimizers.Adam(learning_rate=0.05)),
                               rtol=1e-5, atol=1e-6)


def test_lazy_adam_updates_dense_gradients_exactly_like_adam():
    start = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
    results = []
    for optimizer in (LazyAdam(learning_rate=0.1), keras.optimizers.Adam(learning_rate=0.1)):
        variable = tf.Variable(start)
        for scale in (1.0, -0.5, 2.0):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(variable ** 3) * scale
            optimizer.apply_gradients([(tape.gradient(loss, variable), variable)])
        results.append(variable.numpy())
    np.testing.assert_array_equal(results[0], results[1])


def test_lazy_adam_config_round_trip_and_recipe_option():
    optimizer = LazyAdam(learning_rate=0.02, beta_1=0.8)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, LazyAdam)
    assert restored.get_config()["beta_1"] == pytest.approx(0.8)
    assert RecipeConfig(optimizer="lazy_adam").optimizer == "lazy_adam"
    with pytest.raises(ValueError, match="optimizer"):
        RecipeConfig(optimizer="lazy")


def two_tower(num_items, text_buckets=None):
    from tfrecall.config import FeatureSpec, TowerConfig
    from tfrecall.models import TwoTowerModel
    items = np.array([f"i{j}" for j in range(num_items)], object)
    item_specs = [FeatureSpec("item_id", "id", embedding_dim=4)]
    item_table = {"item_id": items}
    if text_buckets:
        item_specs.append(FeatureSpec("title", "text", embedding_dim=4,
                                      hash_buckets=text_buckets))
        item_table["title"] = np.array(["a title"] * num_items, object)
    model = TwoTowerModel.from_specs(
        [FeatureSpec("city", "categorical", embedding_dim=4)], item_specs,
        tower=TowerConfig(hidden_units=(), output_dim=4))
    model.adapt({"city": np.array(["x", "y", "z"], object)}, item_table)
    return model


@pytest.mark.parametrize("num_items, batch, history, text, want", [
    (1000, 128, 50, None, "adam"),          # 1000 + 1 OOV + city rows << 4 x 6528
    (30000, 128, 50, None, "lazy_adam"),    # 30001 + 4 > 26112
    (26000, 128, 50, None, "adam"),         # 26001 + 4 <= 26112
    (26000, 128, 50, 64, "lazy_adam"),      # the title's 129 hashed rows tip it over
    (30000, 1024, 50, None, "adam"),        # a larger batch touches more rows
])
def test_auto_optimizer_takes_lazy_adam_where_tables_exceed_four_times_a_steps_rows(
        num_items, batch, history, text, want):
    from tfrecall.recipe.stage import choose_optimizer, embedding_rows
    model = two_tower(num_items, text)
    # 1 OOV row per id table (defaults); the city's 3 values + 1 OOV.
    want_rows = num_items + 1 + 4 + (2 * text + 1 if text else 0)
    assert embedding_rows(model) == want_rows
    lines = []
    config = RecipeConfig(batch_size=batch, history_items=history)
    assert choose_optimizer(config, model, log=lines.append) == want
    assert f"{want_rows:,} embedding rows" in lines[0]
    # An explicit choice is kept whatever the size, and says nothing.
    explicit = RecipeConfig(batch_size=batch, history_items=history, optimizer="adam")
    assert choose_optimizer(explicit, model, log=lines.append) == "adam"
    assert len(lines) == 1
