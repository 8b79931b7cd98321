"""A trained run on disk: the model (architecture + vocabularies + weights), the recipe it
was trained with and the catalogue it indexed, and what a warm start reads back."""

from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np

from tfrecall._backend import keras
from tfrecall.models.two_tower import TwoTowerModel
from tfrecall.models.warm_start import default_batch, model_spec

RECIPE_FILE = "recipe.json"
CATALOGUE_FILE = "catalogue.json"


def save_model(model: TwoTowerModel, model_dir: str, recipe: Optional[dict] = None,
               catalogue: Optional[np.ndarray] = None) -> None:
    """Writes model.json (architecture + adapted vocabularies), weights, the recipe config
    (`RECIPE_FILE`, when given) and the item catalogue the run indexed (`CATALOGUE_FILE`)."""
    os.makedirs(model_dir, exist_ok=True)
    if catalogue is not None:
        with open(os.path.join(model_dir, CATALOGUE_FILE), "w") as f:
            json.dump([str(i) for i in catalogue.tolist()], f)
    with open(os.path.join(model_dir, "model.json"), "w") as f:
        json.dump(model_spec(model), f)
    if recipe is not None:
        with open(os.path.join(model_dir, RECIPE_FILE), "w") as f:
            json.dump(recipe, f, indent=2)
    model.save_weights(os.path.join(model_dir, "weights", "final"))


def load_model(model_dir: str) -> TwoTowerModel:
    """Rebuilds a trained `TwoTowerModel` from `save_model`'s files (needs tfrecall)."""
    with open(os.path.join(model_dir, "model.json")) as f:
        model = keras.saving.deserialize_keras_object(json.load(f))
    status = model.load_weights(os.path.join(model_dir, "weights", "final"))
    # Create every variable now (one row of default feature values) so the restore is
    # checked here, instead of a model with missing weights silently keeping random ones.
    model(default_batch(model))
    status.assert_existing_objects_matched().expect_partial()  # optimizer slots: not needed
    return model


def read_catalogue(model_dir: str) -> Optional[np.ndarray]:
    """The item catalogue a run indexed (`CATALOGUE_FILE`), or None for a run without one."""
    path = os.path.join(model_dir, CATALOGUE_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return np.asarray(json.load(f), dtype=object)


def previous_catalogue(model_dir: str, previous: TwoTowerModel) -> np.ndarray:
    """The items a trained run indexed: its `CATALOGUE_FILE`, else (older runs) the item
    id vocabulary, which misses the items below the id's min_count."""
    saved = read_catalogue(model_dir)
    if saved is not None:
        return saved
    return _vocabulary(previous.item_tower, previous.item_id_feature)


def _vocabulary(tower, feature: str) -> np.ndarray:
    for spec, layer in zip(tower.encoder.specs, tower.encoder.feature_layers, strict=True):
        if spec.name == feature and getattr(layer, "vocabulary", None) is not None:
            return np.asarray(layer.vocabulary, dtype=object)
    return np.zeros(0, dtype=object)


def union(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``first`` then the ids of ``second`` it lacks, in order."""
    seen = set(first.tolist())
    extra = [v for v in second.tolist() if v not in seen]
    return np.concatenate([first, np.asarray(extra, dtype=object)]) if extra else first
