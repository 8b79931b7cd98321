"""Multi-channel recall in a run (``--channels``): the channels' tables from the training
split, the merge (quotas or weighted rank fusion) chosen on the validation slice, each
channel alone and the
merge evaluated at the same K on the held-out split, and the merged export's module.

The merge is chosen without the test split: the search stage's model and tables built
from the training split minus the validation slice rank the validation users; the
channels are ordered by their validation Recall@K alone (best first) and every split of
K over them in tenths (`tfrecall.serving.channels.quota_grid`, which holds "all K to one
channel") is scored as quotas and as fusion weights; the best is kept. The final model
and tables (whole training split) then serve with it.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from tfrecall.evaluation.harness import EvalSet, make_eval_set, signature_top_lists
from tfrecall.evaluation.metrics import evaluate_top_lists
from tfrecall.ids import catalogue_index
from tfrecall.io.schema import RecallData
from tfrecall.models.embed import embed_items
from tfrecall.recipe.config import RecipeConfig
from tfrecall.recipe.prepare import Prepared, user_feature_table
from tfrecall.serving.channel_tables import ChannelTables, build_tables
from tfrecall.serving.channels import (
    CHANNEL_PREFIX,
    MERGES,
    ChannelModule,
    first_positions,
    fusion_positions,
    quota_grid,
    quota_positions,
)
from tfrecall.serving.index import build_brute_force

MERGED = "merged"
ATTRIBUTE_KINDS = ("multi_categorical", "categorical")


@dataclasses.dataclass
class ChannelRun:
    """What `run_channels` chose and measured.

    Attributes:
      order: the channels in merge order.
      merge: "quotas" or "fusion" (`tfrecall.serving.channels.MERGES`).
      shares: aligned with `order`: the quotas (items each channel gives first) or the
        fusion weights.
      k: the length of every list (each channel's and the merge's).
      attribute: the attribute channel's item column (None without it).
      validation: validation Recall@k of each channel alone and of the chosen merge
        (empty without a validation slice).
      metrics: held-out metrics of each channel alone and of the merge (`MERGED`).
      tables: the final channel tables (whole training split), for the export.
    """

    order: Tuple[str, ...]
    merge: str
    shares: Tuple[float, ...]
    k: int
    attribute: Optional[str]
    validation: Dict[str, float]
    metrics: Dict[str, Dict[str, float]]
    tables: ChannelTables

    def summary_json(self) -> dict:
        return {"order": list(self.order), "merge": self.merge, "shares": list(self.shares),
                "k": self.k,
                "attribute": self.attribute,
                "validation_recall": {c: round(v, 5) for c, v in self.validation.items()},
                "metrics": {c: {m: round(v, 5) for m, v in ms.items()}
                            for c, ms in self.metrics.items()}}


def attribute_column(config: RecipeConfig, item_specs: Sequence, item_table: dict
                     ) -> Optional[str]:
    """The attribute channel's item column: ``channel_attribute``, else the first item
    feature of kind multi_categorical or categorical (None without the channel).

    Raises:
      ValueError: the named column is absent, or no item feature qualifies.
    """
    if "attribute" not in config.channels:
        return None
    if config.channel_attribute:
        if config.channel_attribute not in item_table:
            raise ValueError(f"channel_attribute {config.channel_attribute!r} is not an item "
                             f"column (have {sorted(item_table)})")
        return config.channel_attribute
    for spec in item_specs:
        if spec.kind in ATTRIBUTE_KINDS and spec.name in item_table:
            return spec.name
    raise ValueError("the attribute channel needs an item feature of kind "
                     f"{' or '.join(ATTRIBUTE_KINDS)}; name one with channel_attribute or "
                     "drop the channel")


def split_tables(config: RecipeConfig, split: RecallData, prep: Prepared,
                 attribute: Optional[str]) -> ChannelTables:
    """The channel tables of the training positives of `split` over the catalogue."""
    inter = split.interactions
    positive = np.asarray(inter["positive"], bool)
    users = catalogue_index(prep.user_ids, np.asarray(inter["user_id"], object)[positive])
    items = catalogue_index(prep.catalogue, np.asarray(inter["item_id"], object)[positive])
    keep = (users >= 0) & (items >= 0)
    column = None if attribute is None else prep.item_table[attribute]
    return build_tables(config.channels, users[keep], items[keep], len(prep.user_ids),
                        len(prep.catalogue), attribute, column)


def channel_module(model, prep: Prepared, tables: ChannelTables, order: Sequence[str],
                   merge: str, shares: Optional[Sequence[float]], k: int) -> ChannelModule:
    """An in-memory `ChannelModule` over the catalogue (exact two-tower search)."""
    index, _ = build_brute_force(embed_items(model, prep.item_table))
    return ChannelModule(model, prep.catalogue, index, k, tables, order,
                         **merge_arguments(merge, shares))


def merge_arguments(merge: str, shares: Optional[Sequence[float]]) -> dict:
    """`ChannelModule`'s merge keywords for a merge kind and its shares."""
    if merge == "fusion":
        return {"merge": merge, "weights": shares}
    return {"merge": merge, "quotas": None if shares is None else [int(q) for q in shares]}


