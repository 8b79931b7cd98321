import numpy as np

from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.models import TwoTowerModel
from tfrecall.models.warm_start import default_batch, warm_start


def test_old_rows_and_weights_are_carried_and_new_ids_appended():
    keras.utils.set_random_seed(0)
    old = TwoTowerModel.from_specs(
        [FeatureSpec("user_id", "id", embedding_dim=4)],
        [FeatureSpec("item_id", "id", embedding_dim=4),
         FeatureSpec("tags", "multi_categorical", embedding_dim=3)],
        tower=TowerConfig(hidden_units=(5,), output_dim=4))
    old.adapt({"user_id": np.array(["u1", "u2"], object)},
              {"item_id": np.array(["a", "b"], object), "tags": np.array(["x|y", "y"], object)})
    old(default_batch(old))
    logs = []
    new = warm_start(old, {"user_id": np.array(["u2", "u3"], object)},
                     {"item_id": np.array(["b", "c", "c"], object),
                      "tags": np.array(["y|z", "", "z"], object)}, log=logs.append)
    ids = new.item_tower.encoder.feature_layers[0]
    assert list(ids.vocabulary) == ["a", "b", "c"]  # old order kept, new id appended
    old_tags = list(old.item_tower.encoder.feature_layers[1].vocabulary)
    assert list(new.item_tower.encoder.feature_layers[1].vocabulary) == old_tags + ["z"]
    assert list(new.user_tower.encoder.feature_layers[0].vocabulary) == ["u1", "u2", "u3"]
    old_table = old.item_tower.encoder.feature_layers[0].embeddings.numpy()
    np.testing.assert_array_equal(ids.embeddings.numpy()[: len(old_table)], old_table)
    # Every same-shaped weight (dense layers, projections) is identical.
    np.testing.assert_array_equal(new.item_tower.projection.kernel.numpy(),
                                  old.item_tower.projection.kernel.numpy())
    # So a known item embeds exactly as before.
    b = {"item_id": tf.constant(["b"]), "tags": tf.constant(["y"])}
    np.testing.assert_allclose(new.item_tower(b).numpy(), old.item_tower(b).numpy(), rtol=1e-6)
    assert any("item_id: 1 new ids" in line for line in logs)
