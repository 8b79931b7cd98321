"""The recipe's defaults: resolved negatives, the item id's positive-count vocabulary, and
the catalogue a warm start keeps."""

import json

import numpy as np
import pytest

from tfrecall import recipe
from tfrecall.config import FeatureSpec
from tfrecall.data.schema import RecallData
from tfrecall.models.warm_start import default_batch
from tfrecall.recipe import RecipeConfig


def _log(pairs):
    """A RecallData of (user, item, positive) rows."""
    users, items, pos = zip(*pairs, strict=True)
    return RecallData({
        "user_id": np.asarray(users, dtype=object),
        "item_id": np.asarray(items, dtype=object),
        "label": np.asarray([1.0 if p else 0.0 for p in pos], np.float32),
        "positive": np.asarray(pos, bool),
    }, name="log")


# ---------------------------------------------------------------- negatives


@pytest.mark.parametrize("kwargs, catalogue, want", [
    # The in_batch view mixes in 256 shared uniform negatives, at most the catalogue.
    ({}, None, ("in_batch,uniform", 256)),
    ({}, 10_000, ("in_batch,uniform", 256)),
    ({}, 40, ("in_batch,uniform", 40)),
    # Explicit choices are kept as given.
    ({"negatives": "in_batch"}, 40, ("in_batch", 40)),
    ({"negatives": "in_batch,popularity", "num_negatives": 7}, 40, ("in_batch,popularity", 7)),
    # Other views: the sampler's default sources, 3 negatives per positive.
    ({"view": "pointwise", "loss": "bce"}, 40, (None, 3)),
    ({"view": "listwise", "loss": "kl", "num_negatives": 5}, 40, (None, 5)),
])
def test_resolve_negatives(kwargs, catalogue, want):
    assert RecipeConfig(**kwargs).resolve_negatives(catalogue) == want


def test_sampling_config_carries_the_resolved_defaults():
    sampling = RecipeConfig().sampling(catalogue_size=100)
    assert sampling.negatives == ("in_batch", "uniform") and sampling.num_negatives == 100
    assert RecipeConfig(view="pointwise", loss="bce").sampling().num_negatives == 3


def test_bad_num_negatives_and_min_count_name_the_field():
    with pytest.raises(ValueError, match="num_negatives must be >= 1, got 0"):
        RecipeConfig(num_negatives=0)
    with pytest.raises(ValueError, match="item_id_min_count must be >= 1, got 0"):
        RecipeConfig(item_id_min_count=0)


def test_config_with_unset_num_negatives_round_trips_through_json():
    config = RecipeConfig(item_id_min_count=3)
    back = RecipeConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config and back.num_negatives is None


# ---------------------------------------------------------------- item id vocabulary


def _catalogue_table():
    ids = np.asarray(["a", "b", "c", "d", "e"], dtype=object)
    return {"item_id": ids, "category": np.asarray(["x", "x", "y", "y", "z"], dtype=object)}


def test_item_id_vocabulary_counts_training_positives():
    # a: 6 positives, b: 5, c: 4, d: 1 (+ 3 exposures that are not positives), e: none.
    pairs = ([("u", "a", True)] * 6 + [("u", "b", True)] * 5 + [("u", "c", True)] * 4
             + [("u", "d", True)] + [("u", "d", False)] * 3)
    config = RecipeConfig(item_id_min_count=5, batch_size=4)
    specs = [FeatureSpec("item_id", "id", min_count=5), FeatureSpec("category", "categorical")]
    logs = []
    specs, table = recipe.item_adapt_table(specs, _catalogue_table(), _log(pairs), logs.append)
    assert sorted(table["item_id"].tolist()) == ["a"] * 6 + ["b"] * 5 + ["c"] * 4 + ["d"]
    assert logs == ["item_id: 2 of 4 items with training positives have >= 5 (min_count) and "
                    "their own embedding row; the rest and items never positive are scored by "
                    "their features (the OOV row)"]
    model = recipe.build_model([FeatureSpec("user_id", "id")], specs,
                               {"user_id": np.asarray(["u"], dtype=object)}, table, config)
    item_id, category = model.item_tower.encoder.feature_layers
    assert item_id.vocabulary == ["a", "b"]  # most frequent first
    assert sorted(category.vocabulary) == ["x", "y", "z"]  # from the catalogue, not the log
    # c, d and e share the OOV row: with the same features they embed identically.
    emb = model.item_embeddings({"item_id": np.asarray(["c", "d", "a"], dtype=object),
                                 "category": np.asarray(["y", "y", "y"], dtype=object)}).numpy()
    np.testing.assert_allclose(emb[0], emb[1])
    assert not np.allclose(emb[0], emb[2])


def test_tiny_log_keeps_every_positive_item_with_a_note():
    pairs = [("u", "a", True)] * 2 + [("u", "b", True)]
    specs = [FeatureSpec("item_id", "id", min_count=5)]
    logs = []
    specs, table = recipe.item_adapt_table(specs, _catalogue_table(), _log(pairs), logs.append)
    assert specs[0].min_count == 1 and "no item has 5 training positives" in logs[0]


def test_hashed_item_ids_adapt_from_the_catalogue():
    specs = [FeatureSpec("item_id", "id", hash_buckets=64)]
    table = _catalogue_table()
    out_specs, out = recipe.item_adapt_table(specs, table, _log([("u", "a", True)]))
    assert out is table and out_specs == specs


def test_build_specs_sets_the_min_count_unless_the_feature_config_does(tmp_path):
    data = _log([("u", "a", True), ("v", "b", True)])
    _, items = recipe.build_specs(data, RecipeConfig(item_id_min_count=4))
    assert {s.name: s.min_count for s in items}["item_id"] == 4
    path = tmp_path / "features.json"
    path.write_text('{"items": {"item_id": {"kind": "id", "min_count": 2}}}')
    _, items = recipe.build_specs(data, RecipeConfig(item_id_min_count=4,
                                                     feature_config=str(path)))
    assert {s.name: s.min_count for s in items}["item_id"] == 2


# ---------------------------------------------------------------- warm-start catalogue


def test_previous_catalogue_prefers_the_saved_catalogue_over_the_vocabulary(tmp_path):
    config = RecipeConfig(model_dir=str(tmp_path / "run"))
    model = recipe.build_model(
        [FeatureSpec("user_id", "id")], [FeatureSpec("item_id", "id")],
        {"user_id": np.asarray(["u"], dtype=object)},
        {"item_id": np.asarray(["a", "b"], dtype=object)}, config)
    model(default_batch(model))  # variables exist, as after training
    # "tail" has no embedding row (below min_count) but was in the indexed catalogue.
    recipe.save_model(model, config, np.asarray(["a", "b", "tail"], dtype=object))
    loaded = recipe.load_model(config.model_dir)
    assert recipe.previous_catalogue(config.model_dir, loaded).tolist() == ["a", "b", "tail"]
    (tmp_path / "run" / recipe.CATALOGUE_FILE).unlink()  # a run saved before the file existed
    assert recipe.previous_catalogue(config.model_dir, loaded).tolist() == ["a", "b"]