def channel_lists(module: ChannelModule, eval_set: EvalSet, user_table: dict,
                  names: Sequence[str]) -> Dict[str, Dict[int, list]]:
    """Each named signature's top-K lists for the evaluated users (training items
    excluded): a channel name, or `MERGED` for ``serving_exclude``."""
    out = {}
    for name in names:
        sig = "serving_exclude" if name == MERGED else CHANNEL_PREFIX + name
        fn = getattr(module, sig)
        out[name] = signature_top_lists(lambda fn=fn, **f: fn(f), module.input_specs[sig],
                                        eval_set, user_table, module.k, batch_size=128)
    return out


def score_lists(lists: Dict[int, list], eval_set: EvalSet, ks: Sequence[int]) -> dict:
    return evaluate_top_lists(lists, len(eval_set.catalogue), eval_set.targets,
                              eval_set.exclude, ks, eval_set.item_popularity)


def choose_merge(lists: Dict[str, Dict[int, list]], eval_set: EvalSet, k: int,
                 steps: int = 10) -> Tuple[Tuple[str, ...], str, Tuple[float, ...],
                                           Dict[str, float]]:
    """The merge order, kind and shares with the best Recall@k on `eval_set` (validation).

    Both merges are searched over the same grid of shares in `steps`ths
    (`quota_grid`): quotas (items per channel) and fusion weights (share / k); a
    share of 1 for one channel reproduces that channel alone in both. Ties keep the
    earlier: quotas before fusion, grid order.

    Args:
      lists: `{channel: {user: catalogue indices}}`, each list k long.

    Returns:
      ``(order, merge, shares, {channel: recall@k alone, MERGED: the chosen merge's})``
      where shares are the quotas (ints) or the weights.
    """
    alone = {c: score_lists(v, eval_set, (k,))[f"recall@{k}"] for c, v in lists.items()}
    order = tuple(sorted(lists, key=lambda c: -alone[c]))  # stable: ties keep the order
    users = sorted(lists[order[0]])
    cat = np.concatenate([np.array([lists[c][u] for u in users], np.int32).reshape(
        len(users), k) for c in order], axis=1)
    first_pos = np.concatenate([first_positions(cat[s:s + 256]).numpy()
                                for s in range(0, len(users), 256)])
    first = (first_pos == np.arange(cat.shape[1])) & (cat >= 0)
    best, best_recall = None, -1.0
    for merge in MERGES:
        for quotas in quota_grid(len(order), k, steps):
            if merge == "quotas":
                shares = quotas
                pos = quota_positions(cat, first, np.asarray(quotas, np.int32), k).numpy()
            else:
                shares = tuple(q / k for q in quotas)
                pos = fusion_positions(cat, first_pos, np.asarray(shares, np.float32),
                                       k)[0].numpy()
            merged = np.where(pos >= 0, np.take_along_axis(cat, np.maximum(pos, 0), axis=1),
                              -1)
            recall = score_lists(dict(zip(users, merged.tolist(), strict=True)), eval_set,
                                 (k,))[f"recall@{k}"]
            if recall > best_recall:
                best, best_recall = (merge, shares), recall
    return order, best[0], best[1], {**alone, MERGED: best_recall}


