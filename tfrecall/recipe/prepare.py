"""The data side of a run, shared by training (`run`) and re-evaluation (`evaluate_trained`):
read the log, split it, align the feature tables, infer the feature specs.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np

from tfrecall.config import FeatureSpec
from tfrecall.data import longtail, splits, synthetic
from tfrecall.evaluation.harness import EvalSet, check_evaluable, make_eval_set
from tfrecall.ids import vocab_codes
from tfrecall.io.feature_kinds import config_source, infer_feature_specs, load_feature_config
from tfrecall.io.readers import load_data
from tfrecall.io.schema import RecallData
from tfrecall.models.persistence import union
from tfrecall.recipe.config import RecipeConfig
from tfrecall.sampling.history import HISTORY_FEATURE, user_histories


@dataclasses.dataclass
class Prepared:
    """One run's data: the log, its split, the catalogue and the aligned tables.

    Attributes:
      data, train, test: the whole log (training rows first, then held-out ones:
        `share_rows`) and its split, views of it.
      catalogue: ``(I,)`` item ids trained on (negatives, vocabularies) and ranked.
      user_ids: ``(U,)`` every user of the log.
      user_table: the user features aligned with ``user_ids`` plus the history feature
        (the whole training split, as serving would feed it).
      item_table: the item features aligned with ``catalogue``.
      eval_set: the held-out pairs, training items excluded when the config says so.
      world: the synthetic world the log came from, or None for files.
      eval_item_table: the item features aligned with ``eval_set.catalogue``; with
        ``split="item"`` the held-out (cold) items, which ``catalogue`` leaves out, else
        ``item_table``.
      export_item_table: the items the export indexes: the catalogue, plus the cold
        items with ``split="item"``.
    """

    data: RecallData
    train: RecallData
    test: RecallData
    catalogue: np.ndarray
    user_ids: np.ndarray
    user_table: dict
    item_table: dict
    eval_set: EvalSet
    world: object = None
    eval_item_table: Optional[dict] = None
    export_item_table: Optional[dict] = None

    def __post_init__(self):
        if self.eval_item_table is None:
            self.eval_item_table = self.item_table
        if self.export_item_table is None:
            self.export_item_table = self.item_table


def prepare(config: RecipeConfig, catalogue: Optional[np.ndarray] = None,
            also_items: Optional[np.ndarray] = None) -> Prepared:
    """Reads and splits the config's log; `catalogue` (e.g. a run's saved one) replaces the
    log's own item catalogue, and `also_items` (a warm start's indexed items) join it.

    Raises:
      ValueError / DataError: bad files, or nothing to evaluate in the held-out split.
    """
    world = synthetic_world(config) if config.interactions is None else None
    data = world.data if world is not None else load_recall_data(config)
    data, train, test = share_rows(data, *split_data(data, config))
    catalogue = data.item_catalogue() if catalogue is None else catalogue
    if also_items is not None:
        catalogue = union(catalogue, also_items)
    user_ids = data.user_ids()
    user_table = user_feature_table(data, train, user_ids, config)
    if config.split == "item":
        # Cold start: the held-out items are ranked among themselves and never trained on
        # (not even as negatives); the export indexes every item.
        cold = np.isin(catalogue.astype(str), test.interactions["item_id"].astype(str))
        eval_set = make_eval_set(train, test, user_ids, catalogue[cold], config.exclude_train)
        check_evaluable(eval_set, test, config.exclude_train)
        return Prepared(data, train, test, catalogue[~cold], user_ids, user_table,
                        entity_table(data.items, catalogue[~cold], "item_id"), eval_set, world,
                        entity_table(data.items, catalogue[cold], "item_id"),
                        entity_table(data.items, catalogue, "item_id"))
    # Nothing to evaluate is an error now, not a table of zeros after training.
    eval_set = make_eval_set(train, test, user_ids, catalogue, config.exclude_train)
    check_evaluable(eval_set, test, config.exclude_train)
    return Prepared(data, train, test, catalogue, user_ids, user_table,
                    entity_table(data.items, catalogue, "item_id"), eval_set, world)


def split_data(data: RecallData, config: RecipeConfig) -> Tuple[RecallData, RecallData]:
    if config.split == "random":
        return splits.random_split(data, config.test_fraction, config.split_seed)
    if config.split == "temporal":
        return splits.temporal_split(data, config.test_fraction)
    if config.split == "item":
        return splits.item_split(data, config.test_fraction, config.split_seed)
    return splits.leave_last_n_split(data, config.leave_last_n)


def share_rows(data: RecallData, train: RecallData, test: RecallData
               ) -> Tuple[RecallData, RecallData, RecallData]:
    """The log held once: its rows reordered training first, then held-out (each side in
    log order), with `train` and `test` as views of them.

    The split functions copy the rows of each side, so the log and its split would be
    held twice (+735 MiB at 25M rows). Built column by column, each side's copy freed as
    its view replaces it; `data` itself is not modified (a new `RecallData`). A split
    that does not partition the log's rows is returned as it is.
    """
    inter = data.interactions
    n = train.num_interactions
    if (n + test.num_interactions != data.num_interactions
            or set(train.interactions) != set(inter) or set(test.interactions) != set(inter)):
        return data, train, test
    whole = {}
    for key in list(inter):
        column = np.concatenate([train.interactions[key], test.interactions[key]])
        column.flags.writeable = False  # shared by three tables: a write would hit all
        whole[key] = column
        train.interactions[key], test.interactions[key] = column[:n], column[n:]
    return RecallData(whole, data.users, data.items, data.name), train, test


def load_recall_data(config: RecipeConfig) -> RecallData:
    """The data set named by the config: files (auto-detected MovieLens or CSV) or synthetic."""
    if config.interactions is None:
        return synthetic_world(config).data
    return load_data(
        config.interactions,
        users=config.users,
        items=config.items,
        movielens_min_rating=config.movielens_min_rating,
        feature_config=feature_overrides(config),
        movielens_text=config.movielens_text,
    )


def synthetic_world(config: RecipeConfig):
    """The built-in world of `config.synthetic_world` (a `SyntheticWorld` or `LongTailWorld`)."""
    if config.users or config.items:
        raise ValueError("user and item tables (users, items) need an interactions log; "
                         "the built-in worlds bring their own")
    sizes = {name: value for name, value in (("num_users", config.synthetic_users),
                                              ("num_items", config.synthetic_items))
             if value is not None}
    if config.synthetic_world == "longtail":
        return longtail.generate_longtail(longtail.LongTailConfig(
            seed=config.synthetic_seed, **sizes))
    return synthetic.generate(synthetic.SyntheticConfig(seed=config.synthetic_seed, **sizes))


def feature_overrides(config: RecipeConfig) -> dict:
    return load_feature_config(config.feature_config) if config.feature_config else {}


def entity_table(table, ids: np.ndarray, key: str) -> dict:
    """The feature table aligned with `ids` (ids only in the log get missing values)."""
    if table is None:
        return {key: ids}
    index = {v: i for i, v in enumerate(table[key].tolist())}
    rows = np.fromiter((index.get(i, -1) for i in ids.tolist()), np.int64, count=len(ids))
    out = {key: ids}
    for name, col in table.items():
        if name == key:
            continue
        fill = np.nan if col.dtype != object else ""
        values = np.where(rows >= 0, col[np.maximum(rows, 0)] if len(col) else fill, fill)
        out[name] = values.astype(col.dtype)
    return out


def build_specs(data: RecallData, config: RecipeConfig) -> Tuple[list, list]:
    """The user and item `FeatureSpec`s: inferred kinds, the feature config's overrides,
    the item id's min_count and the history feature."""
    overrides = feature_overrides(config)
    specs = []
    for side, key, table in (("users", "user_id", data.users), ("items", "item_id", data.items)):
        if table is None:
            ids = data.user_ids() if side == "users" else data.item_catalogue()
            table = {key: ids}
        specs.append(infer_feature_specs(
            table, key, overrides=overrides.get(side), id_dim=config.id_embedding_dim,
            source=config_source(config.feature_config, side),
        ))
    if not config.user_id_embedding:
        specs[0] = [s for s in specs[0] if s.name != "user_id"]
        if not specs[0] and not config.history_items:
            raise ValueError("user_id_embedding=False leaves the user tower without features: "
                             "give user features or history_items > 0")
    item_id_overrides = (overrides.get("items") or {}).get("item_id") or {}
    specs[1] = [
        dataclasses.replace(spec, min_count=config.item_id_min_count)
        if (spec.name == "item_id" and spec.kind == "id" and spec.hash_buckets is None
            and "min_count" not in item_id_overrides) else spec
        for spec in specs[1]
    ]
    if config.history_items:
        if any(spec.name == HISTORY_FEATURE for spec in specs[0]):
            raise ValueError(f"the user table already has a column {HISTORY_FEATURE!r}; "
                             "rename it or set history_items=0")
        # Read through the item tower's own id table, so it has the item id's width.
        item_id = next((s for s in specs[1] if s.name == "item_id"), None)
        if item_id is None or item_id.kind != "id":
            raise ValueError("history_items needs an item feature 'item_id' of kind 'id' "
                             "(the history is embedded through its table)")
        specs[0].append(FeatureSpec(HISTORY_FEATURE, "history", embedding_dim=item_id.dim))
    return specs[0], specs[1]


