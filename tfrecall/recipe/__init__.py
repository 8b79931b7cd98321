"""The end-to-end recipe: read -> split -> samples -> fit -> evaluate -> export.

- `tfrecall.recipe.config`: `RecipeConfig`, every setting with its help and allowed values.
- `tfrecall.recipe.prepare`: the data side (read, split, tables, feature specs).
- `tfrecall.recipe.stage`: one training stage (model, samples, callbacks, fit).
- `tfrecall.recipe.job`: `run`, the whole job; `tfrecall.recipe.evaluate`: `evaluate_trained`.
"""

from tfrecall.models.persistence import (
    CATALOGUE_FILE,
    RECIPE_FILE,
    load_model,
    previous_catalogue,
    save_model,
)
from tfrecall.recipe.config import (
    DEFAULT_IN_BATCH_NEGATIVES,
    DEFAULT_NEGATIVES_PER_POSITIVE,
    DEFAULT_SHARED_NEGATIVES,
    LOSSES,
    OPTIMIZERS,
    OUTPUT_SETTINGS,
    SIMILARITIES,
    SPLITS,
    STRATEGIES,
    WORLDS,
    RecipeConfig,
    batch_for,
    needs_ranker,
    run_fingerprint,
    run_settings,
    with_batch,
)
from tfrecall.recipe.evaluate import EvalResult, evaluate_trained, load_recipe_config
from tfrecall.recipe.job import RunResult, check_run_dirs, run
from tfrecall.recipe.prepare import (
    build_specs,
    entity_table,
    item_adapt_table,
    load_recall_data,
    split_data,
    synthetic_world,
    user_feature_table,
)
from tfrecall.recipe.stage import build_model, compiled_model, make_loss
from tfrecall.sampling.config import VIEWS

__all__ = [
    "CATALOGUE_FILE", "DEFAULT_IN_BATCH_NEGATIVES", "DEFAULT_NEGATIVES_PER_POSITIVE",
    "DEFAULT_SHARED_NEGATIVES", "EvalResult", "LOSSES", "OPTIMIZERS", "OUTPUT_SETTINGS",
    "RECIPE_FILE", "RecipeConfig", "RunResult", "SIMILARITIES", "SPLITS", "STRATEGIES",
    "VIEWS", "WORLDS", "batch_for", "build_model", "build_specs", "check_run_dirs",
    "compiled_model", "entity_table", "evaluate_trained", "item_adapt_table", "load_model",
    "load_recall_data", "load_recipe_config", "make_loss", "needs_ranker",
    "previous_catalogue", "run", "run_fingerprint", "run_settings", "save_model",
    "split_data", "synthetic_world", "user_feature_table", "with_batch",
]