def run_channels(config: RecipeConfig, prep: Prepared, item_specs: Sequence, ks: Sequence[int],
                 final_model, search_model=None, fit: Optional[RecallData] = None,
                 validation: Optional[RecallData] = None, log=print) -> ChannelRun:
    """Chooses the merge on the validation slice (when given), then evaluates each
    channel and the merge on the held-out split with the final model.

    Without a validation slice the channels keep the config's order with equal quotas.
    """
    k = min(config.export_k, len(prep.catalogue))
    eval_ks = tuple(x for x in ks if x <= k) or (k,)
    if eval_ks != tuple(ks):
        log(f"channels: lists are export_k={k} long; reporting K {list(eval_ks)}")
    attribute = attribute_column(config, item_specs, prep.item_table)
    order, merge, shares, validation_recall = config.channels, "quotas", None, {}
    if validation is not None and search_model is not None and len(config.channels) > 1:
        val_set = make_eval_set(fit, validation, prep.user_ids, prep.catalogue,
                                config.exclude_train)
        val_users = user_feature_table(prep.data, fit, prep.user_ids, config)
        module = channel_module(search_model, prep, split_tables(config, fit, prep, attribute),
                                config.channels, "quotas", None, k)
        lists = channel_lists(module, val_set, val_users, config.channels)
        order, merge, shares, validation_recall = choose_merge(lists, val_set, k)
        log(f"channels: validation recall@{k} alone "
            + ", ".join(f"{c} {validation_recall[c]:.4f}" for c in order)
            + f"; merge order {', '.join(order)}, {merge} {list(shares)}: "
            f"{validation_recall[MERGED]:.4f}")
    elif len(config.channels) > 1:
        log("channels: no validation slice; equal quotas in the given order")
    tables = split_tables(config, prep.train, prep, attribute)
    module = channel_module(final_model, prep, tables, order, merge, shares, k)
    lists = channel_lists(module, prep.eval_set, prep.user_table, tuple(order) + (MERGED,))
    metrics = {name: score_lists(v, prep.eval_set, eval_ks) for name, v in lists.items()}
    if shares is None:  # equal shares, as the module chose them
        shares = (module.weights if merge == "fusion" else module.quotas).numpy().tolist()
    shares = tuple(round(float(x), 6) for x in shares)
    return ChannelRun(tuple(order), merge, shares, k, attribute, validation_recall, metrics,
                      tables)


def channel_factory(run: ChannelRun):
    """`export_saved_model`'s module_factory serving the run's channels and merge."""
    def make(model, item_ids, index, k):
        return ChannelModule(model, item_ids, index, k, run.tables, run.order,
                             **merge_arguments(run.merge, run.shares))
    return make


def format_channels(run: ChannelRun) -> str:
    """Each channel and the merge at the same K, one row per metric."""
    names = list(run.order) + [MERGED]
    keys = [m for m in run.metrics[MERGED] if m.split("@")[0] in ("recall", "ndcg", "hit_rate")]
    shares = [round(x, 3) for x in run.shares]
    lines = [f"channels (merge order, {run.merge} {shares} at K={run.k}):",
             f"{'metric':<14}" + "".join(f"{n:>12}" for n in names)]
    for key in keys:
        lines.append(f"{key:<14}" + "".join(f"{run.metrics[n][key]:>12.4f}" for n in names))
    return "\n".join(lines)


__all__ = ["ChannelRun", "MERGED", "attribute_column", "channel_factory", "channel_lists",
           "choose_merge", "format_channels", "merge_arguments", "run_channels",
           "split_tables"]