def item_adapt_table(item_specs: Sequence[FeatureSpec], item_table: dict, train: RecallData,
                     log=print) -> Tuple[list, dict]:
    """The item specs and the table the item tower adapts from.

    Feature columns come from the catalogue; the item id's column is the training
    positives (one entry per positive), so the id's ``min_count`` counts positives: an
    item with fewer shares the OOV row and is scored by its features. If no item reaches
    ``min_count`` (a tiny log), every item with a positive keeps its row, and the log says so.
    """
    item_specs = list(item_specs)
    at = next((i for i, s in enumerate(item_specs) if s.name == "item_id"), None)
    if at is None or item_specs[at].kind != "id" or item_specs[at].hash_buckets is not None:
        return item_specs, item_table
    inter = train.interactions
    ids = np.asarray(inter["item_id"], dtype=object)[np.asarray(inter["positive"], bool)]
    # Positives per distinct id (compared as str) by hashing: `np.unique(ids.astype(str))`
    # held a fixed-width copy and its sorted copy (+760 MiB on a 25M-row log).
    counts = np.bincount(vocab_codes(np.empty(0, object), ids)[1], minlength=1)
    counts = counts[counts > 0]
    spec = item_specs[at]
    if spec.min_count > 1 and (len(counts) == 0 or counts.max() < spec.min_count):
        log(f"item_id: no item has {spec.min_count} training positives (min_count); every "
            "item with a positive keeps its own embedding row")
        item_specs[at] = dataclasses.replace(spec, min_count=1)
    elif spec.min_count > 1:
        kept = int((counts >= spec.min_count).sum())
        log(f"item_id: {kept} of {len(counts)} items with training positives have >= "
            f"{spec.min_count} (min_count) and their own embedding row; the rest and "
            "items never positive are scored by their features (the OOV row)")
    return item_specs, {**item_table, "item_id": ids}


def user_feature_table(data: RecallData, train: RecallData, user_ids: np.ndarray,
                       config: RecipeConfig) -> dict:
    """The user table aligned with `user_ids`, plus the training-history feature."""
    table = entity_table(data.users, user_ids, "user_id")
    if config.history_items:
        table[HISTORY_FEATURE] = user_histories(train, user_ids, config.history_items)
    return table


def protocol_note(config: RecipeConfig) -> str:
    split = {"random": f"random {1 - config.test_fraction:.0%}/{config.test_fraction:.0%} split "
                       f"(seed {config.split_seed})",
             "temporal": f"global time cut ({config.test_fraction:.0%} latest rows held out)",
             "leave_last": f"each user's last {config.leave_last_n} positive(s) held out",
             "item": f"cold start: {config.test_fraction:.0%} of the items held out of "
                     f"training entirely (seed {config.split_seed}), ranked among "
                     "themselves"}
    excl = ("each user's training items are excluded from the ranking and from the targets"
            if config.exclude_train else "training items are NOT excluded")
    ranking = "the held-out items ranked" if config.split == "item" else "full-catalogue ranking"
    return (f"Held-out metrics: {split[config.split]}; {ranking}; {excl}; "
            "recall@K per held-out pair, the other metrics per user.")
